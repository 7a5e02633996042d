/**
 * qubesbuilder.BuildLog (logs VM): stores a build VM's log stream, then publishes it as a
 * gpg-signed commit in the logs git repository and tells dom0 (qubesbuilder.LogReceived+<vm>),
 * which routes the acknowledgement to that env's keys VM. See services/README.md.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import {
  CallResult,
  ConfigError,
  EXIT,
  acquireLock,
  fingerprint,
  homeDir,
  isVmName,
  pidAlive,
  loadConfig,
  log,
  qrexecCall,
  run,
  runMain,
  sleep,
  stateDir,
  writeFileAtomic,
} from "./lib/common";

const SERVICE = "qubesbuilder.BuildLog";

export const BuildLogConfig = z
  .object({
    /** The logs git working copy (a clone of `remote` on `branch`). */
    repoDir: z.string().startsWith("/"),
    /** Any git URL (ssh in production, file:// in tests); never an option. */
    remote: z.string().min(1).refine((s) => !s.startsWith("-"), "must not start with -"),
    branch: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,100}$/),
    /** Fingerprint of the logs key: signs our commits, and must have signed the remote head. */
    signingKey: fingerprint,
    gnupgHome: z.string().startsWith("/").optional(),
    xzThresholdBytes: z.number().int().nonnegative().default(10 * 1024 * 1024),
    maxLineBytes: z.number().int().min(256).max(16 * 1024 * 1024).default(64 * 1024),
    fsyncIntervalMs: z.number().int().min(0).max(10000).default(200),
    pushAttempts: z.number().int().min(1).max(20).default(5),
    pushBackoffMs: z.number().int().min(0).default(2000),
    lockTimeoutMs: z.number().int().positive().default(30 * 60 * 1000),
    authorName: z.string().min(1).default("Qubes OS build bot"),
    authorEmail: z.string().min(3).default("builder-bot@qubes-os.org"),
  })
  .strict();
export type BuildLogConfig = z.infer<typeof BuildLogConfig>;

/** A log waiting to be published: written at reservation, removed once pushed and acknowledged. */
const PendingMarker = z.object({
  rel: z.string(),
  caller: z.string(),
  pid: z.number().int(),
  state: z.enum(["open", "closed"]),
  started: z.string(),
});
type PendingMarker = z.infer<typeof PendingMarker>;

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** Wall clock with microseconds (performance clock anchored at process start). */
function nowMicros(): { date: Date; micros: number } {
  const ms = performance.timeOrigin + performance.now();
  const date = new Date(Math.floor(ms));
  return { date, micros: Math.floor((ms * 1000) % 1000000) };
}

function stamp(): string {
  const { date: d, micros } = nowMicros();
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(micros, 6)} +0000`
  );
}

/** Bytes outside 0x20–0x7E become `.`. */
function sanitize(bytes: Buffer): string {
  const b = Buffer.from(bytes);
  for (let i = 0; i < b.length; i++) if (b[i] < 0x20 || b[i] > 0x7e) b[i] = 0x2e;
  return b.toString("latin1");
}

/**
 * Reserves `<base>` and `<base>.xz` with exclusive creates, trying `.1`, `.2`, ... on a clash.
 * Never overwrites anything.
 */
function reserve(base: string): { file: string; fd: number } {
  for (let n = 0; n < 10000; n++) {
    const file = n === 0 ? base : `${base}.${n}`;
    let fd: number;
    try {
      fd = fs.openSync(file, "wx", 0o644);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw e;
    }
    try {
      fs.closeSync(fs.openSync(`${file}.xz`, "wx", 0o644));
    } catch (e) {
      fs.closeSync(fd);
      fs.unlinkSync(file);
      if ((e as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw e;
    }
    return { file, fd };
  }
  throw new Error(`no free log name for ${base}`);
}

function markerFile(dir: string, rel: string): string {
  return path.join(dir, `${rel.replace(/\//g, "__")}.json`);
}

/** Streams stdin into the log file; returns why the stream ended. */
async function receive(fd: number, caller: string, cfg: BuildLogConfig): Promise<string> {
  const max = cfg.maxLineBytes;
  const cur = Buffer.alloc(max);
  let curLen = 0;
  let splitJustNow = false;
  let dirty = false;
  let lastSync = Date.now();
  const sync = () => {
    if (dirty) {
      fs.fdatasyncSync(fd);
      dirty = false;
    }
    lastSync = Date.now();
  };
  const write = (s: string) => {
    fs.writeSync(fd, s);
    dirty = true;
  };
  const timer = setInterval(sync, Math.max(cfg.fsyncIntervalMs, 10));
  timer.unref();

  write(`${stamp()} > starting log\n`);
  sync();

  let ended = "end of stream";
  const onSignal = (sig: string) => {
    ended = `interrupted by ${sig}`;
    process.stdin.destroy();
  };
  for (const sig of ["SIGTERM", "SIGHUP", "SIGINT"] as const) process.on(sig, () => onSignal(sig));

  try {
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
      let out = "";
      let pos = 0;
      while (pos < chunk.length) {
        const nl = chunk.indexOf(0x0a, pos);
        const end = nl === -1 ? chunk.length : nl;
        let p = pos;
        while (p < end) {
          const take = Math.min(end - p, max - curLen);
          chunk.copy(cur, curLen, p, p + take);
          curLen += take;
          p += take;
          splitJustNow = false;
          if (curLen === max) {
            out += `${stamp()} ${caller}: ${sanitize(cur.subarray(0, curLen))}\n`;
            curLen = 0;
            splitJustNow = true;
          }
        }
        if (nl === -1) break;
        if (!(splitJustNow && curLen === 0)) out += `${stamp()} ${caller}: ${sanitize(cur.subarray(0, curLen))}\n`;
        curLen = 0;
        splitJustNow = false;
        pos = nl + 1;
      }
      if (out) write(out);
      if (Date.now() - lastSync >= cfg.fsyncIntervalMs) sync();
    }
  } catch (e) {
    if (ended === "end of stream") ended = `stream error: ${(e as Error).message}`;
  }
  if (curLen > 0) write(`${stamp()} ${caller}: ${sanitize(cur.subarray(0, curLen))}\n`);
  write(`${stamp()} > closing log${ended === "end of stream" ? "" : ` (${ended})`}\n`);
  clearInterval(timer);
  sync();
  return ended;
}

/** Compresses `file` into its reserved `file.xz` if larger than the threshold; returns the kept file. */
async function finishFile(file: string, threshold: number): Promise<string> {
  const xzFile = `${file}.xz`;
  const size = fs.statSync(file).size;
  if (size <= threshold) {
    fs.rmSync(xzFile, { force: true });
    return file;
  }
  const inFd = fs.openSync(file, "r");
  const outFd = fs.openSync(xzFile, "w", 0o644); // our own reserved placeholder
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn("xz", ["-z", "-c", "-T0"], { stdio: [inFd, outFd, "inherit"] });
    child.on("error", reject);
    child.on("close", (c) => resolve(c ?? 1));
  });
  fs.closeSync(inFd);
  if (code !== 0) {
    fs.closeSync(outFd);
    fs.writeFileSync(xzFile, "");
    fs.rmSync(xzFile, { force: true });
    log(SERVICE, `xz failed (${code}); keeping the uncompressed log`);
    return file;
  }
  fs.fsyncSync(outFd);
  fs.closeSync(outFd);
  fs.unlinkSync(file);
  return xzFile;
}

class Git {
  constructor(private cfg: BuildLogConfig) {}
  run(args: string[], input?: string): Promise<CallResult> {
    const c = this.cfg;
    const env: NodeJS.ProcessEnv = { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1" };
    if (c.gnupgHome) env.GNUPGHOME = c.gnupgHome;
    const base = [
      "git",
      "-C",
      c.repoDir,
      // Nothing from the repository content is ever executed (W15): no hooks.
      "-c",
      "core.hooksPath=/dev/null",
      "-c",
      `user.name=${c.authorName}`,
      "-c",
      `user.email=${c.authorEmail}`,
      "-c",
      `user.signingkey=${c.signingKey}`,
      "-c",
      "commit.gpgsign=true",
      "-c",
      "gpg.program=gpg",
    ];
    return run([...base, ...args], { env, input, timeoutMs: 10 * 60 * 1000 });
  }
  async must(args: string[]): Promise<string> {
    const r = await this.run(args);
    if (r.code !== 0) throw new Error(`git ${args[0]} failed: ${r.stderr.trim().slice(0, 500)}`);
    return r.stdout;
  }
}

/** Checks that `ref` is signed by the logs key (any other status or key: refuse). */
async function verifyHead(git: Git, ref: string, fpr: string): Promise<void> {
  const out = (await git.must(["log", "-1", "--format=%G?%x20%GF%x20%GP", ref])).trim();
  const [status, signer = "", primary = ""] = out.split(" ");
  const good = status === "G" || status === "U";
  if (!good || (signer.toUpperCase() !== fpr && primary.toUpperCase() !== fpr)) {
    throw new Error(`remote head ${ref} is not signed by the logs key (status ${status || "?"}, key ${signer || "none"}); refusing to build on it`);
  }
}

interface Publication {
  rel: string;
  caller: string;
  commit: string;
  marker: string;
}

/** Which file of a marker exists now: `<rel>` or `<rel>.xz` (non-empty), and tidies the placeholder. */
function resolveLogFile(repoDir: string, m: PendingMarker): string | null {
  const abs = path.join(repoDir, m.rel);
  const xz = `${abs}.xz`;
  const xzSize = fs.existsSync(xz) ? fs.statSync(xz).size : -1;
  if (fs.existsSync(abs)) {
    if (xzSize === 0) fs.rmSync(xz);
    return m.rel;
  }
  if (xzSize > 0) return `${m.rel}.xz`;
  return null;
}


/** One publication pass (under the lock): commit every closed pending log, push, acknowledge. */
async function publishPending(cfg: BuildLogConfig, pendingDir: string, journal: string): Promise<Publication[]> {
  const git = new Git(cfg);
  const upstream = `refs/remotes/qbi-upstream/${cfg.branch}`;
  let lastErr: Error | null = null;
  for (let attempt = 1; attempt <= cfg.pushAttempts; attempt++) {
    if (attempt > 1) await sleep(cfg.pushBackoffMs * 2 ** (attempt - 2));
    try {
      const markers: { file: string; m: PendingMarker; rel: string }[] = [];
      for (const name of fs.readdirSync(pendingDir).filter((n) => n.endsWith(".json")).sort()) {
        const file = path.join(pendingDir, name);
        const parsed = PendingMarker.safeParse(JSON.parse(fs.readFileSync(file, "utf8")));
        if (!parsed.success) continue;
        const m = parsed.data;
        if (m.state === "open" && pidAlive(m.pid)) continue; // still streaming in another call
        const rel = resolveLogFile(cfg.repoDir, m);
        if (!rel) {
          fs.appendFileSync(journal, `${JSON.stringify({ time: new Date().toISOString(), lost: m })}\n`);
          fs.unlinkSync(file);
          continue;
        }
        markers.push({ file, m, rel });
      }
      await git.must(["fetch", "--no-tags", "-q", cfg.remote, `+refs/heads/${cfg.branch}:${upstream}`]);
      await verifyHead(git, upstream, cfg.signingKey);
      await git.must(["symbolic-ref", "HEAD", `refs/heads/${cfg.branch}`]);
      // Index and branch follow the verified upstream; the working tree (our logs) is kept.
      await git.must(["reset", "-q", "--mixed", upstream]);
      await git.run(["checkout", "-q", "--", "."]);
      if (markers.length === 0) return [];
      await git.must(["add", "-f", "--", ...markers.map((x) => x.rel)]);
      const diff = await git.run(["diff", "--cached", "--quiet"]);
      if (diff.code !== 0) {
        const msg = markers.length === 1 ? `Add ${markers[0].rel}` : `Add ${markers.length} build logs\n\n${markers.map((x) => x.rel).join("\n")}\n`;
        await git.must(["commit", "-q", `-S${cfg.signingKey}`, "-m", msg]);
        const push = await git.run(["push", "-q", cfg.remote, `HEAD:refs/heads/${cfg.branch}`]);
        if (push.code !== 0) throw new Error(`git push failed: ${push.stderr.trim().slice(0, 500)}`);
      }
      const out: Publication[] = [];
      for (const x of markers) {
        const commit = (await git.must(["log", "-1", "--format=%H", "HEAD", "--", x.rel])).trim();
        out.push({ rel: x.rel, caller: x.m.caller, commit, marker: x.file });
      }
      return out;
    } catch (e) {
      lastErr = e as Error;
      log(SERVICE, `publish attempt ${attempt}/${cfg.pushAttempts} failed: ${lastErr.message}`);
    }
  }
  throw lastErr ?? new Error("publish failed");
}

async function main(): Promise<number> {
  const caller = process.env.QREXEC_REMOTE_DOMAIN ?? "";
  if (!isVmName(caller)) {
    log(SERVICE, "refused: unknown or invalid caller (QREXEC_REMOTE_DOMAIN)");
    return EXIT.REFUSED;
  }
  const cfg = loadConfig("build-log", BuildLogConfig);
  const state = stateDir(path.join(homeDir(), ".local/state/qubes-build-infra/build-log"));
  const pendingDir = path.join(state, "pending");
  fs.mkdirSync(pendingDir, { recursive: true, mode: 0o700 });
  const journal = path.join(state, "published.jsonl");
  if (!fs.existsSync(path.join(cfg.repoDir, ".git"))) throw new ConfigError(`${cfg.repoDir} is not a git working copy`);

  const sub = (process.env.QREXEC_SERVICE_ARGUMENT ?? "").replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64);
  const start = new Date();
  const day = `${start.getUTCFullYear()}-${pad(start.getUTCMonth() + 1)}-${pad(start.getUTCDate())}`;
  const relDir = path.posix.join(caller, ...(sub ? [sub] : []), day);
  fs.mkdirSync(path.join(cfg.repoDir, relDir), { recursive: true, mode: 0o755 });
  const base = `log_${pad(start.getUTCHours())}-${pad(start.getUTCMinutes())}-${pad(start.getUTCSeconds())}`;
  const { file, fd } = reserve(path.join(cfg.repoDir, relDir, base));
  const rel = path.posix.join(relDir, path.basename(file));

  const marker = markerFile(pendingDir, rel);
  const m: PendingMarker = { rel, caller, pid: process.pid, state: "open", started: start.toISOString() };
  writeFileAtomic(marker, JSON.stringify(m));

  process.stdout.on("error", () => undefined); // the caller may have gone away
  process.stdout.write(`${rel}\n`);

  const ended = await receive(fd, caller, cfg);
  fs.closeSync(fd);
  if (ended !== "end of stream") log(SERVICE, `${rel}: ${ended}; publishing what was received`);
  await finishFile(file, cfg.xzThresholdBytes);
  writeFileAtomic(marker, JSON.stringify({ ...m, state: "closed" }));

  const release = await acquireLock(path.join(state, "publish.lock"), cfg.lockTimeoutMs);
  let ownDone = false;
  try {
    const pubs = await publishPending(cfg, pendingDir, journal);
    for (const p of pubs) {
      const ack = await qrexecCall("dom0", "qubesbuilder.LogReceived", p.caller, `${p.commit} ${p.rel}\n`).catch(
        (e: Error): CallResult => ({ code: 127, stdout: "", stderr: e.message }),
      );
      if (ack.code !== 0) {
        log(SERVICE, `LogReceived for ${p.rel} failed (${ack.code}): ${ack.stderr.trim().slice(0, 200)}; will retry next time`);
        continue;
      }
      fs.appendFileSync(journal, `${JSON.stringify({ time: new Date().toISOString(), rel: p.rel, caller: p.caller, commit: p.commit })}\n`);
      fs.rmSync(p.marker, { force: true });
      if (p.marker === marker) ownDone = true;
    }
  } catch (e) {
    log(SERVICE, `${rel}: not published yet (${(e as Error).message}); kept with a pending marker`);
  } finally {
    release();
  }
  // Another concurrent call may have published and acknowledged our log already.
  if (!fs.existsSync(marker)) ownDone = true;
  return ownDone ? EXIT.OK : EXIT.FAILED;
}

if (require.main === module) runMain(SERVICE, main);
