/**
 * `qubes-build-infra verify-log`: an outsider's audit of the build logs. For each transparency log
 * published in the logs repository (`tlog/<logs VM>/`), or one log directory:
 *   - every checkpoint signature, by the verifier key given for its origin (an unknown signer is
 *     a failure), and that every older checkpoint found in the repository's history (and the one
 *     given with --since, or kept by --monitor) is consistent with the current tree: its root is
 *     the root of the tree at its size, recomputed from all entries (qbi-tlog verify, on Tessera's
 *     and transparency-dev's code);
 *   - the entries among themselves (audit/entries.ts);
 *   - each published log: the file added by the entry's commit hashes to the entry, is still the
 *     same on the branch today, and its content extends every prefix logged for its session.
 * `--monitor <state>` keeps the last verified checkpoint and verifier of each origin, and reports
 * a fork, a rewind or a new signer as an alert.
 */
import { ChildProcessWithoutNullStreams, execFile, spawn } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import { z } from "zod";
import { checkEntries, entriesOut, sessionOf } from "./entries";

const exec = promisify(execFile);

export interface VerifyOptions {
  /** A logs repository (a clone, or a git URL to clone) or one transparency log directory. */
  target: string;
  /** Note verifier keys (`<origin>+<hash>+<key>`), one per origin to accept. */
  verifiers: string[];
  /** Older checkpoints (files) that must be consistent with today's logs. */
  since: string[];
  /** Monitor state file (read and, when everything verifies, updated). */
  monitor?: string;
  tlogProgram?: string;
}

export interface OriginReport {
  origin: string;
  dir: string;
  size: number;
  counts: Record<string, number>;
  checkpoints: number;
  problems: string[];
  alerts: string[];
}

/** A failure that is not about the log's contents (usage, I/O, tools): exit 3 in the CLI. */
export class AuditError extends Error {}

const MonitorState = z.object({
  origins: z.record(z.string(), z.object({ checkpoint: z.string(), verifier: z.string(), time: z.string() })),
});
type MonitorState = z.infer<typeof MonitorState>;

const VerifyResult = z.object({ ok: z.boolean(), size: z.number().optional(), reason: z.string().optional(), message: z.string().optional() });

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const originOf = (checkpoint: string) => checkpoint.split("\n")[0];
const sizeOf = (checkpoint: string) => Number(checkpoint.split("\n")[1]);

/** Reads many blobs through one `git cat-file --batch`. */
class Blobs {
  private child: ChildProcessWithoutNullStreams;
  private buf = Buffer.alloc(0);
  private waiting: ((b: Buffer | null) => void)[] = [];
  constructor(repo: string) {
    this.child = spawn("git", ["-C", repo, "cat-file", "--batch"]);
    this.child.stdout.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.drain();
    });
  }
  private drain(): void {
    for (;;) {
      const nl = this.buf.indexOf(0x0a);
      if (nl < 0 || this.waiting.length === 0) return;
      const header = this.buf.subarray(0, nl).toString();
      if (header.endsWith(" missing") || header.endsWith(" ambiguous")) {
        this.buf = this.buf.subarray(nl + 1);
        this.waiting.shift()!(null);
        continue;
      }
      const size = Number(header.split(" ")[2]);
      if (this.buf.length < nl + 1 + size + 1) return;
      const blob = Buffer.from(this.buf.subarray(nl + 1, nl + 1 + size));
      this.buf = this.buf.subarray(nl + 1 + size + 1);
      this.waiting.shift()!(blob);
    }
  }
  get(spec: string): Promise<Buffer | null> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin.write(`${spec}\n`);
    });
  }
  close(): void {
    this.child.stdin.end();
  }
}

async function uncompressed(file: Buffer, xz: boolean): Promise<Buffer> {
  if (!xz) return file;
  return new Promise((resolve, reject) => {
    const child = spawn("xz", ["-dc"], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.on("error", reject);
    child.on("close", (c) => (c === 0 ? resolve(Buffer.concat(out)) : reject(new Error("not valid xz"))));
    child.stdin.end(file);
  });
}

async function git(repo: string, args: string[]): Promise<string> {
  try {
    return (await exec("git", ["-C", repo, ...args], { maxBuffer: 256 * 1024 * 1024 })).stdout;
  } catch (e) {
    throw new AuditError(`git ${args[0]} in ${repo} failed: ${(e as { stderr?: string }).stderr?.trim() ?? String(e)}`);
  }
}

/** Verifies one transparency log directory (and, with `repo`, the logs it commits to). */
async function verifyOne(dir: string, repo: string | null, rel: string, opts: VerifyOptions, state: MonitorState | null, tmp: string): Promise<OriginReport> {
  const checkpoint = fs.readFileSync(path.join(dir, "checkpoint"), "utf8");
  const origin = originOf(checkpoint);
  const report: OriginReport = { origin, dir: rel, size: sizeOf(checkpoint), counts: {}, checkpoints: 0, problems: [], alerts: [] };
  const verifier = opts.verifiers.find((v) => v.split("+")[0] === origin);
  if (!verifier) {
    report.problems.push(`unknown signer: no --verifier given for origin ${origin}`);
    return report;
  }
  const previous = state?.origins[origin];
  if (previous && previous.verifier !== verifier) report.alerts.push(`signer of ${origin} changed: was ${previous.verifier}, now ${verifier}`);
  if (previous && sizeOf(previous.checkpoint) > report.size) report.alerts.push(`rewind: ${origin} shrank from ${sizeOf(previous.checkpoint)} to ${report.size} entries`);
  // Every older checkpoint: from the repository's history, --since, and the monitor's state.
  const older: { file: string; from: string }[] = [];
  const keep = (text: string, from: string) => {
    if (originOf(text) !== origin) return;
    const file = path.join(tmp, `cp-${older.length}-${path.basename(dir)}`);
    fs.writeFileSync(file, text);
    older.push({ file, from });
  };
  if (repo) {
    const cpPath = `${rel}/checkpoint`;
    for (const c of (await git(repo, ["log", "--format=%H", "--", cpPath])).split("\n").filter(Boolean)) {
      const text = await git(repo, ["show", `${c}:${cpPath}`]).catch(() => "");
      if (text) keep(text, `commit ${c.slice(0, 12)}`);
    }
  }
  for (const f of opts.since) keep(fs.readFileSync(f, "utf8"), `--since ${f}`);
  if (previous) keep(previous.checkpoint, "the monitor's last verified checkpoint");
  report.checkpoints = older.length + 1;
  const usable = older.filter((o) => sizeOf(fs.readFileSync(o.file, "utf8")) <= report.size);
  for (const o of older.filter((x) => !usable.includes(x))) report.problems.push(`rewind: the checkpoint of ${o.from} has more entries than the log now has (${report.size})`);
  const entriesFile = path.join(tmp, `entries-${path.basename(dir)}.jsonl`);
  const args = ["verify", "--dir", dir, "--verifier", verifier, "--entries-out", entriesFile, ...usable.flatMap((o) => ["--checkpoint", o.file])];
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(opts.tlogProgram ?? "qbi-tlog", args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 3) : 0, stdout, stderr }));
  });
  if (r.code !== 0) {
    let msg = r.stderr.trim().replace(/^qbi-tlog: /, "");
    try {
      const v = VerifyResult.parse(JSON.parse(r.stdout));
      msg = `${v.reason}: ${v.message}`;
    } catch {
      /* stderr says it */
    }
    if (r.code !== 1) throw new AuditError(`qbi-tlog verify failed on ${rel}: ${msg}`);
    report.problems.push(/root-mismatch/.test(msg) ? `fork or rewrite: ${msg}` : msg);
    return report;
  }
  let raw: (Buffer | string)[];
  try {
    raw = entriesOut(fs.readFileSync(entriesFile));
  } catch (e) {
    throw new AuditError(`qbi-tlog verify on ${rel}: ${(e as Error).message}`);
  }
  if (raw.length !== report.size) throw new AuditError(`qbi-tlog verify on ${rel} gave ${raw.length} entries for a log of ${report.size}`);
  const check = checkEntries(raw);
  report.counts = check.counts;
  for (const p of check.problems) report.problems.push(`entry ${p.index}: ${p.message}`);
  if (repo) {
    const blobs = new Blobs(repo);
    try {
      for (const { index, entry } of check.buildLogs) {
        const file = await blobs.get(`${entry.commit}:${entry.path}`);
        if (!file) {
          report.problems.push(`entry ${index}: ${entry.path} is not in commit ${entry.commit.slice(0, 12)}`);
          continue;
        }
        if (sha256(file) !== entry.sha256 || file.length !== entry.size) {
          report.problems.push(`entry ${index}: ${entry.path} in commit ${entry.commit.slice(0, 12)} does not hash to its entry`);
          continue;
        }
        const now = await blobs.get(`HEAD:${entry.path}`);
        if (!now) report.problems.push(`entry ${index}: ${entry.path} was removed from the branch after it was published`);
        else if (!now.equals(file)) report.problems.push(`entry ${index}: ${entry.path} was changed on the branch after it was published`);
        let content: Buffer;
        try {
          content = await uncompressed(file, entry.path.endsWith(".xz"));
        } catch (e) {
          report.problems.push(`entry ${index}: ${entry.path}: ${(e as Error).message}`);
          continue;
        }
        if (sha256(content) !== entry.contentSha256 || content.length !== entry.contentSize) {
          report.problems.push(`entry ${index}: the content of ${entry.path} does not hash to its entry`);
        }
        for (const p of check.prefixes.get(sessionOf(entry.path)) ?? []) {
          if (p.entry.contentSize > content.length || sha256(content.subarray(0, p.entry.contentSize)) !== p.entry.contentSha256) {
            report.problems.push(`entry ${index}: ${entry.path} does not extend the prefix logged as entry ${p.index} (a signature was asked for against a log that was later changed)`);
          }
        }
      }
    } finally {
      blobs.close();
    }
  }
  return report;
}

/** Runs the audit. Throws AuditError for usage and I/O problems; findings are in the reports. */
export async function verifyLog(opts: VerifyOptions): Promise<OriginReport[]> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-verify-log-"));
  try {
    let target = opts.target;
    if (/^[a-z+]+:\/\/|^[^/]+@[^/]+:/.test(target) && !fs.existsSync(target)) {
      const clone = path.join(tmp, "repo");
      await exec("git", ["clone", "--quiet", "--", target, clone]).catch((e: { stderr?: string }) => {
        throw new AuditError(`cannot clone ${target}: ${e.stderr?.trim() ?? ""}`);
      });
      target = clone;
    }
    if (!fs.existsSync(target)) throw new AuditError(`${target} does not exist`);
    let state: MonitorState | null = null;
    if (opts.monitor && fs.existsSync(opts.monitor)) {
      const r = MonitorState.safeParse(JSON.parse(fs.readFileSync(opts.monitor, "utf8")));
      if (!r.success) throw new AuditError(`${opts.monitor}: not a monitor state file`);
      state = r.data;
    }
    const reports: OriginReport[] = [];
    if (fs.existsSync(path.join(target, "checkpoint"))) {
      reports.push(await verifyOne(target, null, ".", opts, state, tmp));
    } else {
      const repo = (await git(target, ["rev-parse", "--show-toplevel"])).trim();
      const tl = path.join(repo, "tlog");
      const dirs = fs.existsSync(tl) ? fs.readdirSync(tl).filter((d) => fs.existsSync(path.join(tl, d, "checkpoint"))).sort() : [];
      if (dirs.length === 0) throw new AuditError(`${repo} has no transparency log (tlog/<logs VM>/checkpoint)`);
      for (const d of dirs) reports.push(await verifyOne(path.join(tl, d), repo, `tlog/${d}`, opts, state, tmp));
    }
    // A monitor whose logs all verify remembers where they stand now.
    if (opts.monitor && reports.every((r) => r.problems.length === 0 && r.alerts.length === 0)) {
      const next: MonitorState = { origins: { ...(state?.origins ?? {}) } };
      for (const r of reports) {
        const text = fs.readFileSync(path.join(r.dir === "." ? target : path.join(target, r.dir), "checkpoint"), "utf8");
        next.origins[r.origin] = { checkpoint: text, verifier: opts.verifiers.find((v) => v.split("+")[0] === r.origin)!, time: new Date().toISOString() };
      }
      const t = `${opts.monitor}.tmp`;
      fs.writeFileSync(t, `${JSON.stringify(next, null, 2)}\n`);
      fs.renameSync(t, opts.monitor);
    }
    return reports;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
