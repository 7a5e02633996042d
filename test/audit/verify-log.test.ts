/**
 * `verify-log`: passes on logs the real services produced, and fails, with a message that says
 * what is wrong, on each tampered variant (files, tiles, history, signer, prefixes, links).
 */
import { execFileSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { main } from "../../audit/cli";
import { verifyLog, type OriginReport } from "../../audit/verifyLog";
import { canonicalJson } from "../../contracts/transparencyLog";
import { buildDist, runProgram, sh, tempDir } from "../services/helpers";
import { makeSignSite, type SignSite, tlogProgram } from "../services/signSite";

jest.setTimeout(180_000);

const sha = (b: string | Buffer) => crypto.createHash("sha256").update(b).digest("hex");
const gitId = ["-c", "user.name=T", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"];

let site: SignSite;
let clone: string;

/** A site whose logs VM published two sessions with signatures, one of them xz-compressed. */
beforeAll(async () => {
  const dist = await buildDist();
  site = makeSignSite(dist, { logs: { xzThresholdBytes: 200 } });
  const session = (vm: string, lines: string, data: string) => {
    const file = path.join(site.root, `${vm}-${sha(data).slice(0, 8)}`);
    fs.writeFileSync(file, data);
    // The client signs while the session is open (builderv2 order): a bash pipeline plays the builder.
    return runProgram("/bin/bash", {
      args: ["-c", `{ printf '%s' "$LINES"; node ${dist}/gpg-client.js --detach-sign --armor -o ${file}.asc ${file} >&2; echo done; } | ${site.fake.routeDir}/qubesbuilder.BuildLog`],
      env: { ...site.envOf(vm), QREXEC_REMOTE_DOMAIN: vm, LINES: lines },
    });
  };
  const a = await session("build-a", "short log\n", "pkg a\n");
  expect(a.code).toBe(0);
  const b = await session("build-b", `${"a long line of build output\n".repeat(40)}`, "pkg b\n");
  expect(b.code).toBe(0);
  clone = path.join(site.root, "audit-clone");
  sh("git", ["clone", "-q", `file://${site.remote}`, clone]);
});

const run = (target: string, extra: Partial<Parameters<typeof verifyLog>[0]> = {}): Promise<OriginReport[]> =>
  verifyLog({ target, verifiers: [site.verifier], since: [], tlogProgram: tlogProgram(), ...extra });

const problems = (r: OriginReport[]) => r.flatMap((x) => [...x.problems, ...x.alerts]).join("\n");

/** A fresh copy of the published repository to tamper with. */
function copy(): string {
  const dir = path.join(tempDir("tamper"), "repo");
  sh("git", ["clone", "-q", `file://${site.remote}`, dir]);
  return dir;
}

test("the logs the services published verify: entries, files, prefixes, every checkpoint in the history", async () => {
  const [r] = await run(clone);
  expect(r.problems).toEqual([]);
  expect(r.origin).toBe("example.org/build-logs/logs");
  expect(r.counts).toEqual({ "build-log": 2, "log-prefix": 2, "signature-request": 2 });
  expect(r.checkpoints).toBeGreaterThan(2);
  // One log went to xz: it is checked decompressed against its prefix.
  expect(sh("git", ["-C", clone, "ls-tree", "-r", "--name-only", "HEAD"])).toMatch(/build-b\/.*\.xz/);
});

test("the CLI: exit 0 and a summary line; usage errors exit 2; a finding exits 1", async () => {
  const out: string[] = [];
  const err: string[] = [];
  const w = jest.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
  const e = jest.spyOn(process.stderr, "write").mockImplementation((s) => (err.push(String(s)), true));
  try {
    expect(await main([clone, "--verifier", site.verifier])).toBe(0);
    expect(out.join("")).toMatch(/example\.org\/build-logs\/logs \(tlog\/logs\): 6 entries .*: OK/);
    expect(await main([clone])).toBe(2);
    expect(await main([clone, "--verifier", "nonsense"])).toBe(2);
    expect(await main(["/nonexistent", "--verifier", site.verifier])).toBe(3);
    const other = path.join(site.root, "other.key");
    const v = JSON.parse(execFileSync(tlogProgram(), ["keygen", "--origin", "example.org/build-logs/logs", "--private-out", other]).toString()).verifier as string;
    expect(await main([clone, "--verifier", v])).toBe(1);
    expect(err.join("")).toMatch(/bad-signature|unknown-signer/);
  } finally {
    w.mockRestore();
    e.mockRestore();
  }
});

test("a log changed or removed on the branch after it was published is found", async () => {
  const dir = copy();
  const logs = sh("git", ["-C", dir, "ls-tree", "-r", "--name-only", "HEAD"]).split("\n").filter((f) => f.startsWith("build-"));
  fs.appendFileSync(path.join(dir, logs[0]), "an edited line\n");
  fs.rmSync(path.join(dir, logs[1]));
  sh("git", [...gitId, "-C", dir, "commit", "-qam", "tamper"]);
  const p = problems(await run(dir));
  expect(p).toMatch(new RegExp(`${logs[0].replace(/\./g, "\\.")} was changed on the branch after it was published`));
  expect(p).toMatch(new RegExp(`${logs[1].replace(/\./g, "\\.")} was removed from the branch`));
});

test("a tampered tile or entry bundle is found by recomputing the tree", async () => {
  for (const sub of ["tile/entries", "tile/0"]) {
    const dir = copy();
    const base = path.join(dir, "tlog", "logs", sub);
    // The file the current tree is read from: the widest partial (older partials are unused).
    const files = execFileSync("find", [base, "-type", "f"]).toString().trim().split("\n");
    const width = (f: string) => (/\.p\/([0-9]+)$/.exec(f) ? Number(/\.p\/([0-9]+)$/.exec(f)![1]) : 1000);
    const file = files.sort((x, y) => width(y) - width(x))[0];
    const b = fs.readFileSync(file);
    b[b.length - 1] ^= 1;
    fs.writeFileSync(file, b);
    expect(problems(await run(dir))).toMatch(/mismatch|malformed|bad-entry|bundle|tile/);
  }
});

test("a rewritten log (a fork under the same key) contradicts the checkpoints in the history", async () => {
  const dir = copy();
  const t = path.join(dir, "tlog", "logs");
  fs.rmSync(t, { recursive: true });
  execFileSync(tlogProgram(), ["append", "--dir", t, "--private", site.tlogKey], { input: `${canonicalJson({ forged: 1 })}\n`.repeat(1) + `${canonicalJson({ forged: 2 })}\n`.repeat(9) });
  fs.rmSync(path.join(t, ".state"), { recursive: true, force: true });
  sh("git", [...gitId, "-C", dir, "add", "-A"]);
  sh("git", [...gitId, "-C", dir, "commit", "-qm", "rewrite the log"]);
  expect(problems(await run(dir))).toMatch(/fork or rewrite: root-mismatch/);
});

test("--since: a checkpoint newer than the published log is a rewind", async () => {
  const dir = copy();
  const size = Number(fs.readFileSync(path.join(dir, "tlog/logs/checkpoint"), "utf8").split("\n")[1]);
  // Today's checkpoint, then the log rewound to an older commit's state.
  const since = path.join(site.root, "since-checkpoint");
  fs.copyFileSync(path.join(dir, "tlog/logs/checkpoint"), since);
  const first = sh("git", ["-C", dir, "log", "--format=%H", "--", "tlog/logs/checkpoint"]).trim().split("\n").pop()!;
  sh("git", ["-C", dir, "reset", "-q", "--hard", first]);
  const p = problems(await run(dir, { since: [since] }));
  expect(p).toMatch(new RegExp(`rewind: the checkpoint of --since .* has more entries than the log now has \\((?!${size}\\))`));
});

test("--monitor keeps the last checkpoint and alerts on a rewind and on a new signer", async () => {
  const dir = copy();
  const state = path.join(site.root, `monitor-${Date.now()}.json`);
  expect(problems(await run(dir, { monitor: state }))).toBe("");
  expect(JSON.parse(fs.readFileSync(state, "utf8")).origins["example.org/build-logs/logs"].checkpoint).toMatch(/^example\.org/);
  const first = sh("git", ["-C", dir, "log", "--format=%H", "--", "tlog/logs/checkpoint"]).trim().split("\n").pop()!;
  sh("git", ["-C", dir, "reset", "-q", "--hard", first]);
  expect(problems(await run(dir, { monitor: state }))).toMatch(/rewind: example\.org\/build-logs\/logs shrank/);
  const other = path.join(site.root, `k-${Date.now()}`);
  const v = JSON.parse(execFileSync(tlogProgram(), ["keygen", "--origin", "example.org/build-logs/logs", "--private-out", other]).toString()).verifier as string;
  expect(problems(await run(copy(), { monitor: state, verifiers: [v] }))).toMatch(/signer of example\.org\/build-logs\/logs changed/);
});

describe("entries the logs VM should never have written (made here with its key)", () => {
  /** A repository with one log file and a transparency log of the given entries (its key). */
  function crafted(content: string, entries: (commit: string) => unknown[]): string {
    const dir = path.join(tempDir("crafted"), "repo");
    sh("git", ["init", "-q", "-b", "main", dir]);
    fs.mkdirSync(path.join(dir, "build-a", "d"), { recursive: true });
    fs.writeFileSync(path.join(dir, "build-a", "d", "log_01"), content);
    sh("git", [...gitId, "-C", dir, "add", "-A"]);
    sh("git", [...gitId, "-C", dir, "commit", "-qm", "log"]);
    const commit = sh("git", ["-C", dir, "rev-parse", "HEAD"]).trim();
    const t = path.join(dir, "tlog", "logs");
    execFileSync(tlogProgram(), ["append", "--dir", t, "--private", site.tlogKey], { input: entries(commit).map((e) => `${canonicalJson(e)}\n`).join("") });
    sh("git", [...gitId, "-C", dir, "add", "-A"]);
    sh("git", [...gitId, "-C", dir, "commit", "-qm", "tlog"]);
    return dir;
  }
  const time = new Date().toISOString();
  const prefix = (text: string, vm = "build-a") => ({ v: 1, kind: "log-prefix", time, vm, env: "a", path: `${vm}/d/log_01`, contentSha256: sha(text), contentSize: text.length });
  const final = (text: string, commit: string) => ({ v: 1, kind: "build-log", time, vm: "build-a", env: "a", path: "build-a/d/log_01", sha256: sha(text), size: text.length,
    contentSha256: sha(text), contentSize: text.length, commit });
  const request = (logs: number[], vm = "build-a") => ({ v: 1, kind: "signature-request", time, vm, env: "a", signer: "keys-a", key: "default", sha256: sha("x"), size: 1, logs });

  test("a consistent crafted log verifies (the baseline of the variants below)", async () => {
    const dir = crafted("abc then def\n", (c) => [prefix("abc"), request([0]), final("abc then def\n", c)]);
    expect(problems(await run(dir))).toBe("");
  });

  test("a published log that does not extend the prefix a signature was asked against", async () => {
    const dir = crafted("xyz then def\n", (c) => [prefix("abc"), request([0]), final("xyz then def\n", c)]);
    expect(problems(await run(dir))).toMatch(/does not extend the prefix logged as entry 0/);
  });

  test("a signature request pointing at a later entry, at another VM's log, or at a request", async () => {
    const dir = crafted("abc\n", (c) => [prefix("abc", "build-b"), request([0]), request([3]), final("abc\n", c), request([1])]);
    const p = problems(await run(dir));
    expect(p).toMatch(/entry 1: signature request of build-a points at entry 0, a log of build-b/);
    expect(p).toMatch(/entry 2: signature request points at entry 3, which is not earlier/);
    expect(p).toMatch(/entry 4: signature request points at entry 1, another signature request/);
  });

  test("an entry that is not schema v1 or not canonical, and a log that does not hash to its entry", async () => {
    const dir = crafted("abc\n", (c) => [{ ...final("abc\n", c), sha256: sha("other") }, { v: 2, kind: "build-log" }]);
    fs.appendFileSync(path.join(dir, "tlog", "logs", "checkpoint"), "");
    const p = problems(await run(dir));
    expect(p).toMatch(/entry 0: build-a\/d\/log_01 in commit [0-9a-f]{12} does not hash to its entry/);
    expect(p).toMatch(/entry 1: entry does not match schema v1/);
  });
});
