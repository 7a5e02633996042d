/**
 * Load generator for the webhook benchmark, run as its own process (so that the receiver and the
 * client do not share an event loop): `n` signed GitHub push deliveries over keep-alive
 * connections, after `warmup` unmeasured ones; closed loop at a fixed concurrency, or open loop at
 * `ratePerSecond` (at most `concurrency` in flight). Each body is another push (its own `after`
 * commit), as GitHub's are: the receiver refuses a body it has seen. Prints one JSON line:
 * `{seconds, statuses, latenciesMs, sentMs?}` (`sentMs`: [delivery id, monotonic send time in ms]).
 *
 *   node -r ts-node/register/transpile-only bench/webhooks-load.ts '<json LoadSpec>'
 */
import * as crypto from "crypto";
import * as http from "http";

export interface LoadSpec {
  url: string;
  secret: string;
  n: number;
  warmup: number;
  concurrency: number;
  /** Prefix of X-GitHub-Delivery ids (unique per run, so none is a replay). */
  prefix: string;
  /** Approximate body size in bytes (GitHub push payloads are a few KB). */
  bodyBytes: number;
  /** Send a wrong signature (every request must then get 401). */
  badSignature?: boolean;
  /** Open loop: request i is sent at start + i / rate (never more than `concurrency` in flight). */
  ratePerSecond?: number;
  /** Return the monotonic send time of every measured request (process.hrtime, system-wide on Linux). */
  recordSendTimes?: boolean;
}

export interface LoadResult {
  seconds: number;
  statuses: Record<string, number>;
  latenciesMs: number[];
  sentMs?: [string, number][];
}

/** A push body of about `bytes` bytes whose `after` commit is derived from the delivery id. */
function makeBody(bytes: number): (id: string) => Buffer {
  const repository = { full_name: "QubesOS/qubes-core-admin", name: "qubes-core-admin" };
  const base = { ref: "refs/heads/main", after: "0".repeat(40), repository, commits: [] as unknown[], pad: "" };
  base.pad = "p".repeat(Math.max(0, bytes - JSON.stringify(base).length));
  return (id) => Buffer.from(JSON.stringify({ ...base, after: crypto.createHash("sha1").update(id).digest("hex") }));
}

export async function load(spec: LoadSpec): Promise<LoadResult> {
  const u = new URL(spec.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.concurrency });
  const body = makeBody(spec.bodyBytes);
  const key = spec.badSignature ? "wrong-secret-wrong-secret" : spec.secret;
  const statuses: Record<string, number> = {};
  const sentMs: [string, number][] = [];
  const one = (id: string, record: boolean): Promise<{ status: number; ms: number }> =>
    new Promise((resolve, reject) => {
      const payload = body(id);
      const sig = `sha256=${crypto.createHmac("sha256", key).update(payload).digest("hex")}`;
      const t0 = process.hrtime.bigint();
      if (record && spec.recordSendTimes) sentMs.push([id, Number(t0) / 1e6]);
      const req = http.request(
        {
          agent,
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: "POST",
          headers: {
            "Content-Type": "application/json",
            "Content-Length": payload.length,
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": id,
            "X-Hub-Signature-256": sig,
          },
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
  const runMany = async (count: number, tag: string, record: boolean): Promise<number[]> => {
    const lat: number[] = [];
    let next = 0;
    const start = process.hrtime.bigint();
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= count) return;
        if (spec.ratePerSecond) {
          const due = Number(start) / 1e6 + (i * 1000) / spec.ratePerSecond;
          const wait = due - Number(process.hrtime.bigint()) / 1e6;
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        const r = await one(`${spec.prefix}-${tag}-${i}`, record);
        if (record) {
          lat.push(r.ms);
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: spec.concurrency }, worker));
    return lat;
  };
  await runMany(spec.warmup, "warm", false);
  const t0 = process.hrtime.bigint();
  const latenciesMs = await runMany(spec.n, "run", true);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  agent.destroy();
  return { seconds, statuses, latenciesMs, ...(spec.recordSendTimes ? { sentMs } : {}) };
}

if (require.main === module) {
  const spec = JSON.parse(process.argv[2] ?? "{}") as LoadSpec;
  load(spec).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (e: unknown) => {
      process.stderr.write(`load failed: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
