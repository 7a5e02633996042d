/**
 * BuildLog ingest: throughput (MB/s and lines/s of what the build side sends) and the latency
 * from a line written by the build side to that line on disk, for 1 and 8 concurrent builds,
 * against the floor of `cat` into a file on the same disk.
 *
 * The bundled `dist/services/build-log.js` runs as a subprocess with the qrexec environment it
 * expects (QREXEC_REMOTE_DOMAIN, QBI_CONFIG, QBI_STATE_DIR), a throwaway gpg key, a file:// bare
 * remote, the real qbi-tlog and a fake `qrexec-client-vm` (exit 0) so that its end-of-stream signed
 * commit, push and transparency log entry all work.
 *
 * "Durable" is observed, not assumed: the service runs with `node -r <probe>`, a preload that
 * wraps `fs.fdatasyncSync` and records (monotonic time, file size) after each call returns. A
 * line is durable at the first sync whose size covers its end. "Visible" (the line readable in
 * the file, before any fsync) is measured for both the service and `cat` the same way: the
 * driver polls the file size every millisecond; that is the like-for-like comparison with the
 * floor (`cat` never syncs).
 *
 * Under attack: 50 slow streams at once from 10 build VMs, the summed memory of their BuildLog
 * processes sampled from /proc against a bound derived from the stream's buffers; and 8 normal
 * streams with and without one log of 3 x maxLogBytes, how long until each is published.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { buildServices } from "../services/build";
import { fakeQrexec, makeKey, sh } from "../test/services/helpers";
import { tlogProgram } from "../test/services/signSite";
import { Distribution, distribution, now, ratio, roundSummary, secondsSince, sig, summary, Summary, table } from "./stats";

export interface LogsOptions {
  quick: boolean;
  workRoot: string;
  log: (line: string) => void;
  /** Which parts to run (default: all). */
  parts?: LogsPart[];
}
export type LogsPart = "ingest" | "memory" | "oversized";

const LINE_BYTES = 100; // one build log line on the build side, newline included

/** `n` printable lines of LINE_BYTES bytes each. */
function lines(n: number, tag: string): Buffer {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const head = `${tag} ${i} `;
    out.push(`${head}${"x".repeat(LINE_BYTES - 1 - head.length)}\n`);
  }
  return Buffer.from(out.join(""), "latin1");
}

const PROBE = `// bench: records (monotonic ns, file size) after every fdatasync of the service
const fs = require("fs");
const out = process.env.QBI_BENCH_SYNC_LOG;
const orig = fs.fdatasyncSync;
fs.fdatasyncSync = function (fd) {
  const r = orig.apply(fs, arguments);
  try { fs.appendFileSync(out, process.hrtime.bigint() + " " + fs.fstatSync(fd).size + "\\n"); } catch (e) { /* ignore */ }
  return r;
};
`;

interface Env {
  root: string;
  js: string;
  probe: string;
  gnupg: string;
  fpr: string;
  fakeBin: string;
}

async function setup(workRoot: string): Promise<Env> {
  const root = fs.mkdtempSync(path.join(workRoot, "logs-"));
  const dist = path.join(root, "dist");
  await buildServices(dist);
  const gnupg = path.join(root, "gnupg");
  const fpr = makeKey(gnupg, "Bench logs key <logs@example.org>");
  const probe = path.join(root, "sync-probe.js");
  fs.writeFileSync(probe, PROBE);
  const fake = fakeQrexec(path.join(root, "qrexec"));
  return { root, js: path.join(dist, "build-log.js"), probe, gnupg, fpr, fakeBin: fake.bin };
}

interface Repo {
  dir: string;
  repoDir: string;
  config: string;
  state: string;
}

let repoCount = 0;
/**
 * A bare remote with a signed first commit, the logs working copy, the service config
 * (`overrides` replace the bench's defaults below).
 */
function newRepo(env: Env, overrides: Record<string, unknown> = {}): Repo {
  const dir = path.join(env.root, `repo${repoCount++}`);
  fs.mkdirSync(dir);
  const remote = path.join(dir, "remote.git");
  const gitId = ["-c", "user.name=Bench", "-c", "user.email=bench@example.org"];
  sh("git", ["init", "-q", "--bare", "-b", "main", remote]);
  const seed = path.join(dir, "seed");
  sh("git", ["clone", "-q", `file://${remote}`, seed]);
  sh("git", [...gitId, "-C", seed, "commit", "-q", "--allow-empty", `-S${env.fpr}`, "-m", "init"], { env: { GNUPGHOME: env.gnupg } });
  sh("git", ["-C", seed, "push", "-q", "origin", "HEAD:refs/heads/main"]);
  const repoDir = path.join(dir, "QubesIncomingBuildLog");
  sh("git", ["clone", "-q", "-b", "main", `file://${remote}`, repoDir]);
  const config = path.join(dir, "build-log.json");
  const tlogKey = path.join(dir, "tlog.key");
  sh(tlogProgram(), ["keygen", "--origin", "bench.example.org/logs", "--private-out", tlogKey]);
  // Every caller the cases use is a served build VM.
  const buildVms = Object.fromEntries(
    ["b", "l", "m"].flatMap((p) => Array.from({ length: 16 }, (_v, i) => [`build-${p}${i}`, { env: `${p}${i}`, keysVm: `keys-${p}${i}` }])),
  );
  // Defaults (fsync every 200 ms, 64 KiB lines) except: no xz (a separate, one-off cost at the
  // end, not ingest), no size cut, and a short push backoff.
  fs.writeFileSync(
    config,
    JSON.stringify({
      repoDir, remote: `file://${remote}`, branch: "main", signingKey: env.fpr, gnupgHome: env.gnupg, xzThresholdBytes: 1 << 30, maxLogBytes: 1 << 30,
      pushBackoffMs: 100, buildVms, tlog: { program: tlogProgram(), privateKey: tlogKey, repoSubdir: "tlog/logs" }, ...overrides,
    }),
  );
  return { dir, repoDir, config, state: path.join(dir, "state") };
}

/** One stream into a sink: the service (with the sync probe) or `cat > file`. */
interface Sink {
  stdin: NodeJS.WritableStream;
  /** Resolves with the path of the file being written (the service prints it on stdout). */
  file: Promise<string>;
  /** Resolves when the sink is done (service exited / cat exited and the file was fdatasync'd). */
  done: Promise<{ code: number | null; stderr: string }>;
  /** Durable (time ns, size) events: from the probe for the service; none for cat. */
  syncs: () => { t: bigint; size: number }[];
  /** Lines the sink puts before the first input line (the service's "starting log"). */
  headerLines: number;
  /** The process that holds the stream (one per qrexec call in the logs VM). */
  pid: number;
}

function exitOf(child: ChildProcess, after?: () => void): Promise<{ code: number | null; stderr: string }> {
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    if (stderr.length < 4000) stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      after?.();
      resolve({ code, stderr });
    });
  });
}

function serviceSink(env: Env, repo: Repo, caller: string, idx: number): Sink {
  const syncLog = path.join(repo.dir, `syncs-${caller}-${idx}.txt`);
  fs.writeFileSync(syncLog, "");
  const child = spawn(process.execPath, ["-r", env.probe, env.js], {
    env: {
      PATH: `${env.fakeBin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
      HOME: repo.dir,
      QBI_CONFIG: repo.config,
      QBI_STATE_DIR: repo.state,
      QBI_BENCH_SYNC_LOG: syncLog,
      QREXEC_REMOTE_DOMAIN: caller,
      QREXEC_SERVICE_ARGUMENT: "",
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const file = new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf("\n");
      if (nl !== -1) resolve(path.join(repo.repoDir, out.slice(0, nl)));
    });
    child.on("close", () => reject(new Error("build-log exited before naming its file")));
  });
  file.catch(() => undefined);
  return {
    stdin: child.stdin as NodeJS.WritableStream,
    file,
    done: exitOf(child),
    headerLines: 1,
    pid: child.pid ?? -1,
    syncs: () =>
      fs
        .readFileSync(syncLog, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => {
          const [t, s] = l.split(" ");
          return { t: BigInt(t), size: Number(s) };
        }),
  };
}

function catSink(dir: string, idx: number): Sink {
  const file = path.join(dir, `cat-${idx}-${Date.now()}.log`);
  const fd = fs.openSync(file, "w", 0o644);
  const child = spawn("cat", [], { stdio: ["pipe", fd, "pipe"] });
  let synced: { t: bigint; size: number } | null = null;
  const done = exitOf(child, () => {
    fs.fdatasyncSync(fd);
    synced = { t: now(), size: fs.fstatSync(fd).size };
    fs.closeSync(fd);
  });
  return {
    stdin: child.stdin as NodeJS.WritableStream, file: Promise.resolve(file), done, headerLines: 0, syncs: () => (synced ? [synced] : []), pid: child.pid ?? -1,
  };
}

function write(stream: NodeJS.WritableStream, buf: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (stream.write(buf)) resolve();
    else stream.once("drain", resolve);
  });
}

/** Byte offsets just past each line of a file (line i ends at ends[i]). */
function lineEnds(file: string): number[] {
  const b = fs.readFileSync(file);
  const ends: number[] = [];
  let p = 0;
  for (;;) {
    const nl = b.indexOf(0x0a, p);
    if (nl === -1) break;
    ends.push(nl + 1);
    p = nl + 1;
  }
  return ends;
}

interface ThroughputRun {
  seconds: number;
  bytes: number;
  lines: number;
  /** Service only: until every sink exited (signed commit, push, acknowledgement included). */
  secondsToExit: number;
}

/** `builds` concurrent streams of `perBuild` bytes each, as fast as the sink takes them. */
async function throughputOnce(mk: (i: number) => Sink, builds: number, chunk: Buffer, chunksPerBuild: number): Promise<ThroughputRun> {
  const sinks = Array.from({ length: builds }, (_, i) => mk(i));
  await Promise.all(sinks.map((s) => s.file));
  const t0 = now();
  await Promise.all(
    sinks.map(async (s) => {
      for (let c = 0; c < chunksPerBuild; c++) await write(s.stdin, chunk);
      s.stdin.end();
    }),
  );
  const results = await Promise.all(sinks.map((s) => s.done));
  const exitSeconds = secondsSince(t0);
  for (const r of results) if (r.code !== 0) throw new Error(`sink failed (${r.code}): ${r.stderr.slice(0, 500)}`);
  // Ingest ends when each stream's content is durable: the last sync of its log (after "closing log").
  let last = t0;
  for (const s of sinks) {
    const syncs = s.syncs();
    if (syncs.length === 0) throw new Error("no fdatasync observed");
    const t = syncs[syncs.length - 1].t;
    if (t > last) last = t;
  }
  const bytes = builds * chunksPerBuild * chunk.length;
  return { seconds: Number(last - t0) / 1e9, bytes, lines: bytes / LINE_BYTES, secondsToExit: exitSeconds };
}

interface LatencyRun {
  visibleMs: number[];
  durableMs: number[];
}

/** `builds` streams, each writing `count` lines, one every `intervalMs`; per-line latencies. */
async function latencyOnce(mk: (i: number) => Sink, builds: number, count: number, intervalMs: number): Promise<LatencyRun> {
  const sinks = Array.from({ length: builds }, (_, i) => mk(i));
  const files = await Promise.all(sinks.map((s) => s.file));
  const seen: { t: bigint; size: number }[][] = sinks.map(() => []);
  const writeTimes: bigint[][] = sinks.map(() => []);
  let polling = true;
  const poller = (async () => {
    const last = files.map(() => -1);
    while (polling) {
      for (let i = 0; i < files.length; i++) {
        let size = -1;
        try {
          size = fs.statSync(files[i]).size;
        } catch {
          /* not there yet */
        }
        if (size !== last[i]) {
          seen[i].push({ t: now(), size });
          last[i] = size;
        }
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  })();
  const payload = sinks.map((_, i) => {
    const b = lines(count, `build${i}`);
    return Array.from({ length: count }, (__, k) => b.subarray(k * LINE_BYTES, (k + 1) * LINE_BYTES));
  });
  await Promise.all(
    sinks.map(async (s, i) => {
      // Staggered start so that the builds do not all write in the same millisecond.
      await new Promise((r) => setTimeout(r, (intervalMs * i) / builds));
      const start = now();
      for (let k = 0; k < count; k++) {
        const due = start + BigInt(Math.round(k * intervalMs * 1e6));
        const wait = Number(due - now()) / 1e6;
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        writeTimes[i].push(now());
        await write(s.stdin, payload[i][k]);
      }
    }),
  );
  // Let the last lines land before the streams close (closing forces a final sync).
  await new Promise((r) => setTimeout(r, 400));
  polling = false;
  await poller;
  for (const s of sinks) s.stdin.end();
  const results = await Promise.all(sinks.map((s) => s.done));
  for (const r of results) if (r.code !== 0) throw new Error(`sink failed (${r.code}): ${r.stderr.slice(0, 500)}`);
  const visibleMs: number[] = [];
  const durableMs: number[] = [];
  sinks.forEach((s, i) => {
    const ends = lineEnds(files[i]);
    const syncs = s.syncs();
    for (let k = 0; k < count; k++) {
      const end = ends[k + s.headerLines];
      if (end === undefined) throw new Error(`line ${k} missing from ${files[i]}`);
      const v = seen[i].find((e) => e.size >= end);
      if (v) visibleMs.push(Number(v.t - writeTimes[i][k]) / 1e6);
      const d = syncs.find((e) => e.size >= end);
      if (d) durableMs.push(Number(d.t - writeTimes[i][k]) / 1e6);
    }
  });
  return { visibleMs, durableMs };
}

/** Memory of one process from /proc, in KiB; null once it is gone (or a zombie). */
interface ProcMem {
  rss: number;
  hwm: number;
  anon: number;
  pss: number;
}
function procMem(pid: number): ProcMem | null {
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const rss = field(status, "VmRSS");
    if (Number.isNaN(rss)) return null;
    let pss = NaN;
    try {
      pss = field(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"), "Pss");
    } catch {
      /* no smaps_rollup: PSS not reported */
    }
    return { rss, hwm: field(status, "VmHWM"), anon: field(status, "RssAnon"), pss };
  } catch {
    return null;
  }
}

/** Samples the memory of `pids` every `everyMs` until stopped: peak sums and each process's VmHWM. */
function memorySampler(pids: number[], everyMs: number) {
  const hwm = new Map<number, number>();
  const peak = { rss: 0, pss: 0, anon: 0 };
  let samples = 0;
  let running = true;
  const sampleOnce = () => {
    const sum = { rss: 0, pss: 0, anon: 0 };
    for (const pid of pids) {
      const m = procMem(pid);
      if (!m) continue;
      hwm.set(pid, Math.max(hwm.get(pid) ?? 0, m.hwm));
      sum.rss += m.rss;
      sum.pss += m.pss;
      sum.anon += m.anon;
    }
    peak.rss = Math.max(peak.rss, sum.rss);
    peak.pss = Math.max(peak.pss, sum.pss);
    peak.anon = Math.max(peak.anon, sum.anon);
    samples++;
  };
  const loop = (async () => {
    while (running) {
      sampleOnce();
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { peak, hwm, samples };
    },
  };
}

/** Published logs (event "published": committed, pushed, and its transparency log entry pushed). */
function publishedRels(repo: Repo): Set<string> {
  const journal = path.join(repo.state, "published.jsonl");
  const rels = new Set<string>();
  if (!fs.existsSync(journal)) return rels;
  for (const l of fs.readFileSync(journal, "utf8").split("\n").filter(Boolean)) {
    const e = JSON.parse(l) as { event?: string; rel?: string };
    if (e.event === "published" && e.rel) rels.add(e.rel);
  }
  return rels;
}

const KiB = 1024;
const MiB = 1024 * 1024;

interface MemoryRun {
  streams: number;
  vms: number;
  seconds: number;
  bytesPerStream: number;
  /** KiB per process: VmRSS once its stream is open and before any data; its VmHWM over its life. */
  openRss: number[];
  hwm: number[];
  /** KiB: the largest sum over the processes of one sample. */
  peakSumRss: number;
  peakSumPss: number;
  peakSumAnon: number;
  samples: number;
  /** From closing the streams until the last process exited (every log published). */
  publishSeconds: number;
}

/**
 * `streams` BuildLog streams open at once, spread over `vms` build VMs, each trickling one
 * LINE_BYTES line every `intervalMs` and, every `longEvery` lines, one line of `longBytes` (longer
 * than maxLineBytes, so the line buffer fills and is split), for `seconds`. The memory of every
 * BuildLog process is sampled from /proc throughout, publication included.
 */
interface MemoryOptions {
  streams: number;
  vms: number;
  seconds: number;
  intervalMs: number;
  longEvery: number;
  longBytes: number;
}
async function memoryOnce(env: Env, repo: Repo, o: MemoryOptions): Promise<MemoryRun> {
  const sinks = Array.from({ length: o.streams }, (_, i) => serviceSink(env, repo, `build-m${i % o.vms}`, i));
  const files = await Promise.all(sinks.map((s) => s.file));
  if (new Set(files).size !== o.streams) throw new Error("two streams were given the same log file");
  const openRss = sinks.map((s) => procMem(s.pid)?.rss ?? NaN);
  const sampler = memorySampler(sinks.map((s) => s.pid), 200);
  const line = lines(1, "trickle");
  const long = Buffer.concat([Buffer.alloc(o.longBytes - 1, "y"), Buffer.from("\n")]);
  const count = Math.floor((o.seconds * 1000) / o.intervalMs);
  let bytesPerStream = 0;
  await Promise.all(
    sinks.map(async (s, i) => {
      await new Promise((r) => setTimeout(r, (o.intervalMs * i) / o.streams));
      const start = now();
      let bytes = 0;
      for (let k = 0; k < count; k++) {
        const wait = Number(start + BigInt(Math.round(k * o.intervalMs * 1e6)) - now()) / 1e6;
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const b = k % o.longEvery === o.longEvery - 1 ? long : line;
        await write(s.stdin, b);
        bytes += b.length;
      }
      bytesPerStream = bytes;
    }),
  );
  const t0 = now();
  for (const s of sinks) s.stdin.end();
  const results = await Promise.all(sinks.map((s) => s.done));
  const publishSeconds = secondsSince(t0);
  const mem = await sampler.stop();
  for (const r of results) if (r.code !== 0) throw new Error(`build-log failed (${r.code}): ${r.stderr.slice(0, 500)}`);
  const rels = publishedRels(repo);
  const missing = files.map((f) => path.relative(repo.repoDir, f)).filter((r) => !rels.has(r));
  if (missing.length > 0) throw new Error(`${missing.length} of ${o.streams} logs not in the publication journal, e.g. ${missing[0]}`);
  return {
    streams: o.streams, vms: o.vms, seconds: o.seconds, bytesPerStream, openRss, hwm: sinks.map((s) => mem.hwm.get(s.pid) ?? NaN),
    peakSumRss: mem.peak.rss, peakSumPss: mem.peak.pss, peakSumAnon: mem.peak.anon, samples: mem.samples, publishSeconds,
  };
}

/**
 * What one BuildLog process holds for its stream beyond its baseline, from services/build-log.ts
 * `receive()`: the line buffer (maxLineBytes); stdin's unread data (its highWaterMark, 64 KiB, plus
 * one pipe read of at most 64 KiB); the stamped text not yet written (under 64 KiB plus one line
 * of at most maxLineBytes + stamp and caller), held twice (the string and its Buffer copy).
 */
function streamBufferBound(maxLineBytes: number, callerLength: number): number {
  const read = 64 * KiB;
  const line = maxLineBytes + 36 + callerLength;
  return maxLineBytes + 2 * read + 2 * (64 * KiB + line);
}

/**
 * The stream's garbage lives in V8's young generation, which grows under allocation pressure up to
 * two semi-spaces of 16 MiB (Node 22's default on 64-bit), whatever the data.
 */
const YOUNG_GENERATION_BYTES = 32 * MiB;

/** One publication: each stream's time from its end (the builder closed it) to its process's exit 0. */
interface PublishRun {
  normalSeconds: number[];
  oversizedSeconds: number | null;
  oversizedRel: string | null;
}

/**
 * `normals` streams of `chunksPerBuild` chunks, plus (if `oversizedChunks`) one stream of that
 * many chunks, all written as fast as the service takes them and started together.
 */
async function publishOnce(env: Env, repo: Repo, normals: number, chunk: Buffer, chunksPerBuild: number, oversizedChunks: number | null): Promise<PublishRun> {
  const n = normals + (oversizedChunks ? 1 : 0);
  const sinks = Array.from({ length: n }, (_, i) => serviceSink(env, repo, `build-b${i}`, i));
  const files = await Promise.all(sinks.map((s) => s.file));
  const seconds = await Promise.all(
    sinks.map(async (s, i) => {
      const chunks = i < normals ? chunksPerBuild : (oversizedChunks ?? 0);
      for (let c = 0; c < chunks; c++) await write(s.stdin, chunk);
      s.stdin.end();
      const t = now();
      const r = await s.done;
      if (r.code !== 0) throw new Error(`build-log failed (${r.code}): ${r.stderr.slice(0, 500)}`);
      return secondsSince(t);
    }),
  );
  return {
    normalSeconds: seconds.slice(0, normals),
    oversizedSeconds: oversizedChunks ? seconds[normals] : null,
    oversizedRel: oversizedChunks ? path.relative(repo.repoDir, files[normals]) : null,
  };
}

/** The oversized log as the remote has it: published, cut near maxLogBytes, ending with the marker line. */
function checkTruncated(repo: Repo, rel: string, maxLogBytes: number): { bytes: number; marker: string } {
  if (!publishedRels(repo).has(rel)) throw new Error(`${rel} is not in the publication journal`);
  const remote = path.join(repo.dir, "remote.git");
  const text = sh("git", ["-C", remote, "show", `main:${rel}`]);
  const tail = text.split("\n").filter(Boolean).slice(-2);
  const marker = tail[0] ?? "";
  if (!/ > log truncated: more than \d+ bytes/.test(marker) || !/ > closing log/.test(tail[1] ?? "")) {
    throw new Error(`${rel} does not end with the truncation marker and the closing line: ${JSON.stringify(tail)}`);
  }
  const bytes = Buffer.byteLength(text, "latin1");
  if (bytes > maxLogBytes + 4 * KiB) throw new Error(`${rel} has ${bytes} bytes, more than maxLogBytes ${maxLogBytes}`);
  return { bytes, marker: marker.replace(/^\S+ \S+ \S+ /, "") };
}

export interface ThroughputFigures {
  mb_per_s: Summary;
  lines_per_s: Summary;
}

export async function benchLogs(opts: LogsOptions): Promise<Record<string, unknown>> {
  const { quick, log } = opts;
  const env = await setup(opts.workRoot);
  const catDir = path.join(env.root, "cat");
  fs.mkdirSync(catDir);
  const reps = quick ? 2 : 3;
  const mbPerBuild = quick ? 4 : 16;
  const chunk = lines(10000, "line"); // 1,000,000 bytes
  const chunksPerBuild = Math.round((mbPerBuild * 1e6) / chunk.length);
  const latCount = quick ? 100 : 300;
  const latIntervalMs = 10; // 100 lines/s per build
  const out: Record<string, unknown> = {
    line_bytes: LINE_BYTES,
    mb_per_build: mbPerBuild,
    repetitions: reps,
    latency_lines_per_build: latCount,
    latency_rate_lines_per_s_per_build: 1000 / latIntervalMs,
    service_config: "defaults (fsyncIntervalMs 200, maxLineBytes 64 KiB) with xz off (xzThresholdBytes 1 GiB)",
  };
  const parts = opts.parts ?? ["ingest", "memory", "oversized"];
  const rows: (string | number)[][] = [["logs", "builds", "min", "median", "max", "unit", "vs cat"]];
  for (const builds of parts.includes("ingest") ? [1, 8] : []) {
    const svc: ThroughputRun[] = [];
    const cat: ThroughputRun[] = [];
    for (let r = 0; r < reps; r++) {
      // Alternate service and floor so that background noise hits both alike.
      const repo = newRepo(env);
      svc.push(await throughputOnce((i) => serviceSink(env, repo, `build-b${i}`, r), builds, chunk, chunksPerBuild));
      cat.push(await throughputOnce((i) => catSink(catDir, i), builds, chunk, chunksPerBuild));
      for (const f of fs.readdirSync(catDir)) fs.rmSync(path.join(catDir, f));
      fs.rmSync(repo.dir, { recursive: true, force: true });
    }
    const mbps = (xs: ThroughputRun[]) => summary(xs.map((x) => x.bytes / 1e6 / x.seconds));
    const lps = (xs: ThroughputRun[]) => summary(xs.map((x) => x.lines / x.seconds));
    const s = { mb_per_s: roundSummary(mbps(svc)), lines_per_s: roundSummary(lps(svc)), seconds_to_exit_incl_commit_push: roundSummary(summary(svc.map((x) => x.secondsToExit))) };
    const c = { mb_per_s: roundSummary(mbps(cat)), lines_per_s: roundSummary(lps(cat)) };
    const ratioTp = sig(ratio(mbps(svc), mbps(cat)));
    rows.push([`ingest throughput`, builds, s.mb_per_s.min, s.mb_per_s.median, s.mb_per_s.max, "MB/s", ratioTp]);
    rows.push([`ingest throughput`, builds, s.lines_per_s.min, s.lines_per_s.median, s.lines_per_s.max, "lines/s", ""]);
    rows.push([`cat (floor)`, builds, c.mb_per_s.min, c.mb_per_s.median, c.mb_per_s.max, "MB/s", 1]);
    rows.push([`stream end to exit (commit+push)`, builds, s.seconds_to_exit_incl_commit_push.min, s.seconds_to_exit_incl_commit_push.median, s.seconds_to_exit_incl_commit_push.max, "s", ""]);
    log(`  logs throughput, ${builds} build(s): ${s.mb_per_s.median} MB/s vs cat ${c.mb_per_s.median} MB/s`);

    const lat = { svcVisible: [] as number[], svcDurable: [] as number[], catVisible: [] as number[] };
    const latReps = quick ? 1 : 2;
    for (let r = 0; r < latReps; r++) {
      const repo = newRepo(env);
      const a = await latencyOnce((i) => serviceSink(env, repo, `build-l${i}`, r), builds, latCount, latIntervalMs);
      const b = await latencyOnce((i) => catSink(catDir, i), builds, latCount, latIntervalMs);
      lat.svcVisible.push(...a.visibleMs);
      lat.svcDurable.push(...a.durableMs);
      lat.catVisible.push(...b.visibleMs);
      for (const f of fs.readdirSync(catDir)) fs.rmSync(path.join(catDir, f));
      fs.rmSync(repo.dir, { recursive: true, force: true });
    }
    const dv = roundSummary(distribution(lat.svcVisible));
    const dd = roundSummary(distribution(lat.svcDurable));
    const dc = roundSummary(distribution(lat.catVisible));
    const latRow = (name: string, d: Distribution, vs: string | number) => rows.push([name, builds, d.min, `${d.p50} (p99 ${d.p99})`, d.max, "ms", vs]);
    // No floor for this row: cat never syncs; the service syncs every fsyncIntervalMs (200 ms).
    latRow("latency to durable (fdatasync)", dd, "-");
    latRow("latency to visible in file", dv, sig(dv.p50 / dc.p50));
    latRow("cat: latency to visible (floor)", dc, 1);
    out[`builds_${builds}`] = {
      service: { ...s, latency_durable_ms: dd, latency_visible_ms: dv },
      cat_floor: { ...c, latency_visible_ms: dc },
      throughput_ratio_to_cat: ratioTp,
      latency_visible_p50_ratio_to_cat: sig(dv.p50 / dc.p50),
    };
    log(`  logs latency, ${builds} build(s): durable p50 ${dd.p50} ms, visible p50 ${dv.p50} ms, cat ${dc.p50} ms`);
  }
  const attackRows: (string | number)[][] = [["logs under attack", "streams", "min", "median", "max", "unit", "goal", "result"]];
  if (parts.includes("memory")) out.memory_50_streams = await memoryCase(env, quick, log, attackRows);
  if (parts.includes("oversized")) out.oversized_log = await oversizedCase(env, quick, log, attackRows, chunk, chunksPerBuild);
  fs.rmSync(env.root, { recursive: true, force: true });
  out.table = [...(rows.length > 1 ? [table(rows)] : []), ...(attackRows.length > 1 ? [table(attackRows)] : [])].join("\n\n");
  return out;
}

const mib = (kib: number) => sig(kib / KiB);

/** 50 concurrent slow streams: the summed memory of the BuildLog processes against a bound. */
async function memoryCase(env: Env, quick: boolean, log: (line: string) => void, rows: (string | number)[][]): Promise<Record<string, unknown>> {
  const t0 = now();
  // Enough build VMs that 50 streams stay under maxStreamsPerVm (default 8).
  const o = { streams: 50, vms: 10, seconds: quick ? 10 : 30, intervalMs: 100, longEvery: 50, longBytes: 200 * KiB };
  const repo = newRepo(env);
  const cfg = JSON.parse(fs.readFileSync(repo.config, "utf8")) as { maxLineBytes?: number };
  const maxLineBytes = cfg.maxLineBytes ?? 64 * KiB;
  const run = await memoryOnce(env, repo, o);
  fs.rmSync(repo.dir, { recursive: true, force: true });
  const open = summary(run.openRss);
  const hwm = summary(run.hwm);
  const growth = summary(run.hwm.map((h, i) => h - run.openRss[i]));
  const buffers = streamBufferBound(maxLineBytes, "build-m0".length) / KiB;
  const young = YOUNG_GENERATION_BYTES / KiB;
  const boundPerStream = open.max + buffers + young;
  const perStream = run.peakSumRss / o.streams;
  const pass = run.peakSumRss <= boundPerStream * o.streams && hwm.max <= boundPerStream;
  const r = roundSummary;
  const m = (s: Summary) => r({ n: s.n, min: s.min / KiB, median: s.median / KiB, max: s.max / KiB });
  rows.push(["BuildLog RSS at open (before data)", o.streams, m(open).min, m(open).median, m(open).max, "MiB", "", ""]);
  const verdict = (ok: boolean) => (ok ? "pass" : "FAIL");
  const perProcessBound = `<= ${sig(boundPerStream / KiB)}`;
  const mh = m(hwm);
  rows.push(["BuildLog peak RSS (VmHWM) per process", o.streams, mh.min, mh.median, mh.max, "MiB", perProcessBound, verdict(hwm.max <= boundPerStream)]);
  rows.push(["  growth over open", o.streams, m(growth).min, m(growth).median, m(growth).max, "MiB", `<= ${sig((buffers + young) / KiB)}`, ""]);
  const totalBound = `<= ${sig((boundPerStream * o.streams) / KiB)}`;
  rows.push(["peak summed RSS, all BuildLog processes", o.streams, "", mib(run.peakSumRss), "", "MiB", totalBound, verdict(pass)]);
  rows.push(["  per stream", o.streams, "", mib(perStream), "", "MiB", perProcessBound, ""]);
  rows.push(["peak summed PSS (shared pages once)", o.streams, "", mib(run.peakSumPss), "", "MiB", "", ""]);
  rows.push(["all closed to all published", o.streams, "", sig(run.publishSeconds), "", "s", "", ""]);
  log(`  logs memory, ${o.streams} streams: peak summed RSS ${mib(run.peakSumRss)} MiB (${mib(perStream)} per stream, bound ${sig(boundPerStream / KiB)}), `
    + `PSS ${mib(run.peakSumPss)} MiB: ${pass ? "pass" : "FAIL"}; ${sig(secondsSince(t0))} s`);
  return {
    streams: o.streams,
    build_vms: o.vms,
    trickle_seconds: o.seconds,
    trickle: `one ${LINE_BYTES}-byte line every ${o.intervalMs} ms, every ${o.longEvery}th line ${o.longBytes / KiB} KiB`,
    bytes_per_stream: run.bytesPerStream,
    samples: run.samples,
    open_rss_mib: m(open),
    peak_rss_per_process_mib: m(hwm),
    growth_over_open_mib: m(growth),
    peak_summed_rss_mib: mib(run.peakSumRss),
    peak_summed_anon_mib: mib(run.peakSumAnon),
    peak_summed_pss_mib: mib(run.peakSumPss),
    per_stream_mib: mib(perStream),
    bound_per_stream_mib: sig(boundPerStream / KiB),
    bound: "per stream: largest RSS at open (node + bundle) + the stream's buffers (line buffer, stdin, unwritten stamped text twice)"
      + " + V8's young generation (2 x 16 MiB)",
    stream_buffers_mib: sig(buffers / KiB),
    young_generation_mib: sig(young / KiB),
    publish_seconds: sig(run.publishSeconds),
    pass,
  };
}

/**
 * 8 normal streams with and without one log of 3 x maxLogBytes, in alternating order: how long each
 * normal one takes to be published, and how long until the last of them is.
 */
async function oversizedCase(
  env: Env, quick: boolean, log: (line: string) => void, rows: (string | number)[][], chunk: Buffer, chunksPerBuild: number,
): Promise<Record<string, unknown>> {
  const t0 = now();
  const normals = 8;
  // Small enough that the oversized log is cut, large enough for a normal stream's stamped content.
  const maxLogBytes = quick ? 8 * MiB : 32 * MiB;
  const oversizedChunks = Math.ceil((3 * maxLogBytes) / chunk.length);
  const reps = quick ? 2 : 3;
  const alone: number[] = [];
  const withBig: number[] = [];
  const lastRatios: number[] = [];
  const lastAlone: number[] = [];
  const lastWith: number[] = [];
  const big: number[] = [];
  let checked: { bytes: number; marker: string } | null = null;
  for (let r = 0; r < reps; r++) {
    // Alternate the order so that background noise hits both alike; compare within a pair.
    const pair: Record<string, number> = {};
    for (const oversized of r % 2 === 0 ? [false, true] : [true, false]) {
      const repo = newRepo(env, { maxLogBytes });
      const run = await publishOnce(env, repo, normals, chunk, chunksPerBuild, oversized ? oversizedChunks : null);
      (oversized ? withBig : alone).push(...run.normalSeconds);
      pair[String(oversized)] = Math.max(...run.normalSeconds);
      if (run.oversizedRel && run.oversizedSeconds !== null) {
        big.push(run.oversizedSeconds);
        checked = checkTruncated(repo, run.oversizedRel, maxLogBytes);
      }
      fs.rmSync(repo.dir, { recursive: true, force: true });
    }
    lastAlone.push(pair.false);
    lastWith.push(pair.true);
    lastRatios.push(pair.true / pair.false);
  }
  const a = roundSummary(distribution(alone));
  const w = roundSummary(distribution(withBig));
  const la = roundSummary(summary(lastAlone));
  const lw = roundSummary(summary(lastWith));
  const b = roundSummary(summary(big));
  const lastRatio = sig(summary(lastRatios).median);
  const meanRatio = sig(w.mean / a.mean);
  const pass = lastRatio <= 1.1;
  rows.push([`publish: ${normals} streams alone, each`, normals, a.min, `${a.median} (mean ${a.mean})`, a.max, "s", "", ""]);
  rows.push([`publish: same ${normals} + 1 oversized, each`, normals + 1, w.min, `${w.median} (mean ${w.mean})`, w.max, "s", "", `mean ${meanRatio}x`]);
  rows.push([`publish: last of the ${normals}, alone`, normals, la.min, la.median, la.max, "s", "", ""]);
  const verdict = `${lastRatio}x ${pass ? "pass" : "FAIL"}`;
  rows.push([`publish: last of the ${normals}, + 1 oversized`, normals + 1, lw.min, lw.median, lw.max, "s", "<= 1.1x", verdict]);
  rows.push([`publish: the oversized log (${sig((oversizedChunks * chunk.length) / MiB)} MiB sent)`, 1, b.min, b.median, b.max, "s", "cut + marker",
    checked ? `${sig(checked.bytes / MiB)} MiB, marker ok` : "not checked"]);
  log(`  logs oversized: the last of ${normals} streams published after ${la.median} s alone, ${lw.median} s with an oversized log (${lastRatio}x, `
    + `each: mean ${meanRatio}x); ${sig(secondsSince(t0))} s`);
  return {
    normal_streams: normals,
    mb_per_normal_stream: sig((chunksPerBuild * chunk.length) / 1e6),
    max_log_bytes: maxLogBytes,
    oversized_bytes_sent: oversizedChunks * chunk.length,
    repetitions: reps,
    measure: "per normal stream: seconds from its end (stdin closed) to its process's exit 0 (log committed, pushed, transparency log entry pushed)",
    publish_alone_s: a,
    publish_with_oversized_s: w,
    last_published_alone_s: la,
    last_published_with_oversized_s: lw,
    oversized_publish_s: b,
    last_ratio_per_pair: lastRatios.map((x) => sig(x)),
    last_ratio: lastRatio,
    mean_ratio: meanRatio,
    goal: "the last of the normal streams published within 1.1x of its time without the oversized log (median over pairs)",
    pass,
    oversized_published_bytes: checked?.bytes,
    oversized_marker: checked?.marker,
  };
}
