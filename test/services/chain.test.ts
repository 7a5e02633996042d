/**
 * The bundles are standalone, and the whole log-before-sign chain works end to end:
 * BuildLog (logs VM) → commit + push → LogReceived+<build VM> (keys VM, via a fake dom0
 * redirect) → the qubes.Gpg gate signs for that build VM only.
 */
import { builtinModules } from "module";
import * as fs from "fs";
import * as path from "path";
import { SERVICE_PROGRAMS } from "../../services/build";
import { buildDist, fakeQrexec, gpg, makeKey, runJs, sh, tempDir, writeJson } from "./helpers";

let dist: string;
beforeAll(async () => {
  dist = await buildDist();
});

test("every program is one executable file that needs only node's builtins", () => {
  const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
  for (const name of Object.keys(SERVICE_PROGRAMS)) {
    const file = path.join(dist, `${name}.js`);
    expect((fs.statSync(file).mode & 0o777).toString(8)).toBe("755");
    const text = fs.readFileSync(file, "utf8");
    expect(text.startsWith("#!/usr/bin/env node\n")).toBe(true);
    const required = [...text.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => m[1]);
    expect(required.filter((r) => !builtins.has(r))).toEqual([]);
  }
});

test("a published log opens the signing window of its build VM, and only then can it sign", async () => {
  const root = tempDir("chain");
  const logsHome = path.join(root, "logs-gnupg");
  const logsFpr = makeKey(logsHome, "Logs <logs@example.org>");
  const keysHome = path.join(root, "keys-gnupg");
  const signFpr = makeKey(keysHome, "Packages <pkg@example.org>");
  // Logs repository and its remote.
  const remote = path.join(root, "remote.git");
  sh("git", ["init", "-q", "--bare", "-b", "main", remote]);
  const seed = path.join(root, "seed");
  sh("git", ["clone", "-q", `file://${remote}`, seed]);
  sh("git", ["-c", "user.name=T", "-c", "user.email=t@e", "-C", seed, "commit", "-q", "--allow-empty", `-S${logsFpr}`, "-m", "init"], { env: { GNUPGHOME: logsHome } });
  sh("git", ["-C", seed, "push", "-q", "origin", "HEAD:refs/heads/main"]);
  const repoDir = path.join(root, "QubesIncomingBuildLog");
  sh("git", ["clone", "-q", "-b", "main", `file://${remote}`, repoDir]);
  // Keys VM.
  const keysState = path.join(root, "keys-state");
  const lrConfig = writeJson(path.join(root, "log-received.json"), { logsVms: ["logs"], buildVms: ["build-a", "build-b"] });
  const gateConfig = writeJson(path.join(root, "gpg-gate.json"), { clients: ["build-a", "build-b"], gnupgHome: keysHome, keys: [signFpr], defaultKey: signFpr });
  // dom0's redirect: `qubesbuilder.LogReceived +build-a logs dom0 allow target=keys-a`.
  const fake = fakeQrexec(path.join(root, "qrexec"));
  fs.writeFileSync(
    path.join(fake.routeDir, "qubesbuilder.LogReceived"),
    `#!/bin/sh\nQREXEC_REMOTE_DOMAIN=logs QBI_CONFIG=${lrConfig} QBI_STATE_DIR=${keysState} exec ${process.execPath} ${path.join(dist, "log-received.js")}\n`,
    { mode: 0o755 },
  );
  const signAs = (vm: string, data: string) =>
    runJs(path.join(dist, "gpg-gate.js"), { env: { QBI_CONFIG: gateConfig, QBI_STATE_DIR: keysState, QREXEC_REMOTE_DOMAIN: vm }, input: `-ba\n${data}` });

  expect((await signAs("build-a", "pkg\n")).code).toBe(1);
  const buildLogConfig = writeJson(path.join(root, "build-log.json"), { repoDir, remote: `file://${remote}`, branch: "main", signingKey: logsFpr, gnupgHome: logsHome });
  const r = await runJs(path.join(dist, "build-log.js"), {
    env: { PATH: `${fake.bin}:${process.env.PATH}`, QBI_CONFIG: buildLogConfig, QBI_STATE_DIR: path.join(root, "logs-state"), HOME: root, QREXEC_REMOTE_DOMAIN: "build-a" },
    input: "building package...\nsigning next\n",
  });
  expect(r.code).toBe(0);
  const window = JSON.parse(fs.readFileSync(path.join(keysState, "windows", "build-a.json"), "utf8"));
  expect(window.commit).toBe(sh("git", ["--git-dir", remote, "rev-parse", "main"]).trim());
  expect(window.path).toBe(r.stdout.trim());

  const signed = await signAs("build-a", "pkg\n");
  expect(signed.code).toBe(0);
  const dir = tempDir("chain-verify");
  fs.writeFileSync(path.join(dir, "pkg"), "pkg\n");
  fs.writeFileSync(path.join(dir, "pkg.sig"), signed.stdout, "latin1");
  expect(gpg(keysHome, ["--status-fd", "1", "--verify", path.join(dir, "pkg.sig"), path.join(dir, "pkg")]).stdout).toContain(`VALIDSIG ${signFpr}`);
  // build-b published nothing: still refused.
  expect((await signAs("build-b", "pkg\n")).code).toBe(1);
});
