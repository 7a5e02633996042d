/**
 * A sign-if-logged site at the service level, for tests and the bench: a logs VM (BuildLog,
 * LogDigest; a real git remote; the log key made by the real qbi-tlog), keys VMs (LogReceived,
 * the qubes.Gpg gate; real gpg), a Windows keys VM (WinSign; real osslsigncode) and the build
 * VM's gpg client, wired by a fake qrexec that plays dom0's redirects:
 *   BuildLog, LogDigest           → the logs VM (caller: the calling VM)
 *   LogReceived+<build VM>        → that build VM's keys VM (caller: the logs VM)
 *   qubes.Gpg                     → the requested keys VM
 *   WinSign.*                     → the requested Windows keys VM
 * Every service runs as the bundled program in its own state dir, as in the VMs.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { fakeQrexec, makeKey, sh, tempDir, writeJson } from "./helpers";

export interface SignSite {
  root: string;
  remote: string;
  repoDir: string;
  logsState: string;
  tlogDir: string;
  verifier: string;
  tlogKey: string;
  signFpr: string;
  keysHome: string;
  logsHome: string;
  /** Environment for a process running "in" a VM (PATH with the fake qrexec, caller name). */
  envOf(vm: string): Record<string, string>;
  keysState(vm: string): string;
  dist: string;
  logsConfig: Record<string, unknown>;
  writeLogsConfig(over: Record<string, unknown>): void;
  fake: ReturnType<typeof fakeQrexec>;
}

const gitId = ["-c", "user.name=Test", "-c", "user.email=test@example.org"];

export function tlogProgram(): string {
  return process.env.QBI_TLOG ?? "qbi-tlog";
}

/** Builds the site; `builds` lists the build VMs (each `build-X` with `keys-X`). */
/**
 * How long the gate waits for the logs VM's entry. The client asks LogDigest and the gate at once,
 * so on a loaded machine the entry may land seconds after the gate was asked: only the refusals
 * (bytes never logged) pay the whole wait.
 */
const ENTRY_WAIT_SECONDS = 15;

export function makeSignSite(dist: string, opts: { builds?: string[]; windows?: boolean; entryTtlSeconds?: number; logs?: Record<string, unknown> } = {}): SignSite {
  const builds = opts.builds ?? ["build-a", "build-b"];
  const root = tempDir("sign");
  const logsHome = path.join(root, "logs-gnupg");
  const logsFpr = makeKey(logsHome, "Logs <logs@example.org>");
  const keysHome = path.join(root, "keys-gnupg");
  const signFpr = makeKey(keysHome, "Packages <pkg@example.org>");
  const remote = path.join(root, "remote.git");
  sh("git", ["init", "-q", "--bare", "-b", "main", remote]);
  const seed = path.join(root, "seed");
  sh("git", ["clone", "-q", `file://${remote}`, seed]);
  sh("git", [...gitId, "-C", seed, "commit", "-q", "--allow-empty", `-S${logsFpr}`, "-m", "init"], { env: { GNUPGHOME: logsHome } });
  sh("git", ["-C", seed, "push", "-q", "origin", "HEAD:refs/heads/main"]);
  const repoDir = path.join(root, "logs", "QubesIncomingBuildLog");
  sh("git", ["clone", "-q", "-b", "main", `file://${remote}`, repoDir]);
  const tlogKey = path.join(root, "logs", "tlog.key");
  const verifier = (JSON.parse(execFileSync(tlogProgram(), ["keygen", "--origin", "example.org/build-logs/logs", "--private-out", tlogKey]).toString()) as { verifier: string }).verifier;
  const logsState = path.join(root, "logs", "state");
  const tlogDir = path.join(logsState, "tlog");
  const env = (b: string) => b.replace(/^build-/, "");
  const buildVms = Object.fromEntries(builds.map((b) => [b, { env: env(b), keysVm: `keys-${env(b)}`, ...(opts.windows ? { winKeysVm: `win-keys-${env(b)}` } : {}) }]));
  const logsConfig: Record<string, unknown> = {
    repoDir, remote: `file://${remote}`, branch: "main", signingKey: logsFpr, gnupgHome: logsHome, pushAttempts: 2, pushBackoffMs: 10,
    buildVms, tlog: { program: tlogProgram(), privateKey: tlogKey, repoSubdir: "tlog/logs" }, ...opts.logs,
  };
  const logsConfigFile = path.join(root, "logs", "build-log.json");
  writeJson(logsConfigFile, logsConfig);
  const fake = fakeQrexec(path.join(root, "qrexec"));
  const keysState = (vm: string) => path.join(root, vm, "state");
  // QBI_FAKE_NO_STDERR=1 plays real qrexec, which relays a service's stdout to the caller, not its stderr.
  const route = (service: string, body: string) =>
    fs.writeFileSync(path.join(fake.routeDir, service), `#!/bin/bash\nset -e\nif [ -n "$QBI_FAKE_NO_STDERR" ]; then exec 2>/dev/null; fi\n${body}\n`, { mode: 0o755 });
  for (const b of builds) {
    const k = `keys-${env(b)}`;
    fs.mkdirSync(keysState(k), { recursive: true });
    writeJson(path.join(root, k, "log-received.json"), { logsVms: ["logs"], buildVms: [b], self: k, verifier, tlogProgram: tlogProgram(), ...(opts.entryTtlSeconds ? { entryTtlSeconds: opts.entryTtlSeconds } : {}) });
    writeJson(path.join(root, k, "gpg-gate.json"), { clients: [b], gnupgHome: keysHome, keys: [signFpr], defaultKey: signFpr, entryWaitSeconds: ENTRY_WAIT_SECONDS });
    if (opts.windows) {
      const w = `win-keys-${env(b)}`;
      const keysDir = path.join(root, w, "keys");
      fs.mkdirSync(keysDir, { recursive: true });
      fs.mkdirSync(keysState(w), { recursive: true });
      execFileSync("openssl", ["req", "-nodes", "-new", "-x509", "-newkey", "rsa:2048", "-sha256", "-keyout", path.join(keysDir, "Qubes Windows Tools.key"),
        "-out", path.join(keysDir, "Qubes Windows Tools.crt"), "-days", "30", "-subj", "/CN=Qubes Windows Tools/"], { stdio: "ignore" });
      writeJson(path.join(root, w, "win-sign.json"), { clients: [b], keys: ["Qubes__Windows__Tools"], keysDir, self: w, verifier, tlogProgram: tlogProgram() });
    }
  }
  // The caller of a hop is the VM the previous hop ran in: each route exports its own VM's name.
  route("qubesbuilder.BuildLog", `export QBI_FAKE_CALLER=logs HOME=${root}/logs QBI_CONFIG=${logsConfigFile} QBI_STATE_DIR=${logsState}
exec ${dist}/build-log.js`);
  route("qubesbuilder.LogDigest", `export QBI_FAKE_CALLER=logs HOME=${root}/logs QBI_CONFIG=${logsConfigFile} QBI_STATE_DIR=${logsState}
exec ${dist}/log-digest.js`);
  route("qubesbuilder.LogReceived", `[ "$QREXEC_REMOTE_DOMAIN" = logs ] || { echo "policy: only logs may call LogReceived" >&2; exit 126; }
k="keys-\${QREXEC_SERVICE_ARGUMENT#build-}"
export QBI_FAKE_CALLER="$k" HOME=${root}/"$k" QBI_CONFIG=${root}/"$k"/log-received.json QBI_STATE_DIR=${root}/"$k"/state
exec ${dist}/log-received.js`);
  route("qubes.Gpg", `k="$QREXEC_REQUESTED_TARGET"
export QBI_FAKE_CALLER="$k" HOME=${root}/"$k" QBI_CONFIG=${root}/"$k"/gpg-gate.json QBI_STATE_DIR=${root}/"$k"/state
exec ${dist}/gpg-gate.js`);
  for (const op of ["QueryKey", "GetCert", "Sign"]) {
    route(`qubesbuilder.WinSign.${op}`, `k="$QREXEC_REQUESTED_TARGET"
export QBI_FAKE_CALLER="$k" HOME=${root}/"$k" QBI_CONFIG=${root}/"$k"/win-sign.json QBI_STATE_DIR=${root}/"$k"/state
exec ${dist}/win-sign.js`);
  }
  return {
    root, remote, repoDir, logsState, tlogDir, verifier, tlogKey, signFpr, keysHome, logsHome, dist, fake, logsConfig, keysState,
    envOf: (vm: string) => ({ PATH: `${fake.bin}:${process.env.PATH}`, QBI_FAKE_CALLER: vm, QUBES_GPG_DOMAIN: `keys-${env(vm)}`, HOME: path.join(root, vm) }),
    writeLogsConfig: (over: Record<string, unknown>) => writeJson(logsConfigFile, { ...logsConfig, ...over }),
  };
}
