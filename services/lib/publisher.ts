/**
 * Publication in the logs VM, shared by qubesbuilder.BuildLog and qubesbuilder.LogDigest: one
 * pass, under one lock, publishes everything that is waiting (closed build logs, signature
 * requests), so that concurrent callers share a push (group commit). A pass:
 *   1. syncs the working copy with the remote: the remote head must be signed by the logs key,
 *      and its history must contain the last commit this VM published — a rewound or forked
 *      remote is never built on: our history is merged back in and pushed again;
 *   2. commits each closed log on its own and pushes; when a push fails, logs are retried one by
 *      one, so one bad log never holds the others back;
 *   3. appends entries to the transparency log (qbi-tlog, Tessera): a `build-log` entry per
 *      published log; per signature request the `log-prefix` of each open session of that build
 *      VM (so the log up to that moment is committed to before any signature exists) and the
 *      `signature-request` entry pointing at them (or at the VM's last published log);
 *   4. mirrors the log's tiles and checkpoint into the repository (`tlog/<logs VM>/`), commits,
 *      pushes;
 *   5. only after that push, hands each request's entry with its proofs to the keys VM (dom0
 *      redirects qubesbuilder.LogReceived+<build VM> to it), or returns the proof bundle to a
 *      Windows keys VM that asked itself.
 * A crash at any point loses nothing: markers, requests and the log's own files stay until the
 * step that consumes them is durable, and a keys VM signs an entry at most once.
 */
import { spawn } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { LogsVmConfig } from "../../contracts/serviceConfig/buildLog";
import { appendJsonLine, pidAlive, sleep, writeFileAtomic } from "./files";
import { log } from "./log";
import { EXIT } from "./outcome";
import { CallResult, qrexecCall, run } from "./proc";
import { hashFile } from "./spool";
import { BuildLogEntry, LogPrefixEntry, ProofBundle, SignatureRequestEntry, TlogTool, canonicalJson, checkpointSize } from "./tlog";

export { LogsVmConfig };
export type LogsVmConfig = z.infer<typeof LogsVmConfig>;

/** A build log session: written when the stream starts, removed once the log is published. */
export const PendingMarker = z.object({
  rel: z.string(),
  caller: z.string(),
  pid: z.number().int(),
  state: z.enum(["open", "closed"]),
  started: z.string(),
  contentSha256: z.string().optional(),
  contentSize: z.number().int().optional(),
  ended: z.string().optional(),
  retryAfter: z.number().optional(),
  failure: z.string().optional(),
  /** Set once the log's commit is pushed, then once its entry is in the transparency log. */
  commit: z.string().optional(),
  entry: z.number().int().optional(),
});
export type PendingMarker = z.infer<typeof PendingMarker>;

/** A signature request waiting for a pass (written by LogDigest). */
export const DigestRequest = z.object({
  id: z.string().regex(/^[A-Za-z0-9-]+$/),
  vm: z.string(),
  env: z.string(),
  signer: z.string(),
  /** true: hand the entry to the keys VM through dom0; false: return the bundle to the caller. */
  deliver: z.boolean(),
  /** For `deliver: false`: the checkpoint size the caller holds. */
  from: z.number().int().nonnegative().default(0),
  key: z.string(),
  sha256: z.string(),
  size: z.number().int().nonnegative(),
  time: z.string(),
  /** The waiting LogDigest process: a request whose caller is gone is dropped, not logged. */
  pid: z.number().int(),
});
export type DigestRequest = z.infer<typeof DigestRequest>;

export const DigestResult = z.union([
  z.object({ ok: z.literal(true), index: z.number().int(), checkpointSize: z.number().int(), bundle: ProofBundle.optional() }),
  z.object({ ok: z.literal(false), reason: z.string(), code: z.number().int() }),
]);
export type DigestResult = z.infer<typeof DigestResult>;

/** Where the logs VM keeps its state. */
export class LogsState {
  readonly pending: string;
  readonly requests: string;
  readonly results: string;
  readonly tlogDir: string;
  readonly journal: string;
  readonly lock: string;
  constructor(readonly dir: string, cfg: LogsVmConfig) {
    this.pending = path.join(dir, "pending");
    this.requests = path.join(dir, "requests");
    this.results = path.join(dir, "results");
    this.tlogDir = cfg.tlog.dir ?? path.join(dir, "tlog");
    this.journal = path.join(dir, "published.jsonl");
    this.lock = path.join(dir, "publish.lock");
    for (const d of [this.pending, this.requests, this.results, path.join(dir, "delivered"), path.join(dir, "last-log")]) {
      fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    }
  }
  markerFile(rel: string): string {
    return path.join(this.pending, `${rel.replace(/\//g, "__")}.json`);
  }
  requestFile(id: string): string {
    return path.join(this.requests, `${id}.json`);
  }
  resultFile(id: string): string {
    return path.join(this.results, `${id}.json`);
  }
}

const UPSTREAM_REF = (branch: string) => `refs/remotes/qbi-upstream/${branch}`;

/** git in the working copy, with hooks off (nothing from the repository ever runs). */
export class Git {
  constructor(private readonly cfg: LogsVmConfig) {}
  run(args: string[]): Promise<CallResult> {
    const c = this.cfg;
    const env: NodeJS.ProcessEnv = { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1" };
    if (c.gnupgHome) env.GNUPGHOME = c.gnupgHome;
    const base = ["git", "-C", c.repoDir, "-c", "core.hooksPath=/dev/null", "-c", `user.name=${c.authorName}`,
      "-c", `user.email=${c.authorEmail}`, "-c", `user.signingkey=${c.signingKey}`, "-c", "commit.gpgsign=true", "-c", "gpg.program=gpg"];
    return run([...base, ...args], { env, timeoutMs: 10 * 60 * 1000 });
  }
  async must(args: string[]): Promise<string> {
    const r = await this.run(args);
    if (r.code !== 0) throw new Error(`git ${args[0]} failed: ${r.stderr.trim().slice(0, 500)}`);
    return r.stdout;
  }
  async isAncestor(a: string, b: string): Promise<boolean> {
    const r = await this.run(["merge-base", "--is-ancestor", a, b]);
    if (r.code === 0) return true;
    if (r.code === 1) return false;
    throw new Error(`git merge-base failed: ${r.stderr.trim().slice(0, 300)}`);
  }
  async head(): Promise<string> {
    return (await this.must(["rev-parse", "HEAD"])).trim();
  }
}

/** Checks that `ref` is signed by the logs key (any other status or key: refuse). */
export async function verifyHead(git: Git, ref: string, fpr: string): Promise<void> {
  const out = (await git.must(["log", "-1", "--format=%G?%x20%GF%x20%GP", ref])).trim();
  const [status, signer = "", primary = ""] = out.split(" ");
  const good = status === "G" || status === "U";
  if (!good || (signer.toUpperCase() !== fpr && primary.toUpperCase() !== fpr)) {
    throw new Error(`remote head ${ref} is not signed by the logs key (status ${status || "?"}, key ${signer || "none"}); refusing to build on it`);
  }
}

/** A closed log waiting for publication, and once its commit is pushed. */
interface Due {
  marker: string;
  m: PendingMarker;
  rel: string;
}
interface Published extends Due {
  commit: string;
}

const LastPublished = z.object({ commit: z.string(), time: z.string() });

function readJson<T>(file: string, schema: z.ZodType<T>): T | null {
  try {
    return schema.parse(JSON.parse(fs.readFileSync(file, "utf8")));
  } catch {
    return null;
  }
}

/** One publication pass; the caller holds `st.lock`. */
export class Publisher {
  private readonly git: Git;
  private readonly tlog: TlogTool;
  constructor(private readonly cfg: LogsVmConfig, private readonly st: LogsState, private readonly service: string) {
    this.git = new Git(cfg);
    this.tlog = new TlogTool(cfg.tlog.program);
  }

  private journal(record: Record<string, unknown>): void {
    appendJsonLine(this.st.journal, record);
  }

  private get lastPublishedFile(): string {
    return path.join(this.st.dir, "last-published.json");
  }

  /**
   * Brings the local branch up to the remote without ever going back: the remote head must be
   * signed by the logs key; a remote that no longer contains what we published is merged with
   * our history (which still has it) so that the next push restores it.
   */
  async sync(): Promise<void> {
    const { cfg, git } = this;
    const up = UPSTREAM_REF(cfg.branch);
    await git.must(["fetch", "--no-tags", "-q", cfg.remote, `+refs/heads/${cfg.branch}:${up}`]);
    await verifyHead(git, up, cfg.signingKey);
    const upstream = (await git.must(["rev-parse", up])).trim();
    const branchRef = `refs/heads/${cfg.branch}`;
    if ((await git.run(["rev-parse", "--verify", "-q", branchRef])).code !== 0) await git.must(["update-ref", branchRef, upstream]);
    await git.must(["symbolic-ref", "HEAD", branchRef]);
    await git.must(["reset", "-q"]);
    await git.run(["checkout", "-q", "--", "."]);
    const local = await git.head();
    const last = readJson(this.lastPublishedFile, LastPublished);
    if (last && !(await git.isAncestor(last.commit, upstream).catch(() => false))) {
      this.journal({ event: "remote-rewound", remote: upstream, lastPublished: last.commit });
      log(this.service, `the remote ${cfg.branch} (${upstream.slice(0, 12)}) does not contain the last published commit ${last.commit.slice(0, 12)}: `
        + "it was rewound or forked; re-publishing the missing history instead of building on it");
    }
    if (local === upstream || (await git.isAncestor(upstream, local))) return;
    if (await git.isAncestor(local, upstream)) {
      await git.must(["merge", "-q", "--ff-only", up]);
      return;
    }
    await git.must(["merge", "-q", "--no-edit", "-X", "ours", `-S${cfg.signingKey}`, "-m", `Merge ${upstream.slice(0, 12)}: both histories kept`, up]);
    if (last) await this.restoreDropped(last.commit);
  }

  /** Files of the last published commit that a merge dropped are put back (never lose a log). */
  private async restoreDropped(lastCommit: string): Promise<void> {
    const before = (await this.git.must(["ls-tree", "-r", "--name-only", lastCommit])).split("\n").filter(Boolean);
    const now = new Set((await this.git.must(["ls-tree", "-r", "--name-only", "HEAD"])).split("\n").filter(Boolean));
    const tlogPrefix = `${this.cfg.tlog.repoSubdir}/`;
    const gone = before.filter((f) => !now.has(f) && !f.startsWith(tlogPrefix));
    if (gone.length === 0) return;
    for (let i = 0; i < gone.length; i += 200) await this.git.must(["checkout", lastCommit, "--", ...gone.slice(i, i + 200)]);
    await this.git.must(["commit", "-q", `-S${this.cfg.signingKey}`, "-m", `Restore ${gone.length} published files`]);
    this.journal({ event: "restored", files: gone.length });
  }

  /** On the branch (a working copy whose branch is missing is set up from the remote first). */
  private async ensureBranch(): Promise<void> {
    // One call: the branch HEAD is on, which must exist (an unborn branch prints plain HEAD).
    const r = await this.git.run(["rev-parse", "--symbolic-full-name", "HEAD"]);
    if (r.code !== 0 || r.stdout.trim() !== `refs/heads/${this.cfg.branch}`) await this.sync();
  }

  /**
   * Pushes HEAD. Our history only ever grows on verified heads, so it is pushed as it is: a remote
   * that was rewound to one of our commits takes it as a fast-forward (and so gets back what was
   * lost: journalled from the push's report); a remote that moved on is fetched, verified and
   * merged (`sync`) before the next attempt.
   */
  private async push(attempts = this.cfg.pushAttempts): Promise<void> {
    let last = "";
    for (let a = 1; a <= attempts; a++) {
      if (a > 1) {
        await sleep(this.cfg.pushBackoffMs * 2 ** (a - 2));
        try {
          await this.sync();
        } catch (e) {
          // A remote head not signed by the logs key will not become signed by retrying.
          if (/not signed by the logs key/.test((e as Error).message)) throw e;
          last = (e as Error).message.slice(0, 300);
          log(this.service, `push attempt ${a}/${attempts} failed: ${last}`);
          continue;
        }
      }
      const head = await this.git.head();
      // No delta search: it compares every new log with its neighbours, which costs seconds per
      // pass of a few big logs (most of the push) and rarely pays off between two build logs.
      const r = await this.git.run(["-c", "pack.window=0", "push", "--porcelain", this.cfg.remote, `${head}:refs/heads/${this.cfg.branch}`]);
      if (r.code === 0) {
        await this.noteRewind(r.stdout);
        writeFileAtomic(this.lastPublishedFile, JSON.stringify({ commit: head, time: new Date().toISOString() }));
        return;
      }
      last = (r.stderr.trim() || r.stdout.trim()).slice(0, 300);
      log(this.service, `push attempt ${a}/${attempts} failed: ${last}`);
    }
    throw new Error(`git push failed: ${last}`);
  }

  /** From a successful push's report: was the remote somewhere else than where we left it? */
  private async noteRewind(porcelain: string): Promise<void> {
    const last = readJson(this.lastPublishedFile, LastPublished);
    if (!last) return;
    const line = porcelain.split("\n").find((l) => l.includes(`:refs/heads/${this.cfg.branch}\t`)) ?? "";
    const summary = line.split("\t")[2] ?? "";
    const old = /^([0-9a-f]{4,64})\.\./.exec(summary)?.[1];
    if (summary === "[up to date]" || (old && last.commit.startsWith(old))) return;
    if (old && (await this.git.run(["merge-base", "--is-ancestor", old, last.commit])).code !== 0) return; // another logs VM moved it on
    this.journal({ event: "remote-rewound", remote: old ?? summary, lastPublished: last.commit });
    log(this.service, `the remote ${this.cfg.branch} was at ${old ?? summary}, behind the last published commit ${last.commit.slice(0, 12)}: `
      + "it had been rewound or deleted; the missing history is published again");
  }

  /** Stages `paths` and commits them (signed); false when nothing changed. */
  private async commitPath(paths: string[], message: string): Promise<boolean> {
    await this.git.must(["add", "-A", "-f", "--", ...paths]);
    const r = await this.git.run(["commit", "-q", `-S${this.cfg.signingKey}`, "-m", message]);
    if (r.code === 0) return true;
    if (/nothing (added )?to commit|no changes added/.test(r.stdout + r.stderr)) return false;
    throw new Error(`git commit failed: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  }

  /** Which of `<rel>` / `<rel>.xz` holds a closed log (and removes an empty placeholder). */
  private logFile(m: PendingMarker): string | null {
    const abs = path.join(this.cfg.repoDir, m.rel);
    const xz = `${abs}.xz`;
    const xzSize = fs.existsSync(xz) ? fs.statSync(xz).size : -1;
    if (fs.existsSync(abs)) {
      if (xzSize === 0) fs.rmSync(xz);
      return m.rel;
    }
    return xzSize > 0 ? `${m.rel}.xz` : null;
  }

  /** Closed logs (or logs whose writer died) that are due for publication. */
  private dueLogs(): Due[] {
    const out: Due[] = [];
    for (const name of fs.readdirSync(this.st.pending).filter((n) => n.endsWith(".json")).sort()) {
      const marker = path.join(this.st.pending, name);
      const m = readJson(marker, PendingMarker);
      if (!m) continue;
      if (m.state === "open" && pidAlive(m.pid)) continue;
      if (m.retryAfter && Date.now() < m.retryAfter) continue;
      const rel = this.logFile(m);
      if (!rel) {
        this.journal({ event: "lost", marker: m });
        fs.rmSync(marker, { force: true });
        continue;
      }
      out.push({ marker, m, rel });
    }
    return out;
  }

  /** Sessions of `vm` still streaming. */
  private openSessions(vm: string): PendingMarker[] {
    const out: PendingMarker[] = [];
    for (const name of fs.readdirSync(this.st.pending).filter((n) => n.endsWith(".json")).sort()) {
      const m = readJson(path.join(this.st.pending, name), PendingMarker);
      if (m && m.caller === vm && m.state === "open" && pidAlive(m.pid)) out.push(m);
    }
    return out;
  }

  /**
   * Commits each due log on its own and pushes; returns the published ones with their commit
   * (recorded in the marker, so a later failure never commits a log twice).
   */
  private async publishLogs(due: Due[]): Promise<Published[]> {
    const pushed: Published[] = due.filter((d) => d.m.commit).map((d) => ({ ...d, commit: d.m.commit! }));
    const todo = due.filter((d) => !d.m.commit);
    if (todo.length === 0) return pushed;
    const base = await this.git.head();
    const made: Published[] = [];
    for (const d of todo) {
      await this.commitPath([d.rel], `Add ${d.rel}`);
      made.push({ ...d, commit: (await this.git.must(["log", "-1", "--format=%H", "HEAD", "--", d.rel])).trim() });
    }
    try {
      await this.push();
      return [...pushed, ...made.map((d) => this.markPushed(d))];
    } catch (e) {
      await this.git.must(["reset", "-q", "--mixed", base]);
      // One log alone: the remote may simply be unreachable; it stays pending for the next pass.
      if (todo.length === 1) throw e;
    }
    // One at a time, so that one log the remote refuses does not hold the others back.
    const failed: { d: Due; why: string }[] = [];
    for (const d of todo) {
      const before = await this.git.head();
      await this.commitPath([d.rel], `Add ${d.rel}`);
      try {
        await this.push(1);
        pushed.push(this.markPushed({ ...d, commit: (await this.git.must(["log", "-1", "--format=%H", "HEAD", "--", d.rel])).trim() }));
      } catch (e) {
        await this.git.must(["reset", "-q", "--mixed", before]);
        failed.push({ d, why: (e as Error).message });
      }
    }
    // Refused while others went through: that log is the problem; it is retried alone later.
    if (failed.length > 0 && failed.length < todo.length) for (const f of failed) this.deferLog(f.d, f.why);
    if (failed.length === todo.length) throw new Error(failed[0].why);
    return pushed;
  }

  private markPushed(d: Published): Published {
    const m: PendingMarker = { ...d.m, state: "closed", commit: d.commit, retryAfter: undefined, failure: undefined };
    writeFileAtomic(d.marker, JSON.stringify(m));
    return { ...d, m };
  }

  private deferLog(d: Due, reason: string): void {
    const retryAfter = Date.now() + this.cfg.retryAfterSeconds * 1000;
    writeFileAtomic(d.marker, JSON.stringify({ ...d.m, state: "closed", retryAfter, failure: reason.slice(0, 300) }));
    this.journal({ event: "log-deferred", rel: d.rel, reason: reason.slice(0, 300), retryAfter: new Date(retryAfter).toISOString() });
    log(this.service, `${d.rel}: not published (${reason.slice(0, 200)}); retried alone after ${this.cfg.retryAfterSeconds}s`);
  }

  /** True when HEAD is not what this VM pushed last (new commits, or an earlier failed push). */
  private async unpushed(): Promise<boolean> {
    return readJson(this.lastPublishedFile, LastPublished)?.commit !== (await this.git.head());
  }

  /** The log's size as its last checkpoint says (0 for a new log). */
  private tlogSize(): number {
    try {
      return checkpointSize(fs.readFileSync(path.join(this.st.tlogDir, "checkpoint"), "utf8"));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return 0;
      throw e;
    }
  }

  /** A log lost locally (the VM was rebuilt) starts again from its published copy. */
  private restoreTlog(): void {
    const published = path.join(this.cfg.repoDir, this.cfg.tlog.repoSubdir);
    if (fs.existsSync(path.join(this.st.tlogDir, "checkpoint")) || !fs.existsSync(path.join(published, "checkpoint"))) return;
    fs.cpSync(published, this.st.tlogDir, { recursive: true });
    this.journal({ event: "tlog-restored", from: this.cfg.tlog.repoSubdir });
  }

  /** What of Tessera's directory is published: tiles, the checkpoint, and the tree state (for a restore). */
  private static published(rel: string): boolean {
    return rel === "checkpoint" || rel.startsWith("tile/") || rel === ".state/treeState" || rel === ".state/version";
  }

  /** Copies the log's files into the repository. */
  private mirrorTlog(): void {
    if (!fs.existsSync(path.join(this.st.tlogDir, "checkpoint"))) return;
    const dest = path.join(this.cfg.repoDir, this.cfg.tlog.repoSubdir);
    const wanted = new Set<string>();
    const walk = (rel: string) => {
      for (const e of fs.readdirSync(path.join(this.st.tlogDir, rel), { withFileTypes: true })) {
        const r = path.join(rel, e.name);
        if (e.isDirectory()) walk(r);
        else if (e.isFile() && Publisher.published(r)) {
          wanted.add(r);
          const src = path.join(this.st.tlogDir, r);
          const dst = path.join(dest, r);
          const s = fs.statSync(src);
          const d = fs.existsSync(dst) ? fs.statSync(dst) : null;
          if (!d || d.size !== s.size || d.mtimeMs < s.mtimeMs) {
            fs.mkdirSync(path.dirname(dst), { recursive: true });
            fs.copyFileSync(src, dst);
          }
        }
      }
    };
    walk("");
    const prune = (rel: string) => {
      const abs = path.join(dest, rel);
      if (!fs.existsSync(abs)) return;
      for (const e of fs.readdirSync(abs, { withFileTypes: true })) {
        const r = path.join(rel, e.name);
        if (e.isDirectory()) prune(r);
        else if (!wanted.has(r)) fs.rmSync(path.join(dest, r));
      }
    };
    prune("");
  }

  private lastLogFile(vm: string): string {
    return path.join(this.st.dir, "last-log", `${vm}.json`);
  }

  /** sha256 and size of a session's content so far, made durable first. */
  private async prefixOf(m: PendingMarker): Promise<{ contentSha256: string; contentSize: number }> {
    const abs = path.join(this.cfg.repoDir, m.rel);
    const fd = fs.openSync(abs, "r");
    try {
      fs.fdatasyncSync(fd);
      const size = fs.fstatSync(fd).size;
      const hash = createHash("sha256");
      const buf = Buffer.alloc(1024 * 1024);
      let off = 0;
      while (off < size) {
        const n = fs.readSync(fd, buf, 0, Math.min(buf.length, size - off), off);
        if (n <= 0) break;
        hash.update(buf.subarray(0, n));
        off += n;
      }
      return { contentSha256: hash.digest("hex"), contentSize: off };
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Content hash of a published log (decompressing an .xz one) when its writer did not record it. */
  private async contentOf(rel: string): Promise<{ contentSha256: string; contentSize: number }> {
    const abs = path.join(this.cfg.repoDir, rel);
    if (!rel.endsWith(".xz")) {
      const h = await hashFile(abs);
      return { contentSha256: h.sha256, contentSize: h.size };
    }
    const hash = createHash("sha256");
    let size = 0;
    const child = spawn("xz", ["-dc", "--", abs], { stdio: ["ignore", "pipe", "ignore"] });
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
    }
    const code = await new Promise<number>((r) => child.on("close", (c) => r(c ?? 1)));
    if (code !== 0) throw new Error(`xz -d failed on ${rel}`);
    return { contentSha256: hash.digest("hex"), contentSize: size };
  }

  /** Runs one pass over everything that is waiting. */
  async pass(): Promise<void> {
    const { cfg, st } = this;
    this.restoreTlog();
    await this.ensureBranch();
    const published = await this.publishLogs(this.dueLogs());

    const requests: DigestRequest[] = [];
    for (const name of fs.readdirSync(st.requests).filter((n) => n.endsWith(".json")).sort()) {
      const r = readJson(path.join(st.requests, name), DigestRequest);
      if (!r || fs.existsSync(st.resultFile(r.id))) continue;
      if (!pidAlive(r.pid)) {
        this.journal({ event: "request-dropped", id: r.id, vm: r.vm, reason: "its caller is gone" });
        fs.rmSync(st.requestFile(r.id), { force: true });
        continue;
      }
      requests.push(r);
    }

    const now = new Date().toISOString();
    const before = this.tlogSize();
    const entries: string[] = [];
    const add = (e: BuildLogEntry | LogPrefixEntry | SignatureRequestEntry): number => {
      entries.push(canonicalJson(e));
      return before + entries.length - 1;
    };
    const lastLog = new Map<string, { index: number; time: number }>();
    const logEntries: { d: Published; index: number }[] = [];
    for (const d of published) {
      if (d.m.entry !== undefined) {
        logEntries.push({ d, index: d.m.entry });
        continue;
      }
      const vmCfg = cfg.buildVms[d.m.caller];
      const stored = await hashFile(path.join(cfg.repoDir, d.rel));
      const content = d.m.contentSha256 !== undefined && d.m.contentSize !== undefined
        ? { contentSha256: d.m.contentSha256, contentSize: d.m.contentSize }
        : await this.contentOf(d.rel);
      const index = add({
        v: 1, kind: "build-log", time: now, vm: d.m.caller, env: vmCfg?.env ?? "unknown", path: d.rel, sha256: stored.sha256, size: stored.size,
        ...content, commit: d.commit, ...(d.m.ended ? { ended: d.m.ended.slice(0, 200) } : {}),
      });
      lastLog.set(d.m.caller, { index, time: Date.now() });
      logEntries.push({ d, index });
    }
    const accepted: { r: DigestRequest; index: number }[] = [];
    const prefixes = new Map<string, number[]>();
    for (const r of requests) {
      let logs = prefixes.get(r.vm);
      if (!logs) {
        logs = [];
        for (const m of this.openSessions(r.vm)) {
          logs.push(add({ v: 1, kind: "log-prefix", time: now, vm: r.vm, env: r.env, path: m.rel, ...(await this.prefixOf(m)) }));
        }
        if (logs.length === 0) {
          const last = lastLog.get(r.vm) ?? readJson(this.lastLogFile(r.vm), z.object({ index: z.number().int(), time: z.number() }));
          if (last && Date.now() - last.time <= cfg.maxLogAgeSeconds * 1000) logs.push(last.index);
        }
        prefixes.set(r.vm, logs);
      }
      if (logs.length === 0) {
        this.result(r, { ok: false, code: EXIT.REFUSED, reason: `${r.vm} has no open build log and published none in the last ${cfg.maxLogAgeSeconds}s: nothing to sign against` });
        continue;
      }
      const index = add({ v: 1, kind: "signature-request", time: now, vm: r.vm, env: r.env, signer: r.signer, key: r.key, sha256: r.sha256, size: r.size, logs });
      accepted.push({ r, index });
    }

    let size = before;
    try {
      if (entries.length > 0) {
        const out = await this.tlog.append(st.tlogDir, cfg.tlog.privateKey, entries);
        const expected = entries.map((_e, i) => before + i);
        if (out.indices.some((v, i) => v !== expected[i])) {
          throw new Error(`the log assigned indices ${out.indices[0]}… where ${before}… were expected; the pass is abandoned`);
        }
        size = out.size;
        for (const l of logEntries) if (l.d.m.entry === undefined) writeFileAtomic(l.d.marker, JSON.stringify({ ...l.d.m, entry: l.index }));
      }
      // Also publishes what an earlier pass appended but could not push.
      this.mirrorTlog();
      if (fs.existsSync(path.join(cfg.repoDir, cfg.tlog.repoSubdir))) {
        await this.commitPath([cfg.tlog.repoSubdir], `Transparency log: checkpoint size ${this.tlogSize()}`);
      }
      if (await this.unpushed()) await this.push();
    } catch (e) {
      for (const a of accepted) this.result(a.r, { ok: false, code: EXIT.FAILED, reason: `not published: ${(e as Error).message.slice(0, 300)}` });
      throw e;
    }
    for (const l of logEntries) this.finishLog(l.d, l.index);
    for (const [vm, l] of lastLog) writeFileAtomic(this.lastLogFile(vm), JSON.stringify(l));
    if (accepted.length > 0) this.journal({ event: "requests-logged", entries: accepted.map((a) => ({ id: a.r.id, vm: a.r.vm, index: a.index, sha256: a.r.sha256 })), size });
    await this.deliver(accepted, size);
  }

  private finishLog(d: Published, index: number): void {
    this.journal({ event: "published", rel: d.rel, caller: d.m.caller, commit: d.commit, entry: index });
    fs.rmSync(d.marker, { force: true });
  }

  private result(r: DigestRequest, res: DigestResult): void {
    writeFileAtomic(this.st.resultFile(r.id), JSON.stringify(res));
    fs.rmSync(this.st.requestFile(r.id), { force: true });
  }

  /** Hands entries to keys VMs (or prepares bundles for callers that verify themselves). */
  private async deliver(accepted: { r: DigestRequest; index: number }[], size: number): Promise<void> {
    const deliveredFile = (vm: string) => path.join(this.st.dir, "delivered", `${vm}.json`);
    const Delivered = z.object({ size: z.number().int() });
    for (const a of accepted) {
      try {
        if (!a.r.deliver) {
          const p = await this.tlog.prove(this.st.tlogDir, [a.index], Math.min(a.r.from, size));
          this.result(a.r, { ok: true, index: a.index, checkpointSize: p.size, bundle: TlogTool.bundle(p, a.index) });
          continue;
        }
        let from = readJson(deliveredFile(a.r.signer), Delivered)?.size ?? 0;
        let res: CallResult | null = null;
        let checkpoint = size;
        for (let attempt = 0; attempt < 2; attempt++) {
          const p = await this.tlog.prove(this.st.tlogDir, [a.index], Math.min(from, size));
          checkpoint = p.size;
          res = await qrexecCall("dom0", "qubesbuilder.LogReceived", a.r.vm, JSON.stringify(TlogTool.bundle(p, a.index))).catch(
            (e: Error): CallResult => ({ code: 127, stdout: "", stderr: e.message }),
          );
          const have = /^have ([0-9]+)$/m.exec(res.stdout);
          if (res.code === 0 || !have) break;
          from = Number(have[1]);
        }
        if (!res || res.code !== 0) {
          const why = `${a.r.signer} did not accept entry ${a.index} (exit ${res?.code}): ${(res?.stderr ?? "").trim().slice(0, 300)}`;
          this.journal({ event: "delivery-failed", id: a.r.id, vm: a.r.vm, index: a.index, reason: why });
          this.result(a.r, { ok: false, code: EXIT.FAILED, reason: why });
          continue;
        }
        writeFileAtomic(deliveredFile(a.r.signer), JSON.stringify({ size: checkpoint }));
        this.result(a.r, { ok: true, index: a.index, checkpointSize: checkpoint });
      } catch (e) {
        this.result(a.r, { ok: false, code: EXIT.FAILED, reason: (e as Error).message.slice(0, 300) });
      }
    }
  }

  /** Results nobody collected (their caller died) are removed after a day. */
  pruneResults(maxAgeMs = 86400000): void {
    for (const name of fs.readdirSync(this.st.results)) {
      const f = path.join(this.st.results, name);
      try {
        if (Date.now() - fs.statSync(f).mtimeMs > maxAgeMs) fs.rmSync(f, { force: true });
      } catch {
        /* gone */
      }
    }
  }
}
