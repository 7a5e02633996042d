/**
 * The whole build flow, end to end, in qubes-sim with the deployed qrexec policy enforced by the
 * sim's broker: the `local` site is deployed with the real `pulumi up` (Automation API, own
 * backend, own sim), then GitHub (signed webhooks to sys-net's uplink), the builder (build-fedora's
 * verified checkout of the stand-in qubes-builder, whose scripts/auto-build TriggerBuild starts:
 * sim/standin/), the upload host (a TCP endpoint of the sim's stand-in internet,
 * uploads.qubes-sim.test) and attackers are played against it.
 */
import { execFileSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import type { Stack } from "@pulumi/pulumi/automation";
import { readJournal, type JournalEntry } from "../../sim/broker";
import { createStandinGithub } from "../../sim/standin-builders";
import { receiverOf, sendWebhook } from "../../sim/webhook";
import { openStack, projectRoot, tempDir } from "../helpers/pulumi";
import { startSim, type StartedSim } from "../helpers/sim";
import { answers, localConfig, NS, SECRET, sleep, startUploadHost, waitFor } from "./harness";

jest.setTimeout(600_000);

const BUILDER = "/home/user/builder-r4.2";

let webhooksPort = 0;
/** `<state>/network.json` of the running sim. */
interface NetInfo {
  internet: string;
  github: string;
  sysNet: string;
  torExit: string;
}

describe("the build flow in qubes-sim", () => {
  const dir = tempDir("e2e");
  const backend = tempDir("e2e-backend");
  const gnupg = tempDir("e2e-gnupg");
  const stackName = `e2e${process.pid}`;
  const stackFile = path.join(projectRoot, `Pulumi.${stackName}.yaml`);
  let sim: StartedSim;
  let stack: Stack;
  let fingerprints: Record<string, string> = {};
  let verifiers: Record<string, string> = {};
  let upload: net.Server;
  const uploads: Buffer[] = [];
  let commandKey = "";
  let untrustedKey = "";

  const state = () => sim.stateDir;
  const vmFile = (vm: string, p: string) => path.join(state(), "vms", vm, "rw", p.startsWith("/home/") ? p.replace(/^\/home/, "home") : p.replace(/^\/usr\/local/, "usrlocal"));
  const journal = (): JournalEntry[] => readJournal(path.join(state(), "qrexec-journal.jsonl"));
  const hostGpg = (args: string[], input?: string) => execFileSync("gpg", ["--homedir", gnupg, "--batch", "--yes", ...args], { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  // The repository belongs to the logs VM's user (a host id of the sim's range), not to us.
  const git = (...args: string[]) => execFileSync("git", ["-c", "safe.directory=*", "-C", path.join(state(), "github", "build-logs.git"), ...args]).toString();
  const artifacts = () => vmFile("build-fedora", `${BUILDER}/artifacts/core-admin`);
  const netInfo = (): NetInfo => JSON.parse(fs.readFileSync(path.join(state(), "network.json"), "utf8")) as NetInfo;

  async function deploy(refresh = false): Promise<void> {
    const r = await stack.up({ policyPacks: [path.join(projectRoot, "policy")], refresh });
    expect(r.summary.result).toBe("succeeded");
    fingerprints = Object.fromEntries(Object.entries(r.outputs.signingKeys?.value ?? {}).map(([k, v]) => [k, String(v)]));
    verifiers = Object.fromEntries(Object.entries(r.outputs.logVerifiers?.value ?? {}).map(([k, v]) => [k, String(v)]));
  }

  /** Scenario 1's trigger: a signed push of core-admin; resolves with the builder's result line. */
  async function buildOnce(): Promise<string> {
    fs.rmSync(artifacts(), { recursive: true, force: true });
    const r = await sendWebhook({
      url: `${receiverOf(state()).url}/api/services/trigger_build`,
      event: "push",
      secret: SECRET,
      // Each push is another event (GitHub's bodies differ by commit): the receiver refuses a body it has seen.
      payload: {
        ref: "refs/heads/main",
        after: crypto.randomBytes(20).toString("hex"),
        repository: { full_name: "QubesOS/qubes-core-admin", name: "qubes-core-admin" },
      },
    });
    expect(r.status).toBe(202);
    const f = path.join(artifacts(), "result");
    const result = (await waitFor(() => fs.existsSync(f) && fs.readFileSync(f, "utf8").trim(), 180_000, "the build's result")) as string;
    // A failed result carries what BuildLog said, so that the failure explains itself.
    const stderr = path.join(artifacts(), "log-stderr");
    return result === "ok" || !fs.existsSync(stderr) ? result : `${result}: ${fs.readFileSync(stderr, "utf8").trim()}`;
  }

  beforeAll(async () => {
    // The receiver's loopback port inside sys-net (any: sys-net has its own network namespace).
    webhooksPort = 18000 + (process.pid % 1000);
    upload = await startUploadHost(uploads);
    const uploadPort = (upload.address() as net.AddressInfo).port;

    // Keys that sign GitHub commands: one trusted, one not.
    const mk = (uid: string) => {
      hostGpg(["--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"]);
      return /fpr:::::::::([0-9A-F]{40}):/.exec(hostGpg(["--with-colons", "--list-secret-keys", uid]))![1];
    };
    commandKey = mk("Trusted maintainer <m@example.org>");
    untrustedKey = mk("Stranger <s@example.org>");
    const trustedKeys = hostGpg(["--armor", "--export", commandKey]);

    sim = await startSim({ dir });
    // The builders' code: the stand-in repositories the local stack pins.
    createStandinGithub(path.join(state(), "github"));
    stack = await openStack(projectRoot, stackName, backend);
    const all: Record<string, { value: string; secret?: boolean }> = {};
    for (const [k, v] of Object.entries(localConfig)) {
      // The stack file's secrets are encrypted with its own passphrase: set below instead.
      if (typeof v === "object" && v !== null && "secure" in v) continue;
      all[k] = { value: typeof v === "string" ? v : JSON.stringify(v) };
    }
    const hosts = localConfig[`${NS}:uploadHosts`] as Record<string, Record<string, unknown>>;
    all[`${NS}:uploadHosts`] = { value: JSON.stringify({ "yum.qubes-os.org": { ...hosts["yum.qubes-os.org"], address: "uploads.qubes-sim.test", port: uploadPort } }) };
    all[`${NS}:admin`] = { value: JSON.stringify({ transport: "sim", socket: sim.socket }) };
    all[`${NS}:protectKeys`] = { value: "false" };
    all[`${NS}:signingWindowSeconds`] = { value: "60" };
    all[`${NS}:signingWaitSeconds`] = { value: "20" };
    // The builderv2 environment also signs Windows tools (win-keys-debian, gated like qubes.Gpg).
    const envs = localConfig[`${NS}:envs`] as Record<string, Record<string, unknown>>;
    all[`${NS}:envs`] = { value: JSON.stringify({ ...envs, debian: { ...envs.debian, windows: true } }) };
    all[`${NS}:commands`] = { value: JSON.stringify({ trustedKeys, maintainers: { [commandKey]: { components: "_all_", releases: "_all_" } } }) };
    all[`${NS}:webhooks`] = { value: JSON.stringify({ ...(localConfig[`${NS}:webhooks`] as object), receiverPort: webhooksPort }) };
    // The sim cannot run Windows: builder-windows-dvm's template is a Linux one (the Admin API contract is the same).
    all[`${NS}:windowsTemplate`] = { value: "debian-13" };
    all[`${NS}:webhookSecret`] = { value: SECRET, secret: true };
    all[`${NS}:githubApiToken`] = { value: "e2e-stand-in-token", secret: true };
    await stack.setAllConfig(all);
    await deploy();

    // sys-net's boot starts the webhook receiver (the site's rc.local block); the sim is
    // restarted so that running VMs boot again, as after a reboot of the machine.
    await sim.stop();
    sim = await startSim({ dir });
    for (const end = Date.now() + 30_000; !(await answers(receiverOf(state()).url)); await sleep(200)) {
      if (Date.now() > end) throw new Error("timed out waiting for the webhook receiver behind sys-net's uplink");
    }
    await sleep(500);
  });

  afterAll(async () => {
    await sim?.stop();
    upload?.close();
    fs.rmSync(stackFile, { force: true });
    for (const d of [dir, backend, gnupg]) fs.rmSync(d, { recursive: true, force: true });
  });

  it("2) a build VM that sent no log is refused a signature", async () => {
    const r = await sim.client.run("build-fedora", "echo data > /tmp/f; qubes-gpg-client-wrapper --detach-sign --armor -o /tmp/f.asc /tmp/f");
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toMatch(/refused/);
  });

  it("1) signed push → TriggerBuild → build → log pushed → digest logged → signed by keys-fedora → uploaded", async () => {
    const before = uploads.length;
    expect(await buildOnce()).toBe("ok");
    const rel = fs.readFileSync(path.join(artifacts(), "log-path"), "utf8").trim();
    expect(rel).toMatch(/^build-fedora\/\d{4}-\d\d-\d\d\/log_[\d-]+$/);
    // The log is in the pushed, signed head of the stand-in GitHub.
    const log = git("show", `main:${rel}`);
    expect(log).toMatch(/build-fedora: building core-admin in build-fedora/);
    expect(git("cat-file", "commit", "main")).toMatch(/^gpgsig /m);
    // keys-fedora accepted the logged request for exactly the artifact's bytes.
    const art0 = fs.readFileSync(path.join(artifacts(), "core-admin-1.0-1.fc41.noarch.rpm"));
    const acks = fs.readFileSync(vmFile("keys-fedora", "/home/user/.local/state/qubes-build-infra/signing/acks.jsonl"), "utf8");
    expect(acks).toContain(`"sha256":"${crypto.createHash("sha256").update(art0).digest("hex")}"`);
    // The artifact verifies with keys-fedora's public key, exported from the keys VM.
    const pub = await sim.client.run("keys-fedora", `gpg --armor --export ${fingerprints.fedora}`);
    hostGpg(["--import"], pub.stdout.toString());
    const art = path.join(artifacts(), "core-admin-1.0-1.fc41.noarch.rpm");
    const v = execFileSync("gpg", ["--homedir", gnupg, "--status-fd", "1", "--verify", `${art}.asc`, art], { stdio: ["ignore", "pipe", "pipe"] }).toString();
    expect(v).toMatch(new RegExp(`VALIDSIG ${fingerprints.fedora}`));
    expect(uploads.length).toBe(before + 1);
    expect(uploads[uploads.length - 1].toString()).toContain("artifact of core-admin");
    // It ran the checked-out builder's entry point: scripts/auto-build under the builder's lock.
    const started = fs.readFileSync(vmFile("build-fedora", "/home/user/builder-github-logs/trigger-build.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(started.pop()).toMatchObject({ component: "core-admin", argv: [`${BUILDER}/scripts/auto-build`, "core-admin"], lock: `${BUILDER}/builder.lock` });
    // The signatures were made in a second logged session, after the build's log was published.
    const signLog = git("show", `main:${fs.readFileSync(path.join(artifacts(), "sign-log-path"), "utf8").trim()}`);
    expect(signLog).toMatch(/sign-all update-repo-current-testing[\s\S]*signing core-admin-1.0-1.fc41.noarch.rpm[\s\S]*uploaded: OK/);
    // Every hop went through the broker, allowed by the site's rules.
    const allowed = journal().filter((e) => e.verdict === "allow").map((e) => `${e.source}>${e.service}>${e.resolvedTarget}`);
    for (const hop of ["sys-net>qubesbuilder.TriggerBuild+core-admin>build-fedora", "build-fedora>qubesbuilder.BuildLog>logs", "build-fedora>qubesbuilder.LogDigest>logs",
      "logs>qubesbuilder.LogReceived+build-fedora>keys-fedora", "build-fedora>qubes.Gpg>keys-fedora", "build-fedora>local.ConnectSSH+yum.qubes-os.org>sys-net"]) {
      expect(allowed).toContain(hop);
    }
  });

  it("3) build-fedora asking keys-debian to sign is denied by policy, the journal names the rule", async () => {
    const r = await sim.client.run("build-fedora", "echo x | qrexec-client-vm -- keys-debian qubes.Gpg");
    expect(r.exitCode).toBe(126);
    const e = journal().pop()!;
    expect(e).toMatchObject({ source: "build-fedora", service: "qubes.Gpg", requestedTarget: "keys-debian", verdict: "deny" });
    expect(e.rule).toMatch(/20-qubes-build-infra\.policy:\d+$/);
    const line = Number(e.rule!.split(":").pop());
    const text = fs.readFileSync(path.join(state(), "dom0", "etc", "qubes", "policy.d", "20-qubes-build-infra.policy"), "utf8").split("\n")[line - 1];
    expect(text).toMatch(/^qubes\.Gpg\s+\*\s+build-fedora\s+@anyvm\s+deny/);
  });

  it("4) a new AppVM is denied qubes.Gpg, BuildLog, LogReceived and ConnectSSH", async () => {
    await sim.client.vmCreate("AppVM", "intruder", "red", "fedora-43-xfce");
    for (const [target, service] of [["keys-fedora", "qubes.Gpg"], ["@default", "qubes.Gpg"], ["dom0", "qubesbuilder.BuildLog"], ["logs", "qubesbuilder.BuildLog"],
      ["dom0", "qubesbuilder.LogReceived+build-fedora"], ["keys-fedora", "qubesbuilder.LogReceived+build-fedora"], ["sys-net", "local.ConnectSSH+yum.qubes-os.org"]]) {
      const r = await sim.client.run("intruder", `qrexec-client-vm -- ${target} ${service} </dev/null`);
      expect([target, service, r.exitCode]).toEqual([target, service, 126]);
      expect(journal().pop()).toMatchObject({ source: "intruder", verdict: "deny" });
    }
  });

  it("5) a compromised build VM cannot alter or delete a committed log", async () => {
    const head = git("rev-parse", "main").trim();
    const files = git("ls-tree", "-r", "--name-only", "main").split("\n").filter((f) => f.startsWith("build-fedora/"));
    const contents = files.map((f) => git("show", `main:${f}`));
    const attacks = [
      // Straight at the stand-in GitHub: read-only from here (no credentials).
      "git -C /srv/qubes-sim-github/build-logs.git update-ref refs/heads/main HEAD~1",
      "rm -rf /srv/qubes-sim-github/build-logs.git/objects",
      // Into the logs VM or dom0 by qrexec: no rule.
      "echo 'rm -rf /home/user/QubesIncomingBuildLog' | qrexec-client-vm -- logs qubes.VMShell",
      "qrexec-client-vm -- dom0 admin.vm.Remove+logs </dev/null",
      "qrexec-client-vm -- logs qubesbuilder.BuildLog </dev/null",
    ];
    for (const a of attacks) {
      const r = await sim.client.run("build-fedora", a);
      expect([a, r.exitCode === 0]).toEqual([a, false]);
    }
    // A path as service argument never leaves qrexec ('/' is not allowed in an argument) ...
    const slash = await sim.client.run("build-fedora", "printf 'evil\\n' | qrexec-client-vm -- dom0 qubesbuilder.BuildLog+../../x");
    expect(slash.exitCode).toBe(126);
    // ... and BuildLog itself only ever adds: `..` becomes a new sub-directory of its own.
    const r = await sim.client.run("build-fedora", "printf 'evil\\n' | qrexec-client-vm -- dom0 qubesbuilder.BuildLog+..");
    expect(r.exitCode).toBe(0);
    const after = git("rev-parse", "main").trim();
    expect(git("merge-base", "--is-ancestor", head, after) === "").toBe(true);
    files.forEach((f, i) => expect(git("show", `main:${f}`)).toBe(contents[i]));
  });

  it("6) a signed v1 Upload comment runs builder-github's handler once; replayed or untrusted ones are refused with feedback", async () => {
    const url = `${receiverOf(state()).url}/api/services/process_comment`;
    // The commit the stand-in builder holds for core-admin (scenario 1 built it): the handler checks it.
    const sha = fs.readFileSync(vmFile("build-fedora", `${BUILDER}/qubes-src/core-admin/.standin-commit`), "utf8").trim();
    const clearsign = (fpr: string, cmd: string) => hostGpg(["-u", fpr, "--digest-algo", "SHA256", "--clearsign"], `${cmd}\n`);
    const comment = (body: string) => sendWebhook({ url, event: "issue_comment", secret: SECRET, payload: { action: "created", comment: { body } } });
    const uploadsLog = vmFile("build-fedora", `${BUILDER}/uploads.log`);
    const rejections = () => {
      const f = vmFile("build-fedora", "/home/user/.local/state/qubes-build-infra/process-github-command/commands.jsonl");
      return fs.existsSync(f) ? fs.readFileSync(f, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { outcome: string; reason: string }).filter((x) => x.outcome === "rejected") : [];
    };
    const command = `Upload core-admin ${sha} r4.2 current vm-fc41 repo`;
    const signed = clearsign(commandKey, command);
    expect((await comment(`Please upload\n\n${signed}`)).status).toBe(202);
    const line = await waitFor(() => fs.existsSync(uploadsLog) && fs.readFileSync(uploadsLog, "utf8"), 60_000, "the upload handler");
    expect(line).toBe(`core-admin ${sha} current vm-fc41\n`);

    const n = rejections().length;
    expect((await comment(`again\n\n${signed}`)).status).toBe(202);
    await waitFor(() => rejections().length > n, 60_000, "the replay's rejection");
    expect(rejections().pop()!.reason).toMatch(/replay|seen|already/i);

    const untrusted = clearsign(untrustedKey, command);
    expect((await comment(untrusted)).status).toBe(202);
    await waitFor(() => rejections().length > n + 1, 60_000, "the untrusted command's rejection");
    const unsigned = `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n${command}\n-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n`;
    expect((await comment(unsigned)).status).toBe(202);
    await waitFor(() => rejections().length > n + 2, 60_000, "the unsigned command's rejection");
    await sleep(1000);
    expect(fs.readFileSync(uploadsLog, "utf8")).toBe(line);
  });

  it("7) an unsigned webhook gets 401 and nothing is forwarded", async () => {
    const { url: front } = receiverOf(state());
    const n = journal().length;
    const r = await sendWebhook({ url: `${front}/api/services/trigger_build`, event: "push", secret: null, payload: { repository: { full_name: "QubesOS/qubes-core-admin" } } });
    expect(r.status).toBe(401);
    const bad = await sendWebhook({ url: `${front}/api/services/trigger_build`, event: "push", secret: "not-the-secret-at-all-0000", payload: { repository: { full_name: "QubesOS/qubes-core-admin" } } });
    expect(bad.status).toBe(401);
    await sleep(1500);
    expect(journal().slice(n).filter((e) => e.service.startsWith("qubesbuilder.TriggerBuild"))).toEqual([]);
  });

  it("8) drift: a rule deleted by hand breaks scenario 1, `pulumi up --refresh` restores it", async () => {
    const text = (await sim.client.policyGet("20-qubes-build-infra")).content;
    const edited = text.split("\n").filter((l) => !/^qubes\.Gpg\s+\*\s+build-fedora\s+keys-fedora\s+allow/.test(l)).join("\n");
    expect(edited).not.toBe(text);
    await sim.client.policyReplace("20-qubes-build-infra", edited, "any");
    expect(await buildOnce()).toMatch(/^fail sign/);
    // Drift is found by reading dom0 back: `pulumi up --refresh` (a plain `up` trusts the state).
    await deploy(true);
    expect(await buildOnce()).toBe("ok");
  });

  /** The logs as an outsider audits them: a clone of the stand-in GitHub, the stack's verifier keys. */
  async function auditLogs(): Promise<string> {
    const clone = path.join(tempDir("e2e-audit"), "logs");
    // The stand-in GitHub belongs to the logs VM's user: git's ownership check must be told (upload-pack too).
    execFileSync("git", ["clone", "-q", "--no-local", "--upload-pack=git -c safe.directory=* upload-pack", path.join(state(), "github", "build-logs.git"), clone]);
    const out = execFileSync(path.join(projectRoot, "bin", "qubes-build-infra"), ["verify-log", clone, ...Object.values(verifiers).flatMap((v) => ["--verifier", v])], {
      env: process.env, stdio: ["ignore", "pipe", "pipe"],
    }).toString();
    fs.rmSync(path.dirname(clone), { recursive: true, force: true });
    return out;
  }

  it("9) builderv2 order: build-debian signs inside its open log session; the prefix is public first; verify-log passes", async () => {
    const script = [
      "set -e; cd /tmp; printf 'package of debian\\n' > pkg.deb",
      "{ echo 'prep: ok'; echo 'build: ok'; qubes-gpg-client-wrapper --detach-sign --armor -o pkg.deb.asc pkg.deb >&2; echo 'sign: ok'; echo 'publish: ok'; }"
        + " | qrexec-client-vm -- dom0 qubesbuilder.BuildLog > log-path",
      "cat log-path; cat pkg.deb.asc",
    ].join("\n");
    const r = await sim.client.run("build-debian", script);
    expect(r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
    const [rel] = r.stdout.toString().split("\n");
    expect(rel).toMatch(/^build-debian\/.*\/log_/);
    const log = git("show", `main:${rel}`);
    expect(log).toMatch(/build-debian: prep: ok\n.*build-debian: build: ok\n.*build-debian: sign: ok\n/s);
    const pub = await sim.client.run("keys-debian", `gpg --armor --export ${fingerprints.debian}`);
    hostGpg(["--import"], pub.stdout.toString());
    const dir = tempDir("e2e-v2");
    fs.writeFileSync(path.join(dir, "pkg.deb"), "package of debian\n");
    fs.writeFileSync(path.join(dir, "pkg.deb.asc"), r.stdout.toString().slice(r.stdout.toString().indexOf("-----BEGIN")));
    expect(execFileSync("gpg", ["--homedir", gnupg, "--status-fd", "1", "--verify", path.join(dir, "pkg.deb.asc"), path.join(dir, "pkg.deb")]).toString()).toContain(`VALIDSIG ${fingerprints.debian}`);
    expect(await auditLogs()).toMatch(/: OK\n$/);
  });

  it("10) bytes that were never logged are refused by the keys VM, even right after a published build", async () => {
    const r = await sim.client.run("build-fedora", "printf -- '--detach-sign --armor\\nunlogged bytes\\n' | qrexec-client-vm -- keys-fedora qubes.Gpg");
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toMatch(/no logged signature request of build-fedora for these bytes/);
  });

  it("11) a rewound logs branch is detected and the lost history is published again; the next build still signs", async () => {
    const before = git("rev-parse", "main").trim();
    const root = git("rev-list", "--max-parents=0", "main").trim();
    git("update-ref", "refs/heads/main", root);
    expect(await buildOnce()).toBe("ok");
    git("merge-base", "--is-ancestor", before, "main");
    const journal = fs.readFileSync(vmFile("logs", "/home/user/.local/state/qubes-build-infra/build-log/published.jsonl"), "utf8");
    expect(journal).toContain('"event":"remote-rewound"');
    expect(await auditLogs()).toMatch(/: OK\n$/);
  });

  it("12) Windows signing goes through the same gate: logged first, existing keys only", async () => {
    const src = tempDir("e2e-pe");
    fs.writeFileSync(path.join(src, "go.mod"), "module hello\n\ngo 1.22\n");
    fs.writeFileSync(path.join(src, "main.go"), "package main\n\nfunc main() {}\n");
    execFileSync("go", ["build", "-trimpath", "-ldflags", "-s -w", "-o", "hello.exe", "."], { cwd: src, env: { ...process.env, GOOS: "windows", GOARCH: "amd64", CGO_ENABLED: "0" } });
    await sim.client.writeFile("build-debian", "/home/user/hello.exe", fs.readFileSync(path.join(src, "hello.exe")), { mode: 0o644 });
    const call = (op: string, arg = "Qubes__Windows__Tools", input = "/home/user/hello.exe") =>
      sim.client.run("build-debian", `qrexec-client-vm -- win-keys-debian qubesbuilder.WinSign.${op}+${arg} < ${input} > /tmp/out; rc=$?; wc -c < /tmp/out; exit $rc`);
    expect((await call("QueryKey", undefined, "/dev/null")).exitCode).toBe(0);
    // Inside a log session the request is logged (by win-keys-debian, for build-debian), then signed.
    const r = await sim.client.run("build-debian", "{ echo 'windows build'; qrexec-client-vm -- win-keys-debian qubesbuilder.WinSign.Sign+Qubes__Windows__Tools"
      + " < /home/user/hello.exe > /tmp/signed.exe; echo \"sign exit $?\"; } | qrexec-client-vm -- dom0 qubesbuilder.BuildLog >/dev/null; cat /tmp/signed.exe");
    expect(r.exitCode).toBe(0);
    const signed = path.join(src, "signed.exe");
    fs.writeFileSync(signed, r.stdout);
    const cert = await sim.client.run("build-debian", "qrexec-client-vm -- win-keys-debian qubesbuilder.WinSign.GetCert+Qubes__Windows__Tools </dev/null");
    fs.writeFileSync(path.join(src, "cert.pem"), cert.stdout);
    expect(execFileSync("osslsigncode", ["verify", "-in", signed, "-CAfile", path.join(src, "cert.pem")]).toString()).toMatch(/Signature verification: ok/);
    // Keys are the site's: CreateKey and DeleteKey are not reachable, nor another key name.
    for (const [op, arg] of [["CreateKey", "Qubes__Windows__Tools"], ["DeleteKey", "Qubes__Windows__Tools"], ["Sign", "Other__Key"]]) {
      const x = await call(op, arg, "/dev/null");
      expect([op, arg, x.exitCode]).toEqual([op, arg, 126]);
    }
    expect(await auditLogs()).toMatch(/: OK\n/);
  });

  it("13) a forked checkpoint shown to a keys VM raises its alarm: it refuses to sign and says why, until an operator clears it", async () => {
    // A compromised logs VM makes a second log under its own key and hands an entry of it over.
    const script = [
      "set -e; k=/home/user/.config/qubes-build-infra/tlog.key; t=/usr/local/lib/qubes-build-infra/qbi-tlog; d=$(mktemp -d)",
      "printf '{\"forged\":1}\\n{\"forged\":2}\\n{\"forged\":3}\\n{\"forged\":4}\\n{\"forged\":5}\\n{\"forged\":6}\\n{\"forged\":7}\\n{\"forged\":8}\\n' > $d/in",
      "for i in 1 2 3 4 5 6 7 8 9 10; do cat $d/in; done | $t append --dir $d/fork --private $k >/dev/null",
      "$t prove --dir $d/fork --index 3 --from $1",
    ].join("\n");
    const held = Number(fs.readFileSync(vmFile("keys-fedora", "/home/user/.local/state/qubes-build-infra/signing/witness/checkpoint"), "utf8").split("\n")[1]);
    const p = await sim.client.run("logs", `sh -c '${script.replace(/'/g, "'\\''")}' sh ${held}`, { user: "user" });
    expect(p.exitCode).toBe(0);
    const proof = JSON.parse(p.stdout.toString());
    const bundle = { checkpoint: proof.checkpoint, index: 3, entry: proof.entries["3"], inclusion: proof.inclusion["3"], from: held, consistency: proof.consistency };
    await sim.client.writeFile("logs", "/home/user/fork.json", JSON.stringify(bundle), { mode: 0o644 });
    const r = await sim.client.run("logs", "qrexec-client-vm -- dom0 qubesbuilder.LogReceived+build-fedora < /home/user/fork.json");
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toMatch(/inconsistent|fork/);
    expect(await buildOnce()).toMatch(/^fail sign /);
    expect(fs.readFileSync(path.join(artifacts(), "sign-stderr"), "utf8")).toMatch(/transparency log was seen to|alarm/);
    // The operator looks, then clears the alarm (README: "When things go wrong"); signing works again.
    await sim.client.run("keys-fedora", "rm /home/user/.local/state/qubes-build-infra/signing/witness/checkpoint.alarm");
    expect(await buildOnce()).toBe("ok");
  });

  it("14) network: a build VM reaches the upload host only through ConnectSSH, GitHub only via Tor; keys VMs are offline", async () => {
    const n = netInfo();
    const hosts = localConfig[`${NS}:uploadHosts`] as Record<string, unknown>;
    expect(Object.keys(hosts)).toContain("yum.qubes-os.org");
    const uploadPort = (upload.address() as net.AddressInfo).port;
    // A TCP connection from inside a VM: prints `connected` or the error.
    const tcp = (vm: string, host: string, port: number) =>
      sim.client.run(vm, `node -e 'const s=require("net").connect({host:"${host}",port:${port},timeout:2000});` +
        `s.on("connect",()=>{console.log("connected");s.destroy()});s.on("error",(e)=>console.log(e.code));s.on("timeout",()=>{console.log("timeout");s.destroy()})'`);
    const direct = await tcp("build-fedora", "uploads.qubes-sim.test", uploadPort);
    expect(direct.stdout.toString().trim()).not.toBe("connected");
    const receiver = new URL(receiverOf(state()).url);
    for (const [host, port] of [[receiver.hostname, Number(receiver.port || 80)], ["127.0.0.1", webhooksPort], [n.sysNet, webhooksPort]] as const) {
      expect([host, port, (await tcp("build-fedora", host, port)).stdout.toString().trim()]).not.toEqual([host, port, "connected"]);
    }
    // Through local.ConnectSSH (qrexec to sys-net, which connects) it works.
    const before = uploads.length;
    const payload = "probe.txt 5 0\nhello";
    const via = await sim.client.run("build-fedora", `printf '${payload.replace(/\n/g, "\\n")}' | qrexec-client-vm -- sys-net local.ConnectSSH+yum.qubes-os.org`);
    expect(via.stdout.toString()).toMatch(/^OK [0-9a-f]{64}/);
    expect(uploads.length).toBe(before + 1);
    // The stand-in GitHub's address: build VMs get there through sys-whonix only, seen as the Tor exit;
    // the logs VM (clearnet, sys-firewall) as sys-net's address.
    const seen: string[] = [];
    const gh = net.createServer((c) => {
      seen.push(String(c.remoteAddress));
      c.end();
    });
    await new Promise<void>((r) => gh.listen(0, n.github, () => r()));
    const ghPort = (gh.address() as net.AddressInfo).port;
    try {
      expect((await tcp("build-fedora", "github.qubes-sim.test", ghPort)).stdout.toString().trim()).toBe("connected");
      expect((await tcp("logs", "github.qubes-sim.test", ghPort)).stdout.toString().trim()).toBe("connected");
      await waitFor(() => seen.length >= 2, 5000, "both connections");
      expect(seen.map((a) => a.replace(/^::ffff:/, ""))).toEqual([n.torExit, n.sysNet]);
    } finally {
      gh.close();
    }
    // The Tor gateway forwards nothing else: not even the upload host.
    expect((await tcp("build-fedora", n.internet, uploadPort)).stdout.toString().trim()).not.toBe("connected");
    // A keys VM has loopback only.
    const keys = await sim.client.run("keys-fedora", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    expect(keys.stdout.toString().trim()).toBe("lo");
  });
});
