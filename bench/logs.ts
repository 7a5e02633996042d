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
}

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
/** A bare remote with a signed first commit, the logs working copy, the service config. */
function newRepo(env: Env): Repo {
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
  const buildVms = Object.fromEntries(["b", "l"].flatMap((p) => Array.from({ length: 16 }, (_v, i) => [`build-${p}${i}`, { env: `${p}${i}`, keysVm: `keys-${p}${i}` }])));
  // Defaults (fsync every 200 ms, 64 KiB lines) except: no xz (a separate, one-off cost at the
  // end, not ingest), no size cut, and a short push backoff.
  fs.writeFileSync(
    config,
    JSON.stringify({
      repoDir, remote: `file://${remote}`, branch: "main", signingKey: env.fpr, gnupgHome: env.gnupg, xzThresholdBytes: 1 << 30, maxLogBytes: 1 << 30,
      pushBackoffMs: 100, buildVms, tlog: { program: tlogProgram(), privateKey: tlogKey, repoSubdir: "tlog/logs" },
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
  return { stdin: child.stdin as NodeJS.WritableStream, file: Promise.resolve(file), done, headerLines: 0, syncs: () => (synced ? [synced] : []) };
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
  const rows: (string | number)[][] = [["logs", "builds", "min", "median", "max", "unit", "vs cat"]];
  for (const builds of [1, 8]) {
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
  fs.rmSync(env.root, { recursive: true, force: true });
  out.table = table(rows);
  return out;
}
