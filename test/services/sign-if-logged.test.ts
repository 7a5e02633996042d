/**
 * Sign-if-logged at the service level, with the real parts: git (a bare remote), gpg (logs and
 * signing keys), qbi-tlog (Tessera), osslsigncode. A signature exists only for bytes whose digest
 * the logs VM logged and published in its transparency log, verified by the keys VM itself; the
 * log up to that moment is committed to first; forks, rewinds and replays are refused.
 */
import { ChildProcess, execFileSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { LogEntry, parseEntry } from "../../services/lib/tlog";
import { buildDist, collect, gpg, runJs, runProgram, sh, startProgram, tempDir, waitFor } from "./helpers";
import { makeSignSite, SignSite, tlogProgram } from "./signSite";

jest.setTimeout(120_000);

let dist: string;
beforeAll(async () => {
  dist = await buildDist();
});

/** Every entry of the logs VM's transparency log, in order. */
function entries(site: SignSite): LogEntry[] {
  const out = path.join(site.root, `entries-${Date.now()}.jsonl`);
  execFileSync(tlogProgram(), ["verify", "--dir", site.tlogDir, "--verifier", site.verifier, "--entries-out", out]);
  return fs.readFileSync(out, "utf8").trim().split("\n").filter(Boolean)
    .map((l) => parseEntry(Buffer.from((JSON.parse(l) as { entry: string }).entry, "base64")));
}

/** Starts a BuildLog session of `vm` and waits until it printed its log path. */
async function openSession(site: SignSite, vm: string): Promise<{ child: ChildProcess; rel: string; write(s: string): void; close(): Promise<number | null> }> {
  const child = startProgram(path.join(site.fake.routeDir, "qubesbuilder.BuildLog"), { env: { ...site.envOf(vm), QREXEC_REMOTE_DOMAIN: vm } });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  const rel = await waitFor(() => (out.includes("\n") ? out.trim() : null), 20000, "the log path");
  const done = collect(child, 60000);
  done.catch(() => undefined);
  return {
    child, rel,
    write: (s: string) => child.stdin?.write(s),
    close: async () => {
      child.stdin?.end();
      return (await done).code;
    },
  };
}

/** The build VM's client signing `data` (detached, armored) with the default key. */
function sign(site: SignSite, vm: string, data: string | Buffer, extra: string[] = []) {
  const file = path.join(tempDir("data"), "pkg.rpm");
  fs.writeFileSync(file, data);
  return runJs(path.join(dist, "gpg-client.js"), { env: site.envOf(vm), args: ["--detach-sign", "--armor", ...extra, file] }).then((r) => ({ ...r, file }));
}

function verifies(site: SignSite, file: string, sig: string): boolean {
  fs.writeFileSync(`${file}.asc`, sig);
  return gpg(site.keysHome, ["--status-fd", "1", "--verify", `${file}.asc`, file]).stdout.includes(`VALIDSIG ${site.signFpr}`);
}

/** Sends options and data straight to a keys VM's gate as `vm` (what a compromised VM can do). */
function gate(site: SignSite, vm: string, data: string | Buffer, options = "--detach-sign --armor") {
  return runProgram(path.join(site.fake.routeDir, "qubes.Gpg"), {
    env: { ...site.envOf(vm), QREXEC_REMOTE_DOMAIN: vm, QREXEC_REQUESTED_TARGET: `keys-${vm.replace(/^build-/, "")}` },
    input: Buffer.concat([Buffer.from(`${options}\n`), Buffer.from(data)]),
  });
}

function logDigest(site: SignSite, caller: string, body: unknown, arg = "") {
  return runProgram(path.join(site.fake.routeDir, "qubesbuilder.LogDigest"), {
    env: { ...site.envOf(caller), QREXEC_REMOTE_DOMAIN: caller, QREXEC_SERVICE_ARGUMENT: arg },
    input: `${typeof body === "string" ? body : JSON.stringify(body)}\n`,
  });
}

/** A real (tiny) Windows executable, cross-built with Go, for osslsigncode to sign. */
function windowsExecutable(dir: string): Buffer {
  const src = path.join(dir, "hello");
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, "go.mod"), "module hello\n\ngo 1.22\n");
  fs.writeFileSync(path.join(src, "main.go"), "package main\n\nfunc main() {}\n");
  execFileSync("go", ["build", "-trimpath", "-ldflags", "-s -w", "-o", "hello.exe", "."], { cwd: src, env: { ...process.env, GOOS: "windows", GOARCH: "amd64", CGO_ENABLED: "0" } });
  return fs.readFileSync(path.join(src, "hello.exe"));
}

const sha = (b: string | Buffer) => crypto.createHash("sha256").update(b).digest("hex");

describe("builderv2 order: signing inside an open log session", () => {
  let site: SignSite;
  beforeAll(() => {
    site = makeSignSite(dist);
  });

  test("the prefix of the open log is logged, then the request, then the keys VM signs; the final log extends the prefix", async () => {
    const s = await openSession(site, "build-a");
    s.write("prep: fetching sources\nbuild: compiling\n");
    await new Promise((r) => setTimeout(r, 300));
    const r = await sign(site, "build-a", "package bytes v1\n");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(verifies(site, r.file, r.stdout)).toBe(true);
    s.write("publish: done\n");
    expect(await s.close()).toBe(0);

    const log = entries(site);
    const prefix = log.findIndex((e) => e.kind === "log-prefix");
    const request = log.findIndex((e) => e.kind === "signature-request");
    const final = log.findIndex((e) => e.kind === "build-log");
    expect([prefix, request, final].every((i) => i >= 0)).toBe(true);
    expect(prefix).toBeLessThan(request);
    const p = log[prefix] as Extract<LogEntry, { kind: "log-prefix" }>;
    const q = log[request] as Extract<LogEntry, { kind: "signature-request" }>;
    const f = log[final] as Extract<LogEntry, { kind: "build-log" }>;
    expect(q).toMatchObject({ vm: "build-a", env: "a", signer: "keys-a", key: "default", sha256: sha("package bytes v1\n"), logs: [prefix] });
    expect(p.path).toBe(s.rel);
    expect(f.path).toBe(s.rel);
    // The published log starts with exactly the logged prefix, and its own entry hashes it all.
    const content = sh("git", ["--git-dir", site.remote, "show", `main:${s.rel}`]);
    expect(sha(content.slice(0, p.contentSize))).toBe(p.contentSha256);
    expect(p.contentSize).toBeLessThan(f.contentSize);
    expect(sha(content)).toBe(f.contentSha256);
    expect(content).toMatch(/build-a: prep: fetching sources\n[^\n]*build-a: build: compiling\n/);
    expect(content).toContain("build-a: publish: done");
    // The checkpoint and tiles are published with the logs, signed by the log key.
    const cp = sh("git", ["--git-dir", site.remote, "show", "main:tlog/logs/checkpoint"]);
    expect(cp.split("\n")[0]).toBe("example.org/build-logs/logs");
    expect(Number(cp.split("\n")[1])).toBe(log.length);
  });

  test("bytes that were never logged are refused by the gate, with the reason on stderr and in the journal", async () => {
    // An unused entry for other bytes of the same build VM is waiting: it must not cover these.
    const s = await openSession(site, "build-a");
    expect((await logDigest(site, "build-a", { sha256: sha("the real package\n"), size: 17, key: "default" })).code).toBe(0);
    await s.close();
    const r = await gate(site, "build-a", "malware\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no logged signature request of build-a for these bytes/);
    const journal = fs.readFileSync(path.join(site.keysState("keys-a"), "gate.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(journal.pop()).toMatchObject({ caller: "build-a", decision: "refused", sha256: sha("malware\n") });
  });

  test("an entry signs once: the same bytes sent again without a new log entry are refused", async () => {
    const s = await openSession(site, "build-a");
    const r = await sign(site, "build-a", "once\n");
    expect(r.code).toBe(0);
    const again = await gate(site, "build-a", "once\n");
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already used/);
    await s.close();
  });

  test("a logged digest does not cover other bytes, another key or another build VM", async () => {
    const s = await openSession(site, "build-a");
    const logged = await logDigest(site, "build-a", { sha256: sha("good\n"), size: 5, key: "default" });
    expect(logged.code).toBe(0);
    expect(JSON.parse(logged.stdout)).toMatchObject({ index: expect.any(Number) });
    const other = await gate(site, "build-a", "evil\n");
    expect(other.stderr).toMatch(/no logged signature request/);
    const key = await gate(site, "build-a", "good\n", `--detach-sign --armor -u ${site.signFpr}`);
    expect(key.code).toBe(1);
    expect(key.stderr).toMatch(/logged for another key/);
    // build-b's keys VM never received build-a's entry.
    const b = await gate(site, "build-b", "good\n");
    expect(b.code).toBe(1);
    const ok = await gate(site, "build-a", "good\n");
    expect(ok.code).toBe(0);
    await s.close();
  });

  test("data on stdin (clearsign, as builderv2 signs InRelease) is logged and signed exactly", async () => {
    const s = await openSession(site, "build-a");
    const text = "Origin: Qubes\nSuite: bookworm\n";
    const r = await runJs(path.join(dist, "gpg-client.js"), { env: site.envOf("build-a"), args: ["--clearsign", "--local-user", site.signFpr], input: text });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(text.trim());
    const v = gpg(site.keysHome, ["--status-fd", "1", "--verify"], r.stdout);
    expect(v.stdout).toContain(`VALIDSIG ${site.signFpr}`);
    await s.close();
  });

  test("the public key may be exported without a log; secret keys and other keys may not", async () => {
    const r = await runJs(path.join(dist, "gpg-client.js"), { env: site.envOf("build-a"), args: ["--armor", "--export", site.signFpr] });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/BEGIN PGP PUBLIC KEY BLOCK/);
    for (const opts of [`--armor --export-secret-keys ${site.signFpr}`, "--armor --export 0000000000000000000000000000000000000000", `--export ${site.signFpr} --homedir /tmp`]) {
      const g = await gate(site, "build-a", "", opts);
      expect([opts, g.code]).toEqual([opts, 1]);
      expect(g.stdout).not.toMatch(/PRIVATE KEY/);
    }
  });

  test("malformed or oversized requests are refused before anything is logged", async () => {
    const before = entries(site).length;
    for (const body of ["not json", { sha256: "x", size: 1, key: "default" }, { sha256: sha("a"), size: -1, key: "default" },
      { sha256: sha("a"), size: 1, key: "default", extra: 1 }, { sha256: sha("a"), size: 1, key: "win:Qubes__Windows__Tools" }, "x".repeat(5000)]) {
      const r = await logDigest(site, "build-a", body);
      expect([JSON.stringify(body).slice(0, 40), r.code]).toEqual([JSON.stringify(body).slice(0, 40), 1]);
    }
    const stranger = await logDigest(site, "intruder", { sha256: sha("a"), size: 1, key: "default" });
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toMatch(/neither a build VM nor a Windows keys VM/);
    expect(entries(site).length).toBe(before);
  });
});

describe("v1 order and refusals without a log", () => {
  test("with real qrexec (stdout relayed, stderr not), the client still says why the logs VM or the keys VM refused", async () => {
    const site = makeSignSite(dist);
    const file = path.join(site.root, "pkg");
    fs.writeFileSync(file, "pkg\n");
    const quiet = { ...site.envOf("build-a"), QBI_FAKE_NO_STDERR: "1" };
    const r = await runJs(path.join(dist, "gpg-client.js"), { env: quiet, args: ["--detach-sign", "--armor", "-o", `${file}.asc`, file] });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the logs VM did not log the digest, nothing was signed: qubesbuilder\.LogDigest: refused: build-a has no open build log/);
    expect(fs.existsSync(`${file}.asc`)).toBe(false);
    const g = await runJs(path.join(dist, "gpg-client.js"), { env: quiet, args: ["--detach-sign", "--armor", "-u", "0000000000000000000000000000000000000000", "-o", `${file}.asc`, file] });
    expect(g.code).not.toBe(0);
    expect(g.stderr).toMatch(/qubes-gpg-client: .*refused/);
  });

  test("signing right after a published log points at that log; with no log at all the logs VM refuses", async () => {
    const site = makeSignSite(dist);
    const none = await sign(site, "build-b", "pkg\n");
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no open build log and published none/);
    const s = await openSession(site, "build-b");
    s.write("whole build\n");
    expect(await s.close()).toBe(0);
    const r = await sign(site, "build-b", "pkg\n");
    expect(r.code).toBe(0);
    const log = entries(site);
    const req = [...log].reverse().find((e) => e.kind === "signature-request")!;
    const built = log.findIndex((e) => e.kind === "build-log" && e.vm === "build-b");
    expect(req).toMatchObject({ vm: "build-b", logs: [built] });
  });

  test("a signing call fed after its entry expired is refused", async () => {
    const site = makeSignSite(dist, { entryTtlSeconds: 1 });
    const s = await openSession(site, "build-a");
    const data = "slow data\n";
    expect((await logDigest(site, "build-a", { sha256: sha(data), size: data.length, key: "default" })).code).toBe(0);
    const child = startProgram(path.join(site.fake.routeDir, "qubes.Gpg"), {
      env: { ...site.envOf("build-a"), QREXEC_REMOTE_DOMAIN: "build-a", QREXEC_REQUESTED_TARGET: "keys-a" },
    });
    const done = collect(child);
    child.stdin?.write("--detach-sign --armor\nslow ");
    await new Promise((r) => setTimeout(r, 1500));
    child.stdin?.end("data\n");
    const r = await done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/expired before the data was complete/);
    await s.close();
  });
});

describe("the log cannot be forked, rewound or faked", () => {
  test("a forked checkpoint shown to a keys VM raises its alarm: it refuses to sign and says why", async () => {
    const site = makeSignSite(dist);
    const s = await openSession(site, "build-a");
    expect((await sign(site, "build-a", "first\n")).code).toBe(0);
    // A second log under the same key, with other entries: a fork of the same origin.
    const forkDir = path.join(site.root, "fork");
    const entry = JSON.stringify({ forged: true });
    execFileSync(tlogProgram(), ["append", "--dir", forkDir, "--private", site.tlogKey], { input: `${entry}\n${entry}x\n${entry}y\n` });
    // It is shown with a consistency proof from the size the keys VM holds (in the fork's tree).
    const held = Number(fs.readFileSync(path.join(site.keysState("keys-a"), "witness", "checkpoint"), "utf8").split("\n")[1]);
    const proof = JSON.parse(execFileSync(tlogProgram(), ["prove", "--dir", forkDir, "--index", "1", "--from", String(held)]).toString());
    const bundle = { checkpoint: proof.checkpoint, index: 1, entry: proof.entries["1"], inclusion: proof.inclusion["1"], from: held, consistency: proof.consistency };
    const r = await runProgram(path.join(site.fake.routeDir, "qubesbuilder.LogReceived"), {
      env: { ...site.envOf("logs"), QREXEC_REMOTE_DOMAIN: "logs", QREXEC_SERVICE_ARGUMENT: "build-a" }, input: JSON.stringify(bundle),
    });
    expect(r.code).toBe(1);
    const after = await sign(site, "build-a", "second\n");
    expect(after.code).not.toBe(0);
    expect(after.stderr).toMatch(/transparency log was seen to|alarm/);
    expect(fs.existsSync(path.join(site.keysState("keys-a"), "witness", "checkpoint.alarm"))).toBe(true);
    await s.close();
  });

  test("a checkpoint signed by another log key is refused", async () => {
    const site = makeSignSite(dist);
    const other = path.join(site.root, "other.key");
    execFileSync(tlogProgram(), ["keygen", "--origin", "example.org/build-logs/logs", "--private-out", other]);
    const dir = path.join(site.root, "other-log");
    const e = JSON.stringify({ v: 1, kind: "signature-request", time: new Date().toISOString(), vm: "build-a", env: "a", signer: "keys-a", key: "default", sha256: sha("x"), size: 1, logs: [0] });
    execFileSync(tlogProgram(), ["append", "--dir", dir, "--private", other], { input: `${e}\n` });
    const proof = JSON.parse(execFileSync(tlogProgram(), ["prove", "--dir", dir, "--index", "0"]).toString());
    const r = await runProgram(path.join(site.fake.routeDir, "qubesbuilder.LogReceived"), {
      env: { ...site.envOf("logs"), QREXEC_REMOTE_DOMAIN: "logs", QREXEC_SERVICE_ARGUMENT: "build-a" },
      input: JSON.stringify({ checkpoint: proof.checkpoint, index: 0, entry: proof.entries["0"], inclusion: proof.inclusion["0"], from: 0, consistency: [] }),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad-signature|unknown/);
    expect((await gate(site, "build-a", "x")).code).toBe(1);
  });

  test("a rewound remote is detected and the lost history is published again", async () => {
    const site = makeSignSite(dist);
    const s1 = await openSession(site, "build-a");
    s1.write("first build\n");
    expect(await s1.close()).toBe(0);
    const published = sh("git", ["--git-dir", site.remote, "rev-parse", "main"]).trim();
    const root = sh("git", ["--git-dir", site.remote, "rev-list", "--max-parents=0", "main"]).trim();
    sh("git", ["--git-dir", site.remote, "update-ref", "refs/heads/main", root]);
    const s2 = await openSession(site, "build-b");
    s2.write("second build\n");
    expect(await s2.close()).toBe(0);
    const head = sh("git", ["--git-dir", site.remote, "rev-parse", "main"]).trim();
    expect(() => sh("git", ["--git-dir", site.remote, "merge-base", "--is-ancestor", published, head])).not.toThrow();
    sh("git", ["--git-dir", site.remote, "cat-file", "-e", `main:${s1.rel}`]);
    const journal = fs.readFileSync(path.join(site.logsState, "published.jsonl"), "utf8");
    expect(journal).toContain('"event":"remote-rewound"');
  });

  test("a push that fails leaves the entry unpublished and unsigned; the next pass publishes it, nothing is signed twice", async () => {
    const site = makeSignSite(dist);
    const s = await openSession(site, "build-a");
    const moved = `${site.remote}.away`;
    fs.renameSync(site.remote, moved);
    const r = await sign(site, "build-a", "while offline\n");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not published|git/);
    expect((await gate(site, "build-a", "while offline\n")).code).toBe(1);
    fs.renameSync(moved, site.remote);
    const again = await sign(site, "build-a", "while offline\n");
    expect(again.code).toBe(0);
    expect((await gate(site, "build-a", "while offline\n")).code).toBe(1);
    await s.close();
    const cp = sh("git", ["--git-dir", site.remote, "show", "main:tlog/logs/checkpoint"]);
    expect(Number(cp.split("\n")[1])).toBe(entries(site).length);
  });
});

describe("a logs VM killed between append and publish", () => {
  test("loses nothing and signs nothing twice: the entry is published by the next pass, never handed over", async () => {
    const site = makeSignSite(dist);
    const s = await openSession(site, "build-a");
    // qbi-tlog appends for real, then the logs VM dies (SIGKILL of LogDigest) before it can push.
    const crash = path.join(site.root, "qbi-tlog-then-crash");
    fs.writeFileSync(crash, `#!/bin/sh\n"${tlogProgram()}" "$@"; rc=$?\n[ "$1" = append ] && [ ! -e "${site.root}/crashed" ] && touch "${site.root}/crashed" && kill -9 $PPID\nexit $rc\n`, { mode: 0o755 });
    site.writeLogsConfig({ tlog: { program: crash, privateKey: site.tlogKey, repoSubdir: "tlog/logs" } });
    const r = await sign(site, "build-a", "crash time\n");
    expect(r.code).not.toBe(0);
    expect(fs.existsSync(path.join(site.root, "crashed"))).toBe(true);
    const appended = entries(site).length;
    const published = () => Number(sh("git", ["--git-dir", site.remote, "show", "main:tlog/logs/checkpoint"]).split("\n")[1]);
    expect(() => published()).toThrow(); // nothing pushed yet
    expect((await gate(site, "build-a", "crash time\n")).code).toBe(1);
    // The next pass (here: the retry of the same signature) publishes what was appended, and signs once.
    const again = await sign(site, "build-a", "crash time\n");
    expect(again.stderr).toBe("");
    expect(again.code).toBe(0);
    expect(published()).toBe(entries(site).length);
    expect(entries(site).length).toBeGreaterThan(appended);
    expect((await gate(site, "build-a", "crash time\n")).code).toBe(1);
    await s.close();
  });
});

describe("concurrency and Windows", () => {
  test("sessions and signatures of several environments at once all go through", async () => {
    const site = makeSignSite(dist, { builds: ["build-a", "build-b", "build-c"] });
    const sessions = await Promise.all(["build-a", "build-b", "build-c"].map((vm) => openSession(site, vm)));
    const results = await Promise.all(["build-a", "build-b", "build-c"].flatMap((vm) => [1, 2].map((i) => sign(site, vm, `${vm} pkg ${i}\n`))));
    for (const r of results) {
      expect(r.stderr).toBe("");
      expect(verifies(site, r.file, r.stdout)).toBe(true);
    }
    expect((await Promise.all(sessions.map((s) => s.close())))).toEqual([0, 0, 0]);
    const log = entries(site);
    expect(log.filter((e) => e.kind === "signature-request")).toHaveLength(6);
    for (const q of log.filter((e) => e.kind === "signature-request")) {
      if (q.kind !== "signature-request") continue;
      for (const i of q.logs) expect(log[i]).toMatchObject({ vm: q.vm });
    }
  });

  test("Windows signing is logged and gated like gpg, and keys cannot be created from a build VM", async () => {
    const site = makeSignSite(dist, { windows: true });
    const s = await openSession(site, "build-a");
    const input = windowsExecutable(site.root);
    const winSign = (vm: string, op: string, data: Buffer | string, arg = "Qubes__Windows__Tools") =>
      runProgram(path.join(site.fake.routeDir, `qubesbuilder.WinSign.${op}`), {
        env: { ...site.envOf(vm), QREXEC_REMOTE_DOMAIN: vm, QREXEC_REQUESTED_TARGET: "win-keys-a", QREXEC_SERVICE_ARGUMENT: arg, QREXEC_SERVICE_FULL_NAME: `qubesbuilder.WinSign.${op}+${arg}` },
        input: data,
      });
    expect((await winSign("build-a", "QueryKey", "")).stdout).toBe("Key 'Qubes__Windows__Tools' exists\n");
    expect((await winSign("build-a", "GetCert", "")).stdout).toMatch(/BEGIN CERTIFICATE/);
    const r = await winSign("build-a", "Sign", input);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const signed = path.join(site.root, "signed.exe");
    fs.writeFileSync(signed, r.stdoutBytes);
    const crt = path.join(site.root, "win-keys-a", "keys", "Qubes Windows Tools.crt");
    expect(execFileSync("osslsigncode", ["verify", "-in", signed, "-CAfile", crt]).toString()).toMatch(/Signature verification: ok/);
    const req = [...entries(site)].reverse().find((e) => e.kind === "signature-request")!;
    expect(req).toMatchObject({ vm: "build-a", signer: "win-keys-a", key: "win:Qubes__Windows__Tools", sha256: sha(input) });
    const journal = fs.readFileSync(path.join(site.keysState("win-keys-a"), "gate.jsonl"), "utf8");
    expect(journal).toContain('"decision":"signed"');
    // Another build VM, an unknown key name, or CreateKey: refused.
    expect((await winSign("build-b", "Sign", input)).code).toBe(1);
    expect((await winSign("build-a", "Sign", input, "Other__Key")).code).toBe(1);
    const create = await runJs(path.join(dist, "win-sign.js"), {
      env: { QBI_CONFIG: path.join(site.root, "win-keys-a", "win-sign.json"), QBI_STATE_DIR: site.keysState("win-keys-a"), QREXEC_REMOTE_DOMAIN: "build-a",
        QREXEC_SERVICE_ARGUMENT: "Qubes__Windows__Tools", QREXEC_SERVICE_FULL_NAME: "qubesbuilder.WinSign.CreateKey+Qubes__Windows__Tools" },
    });
    expect(create.code).toBe(1);
    expect(create.stderr).toMatch(/not a WinSign service/);
    // A Windows keys VM may only log for its own build VM.
    const other = await logDigest(site, "win-keys-a", { sha256: sha("x"), size: 1, key: "win:Qubes__Windows__Tools" }, "build-b");
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/signs for build-a/);
    await s.close();
  });
});
