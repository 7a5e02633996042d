/**
 * Keys VM: qubesbuilder.LogReceived opens a signing window; the qubes.Gpg gate signs only
 * inside it, with an option allowlist; the build VM's gpg client goes through qrexec.
 */
import * as fs from "fs";
import * as path from "path";
import { buildDist, fakeQrexec, gpg, makeKey, runJs, tempDir, writeJson } from "./helpers";

let dist: string;
let root: string;
let keysHome: string;
let fpr: string;
let otherFpr: string;

beforeAll(async () => {
  dist = await buildDist();
  root = tempDir("keys");
  keysHome = path.join(root, "gnupg");
  fpr = makeKey(keysHome, "Signing key <sign@example.org>");
  otherFpr = makeKey(keysHome, "Other key <other@example.org>");
});

let n = 0;
function newKeysVm(gate: Record<string, unknown> = {}, lr: Record<string, unknown> = {}) {
  const dir = path.join(root, `vm${n++}`);
  fs.mkdirSync(dir);
  const state = path.join(dir, "state");
  const lrConfig = writeJson(path.join(dir, "log-received.json"), { logsVms: ["logs"], buildVms: ["build-a", "build-b"], ...lr });
  const gateConfig = writeJson(path.join(dir, "gpg-gate.json"), { clients: ["build-a", "build-b"], gnupgHome: keysHome, keys: [fpr], defaultKey: fpr, ...gate });
  const ack = (vm: string, input: string, caller = "logs") =>
    runJs(path.join(dist, "log-received.js"), {
      env: { QBI_CONFIG: lrConfig, QBI_STATE_DIR: state, HOME: dir, QREXEC_REMOTE_DOMAIN: caller, QREXEC_SERVICE_ARGUMENT: vm },
      input,
    });
  const sign = (caller: string, input: string | Buffer) =>
    runJs(path.join(dist, "gpg-gate.js"), { env: { QBI_CONFIG: gateConfig, QBI_STATE_DIR: state, HOME: dir, QREXEC_REMOTE_DOMAIN: caller }, input });
  return { dir, state, ack, sign, gateConfig };
}

const COMMIT = "0123456789abcdef0123456789abcdef01234567";

function verifyDetached(data: string, sig: string): string {
  const dir = tempDir("verify");
  fs.writeFileSync(path.join(dir, "data"), data);
  fs.writeFileSync(path.join(dir, "data.asc"), sig);
  const r = gpg(keysHome, ["--status-fd", "1", "--verify", path.join(dir, "data.asc"), path.join(dir, "data")]);
  expect(r.code).toBe(0);
  return r.stdout;
}

describe("qubesbuilder.LogReceived", () => {
  test("records the acknowledgement and opens the window of that build VM only", async () => {
    const vm = newKeysVm();
    const r = await vm.ack("build-a", `${COMMIT} build-a/2026-01-02/log_03-04-05\n`);
    expect(r.code).toBe(0);
    const w = JSON.parse(fs.readFileSync(path.join(vm.state, "windows", "build-a.json"), "utf8"));
    expect(w).toMatchObject({ vm: "build-a", commit: COMMIT, path: "build-a/2026-01-02/log_03-04-05", signatures: 0 });
    expect(w.expiresAt - w.openedAt).toBe(300000);
    expect(fs.existsSync(path.join(vm.state, "windows", "build-b.json"))).toBe(false);
    const acks = fs.readFileSync(path.join(vm.state, "acks.jsonl"), "utf8").trim().split("\n");
    expect(JSON.parse(acks[0])).toMatchObject({ from: "logs", vm: "build-a", commit: COMMIT });
  });

  test.each([
    ["caller is not a logs VM", "build-a", `${COMMIT} build-a/d/log_01\n`, "build-a", /not a configured logs VM/],
    ["argument not a served build VM", "build-c", `${COMMIT} build-c/d/log_01\n`, "logs", /not a build VM served here/],
    ["argument with traversal", "../x", `${COMMIT} build-a/d/log_01\n`, "logs", /not a build VM/],
    ["commit not hex", "build-a", "xyz build-a/d/log_01\n", "logs", /one line/],
    ["path traversal", "build-a", `${COMMIT} build-a/../../etc/passwd\n`, "logs", /bad log path/],
    ["path of another VM", "build-a", `${COMMIT} build-b/d/log_01\n`, "logs", /not a log of build-a/],
    ["not a log file", "build-a", `${COMMIT} build-a/d/notes\n`, "logs", /not a log file/],
    ["two lines", "build-a", `${COMMIT} build-a/d/log_01\n${COMMIT} build-a/d/log_02\n`, "logs", /one line/],
    ["binary junk", "build-a", "\x00\xff\x1b[31m\n", "logs", /one line/],
    ["too long", "build-a", "a".repeat(5000), "logs", /too long/],
  ])("refuses: %s", async (_name, arg, input, caller, message) => {
    const vm = newKeysVm();
    const r = await vm.ack(arg, input, caller);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(fs.existsSync(path.join(vm.state, "windows", "build-a.json"))).toBe(false);
  });
});

describe("qubes.Gpg gate", () => {
  test("refuses without a published log, signs inside the window (several times), refuses others", async () => {
    const vm = newKeysVm();
    const before = await vm.sign("build-a", "--detach-sign --armor\nhello\n");
    expect(before.code).toBe(1);
    expect(before.stderr).toMatch(/signing window closed/);
    expect(before.stdout).toBe("");
    await vm.ack("build-a", `${COMMIT} build-a/d/log_01\n`);
    for (const data of ["hello\n", "second package\n"]) {
      const r = await vm.sign("build-a", `--detach-sign --armor -u ${fpr}\n${data}`);
      expect(r.code).toBe(0);
      expect(verifyDetached(data, r.stdout)).toContain(`VALIDSIG ${fpr}`);
    }
    // build-b has no window of its own.
    const other = await vm.sign("build-b", "-ba\nhello\n");
    expect(other.code).toBe(1);
    const journal = fs.readFileSync(path.join(vm.state, "gpg-gate.jsonl"), "utf8");
    expect(journal.match(/"allowed"/g)).toHaveLength(2);
    expect(journal.match(/"refused"/g)).toHaveLength(2);
  });

  test("the window expires", async () => {
    const vm = newKeysVm({}, { windowSeconds: 1 });
    await vm.ack("build-a", `${COMMIT} build-a/d/log_01\n`);
    expect((await vm.sign("build-a", "-ba\nx\n")).code).toBe(0);
    await new Promise((r) => setTimeout(r, 1100));
    const r = await vm.sign("build-a", "-ba\nx\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/closed/);
  });

  test("maxSignaturesPerWindow caps a window", async () => {
    const vm = newKeysVm({ maxSignaturesPerWindow: 2 });
    await vm.ack("build-a", `${COMMIT} build-a/d/log_01\n`);
    expect((await vm.sign("build-a", "-ba\n1\n")).code).toBe(0);
    expect((await vm.sign("build-a", "-ba\n2\n")).code).toBe(0);
    const r = await vm.sign("build-a", "-ba\n3\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/used up/);
  });

  test("clearsign works", async () => {
    const vm = newKeysVm();
    await vm.ack("build-a", `${COMMIT} build-a/d/log_01\n`);
    const r = await vm.sign("build-a", "--clearsign\nUpload-component r4.2 x\n");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^-----BEGIN PGP SIGNED MESSAGE-----/);
  });

  test.each([
    ["unknown caller", "sys-net", "-ba", /not an allowed client/],
    ["--homedir", "build-a", "-ba --homedir /tmp", /characters/],
    ["--homedir without path", "build-a", "-ba --homedir x", /not allowed: --homedir/],
    ["--export-secret-keys", "build-a", "--export-secret-keys", /not allowed/],
    ["output file", "build-a", "-ba -o /tmp/x", /characters/],
    ["output option", "build-a", "-ba -o x", /not allowed: -o/],
    ["--output=", "build-a", "-ba --output=/tmp/x", /characters|not allowed/],
    ["status on stdout", "build-a", "-ba --status-fd 1", /bad value for --status-fd/],
    ["key not allowed", "build-a", "-ba -u OTHER", /signing key [0-9A-F]{40} is not allowed/],
    ["short key id", "build-a", "-ba -u DEADBEEF", /bad value/],
    ["no signing mode", "build-a", "--armor", /required/],
    ["detach and clearsign", "build-a", "-b --clearsign", /exclude/],
    ["shell metacharacters", "build-a", "-ba;rm -rf", /characters/],
    ["double space", "build-a", "-b  -a", /double space/],
    ["combined unknown letter", "build-a", "-bak", /not allowed/],
    ["file path argument", "build-a", "-ba secret.txt", /characters/],
    ["positional argument", "build-a", "-ba secret", /not allowed: secret/],
    ["--list-secret-keys", "build-a", "--list-secret-keys", /not allowed/],
  ])("refuses: %s", async (_name, caller, options, message) => {
    const vm = newKeysVm();
    await vm.ack("build-a", `${COMMIT} build-a/d/log_01\n`);
    const r = await vm.sign(caller, `${options.replace("OTHER", otherFpr)}\ndata\n`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe("");
  });

  test("refuses an option line that never ends", async () => {
    const vm = newKeysVm();
    await vm.ack("build-a", `${COMMIT} build-a/d/log_01\n`);
    const r = await vm.sign("build-a", Buffer.alloc(10000, 0x61));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/too long/);
  });

  test("the build VM's gpg client signs through qrexec (rpm-style -sbo <out> <in>)", async () => {
    const vm = newKeysVm();
    await vm.ack("build-a", `${COMMIT} build-a/d/log_01\n`);
    const fake = fakeQrexec(path.join(vm.dir, "qrexec"));
    fs.writeFileSync(
      path.join(fake.routeDir, "qubes.Gpg"),
      `#!/bin/sh\nQBI_CONFIG=${vm.gateConfig} QBI_STATE_DIR=${vm.state} exec ${process.execPath} ${path.join(dist, "gpg-gate.js")}\n`,
      { mode: 0o755 },
    );
    const domainFile = path.join(vm.dir, "gpg-split-domain");
    fs.writeFileSync(domainFile, "keys-a\n");
    const data = path.join(vm.dir, "package.rpm");
    fs.writeFileSync(data, "package bytes\n");
    const out = path.join(vm.dir, "package.sig");
    const r = await runJs(path.join(dist, "gpg-client.js"), {
      env: { PATH: `${fake.bin}:${process.env.PATH}`, QBI_GPG_SPLIT_DOMAIN_FILE: domainFile, QBI_FAKE_CALLER: "build-a" },
      args: ["--no-verbose", "--no-armor", "--no-secmem-warning", "-u", fpr, "-sbo", out, data],
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const v = gpg(keysHome, ["--status-fd", "1", "--verify", out, data]);
    expect(v.stdout).toContain(`VALIDSIG ${fpr}`);
    // From a VM without a window, the client reports the gate's refusal.
    const r2 = await runJs(path.join(dist, "gpg-client.js"), {
      env: { PATH: `${fake.bin}:${process.env.PATH}`, QBI_GPG_SPLIT_DOMAIN_FILE: domainFile, QBI_FAKE_CALLER: "build-b" },
      args: ["-ba"],
      input: "x\n",
    });
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/signing window closed/);
  });
});
