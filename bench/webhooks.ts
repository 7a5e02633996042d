/**
 * Webhook receiver (services/webhooks.ts, bundled): signed deliveries per second and latency
 * p50/p99 seen by the client on loopback, under a bounded load from a second process
 * (bench/webhooks-load.ts: keep-alive, `n` requests at a fixed concurrency), HMAC check on,
 * forwarding to a fake `qrexec-client-vm` on PATH that exits 0.
 *
 * Floor in the same run: a bare Node HTTP server on loopback that reads the body and answers 202,
 * driven by the same load generator. The delivery journal is pre-filled to its default size (10,000
 * deliveries) so that every run sees the steady state of a long-running receiver.
 *
 * One stalled build VM: four build VMs, the same receiver configuration, once with all four
 * healthy and once with build-d's calls hanging (its fake `qrexec-client-vm` never returns).
 * Deliveries per second (closed loop) and, at a fixed rate (open loop), the time from sending a
 * delivery to the end of each healthy VM's call (the receiver's log line, read with the same
 * monotonic clock as the load generator's send times).
 */
import { ChildProcess, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { buildServices } from "../services/build";
import { Distribution, distribution, ratio, roundSummary, sig, summary, table } from "./stats";
import type { LoadResult, LoadSpec } from "./webhooks-load";

export interface WebhooksOptions {
  quick: boolean;
  workRoot: string;
  log: (line: string) => void;
}

const projectRoot = path.resolve(__dirname, "..");
const SECRET = "bench-webhook-secret-0123456789abcdef";

const FLOOR_SERVER = `
const http = require("http");
const s = http.createServer((req, res) => {
  req.on("data", () => undefined);
  req.on("end", () => { res.writeHead(202, { "Content-Type": "application/json" }); res.end('{"message":"queued 1 call(s)"}\\n'); });
});
s.listen(0, "127.0.0.1", () => process.stdout.write("listening on 127.0.0.1:" + s.address().port + "\\n"));
process.on("SIGTERM", () => s.close(() => process.exit(0)));
`;

interface Server {
  child: ChildProcess;
  url: string;
  /** Monotonic times (ns) of the forwarded-call log lines seen so far. */
  forwards: bigint[];
  /** `<delivery> <vm>` → monotonic time (ms) its call ended with 0. */
  done: Map<string, number>;
  stop: () => Promise<void>;
}

function startServer(argv: string[], env: NodeJS.ProcessEnv, route: string): Promise<Server> {
  const child = spawn(process.execPath, argv, { env, stdio: ["ignore", "pipe", "pipe"] });
  const forwards: bigint[] = [];
  const done = new Map<string, number>();
  let errBuf = "";
  let errText = "";
  child.stderr?.on("data", (d: Buffer) => {
    const t = process.hrtime.bigint();
    errBuf += d.toString();
    let nl: number;
    while ((nl = errBuf.indexOf("\n")) !== -1) {
      const line = errBuf.slice(0, nl);
      errBuf = errBuf.slice(nl + 1);
      const m = /^webhooks: delivery (\S+): \S+ in (\S+) -> 0$/.exec(line);
      if (m) {
        forwards.push(t);
        done.set(`${m[1]} ${m[2]}`, Number(t) / 1e6);
      } else if (!/^webhooks: delivery \S+: dropped for /.test(line) && errText.length < 2000) errText += `${line}\n`;
    }
  });
  const closed = new Promise<void>((r) => child.on("close", () => r()));
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`server did not start: ${errText}`)), 20000);
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+):(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          child,
          url: `http://${m[1]}:${m[2]}${route}`,
          forwards,
          done,
          stop: async () => {
            child.kill("SIGTERM");
            await closed;
          },
        });
      }
    });
    child.on("close", (code) => reject(new Error(`server exited (${code}): ${errText}`)));
  });
}

function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(__dirname, "webhooks-load.ts"), JSON.stringify(spec)], {
      cwd: projectRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`load generator failed (${code}): ${err}`));
      resolve(JSON.parse(out) as LoadResult);
    });
  });
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** The deliveries a long-running receiver remembers: its journal's snapshot, filled to `size`. */
function prefillJournal(state: string, size: number): void {
  const lines = [JSON.stringify({ k: "base", gen: 1 })];
  for (let i = 0; i < size; i++) {
    const h = crypto.createHash("sha256").update(`prefill ${i}`).digest("hex");
    lines.push(JSON.stringify({ k: "new", h, ids: [`00000000-prefill-${i}`], t: 0, ev: "push", route: "trigger_build", vms: { "build-a": { st: "done" } } }));
  }
  fs.writeFileSync(path.join(state, "deliveries.base.jsonl"), `${lines.join("\n")}\n`, { mode: 0o600 });
}

/**
 * A bundled receiver in `<root>/<name>` for `vms`; calls to `stalled` never return (the fake
 * `qrexec-client-vm` waits for the receiver to exit, so that nothing outlives the bench).
 */
async function receiverFor(root: string, dist: string, name: string, vms: string[], config: Record<string, unknown>, stalled: string | null): Promise<Server> {
  const dir = path.join(root, name);
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin, { recursive: true });
  const stall = stalled ? `[ "$2" = "${stalled}" ] && exec tail -f /dev/null --pid="$PPID"\n` : "";
  fs.writeFileSync(path.join(bin, "qrexec-client-vm"), `#!/bin/sh\n${stall}exit 0\n`, { mode: 0o755 });
  const state = path.join(dir, "state");
  fs.mkdirSync(state, { mode: 0o700 });
  prefillJournal(state, CACHE_SIZE);
  const buildVms = path.join(dir, "build-vms.list");
  fs.writeFileSync(buildVms, `${vms.join("\n")}\n`);
  const secretFile = path.join(dir, "secret");
  fs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  const configFile = path.join(dir, "webhooks.json");
  fs.writeFileSync(configFile, JSON.stringify({ listen: { host: "127.0.0.1", port: 0 }, buildVmsFile: buildVms, deliveryCacheSize: CACHE_SIZE, ...config }));
  return startServer([path.join(dist, "webhooks.js")], {
    PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
    HOME: dir,
    QBI_CONFIG: configFile,
    QBI_SECRET_FILE: secretFile,
    QBI_STATE_DIR: state,
  }, ROUTE);
}

const CACHE_SIZE = 10000;
const ROUTE = "/api/services/trigger_build";

export async function benchWebhooks(opts: WebhooksOptions): Promise<Record<string, unknown>> {
  const { quick, log } = opts;
  const root = fs.mkdtempSync(path.join(opts.workRoot, "webhooks-"));
  const dist = path.join(root, "dist");
  await buildServices(dist);
  const cacheSize = CACHE_SIZE;
  const n = quick ? 600 : 3000;
  const warmup = quick ? 50 : 200;
  // Large enough that no request of the run is turned away (503): forwarding is measured apart.
  const receiver = await receiverFor(root, dist, "one-vm", ["build-a"], { queueLimit: 1_000_000 }, null);
  const floor = await startServer(["-e", FLOOR_SERVER], { PATH: process.env.PATH ?? "/usr/bin:/bin" }, ROUTE);

  const reps = quick ? 2 : 3;
  const bodyBytes = 7000;
  const out: Record<string, unknown> = {
    requests_per_run: n, warmup, repetitions: reps, body_bytes: bodyBytes, delivery_cache_prefilled: cacheSize, build_vms: 1,
  };
  const rows: (string | number)[][] = [["webhooks", "conc.", "min", "median", "max", "unit", "vs floor"]];
  let run = 0;
  try {
    for (const concurrency of [1, 16]) {
      const recvRate: number[] = [];
      const floorRate: number[] = [];
      const rejectRate: number[] = [];
      const fwdRate: number[] = [];
      const recvLat: number[] = [];
      const floorLat: number[] = [];
      const statuses: Record<string, number> = {};
      for (let r = 0; r < reps; r++) {
        const spec = (url: string, bad = false): LoadSpec => ({ url, secret: SECRET, n, warmup, concurrency, prefix: `bench${process.pid}-${run++}`, bodyBytes, badSignature: bad });
        const before = receiver.forwards.length;
        const a = await runLoad(spec(receiver.url));
        for (const [k, v] of Object.entries(a.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
        recvRate.push(n / a.seconds);
        recvLat.push(...a.latenciesMs);
        // Forwarding (fake qrexec-client-vm, one call per build VM) drains behind the responses.
        const expected = before + n + warmup;
        if (!(await waitFor(() => receiver.forwards.length >= expected, 120000))) throw new Error(`only ${receiver.forwards.length - before} of ${n + warmup} deliveries forwarded`);
        const fw = receiver.forwards.slice(before + warmup);
        fwdRate.push((fw.length - 1) / (Number(fw[fw.length - 1] - fw[0]) / 1e9));
        const b = await runLoad(spec(floor.url));
        floorRate.push(n / b.seconds);
        floorLat.push(...b.latenciesMs);
        const c = await runLoad(spec(receiver.url, true));
        if ((c.statuses["401"] ?? 0) !== n) throw new Error(`bad signatures not all refused: ${JSON.stringify(c.statuses)}`);
        rejectRate.push(n / c.seconds);
      }
      if ((statuses["202"] ?? 0) !== n * reps) throw new Error(`not every signed delivery was accepted: ${JSON.stringify(statuses)}`);
      const rr = roundSummary(summary(recvRate));
      const fr = roundSummary(summary(floorRate));
      const jr = roundSummary(summary(rejectRate));
      const wr = roundSummary(summary(fwdRate));
      const rl = roundSummary(distribution(recvLat));
      const fl = roundSummary(distribution(floorLat));
      rows.push(["signed deliveries (202)", concurrency, rr.min, rr.median, rr.max, "req/s", sig(ratio(summary(recvRate), summary(floorRate)))]);
      rows.push(["  latency", concurrency, rl.min, `${rl.p50} (p99 ${rl.p99})`, rl.max, "ms", `${sig(rl.p50 / fl.p50)} (p99 ${sig(rl.p99 / fl.p99)})`]);
      rows.push(["bad signature (401)", concurrency, jr.min, jr.median, jr.max, "req/s", sig(ratio(summary(rejectRate), summary(floorRate)))]);
      rows.push(["forwarded to qrexec-client-vm", concurrency, wr.min, wr.median, wr.max, "calls/s", ""]);
      rows.push(["bare node http (floor)", concurrency, fr.min, fr.median, fr.max, "req/s", 1]);
      rows.push(["  latency", concurrency, fl.min, `${fl.p50} (p99 ${fl.p99})`, fl.max, "ms", 1]);
      out[`concurrency_${concurrency}`] = {
        receiver: { deliveries_per_s: rr, latency_ms: rl, statuses },
        receiver_bad_signature: { rejects_per_s: jr },
        forwarded_calls_per_s: wr,
        floor_bare_http: { requests_per_s: fr, latency_ms: fl },
        throughput_ratio_to_floor: sig(ratio(summary(recvRate), summary(floorRate))),
        latency_p50_ratio_to_floor: sig(rl.p50 / fl.p50),
        latency_p99_ratio_to_floor: sig(rl.p99 / fl.p99),
      };
      log(`  webhooks, concurrency ${concurrency}: ${rr.median} deliveries/s (floor ${fr.median}), p50 ${rl.p50} ms p99 ${rl.p99} ms`);
    }
    await receiver.stop();
    await floor.stop();
    const stalled = await benchStalledVm(root, dist, quick, log);
    out.one_stalled_vm = stalled.json;
    out.table = `${table(rows)}\n\n${table(stalled.rows)}`;
  } finally {
    await receiver.stop();
    await floor.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  return out;
}

/**
 * Four build VMs, all healthy, then with build-d stalled (same configuration: the defaults,
 * queueLimit 200 per VM, callTimeoutMs 120 s so that no stalled call ends during the run).
 * Closed loop: deliveries/s and HTTP latency at concurrency 16. Open loop at a fixed rate, 30 % of
 * the forwarding capacity measured in the same run (spawning the calls is the receiver's
 * bottleneck): per delivery, the time until each healthy VM's call ended.
 */
async function benchStalledVm(
  root: string,
  dist: string,
  quick: boolean,
  log: (line: string) => void,
): Promise<{ rows: (string | number)[][]; json: Record<string, unknown> }> {
  const vms = ["build-a", "build-b", "build-c", "build-d"];
  const healthy = ["build-a", "build-b", "build-c"];
  const reps = quick ? 1 : 2;
  const nClosed = quick ? 100 : 300;
  const warmup = 10;
  const openSeconds = quick ? 8 : 20;
  const concurrency = 16;
  const scenarios = ["no stall", "build-d stalled"] as const;
  type Scenario = (typeof scenarios)[number];
  const result = {} as Record<Scenario, { rate: number[]; http: number[]; forward: number[]; statuses: Record<string, number> }>;
  const receivers = {} as Record<Scenario, Server>;
  const callsPerSecond: number[] = [];
  let run = 0;
  // The healthy VMs' calls; without a stall build-d's too, so that no scenario runs while the other still forwards.
  const ended = (rx: Server, scenario: Scenario, ids: string[]) => () =>
    ids.every((id) => (scenario === "no stall" ? vms : healthy).every((vm) => rx.done.has(`${id} ${vm}`)));
  try {
    for (const scenario of scenarios) {
      const stalled = scenario === "no stall" ? null : "build-d";
      receivers[scenario] = await receiverFor(root, dist, stalled ? "stalled" : "healthy", vms, { callTimeoutMs: 120000 }, stalled);
      result[scenario] = { rate: [], http: [], forward: [], statuses: {} };
    }
    let openRate = 0;
    for (let rep = 0; rep < reps; rep++) {
      // Alternating the order cancels some of the drift of a shared machine.
      const order = rep % 2 === 0 ? [...scenarios] : [...scenarios].reverse();
      for (const scenario of order) {
        const rx = receivers[scenario];
        const r = result[scenario];
        const prefix = `stall${process.pid}-${run++}`;
        const before = rx.forwards.length;
        const a = await runLoad({ url: rx.url, secret: SECRET, n: nClosed, warmup, concurrency, prefix, bodyBytes: 7000 });
        for (const [k, v] of Object.entries(a.statuses)) r.statuses[k] = (r.statuses[k] ?? 0) + v;
        r.rate.push(nClosed / a.seconds);
        r.http.push(...a.latenciesMs);
        const ids = [...Array.from({ length: warmup }, (_, i) => `${prefix}-warm-${i}`), ...Array.from({ length: nClosed }, (_, i) => `${prefix}-run-${i}`)];
        if (!(await waitFor(ended(rx, scenario, ids), 300000))) throw new Error(`${scenario}: the healthy VMs' calls did not all end`);
        if (scenario === "no stall") {
          const fw = rx.forwards.slice(before);
          callsPerSecond.push((fw.length - 1) / (Number(fw[fw.length - 1] - fw[0]) / 1e9));
        }
      }
      // Well under what the receiver forwards on this machine now, so that queues stay short.
      if (rep === 0) openRate = sig(Math.max(0.5, (0.3 * callsPerSecond[0]) / vms.length), 2);
      const nOpen = Math.max(30, Math.round(openRate * openSeconds));
      for (const scenario of order) {
        const rx = receivers[scenario];
        const r = result[scenario];
        const prefix = `stall${process.pid}-${run++}`;
        const spec: LoadSpec = { url: rx.url, secret: SECRET, n: nOpen, warmup: 0, concurrency, prefix, bodyBytes: 7000 };
        const b = await runLoad({ ...spec, ratePerSecond: openRate, recordSendTimes: true });
        for (const [k, v] of Object.entries(b.statuses)) r.statuses[k] = (r.statuses[k] ?? 0) + v;
        const sent = b.sentMs ?? [];
        const all = ended(rx, scenario, sent.map(([id]) => id));
        if (!(await waitFor(all, 300000))) throw new Error(`${scenario}: the healthy VMs' calls did not all end (open loop)`);
        for (const [id, t] of sent) for (const vm of healthy) r.forward.push((rx.done.get(`${id} ${vm}`) as number) - t);
      }
    }
    for (const scenario of scenarios) {
      const bad = Object.entries(result[scenario].statuses).filter(([k]) => k !== "202");
      if (bad.length) throw new Error(`${scenario}: not every delivery was accepted: ${JSON.stringify(result[scenario].statuses)}`);
    }
    const base = result["no stall"];
    const rows: (string | number)[][] = [["one stalled build VM (of 4)", "load", "min", "median", "max", "unit", "vs no stall"]];
    const json: Record<string, unknown> = {
      build_vms: vms.length,
      stalled: "build-d",
      repetitions: reps,
      closed_loop: { n: nClosed, concurrency },
      open_loop: { seconds: openSeconds, rate_per_s: openRate, forwarded_calls_per_s_measured: roundSummary(summary(callsPerSecond)) },
    };
    for (const scenario of scenarios) {
      const r = result[scenario];
      const rr = roundSummary(summary(r.rate));
      const hl = roundSummary(distribution(r.http));
      const fl = roundSummary(distribution(r.forward));
      const bh = distribution(base.http);
      const bf = distribution(base.forward);
      const first = scenario === "no stall";
      const vs = (a: Distribution, b: Distribution) => (first ? 1 : `${sig(a.p50 / b.p50)} (p99 ${sig(a.p99 / b.p99)})`);
      const c = `c${concurrency}`;
      rows.push([`deliveries (202), ${scenario}`, c, rr.min, rr.median, rr.max, "req/s", first ? 1 : sig(ratio(summary(r.rate), summary(base.rate)))]);
      rows.push(["  HTTP latency", c, hl.min, `${hl.p50} (p99 ${hl.p99})`, hl.max, "ms", vs(hl, bh)]);
      rows.push(["  delivery to call end, build-a..c", `${openRate}/s`, fl.min, `${fl.p50} (p99 ${fl.p99})`, fl.max, "ms", vs(fl, bf)]);
      json[scenario.replace(/[^a-z]+/g, "_")] = { deliveries_per_s: rr, http_latency_ms: hl, forward_latency_ms_healthy_vms: fl, statuses: r.statuses };
      log(`  webhooks, 4 build VMs, ${scenario}: ${rr.median} deliveries/s, HTTP p99 ${hl.p99} ms, healthy VMs' call end p99 ${fl.p99} ms at ${openRate}/s`);
    }
    const st = result["build-d stalled"];
    json.healthy_forward_p99_ratio = sig(distribution(st.forward).p99 / distribution(base.forward).p99);
    json.http_p99_ratio = sig(distribution(st.http).p99 / distribution(base.http).p99);
    return { rows, json };
  } finally {
    for (const rx of Object.values(receivers)) await rx.stop();
  }
}
