/**
 * qubesbuilder.BuildLog (logs VM): stores a build VM's log stream and publishes it: a signed
 * commit in the logs git repository and a `build-log` entry in the logs VM's transparency log
 * (services/lib/publisher.ts). While the stream is open, signature requests of that build VM
 * commit to the log as it stands (qubesbuilder.LogDigest), so builderv2 can sign inside its
 * session. See services/README.md.
 */
import { spawn } from "child_process";
import { createHash, Hash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { homeDir, loadConfig, stateDir } from "./lib/config";
import { acquireLock, pidAlive, writeFileAtomic } from "./lib/files";
import { log } from "./lib/log";
import { runMain } from "./lib/main";
import { isDomUName } from "./lib/names";
import { ConfigError, EXIT } from "./lib/outcome";
import { LogsState, LogsVmConfig, PendingMarker, Publisher } from "./lib/publisher";

const SERVICE = "qubesbuilder.BuildLog";

export const BuildLogConfig = LogsVmConfig;
export type BuildLogConfig = LogsVmConfig;

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

/** What a stream wrote: its content hash and size, and why it ended early ("" for a normal end). */
interface Received {
  ended: string;
  contentSha256: string;
  contentSize: number;
}

/** Formatted output is written out once this much has accumulated within one read. */
const OUT_FLUSH_BYTES = 64 * 1024;

/**
 * Streams stdin into the log file. Memory is bounded (one line buffer of `maxLineBytes`, one
 * read of stdin, at most OUT_FLUSH_BYTES plus one line of formatted output); the
 * content beyond `maxLogBytes` is dropped after one marker line (the stream is still drained, so
 * the builder never blocks); no data for `idleTimeoutSeconds` ends the stream.
 */
async function receive(fd: number, caller: string, cfg: BuildLogConfig): Promise<Received> {
  const max = cfg.maxLineBytes;
  const cur = Buffer.alloc(max);
  let curLen = 0;
  let splitJustNow = false;
  let dirty = false;
  let lastSync = Date.now();
  let written = 0;
  let truncated = false;
  const hash: Hash = createHash("sha256");
  const sync = () => {
    if (dirty) {
      fs.fdatasyncSync(fd);
      dirty = false;
    }
    lastSync = Date.now();
  };
  const put = (b: Buffer) => {
    let off = 0;
    while (off < b.length) off += fs.writeSync(fd, b, off);
    hash.update(b);
    written += b.length;
    dirty = true;
  };
  const write = (s: string) => {
    if (truncated) return;
    const b = Buffer.from(s, "latin1");
    if (written + b.length > cfg.maxLogBytes) {
      truncated = true;
      put(Buffer.from(`${stamp()} > log truncated: more than ${cfg.maxLogBytes} bytes, the rest of the stream was dropped\n`, "latin1"));
      return;
    }
    put(b);
  };
  const timer = setInterval(sync, Math.max(cfg.fsyncIntervalMs, 10));
  timer.unref();

  put(Buffer.from(`${stamp()} > starting log\n`, "latin1"));
  sync();

  let ended = "";
  const stop = (why: string) => {
    if (!ended) ended = why;
    process.stdin.destroy();
  };
  for (const sig of ["SIGTERM", "SIGHUP", "SIGINT"] as const) process.on(sig, () => stop(`interrupted by ${sig}`));
  const idle = setTimeout(() => stop(`idle for ${cfg.idleTimeoutSeconds}s`), cfg.idleTimeoutSeconds * 1000);

  try {
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
      idle.refresh();
      if (truncated) continue;
      let out = "";
      const emit = (len: number) => {
        out += `${stamp()} ${caller}: ${sanitize(cur.subarray(0, len))}\n`;
        // Short lines grow many-fold once stamped (an empty line becomes ~45 bytes): the formatted
        // text is written out in pieces instead of being held for the whole read.
        if (out.length >= OUT_FLUSH_BYTES) {
          write(out);
          out = "";
        }
      };
      let pos = 0;
      while (pos < chunk.length && !truncated) {
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
            emit(curLen);
            curLen = 0;
            splitJustNow = true;
          }
        }
        if (nl === -1) break;
        if (!(splitJustNow && curLen === 0)) emit(curLen);
        curLen = 0;
        splitJustNow = false;
        pos = nl + 1;
      }
      if (out) write(out);
      if (Date.now() - lastSync >= cfg.fsyncIntervalMs) sync();
    }
  } catch (e) {
    if (!ended) ended = `stream error: ${(e as Error).message}`;
  }
  clearTimeout(idle);
  if (curLen > 0) write(`${stamp()} ${caller}: ${sanitize(cur.subarray(0, curLen))}\n`);
  put(Buffer.from(`${stamp()} > closing log${ended ? ` (${ended})` : ""}\n`, "latin1"));
  clearInterval(timer);
  sync();
  const why = [ended, truncated ? `truncated at ${cfg.maxLogBytes} bytes` : ""].filter(Boolean).join("; ");
  return { ended: why, contentSha256: hash.digest("hex"), contentSize: written };
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

/** Live streams of `caller` (their markers are open and their process runs). */
function liveStreams(st: LogsState, caller: string): number {
  let n = 0;
  for (const name of fs.readdirSync(st.pending).filter((x) => x.endsWith(".json"))) {
    try {
      const m = PendingMarker.parse(JSON.parse(fs.readFileSync(path.join(st.pending, name), "utf8")));
      if (m.caller === caller && m.state === "open" && pidAlive(m.pid)) n++;
    } catch {
      /* unreadable marker: the publisher journals it */
    }
  }
  return n;
}

async function main(): Promise<number> {
  const caller = process.env.QREXEC_REMOTE_DOMAIN ?? "";
  if (!isDomUName(caller)) {
    log(SERVICE, "refused: unknown or invalid caller (QREXEC_REMOTE_DOMAIN)");
    return EXIT.REFUSED;
  }
  const cfg = loadConfig("build-log", BuildLogConfig);
  if (!cfg.buildVms[caller]) {
    log(SERVICE, `refused: ${caller} is not a build VM served by this logs VM`);
    return EXIT.REFUSED;
  }
  const st = new LogsState(stateDir(path.join(homeDir(), ".local/state/qubes-build-infra/build-log")), cfg);
  if (!fs.existsSync(path.join(cfg.repoDir, ".git"))) throw new ConfigError(`${cfg.repoDir} is not a git working copy`);
  if (liveStreams(st, caller) >= cfg.maxStreamsPerVm) {
    log(SERVICE, `refused: ${caller} already has ${cfg.maxStreamsPerVm} open log streams (maxStreamsPerVm)`);
    return EXIT.REFUSED;
  }

  const sub = (process.env.QREXEC_SERVICE_ARGUMENT ?? "").replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64);
  const start = new Date();
  const day = `${start.getUTCFullYear()}-${pad(start.getUTCMonth() + 1)}-${pad(start.getUTCDate())}`;
  const relDir = path.posix.join(caller, ...(sub ? [sub] : []), day);
  fs.mkdirSync(path.join(cfg.repoDir, relDir), { recursive: true, mode: 0o755 });
  const base = `log_${pad(start.getUTCHours())}-${pad(start.getUTCMinutes())}-${pad(start.getUTCSeconds())}`;
  const { file, fd } = reserve(path.join(cfg.repoDir, relDir, base));
  const rel = path.posix.join(relDir, path.basename(file));

  const marker = st.markerFile(rel);
  const m: PendingMarker = { rel, caller, pid: process.pid, state: "open", started: start.toISOString() };
  writeFileAtomic(marker, JSON.stringify(m));

  process.stdout.on("error", () => undefined); // the caller may have gone away
  process.stdout.write(`${rel}\n`);

  const got = await receive(fd, caller, cfg);
  fs.closeSync(fd);
  if (got.ended) log(SERVICE, `${rel}: ${got.ended}; publishing what was received`);
  await finishFile(file, cfg.xzThresholdBytes);
  writeFileAtomic(marker, JSON.stringify({
    ...m, state: "closed", contentSha256: got.contentSha256, contentSize: got.contentSize, ...(got.ended ? { ended: got.ended } : {}),
  }));

  const release = await acquireLock(st.lock, cfg.lockTimeoutMs);
  try {
    // A concurrent pass may have published this log while we waited for the lock (group
    // commit): then there is nothing of ours left, and an empty pass would only delay the
    // streams queued behind us. Whatever else waits is published by the next caller's pass.
    if (fs.existsSync(marker)) {
      const publisher = new Publisher(cfg, st, SERVICE);
      await publisher.pass();
      publisher.pruneResults();
    }
  } catch (e) {
    log(SERVICE, `${rel}: not published yet (${(e as Error).message}); kept with a pending marker`);
  } finally {
    release();
  }
  // Published by this pass or by a concurrent one.
  return fs.existsSync(marker) ? EXIT.FAILED : EXIT.OK;
}

if (require.main === module) runMain(SERVICE, main);
