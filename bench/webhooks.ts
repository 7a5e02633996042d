/**
 * Webhook receiver (services/webhooks.ts, bundled): signed deliveries per second and latency
 * p50/p99 seen by the client on loopback, under a bounded load from a second process
 * (bench/webhooks-load.ts: keep-alive, `n` requests at a fixed concurrency), HMAC check on,
 * forwarding to a fake `qrexec-client-vm` on PATH that exits 0.
 *
 * Floor in the same run: a bare Node HTTP server on loopback that reads the body and answers 202,
 * driven by the same load generator. The delivery cache is pre-filled to its default size (10,000
 * ids) so that every run sees the steady state of a long-running receiver.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { buildServices } from "../services/build";
import { distribution, ratio, roundSummary, sig, summary, table } from "./stats";
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
  stop: () => Promise<void>;
}

function startServer(argv: string[], env: NodeJS.ProcessEnv, route: string): Promise<Server> {
  const child = spawn(process.execPath, argv, { env, stdio: ["ignore", "pipe", "pipe"] });
  const forwards: bigint[] = [];
  let errBuf = "";
  let errText = "";
  child.stderr?.on("data", (d: Buffer) => {
    const t = process.hrtime.bigint();
    errBuf += d.toString();
    let nl: number;
    while ((nl = errBuf.indexOf("\n")) !== -1) {
      const line = errBuf.slice(0, nl);
      errBuf = errBuf.slice(nl + 1);
      if (/^webhooks: delivery \S+: .* -> 0$/.test(line)) forwards.push(t);
      else if (errText.length < 2000) errText += `${line}\n`;
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

export async function benchWebhooks(opts: WebhooksOptions): Promise<Record<string, unknown>> {
  const { quick, log } = opts;
  const root = fs.mkdtempSync(path.join(opts.workRoot, "webhooks-"));
  const dist = path.join(root, "dist");
  await buildServices(dist);
  const bin = path.join(root, "bin");
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, "qrexec-client-vm"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  const state = path.join(root, "state");
  fs.mkdirSync(state, { mode: 0o700 });
  const cacheSize = 10000;
  fs.writeFileSync(path.join(state, "deliveries.json"), JSON.stringify(Array.from({ length: cacheSize }, (_, i) => `00000000-prefill-${i}`)));
  const buildVms = path.join(root, "build-vms.list");
  fs.writeFileSync(buildVms, "build-a\n");
  const secretFile = path.join(root, "secret");
  fs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  const config = path.join(root, "webhooks.json");
  const n = quick ? 600 : 3000;
  const warmup = quick ? 50 : 200;
  // Large enough that no request of the run is turned away (503): forwarding is measured apart.
  fs.writeFileSync(config, JSON.stringify({ listen: { host: "127.0.0.1", port: 0 }, buildVmsFile: buildVms, queueLimit: 1_000_000, deliveryCacheSize: cacheSize }));
  const route = "/api/services/trigger_build";
  const receiver = await startServer([path.join(dist, "webhooks.js")], {
    PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
    HOME: root,
    QBI_CONFIG: config,
    QBI_SECRET_FILE: secretFile,
    QBI_STATE_DIR: state,
  }, route);
  const floor = await startServer(["-e", FLOOR_SERVER], { PATH: process.env.PATH ?? "/usr/bin:/bin" }, route);

  const reps = quick ? 2 : 3;
  const bodyBytes = 7000;
  const out: Record<string, unknown> = { requests_per_run: n, warmup, repetitions: reps, body_bytes: bodyBytes, delivery_cache_prefilled: cacheSize, build_vms: 1 };
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
  } finally {
    await receiver.stop();
    await floor.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  out.table = table(rows);
  return out;
}
