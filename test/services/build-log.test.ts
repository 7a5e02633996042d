/**
 * qubesbuilder.BuildLog: real gpg, real git with a bare repository as the remote (file://), the
 * real qbi-tlog, the bundled program run as a subprocess with the qrexec environment.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { LogEntry, parseEntry } from "../../services/lib/tlog";
import { buildDist, collect, makeKey, runJs, sh, start, tempDir, waitFor, writeJson } from "./helpers";
import { tlogProgram } from "./signSite";

let dist: string;
let root: string;
let gh: string;
let fpr: string;
let otherGh: string;
let otherFpr: string;

const gitId = ["-c", "user.name=Test", "-c", "user.email=test@example.org"];

beforeAll(async () => {
  dist = await buildDist();
  root = tempDir("buildlog");
  gh = path.join(root, "gnupg");
  fpr = makeKey(gh, "Logs key <logs@example.org>");
  otherGh = path.join(root, "gnupg-other");
  otherFpr = makeKey(otherGh, "Intruder <evil@example.org>");
});

interface Site {
  dir: string;
  remote: string;
  repoDir: string;
  env: Record<string, string>;
  config: Record<string, unknown>;
  verifier: string;
  tlogDir: string;
  configFile: string;
}

let n = 0;
function newSite(overrides: Record<string, unknown> = {}): Site {
  const dir = path.join(root, `site${n++}`);
  fs.mkdirSync(dir);
  const remote = path.join(dir, "remote.git");
  sh("git", ["init", "-q", "--bare", "-b", "main", remote]);
  const seed = path.join(dir, "seed");
  sh("git", ["clone", "-q", `file://${remote}`, seed]);
  sh("git", [...gitId, "-C", seed, "commit", "-q", "--allow-empty", `-S${fpr}`, "-m", "init"], { env: { GNUPGHOME: gh } });
  sh("git", ["-C", seed, "push", "-q", "origin", "HEAD:refs/heads/main"]);
  const repoDir = path.join(dir, "QubesIncomingBuildLog");
  sh("git", ["clone", "-q", "-b", "main", `file://${remote}`, repoDir]);
  const tlogKey = path.join(dir, "tlog.key");
  const verifier = (JSON.parse(execFileSync(tlogProgram(), ["keygen", "--origin", "example.org/logs", "--private-out", tlogKey]).toString()) as { verifier: string }).verifier;
  const buildVms = Object.fromEntries(["a", "b", "c"].map((e) => [`build-${e}`, { env: e, keysVm: `keys-${e}` }]));
  const config = {
    repoDir, remote: `file://${remote}`, branch: "main", signingKey: fpr, gnupgHome: gh, pushAttempts: 2, pushBackoffMs: 10,
    buildVms, tlog: { program: tlogProgram(), privateKey: tlogKey, repoSubdir: "tlog/logs" }, ...overrides,
  };
  const configFile = writeJson(path.join(dir, "build-log.json"), config);
  return {
    dir,
    remote,
    repoDir,
    config,
    configFile,
    verifier,
    tlogDir: path.join(dir, "state", "tlog"),
    env: {
      PATH: process.env.PATH ?? "",
      QBI_CONFIG: configFile,
      QBI_STATE_DIR: path.join(dir, "state"),
      HOME: dir,
      QREXEC_REMOTE_DOMAIN: "build-a",
      QREXEC_SERVICE_ARGUMENT: "",
    },
  };
}

function remoteGit(site: Site, args: string[]): string {
  return sh("git", ["--git-dir", site.remote, ...args], { env: { GNUPGHOME: gh } });
}
/** The logs on the remote (the transparency log's own files apart). */
function remoteFiles(site: Site): string[] {
  return remoteGit(site, ["ls-tree", "-r", "--name-only", "main"]).split("\n").filter((f) => f && !f.startsWith("tlog/"));
}
/** The `build-log` entries of the site's transparency log, verified by qbi-tlog. */
function logEntries(site: Site): Extract<LogEntry, { kind: "build-log" }>[] {
  if (!fs.existsSync(site.tlogDir)) return [];
  const out = path.join(site.dir, `entries-${Date.now()}.jsonl`);
  execFileSync(tlogProgram(), ["verify", "--dir", site.tlogDir, "--verifier", site.verifier, "--entries-out", out]);
  return fs.readFileSync(out, "utf8").trim().split("\n").filter(Boolean)
    .map((l) => parseEntry(Buffer.from((JSON.parse(l) as { entry: string }).entry, "base64")))
    .filter((e): e is Extract<LogEntry, { kind: "build-log" }> => e.kind === "build-log");
}

const LINE_RE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} \+0000 (build-a: [\x20-\x7e]*|> (starting|closing) log.*)$/;

test("stores, sanitises, commits (signed), pushes, then logs it in the transparency log", async () => {
  const site = newSite();
  const junk = Buffer.concat([
    Buffer.from("plain line\n\x1b[31mred\x1b[0m\ttab\r\nutf8 ", "latin1"),
    Buffer.from("\u00e9\u4e2d", "utf8"),
    Buffer.from("\n\x00\x01\xff binary\nlast line without newline", "latin1"),
  ]);
  const r = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: junk });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const rel = r.stdout.trim();
  expect(rel).toMatch(/^build-a\/\d{4}-\d\d-\d\d\/log_\d\d-\d\d-\d\d$/);
  const content = remoteGit(site, ["show", `main:${rel}`]);
  const lines = content.split("\n").filter(Boolean);
  for (const l of lines) expect(l).toMatch(LINE_RE);
  expect(lines[0]).toMatch(/> starting log$/);
  expect(lines[lines.length - 1]).toMatch(/> closing log$/);
  expect(lines.slice(1, -1).map((l) => l.split("build-a: ")[1])).toEqual([
    "plain line",
    ".[31mred.[0m.tab.",
    "utf8 .....",
    "... binary",
    "last line without newline",
  ]);
  // Every commit signed by the logs key; no xz placeholder left behind.
  for (const c of remoteGit(site, ["log", "--format=%G? %GF", "main"]).trim().split("\n")) expect(c).toBe(`G ${fpr}`);
  expect(remoteFiles(site)).toEqual([rel]);
  // Its entry: the stored file's hash and size, the content's, and the commit that added it.
  const added = remoteGit(site, ["log", "-1", "--format=%H", "main", "--", rel]).trim();
  const [e] = logEntries(site);
  expect(e).toMatchObject({ vm: "build-a", env: "a", path: rel, commit: added, size: Buffer.byteLength(content, "latin1"), contentSize: Buffer.byteLength(content, "latin1") });
  expect(remoteGit(site, ["show", "main:tlog/logs/checkpoint"]).split("\n")[1]).toBe("1");
});

test("an interrupted stream is still committed and pushed (nothing lost)", async () => {
  const site = newSite();
  const child = start(path.join(dist, "build-log.js"), { env: site.env });
  const started = new Promise((r) => child.stdout?.once("data", r));
  const done = collect(child);
  child.stdin?.write("compiling...\nhalf a li");
  await started;
  await new Promise((r) => setTimeout(r, 300));
  child.kill("SIGTERM");
  const r = await done;
  expect(r.code).toBe(0);
  const rel = r.stdout.trim();
  const content = remoteGit(site, ["show", `main:${rel}`]);
  expect(content).toContain("build-a: compiling...");
  expect(content).toContain("build-a: half a li");
  expect(content).toMatch(/> closing log \(interrupted by SIGTERM\)\n$/);
  expect(logEntries(site)).toEqual([expect.objectContaining({ path: rel, ended: "interrupted by SIGTERM" })]);
});

test("a log whose receiver died (SIGKILL, logs VM crash) is published by the next call", async () => {
  const site = newSite();
  const child = start(path.join(dist, "build-log.js"), { env: site.env });
  const done = collect(child);
  // Killed only once the stream is open and the line is in its file (on a loaded machine the
  // process may not even have started after a fixed delay).
  const rel = await new Promise<string>((r) => child.stdout?.once("data", (d: Buffer) => r(d.toString().trim())));
  child.stdin?.write("before the crash\n");
  await waitFor(() => fs.readFileSync(path.join(site.repoDir, rel), "utf8").includes("before the crash\n"), 20000, "the line in the log file");
  child.kill("SIGKILL");
  const crashed = await done;
  const rel1 = crashed.stdout.trim();
  expect(remoteFiles(site)).toEqual([]);
  const r2 = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: "next build\n" });
  expect(r2.code).toBe(0);
  expect(remoteFiles(site).sort()).toEqual([rel1, r2.stdout.trim()].sort());
  expect(remoteGit(site, ["show", `main:${rel1}`])).toMatch(/build-a: before the crash\n$/);
  expect(logEntries(site).map((e) => e.path).sort()).toEqual([rel1, r2.stdout.trim()].sort());
});

test("a 100 MB line is split at maxLineBytes with bounded memory, and the big log is xz-compressed", async () => {
  const site = newSite({ maxLogBytes: 200 * 1024 * 1024 });
  const child = start(path.join(dist, "build-log.js"), { env: site.env });
  const done = collect(child, 90000);
  const mb = Buffer.alloc(1024 * 1024, 0x41);
  let peak = 0;
  for (let i = 0; i < 100; i++) {
    if (!child.stdin?.write(mb)) await new Promise((r) => child.stdin?.once("drain", r));
    if (i % 10 === 9) {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, "utf8"));
      peak = Math.max(peak, Number(m?.[1] ?? 0));
    }
  }
  child.stdin?.end("\nafter\n");
  const r = await done;
  expect(r.code).toBe(0);
  expect(peak).toBeLessThan(250 * 1024); // kB: far below the 100 MB line
  const rel = r.stdout.trim();
  expect(remoteFiles(site)).toEqual([`${rel}.xz`]);
  const xz = path.join(site.repoDir, `${rel}.xz`);
  const text = sh("xz", ["-dc", xz]);
  const lines = text.split("\n").filter(Boolean);
  expect(lines).toHaveLength(1 + 1600 + 1 + 1); // start, 1600 × 64 KiB pieces, "after", close
  expect(lines[1].split("build-a: ")[1]).toHaveLength(65536);
  expect(lines[lines.length - 2]).toMatch(/build-a: after$/);
  const [e] = logEntries(site);
  expect(e).toMatchObject({ path: `${rel}.xz`, contentSize: Buffer.byteLength(text, "latin1"), size: fs.statSync(xz).size });
}, 100000);

test("refuses to build on a remote head not signed by the logs key; the log stays pending and is published later", async () => {
  const site = newSite();
  // Someone else pushes a commit signed by another key.
  const intruder = path.join(site.dir, "intruder");
  sh("git", ["clone", "-q", `file://${site.remote}`, intruder]);
  sh("git", [...gitId, "-C", intruder, "commit", "-q", "--allow-empty", `-S${otherFpr}`, "-m", "evil"], { env: { GNUPGHOME: otherGh } });
  sh("git", ["-C", intruder, "push", "-q", "origin", "HEAD:main"]);
  const r1 = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: "first\n" });
  expect(r1.code).toBe(3);
  expect(r1.stderr).toMatch(/not signed by the logs key/);
  expect(logEntries(site)).toHaveLength(0);
  const rel1 = r1.stdout.trim();
  expect(fs.readFileSync(path.join(site.repoDir, rel1), "utf8")).toContain("build-a: first");
  expect(fs.readdirSync(path.join(site.dir, "state", "pending"))).toHaveLength(1);
  // The maintainers repair the remote (a commit by the logs key on top); the next log publishes both.
  sh("git", [...gitId, "-C", intruder, "commit", "-q", "--allow-empty", `-S${fpr}`, "-m", "repair"], { env: { GNUPGHOME: gh } });
  sh("git", ["-C", intruder, "push", "-q", "origin", "HEAD:main"]);
  const r2 = await runJs(path.join(dist, "build-log.js"), { env: { ...site.env, QREXEC_REMOTE_DOMAIN: "build-b" }, input: "second\n" });
  expect(r2.code).toBe(0);
  const rel2 = r2.stdout.trim();
  expect(remoteFiles(site).sort()).toEqual([rel1, rel2].sort());
  expect(logEntries(site).map((e) => e.vm).sort()).toEqual(["build-a", "build-b"]);
  expect(fs.readdirSync(path.join(site.dir, "state", "pending"))).toHaveLength(0);
});

test("a failed push keeps the signed commit and the pending marker; the next run pushes it", async () => {
  const site = newSite();
  writeJson(site.configFile, { ...site.config, remote: `file://${site.dir}/missing.git` });
  const r1 = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: "offline\n" });
  expect(r1.code).toBe(3);
  expect(r1.stderr).toMatch(/attempt 2\/2 failed/);
  writeJson(site.configFile, site.config);
  const r2 = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: "online\n" });
  expect(r2.code).toBe(0);
  expect(remoteFiles(site).sort()).toEqual([r1.stdout.trim(), r2.stdout.trim()].sort());
  expect(logEntries(site)).toHaveLength(2);
});

test("a log the remote refuses is deferred on its own: the others are published", async () => {
  const site = newSite({ retryAfterSeconds: 0 });
  // The remote refuses any push that adds a file with this word (as GitHub refuses files > 100 MB).
  const hook = path.join(site.remote, "hooks", "pre-receive");
  fs.writeFileSync(hook, `#!/bin/sh
while read old new ref; do
  for c in $(git rev-list "$new" --not --all); do
    if git show "$c" | grep -q REFUSE-ME; then echo "file refused" >&2; exit 1; fi
  done
done
`, { mode: 0o755 });
  const bad = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: "REFUSE-ME\n" });
  expect(bad.code).toBe(3);
  const good = await runJs(path.join(dist, "build-log.js"), { env: { ...site.env, QREXEC_REMOTE_DOMAIN: "build-b" }, input: "fine\n" });
  expect(good.stderr).toMatch(/file refused/);
  expect(good.code).toBe(0);
  expect(remoteFiles(site)).toEqual([good.stdout.trim()]);
  expect(logEntries(site).map((e) => e.path)).toEqual([good.stdout.trim()]);
  const marker = fs.readdirSync(path.join(site.dir, "state", "pending"));
  expect(marker).toHaveLength(1);
  expect(JSON.parse(fs.readFileSync(path.join(site.dir, "state", "pending", marker[0]), "utf8"))).toMatchObject({ failure: expect.stringMatching(/file refused/) });
});

test("a flood of empty lines (each grows ~45x once stamped) keeps the receiver's memory bounded", async () => {
  const site = newSite({ maxLogBytes: 16 * 1024 * 1024, xzThresholdBytes: 1024 * 1024 * 1024 });
  const child = start(path.join(dist, "build-log.js"), { env: site.env });
  const done = collect(child, 90000);
  const kB = (field: string) => {
    const status = fs.readFileSync(`/proc/${child.pid}/status`, "utf8");
    return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  };
  await new Promise((r) => child.stdout?.once("data", r)); // the log's path: the stream is open
  const open = kB("VmRSS");
  const empty = Buffer.alloc(64 * 1024, 0x0a);
  let peak = 0;
  for (let i = 0; i < 48; i++) {
    if (!child.stdin?.write(empty)) await new Promise((r) => child.stdin?.once("drain", r));
    peak = Math.max(peak, kB("VmHWM"));
  }
  peak = Math.max(peak, kB("VmHWM"));
  child.stdin?.end();
  const r = await done;
  expect(r.code).toBe(0);
  // V8's young generation alone may grow to 32 MiB (two 16 MiB semi-spaces) at this allocation
  // rate. Holding the stamped lines of a whole read (a rope of small strings) grew it by ~150 MiB.
  expect(peak - open).toBeLessThan(64 * 1024);
  const content = remoteGit(site, ["show", `main:${r.stdout.trim()}`]);
  expect(content).toMatch(/> log truncated: more than 16777216 bytes/);
  expect(Buffer.byteLength(content)).toBeLessThan(16 * 1024 * 1024 + 300);
}, 100000);

test("a log beyond maxLogBytes is cut with a marker line, drained, and still published", async () => {
  const site = newSite({ maxLogBytes: 8192 });
  const r = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: Buffer.alloc(200000, 0x41).toString().replace(/(.{100})/g, "$1\n") });
  expect(r.code).toBe(0);
  const content = remoteGit(site, ["show", `main:${r.stdout.trim()}`]);
  expect(Buffer.byteLength(content)).toBeLessThan(8192 + 300);
  expect(content).toMatch(/> log truncated: more than 8192 bytes/);
  expect(content).toMatch(/> closing log\n$/);
  expect(logEntries(site)[0]).toMatchObject({ ended: "truncated at 8192 bytes", contentSize: Buffer.byteLength(content) });
});

test("a build VM gets at most maxStreamsPerVm open streams; an idle stream is closed and published", async () => {
  const site = newSite({ maxStreamsPerVm: 2, idleTimeoutSeconds: 2 });
  const open = [0, 1].map(() => start(path.join(dist, "build-log.js"), { env: site.env }));
  const done = open.map((c) => collect(c, 30000));
  await new Promise((r) => setTimeout(r, 800));
  const third = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: "x\n" });
  expect(third.code).toBe(1);
  expect(third.stderr).toMatch(/already has 2 open log streams/);
  const other = await runJs(path.join(dist, "build-log.js"), { env: { ...site.env, QREXEC_REMOTE_DOMAIN: "build-b" }, input: "x\n" });
  expect(other.code).toBe(0);
  // Nobody writes to the two open streams: the idle timeout ends them.
  const results = await Promise.all(done);
  for (const r of results) expect(r.code).toBe(0);
  for (const r of results) expect(remoteGit(site, ["show", `main:${r.stdout.trim()}`])).toMatch(/> closing log \(idle for 2s\)\n$/);
});

test("concurrent builds from several VMs never overwrite each other and all get published", async () => {
  const site = newSite();
  const runs = await Promise.all(
    ["build-a", "build-b", "build-a", "build-a", "build-c"].map((vm, i) =>
      runJs(path.join(dist, "build-log.js"), { env: { ...site.env, QREXEC_REMOTE_DOMAIN: vm }, input: `log ${i}\n` }),
    ),
  );
  for (const r of runs) expect(r.code).toBe(0);
  const rels = runs.map((r) => r.stdout.trim());
  expect(new Set(rels).size).toBe(5);
  expect(remoteFiles(site).sort()).toEqual([...rels].sort());
  rels.forEach((rel, i) => expect(remoteGit(site, ["show", `main:${rel}`])).toContain(`: log ${i}\n`));
  expect(logEntries(site).map((e) => e.path).sort()).toEqual([...rels].sort());
  for (const c of remoteGit(site, ["log", "--format=%G?", "main"]).trim().split("\n")) expect(c).toBe("G");
});

test.each([
  ["missing caller", { QREXEC_REMOTE_DOMAIN: "" }],
  ["path traversal caller", { QREXEC_REMOTE_DOMAIN: "../../etc" }],
  ["caller with slash", { QREXEC_REMOTE_DOMAIN: "build/a" }],
])("refuses a bad caller: %s", async (_name, env) => {
  const site = newSite();
  const r = await runJs(path.join(dist, "build-log.js"), { env: { ...site.env, ...env }, input: "x\n" });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/unknown or invalid caller/);
  expect(remoteFiles(site)).toEqual([]);
});

test("a path-traversal service argument is neutralised into one sub-directory name", async () => {
  const site = newSite();
  const r = await runJs(path.join(dist, "build-log.js"), { env: { ...site.env, QREXEC_SERVICE_ARGUMENT: "../../x" }, input: "x\n" });
  expect(r.code).toBe(0);
  expect(r.stdout.trim()).toMatch(/^build-a\/______x\/\d{4}-\d\d-\d\d\/log_/);
});

test("a bad config is a configuration error (exit 2)", async () => {
  const site = newSite();
  writeJson(site.configFile, { ...site.config, signingKey: "not-a-fingerprint" });
  const r = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: "x\n" });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/signingKey/);
});
