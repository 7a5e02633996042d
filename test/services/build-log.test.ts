/**
 * qubesbuilder.BuildLog: real gpg, real git with a bare repository as the remote (file://),
 * the bundled program run as a subprocess with the qrexec environment.
 */
import * as fs from "fs";
import * as path from "path";
import { buildDist, collect, fakeQrexec, makeKey, runJs, sh, start, tempDir, writeJson } from "./helpers";

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
  calls: () => { target: string; service: string; stdin: string }[];
  config: Record<string, unknown>;
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
  const fake = fakeQrexec(dir);
  const config = { repoDir, remote: `file://${remote}`, branch: "main", signingKey: fpr, gnupgHome: gh, pushAttempts: 2, pushBackoffMs: 10, ...overrides };
  const configFile = writeJson(path.join(dir, "build-log.json"), config);
  return {
    dir,
    remote,
    repoDir,
    calls: fake.calls,
    config,
    configFile,
    env: {
      PATH: `${fake.bin}:${process.env.PATH}`,
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
function remoteFiles(site: Site): string[] {
  return remoteGit(site, ["ls-tree", "-r", "--name-only", "main"]).split("\n").filter(Boolean);
}

const LINE_RE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} \+0000 (build-a: [\x20-\x7e]*|> (starting|closing) log.*)$/;

test("stores, sanitises, commits (signed), pushes, then acknowledges through dom0", async () => {
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
  // Head commit signed by the logs key; no xz placeholder left behind.
  expect(remoteGit(site, ["log", "-1", "--format=%G? %GF", "main"]).trim()).toBe(`G ${fpr}`);
  expect(remoteFiles(site)).toEqual([rel]);
  const head = remoteGit(site, ["rev-parse", "main"]).trim();
  expect(site.calls()).toEqual([{ target: "dom0", service: "qubesbuilder.LogReceived+build-a", stdin: `${head} ${rel}\n` }]);
});

test("an interrupted stream is still committed and pushed (nothing lost)", async () => {
  const site = newSite();
  const child = start(path.join(dist, "build-log.js"), { env: site.env });
  const done = collect(child);
  child.stdin?.write("compiling...\nhalf a li");
  await new Promise((r) => setTimeout(r, 300));
  child.kill("SIGTERM");
  const r = await done;
  expect(r.code).toBe(0);
  const rel = r.stdout.trim();
  const content = remoteGit(site, ["show", `main:${rel}`]);
  expect(content).toContain("build-a: compiling...");
  expect(content).toContain("build-a: half a li");
  expect(content).toMatch(/> closing log \(interrupted by SIGTERM\)\n$/);
  expect(site.calls()).toHaveLength(1);
});

test("a log whose receiver died (SIGKILL, logs VM crash) is published by the next call", async () => {
  const site = newSite();
  const child = start(path.join(dist, "build-log.js"), { env: site.env });
  const done = collect(child);
  child.stdin?.write("before the crash\n");
  await new Promise((r) => setTimeout(r, 500)); // > fsyncIntervalMs: the line is on disk
  child.kill("SIGKILL");
  const crashed = await done;
  const rel1 = crashed.stdout.trim();
  expect(remoteFiles(site)).toEqual([]);
  const r2 = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: "next build\n" });
  expect(r2.code).toBe(0);
  expect(remoteFiles(site).sort()).toEqual([rel1, r2.stdout.trim()].sort());
  expect(remoteGit(site, ["show", `main:${rel1}`])).toMatch(/build-a: before the crash\n$/);
  expect(site.calls().map((c) => c.stdin.split(" ")[1].trim()).sort()).toEqual([rel1, r2.stdout.trim()].sort());
});

test("a 100 MB line is split at maxLineBytes with bounded memory, and the big log is xz-compressed", async () => {
  const site = newSite();
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
  expect(site.calls()[0].stdin).toMatch(new RegExp(`^[0-9a-f]{40} ${rel}\\.xz\\n$`));
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
  expect(site.calls()).toHaveLength(0);
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
  expect(site.calls().map((c) => c.service).sort()).toEqual(["qubesbuilder.LogReceived+build-a", "qubesbuilder.LogReceived+build-b"]);
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
  expect(site.calls()).toHaveLength(2);
});

test("a LogReceived failure is retried by the next run", async () => {
  const site = newSite();
  const r1 = await runJs(path.join(dist, "build-log.js"), { env: { ...site.env, QBI_FAKE_EXIT: "1" }, input: "x\n" });
  expect(r1.code).toBe(3);
  expect(remoteFiles(site)).toEqual([r1.stdout.trim()]);
  const r2 = await runJs(path.join(dist, "build-log.js"), { env: site.env, input: "y\n" });
  expect(r2.code).toBe(0);
  // First call failed (recorded with exit 1), then both logs acknowledged.
  expect(site.calls().filter((c) => c.stdin.endsWith(` ${r1.stdout.trim()}\n`))).toHaveLength(2);
  expect(site.calls().filter((c) => c.stdin.endsWith(` ${r2.stdout.trim()}\n`))).toHaveLength(1);
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
  expect(site.calls()).toHaveLength(5);
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
