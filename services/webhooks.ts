/**
 * Webhook receiver (sys-net): a small HTTP server behind nginx for GitHub's
 * `POST /api/services/trigger_build` and `POST /api/services/process_comment`.
 *
 * Order of checks: route/method (404/405) → length (411/413) → room for one more unauthenticated
 * body (503) → HMAC-SHA256 over the body as it streams in, constant-time (401) → delivery id
 * (400) → replay of the id or of the signed body (409) → event and payload (400) → one queue per
 * build VM (a full one drops that VM's call only, recorded for redelivery) → 202 once the
 * acceptance is on disk. Each build VM has its own worker (one call at a time, with a timeout),
 * so a stalled VM never delays another. `GET /api/status` (loopback, not through the proxy)
 * lists queues and the deliveries to redeliver. See services/README.md.
 *
 * Start: `node webhooks.js` with `QBI_CONFIG` (default /usr/local/etc/qubes-build-infra/webhooks.json),
 * `QBI_SECRET_FILE` (default .../secrets/webhooks), `QBI_STATE_DIR`. It prints
 * `listening on <address>` on stdout once ready and exits on SIGTERM.
 */
import { ChildProcess, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { z } from "zod";
import { WebhooksConfig } from "../contracts/serviceConfig/webhooks";
import { homeDir, loadConfig, secretPath, stateDir } from "./lib/config";
import { log } from "./lib/log";
import { COMPONENT_RE, isDomUName } from "./lib/names";
import { ConfigError, printable } from "./lib/outcome";
import { bodyHash, DELIVERY_ID_RE, Delivery, DeliveryJournal } from "./lib/delivery-journal";

const SERVICE = "webhooks";

export { WebhooksConfig };

const PushEvent = z.object({ repository: z.object({ full_name: z.string().min(1).max(200), name: z.string().max(100).optional() }) });
const CommentEvent = z.object({ action: z.string(), comment: z.object({ body: z.string().max(65536) }) });
/** Where the hook lives, for the redelivery hint only (never used to decide anything). */
const HookPlace = z.object({
  repository: z.object({ full_name: z.string().regex(/^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/) }).optional().catch(undefined),
  organization: z.object({ login: z.string().regex(/^[A-Za-z0-9-]{1,39}$/) }).optional().catch(undefined),
});

const KNOWN_EVENTS = new Set(["ping", "push", "issue_comment", "pull_request", "create", "delete", "release"]);

/** `owner/qubes-foo` → `foo`; `owner/bar` → `bar`; null if the result is not a component name. */
export function componentFromRepo(fullName: string): string | null {
  const last = fullName.split("/").pop() ?? "";
  const c = last.startsWith("qubes-") ? last.slice(6) : last;
  return COMPONENT_RE.test(c) ? c : null;
}

/**
 * Normalises a comment and cuts out the clearsigned block: trailing whitespace (and CR) removed
 * from every line, from `-----BEGIN PGP SIGNED MESSAGE-----\nHash: ` through the first
 * `\n-----END PGP SIGNATURE-----`, plus `\n`. Null when there is none or it is not ASCII.
 */
export function extractSignedBlock(body: string): string | null {
  const text = body
    .split("\n")
    .map((l) => l.replace(/[ \t\r\f\v]+$/, ""))
    .join("\n");
  const start = text.indexOf("-----BEGIN PGP SIGNED MESSAGE-----\nHash: ");
  if (start === -1) return null;
  const endMarker = "\n-----END PGP SIGNATURE-----";
  const end = text.indexOf(endMarker, start);
  if (end === -1) return null;
  const block = `${text.slice(start, end + endMarker.length)}\n`;
  if (!/^[\n\x20-\x7e]*$/.test(block) || block.length > 8192) return null;
  return block;
}

/** The operator's way to send a dropped delivery again (GitHub does not redeliver by itself). */
export function redeliveryHint(d: Delivery, guid: string): string {
  const hook = d.hook ?? "<hook id>";
  const where = d.org && !d.repo ? `orgs/${d.org}` : d.repo ? `repos/${d.repo}` : null;
  if (!where) return `GitHub → the webhook's Settings → Recent Deliveries → ${guid} → Redeliver`;
  const place = where.replace(/^repos\//, "").replace(/^orgs\//, "organization ");
  return (
    `GitHub → ${place} → Settings → Webhooks → Recent Deliveries → ${guid} → Redeliver; ` +
    `or: id=$(gh api ${where}/hooks/${hook}/deliveries --paginate -q '.[] | select(.guid=="${guid}") | .id' | head -1); ` +
    `gh api -X POST ${where}/hooks/${hook}/deliveries/$id/attempts`
  );
}

interface Job {
  h: string;
  delivery: string;
  service: string;
  input: string;
  /** The acceptance is on disk: a call never runs for a delivery the receiver could forget. */
  ready: Promise<void>;
}

interface Worker {
  vm: string;
  waiting: Job[];
  running: { job: Job; since: number; child: ChildProcess } | null;
}

/** A promise settled from outside (the queued calls of a delivery wait on its acceptance). */
function deferred(): { promise: Promise<void>; ok: () => void; fail: (e: Error) => void } {
  let ok!: () => void;
  let fail!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    ok = res;
    fail = rej;
  });
  promise.catch(() => undefined); // the request's own await reports the failure
  return { promise, ok, fail };
}

/** Peers allowed to read /api/status: loopback (or the Unix socket), not relayed by a proxy. */
function isLocalOperator(req: http.IncomingMessage): boolean {
  const a = req.socket.remoteAddress;
  const local = a === undefined || a === "::1" || a.startsWith("127.") || a.startsWith("::ffff:127.");
  return local && req.headers["x-forwarded-for"] === undefined && req.headers["x-real-ip"] === undefined && req.headers.forwarded === undefined;
}

export interface Receiver {
  server: http.Server;
  close: () => void;
}

export async function startReceiver(cfg: WebhooksConfig, secret: Buffer, state: string): Promise<Receiver> {
  const journal = new DeliveryJournal(state, { capacity: cfg.deliveryCacheSize, log: (m) => log(SERVICE, m) });
  await journal.open();
  const buildVmsFile = cfg.buildVmsFile ?? path.join(homeDir(), ".config/qubes-builder-github/build-vms.list");
  const workers = new Map<string, Worker>();
  const counters = { accepted: 0, redelivered: 0, duplicates: 0, badSignature: 0, busy: 0 };
  /** Recent requests turned away for lack of room, before authentication: their claimed ids. */
  const busyRecent: { time: string; claimedDelivery: string | null; event: string | null }[] = [];
  let unauthBytes = 0;
  let unauthRequests = 0;

  const buildVms = (): string[] => {
    let text = "";
    try {
      text = fs.readFileSync(buildVmsFile, "utf8");
    } catch {
      log(SERVICE, `no build VM list at ${buildVmsFile}`);
      return [];
    }
    return text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"))
      .filter((l) => {
        if (!isDomUName(l)) log(SERVICE, `ignoring bad build VM name ${printable(l)}`);
        return isDomUName(l);
      });
  };

  const worker = (vm: string): Worker => {
    let w = workers.get(vm);
    if (!w) {
      w = { vm, waiting: [], running: null };
      workers.set(vm, w);
    }
    return w;
  };

  const finish = (w: Worker, job: Job, code: number | null, why: string | null, err: string) => {
    w.running = null;
    // 0 done, 1 refused by the service: final. Anything else (timeout, qrexec failure, service
    // error) may work when sent again, so it is owed to that VM and listed for redelivery.
    const final = why === null && (code === 0 || code === 1);
    journal.setCall(job.h, w.vm, final ? "done" : "owed", final ? undefined : (why ?? `exit ${code}`));
    log(SERVICE, `delivery ${job.delivery}: ${job.service} in ${w.vm} -> ${why ?? code}${err ? `: ${printable(err.trim(), 200)}` : ""}`);
    setImmediate(() => pump(w));
  };

  const pump = (w: Worker) => {
    if (w.running || w.waiting.length === 0) return;
    const job = w.waiting[0];
    job.ready.then(
      () => {
        if (w.running || w.waiting[0] !== job) return;
        w.waiting.shift();
        // Its own process group, so that a timeout kills whatever the call started as well.
        const child = spawn("qrexec-client-vm", ["--", w.vm, job.service], { stdio: ["pipe", "ignore", "pipe"], detached: true });
        w.running = { job, since: Date.now(), child };
        let err = "";
        let timedOut = false;
        let ended = false;
        child.stderr?.on("data", (d: Buffer) => {
          if (err.length < 2000) err += d.toString();
        });
        const timer = setTimeout(() => {
          timedOut = true;
          try {
            if (child.pid) process.kill(-child.pid, "SIGKILL");
          } catch {
            child.kill("SIGKILL");
          }
        }, cfg.callTimeoutMs);
        const end = (code: number | null, why: string | null) => {
          if (ended) return;
          ended = true;
          clearTimeout(timer);
          child.stderr?.destroy();
          finish(w, job, code, timedOut ? `timed out after ${cfg.callTimeoutMs} ms` : why, err);
        };
        child.on("error", (e) => end(null, `cannot run qrexec-client-vm: ${e.message}`));
        // `exit`, not `close`: a stray grandchild holding stderr must not hold the worker.
        child.on("exit", (code, signal) => end(code, signal ? `killed by ${signal}` : null));
        child.stdin?.on("error", () => undefined);
        child.stdin?.end(job.input);
      },
      // The acceptance did not reach the disk: it was answered 500, the call is not made.
      () => {
        if (w.waiting[0] === job) w.waiting.shift();
        try {
          journal.setCall(job.h, w.vm, "owed", "not recorded on disk");
        } catch (e) {
          log(SERVICE, `cannot write the delivery journal: ${(e as Error).message}`);
        }
        setImmediate(() => pump(w));
      },
    );
  };

  /** Queues the call of `d` for each VM that has room; the others are owed. */
  const dispatch = (d: Delivery, vms: string[], delivery: string, ready: Promise<void>, record: (vm: string, st: "queued" | "owed", why?: string) => void) => {
    const queued: string[] = [];
    const dropped: string[] = [];
    if (!d.call) return { queued, dropped };
    for (const vm of vms) {
      const w = worker(vm);
      if (w.waiting.length >= cfg.queueLimit) {
        record(vm, "owed", `queue full (${w.waiting.length} waiting)`);
        dropped.push(vm);
        continue;
      }
      record(vm, "queued");
      w.waiting.push({ h: d.h, delivery, service: d.call.s, input: d.call.in, ready });
      queued.push(vm);
    }
    return { queued, dropped };
  };

  // After a restart, calls accepted but not finished are queued again (at least once).
  {
    const listed = new Set(buildVms());
    const ready = Promise.resolve();
    for (const d of journal.all()) {
      const again = Object.entries(d.vms).filter(([, c]) => c.st === "queued").map(([vm]) => vm);
      const gone = again.filter((vm) => !listed.has(vm));
      for (const vm of gone) journal.setCall(d.h, vm, "owed", "no longer in the build VM list");
      dispatch(d, again.filter((vm) => listed.has(vm)), d.ids[d.ids.length - 1], ready, (vm, st, why) => {
        if (st === "owed") journal.setCall(d.h, vm, st, `${why}, after a restart`);
      });
    }
    for (const w of workers.values()) pump(w);
  }

  const reply = (res: http.ServerResponse, status: number, message: string, extra: Record<string, unknown> = {}) => {
    if (res.headersSent) return;
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(`${JSON.stringify({ message, ...extra })}\n`);
  };

  const status = () => {
    const owed: Record<string, unknown>[] = [];
    for (const d of journal.all()) {
      const vms = Object.fromEntries(Object.entries(d.vms).filter(([, c]) => c.st === "owed").map(([vm, c]) => [vm, c.why ?? "owed"]));
      if (Object.keys(vms).length === 0) continue;
      const guid = d.ids[0];
      const received = new Date(d.t).toISOString();
      owed.push({ delivery: guid, ids: d.ids, received, event: d.ev, route: d.route, repository: d.repo, vms, redeliver: redeliveryHint(d, guid) });
    }
    const running = (w: Worker) => {
      const r = w.running;
      return r ? { delivery: r.job.delivery, service: r.job.service, forMs: Date.now() - r.since } : null;
    };
    return {
      queues: Object.fromEntries([...workers.values()].map((w) => [w.vm, { waiting: w.waiting.length, limit: cfg.queueLimit, running: running(w) }])),
      dropped: owed.reverse(),
      unauthenticated: {
        bytes: unauthBytes,
        budgetBytes: cfg.unauthenticatedBudgetBytes,
        requests: unauthRequests,
        maxRequests: cfg.maxUnauthenticatedRequests,
      },
      counters: { ...counters },
      busyRecent,
      journal: { deliveries: journal.size, ...journal.stats() },
    };
  };

  /** The authenticated request: replays, event, payload, queues. */
  const handle = async (res: http.ServerResponse, req: http.IncomingMessage, route: string, body: Buffer): Promise<void> => {
    const delivery = req.headers["x-github-delivery"];
    if (typeof delivery !== "string" || !DELIVERY_ID_RE.test(delivery)) return reply(res, 400, "missing or bad X-GitHub-Delivery");
    const ready = deferred();
    /** Journal lines (and queued calls) for this delivery, then one shared fdatasync; the calls start after it. */
    const commit = async (writes: () => void): Promise<void> => {
      try {
        writes();
        await journal.durable();
      } catch (e) {
        ready.fail(e as Error);
        throw e;
      }
      ready.ok();
    };
    // The id is not covered by the HMAC, the body is: both must be new, or owed to some VM.
    const h = bodyHash(route, body);
    const sameId = journal.byDelivery(route, delivery);
    if (sameId && sameId.h !== h) {
      counters.duplicates++;
      return reply(res, 409, "delivery id already used for another body");
    }
    const known = journal.get(h);
    if (known) {
      const listed = new Set(buildVms());
      const owed = Object.entries(known.vms).filter(([vm, c]) => c.st === "owed" && listed.has(vm)).map(([vm]) => vm);
      if (owed.length === 0 || !known.call) {
        counters.duplicates++;
        return reply(res, 409, "delivery already processed");
      }
      let queued: string[] = [];
      let dropped: string[] = [];
      await commit(() => {
        journal.alias(h, delivery);
        ({ queued, dropped } = dispatch(known, owed, delivery, ready.promise, (vm, st, why) => journal.setCall(h, vm, st, why)));
      });
      counters.redelivered++;
      for (const vm of queued) pump(worker(vm));
      if (queued.length === 0) return reply(res, 503, "every queue still full; recorded for redelivery", { dropped });
      return reply(res, 202, `redelivered to ${queued.join(", ")}`, { queued, dropped });
    }
    const event = req.headers["x-github-event"];
    if (typeof event !== "string" || !KNOWN_EVENTS.has(event)) return reply(res, 400, "unknown event");
    let payload: unknown;
    try {
      payload = JSON.parse(body.toString("utf8"));
    } catch {
      return reply(res, 400, "body is not JSON");
    }
    let call: Delivery["call"];
    if (route === "trigger_build" && event === "push") {
      const p = PushEvent.safeParse(payload);
      if (!p.success) return reply(res, 400, "invalid push payload");
      const component = componentFromRepo(p.data.repository.full_name);
      if (!component) return reply(res, 400, "repository name is not a component name");
      call = { s: `qubesbuilder.TriggerBuild+${component}`, in: "" };
    } else if (route === "process_comment" && event === "issue_comment") {
      const p = CommentEvent.safeParse(payload);
      if (!p.success) return reply(res, 400, "invalid issue_comment payload");
      const block = p.data.action === "created" ? extractSignedBlock(p.data.comment.body) : null;
      if (block) call = { s: "qubesbuilder.ProcessGithubCommand", in: block };
    }
    const place = HookPlace.safeParse(payload);
    const hookId = req.headers["x-github-hook-id"];
    const d: Delivery = {
      h,
      ids: [delivery],
      t: Date.now(),
      ev: event,
      route,
      ...(place.success && place.data.repository ? { repo: place.data.repository.full_name } : {}),
      ...(place.success && place.data.organization ? { org: place.data.organization.login } : {}),
      ...(typeof hookId === "string" && /^[0-9]{1,20}$/.test(hookId) ? { hook: hookId } : {}),
      ...(call ? { call } : {}),
      vms: {},
    };
    let queued: string[] = [];
    let dropped: string[] = [];
    await commit(() => {
      ({ queued, dropped } = dispatch(d, call ? buildVms() : [], delivery, ready.promise, (vm, st, why) => {
        d.vms[vm] = why === undefined ? { st } : { st, why };
      }));
      journal.add(d);
    });
    counters.accepted++;
    for (const vm of queued) pump(worker(vm));
    if (event === "ping") return reply(res, 200, "pong");
    if (dropped.length > 0) log(SERVICE, `delivery ${delivery}: dropped for ${dropped.join(", ")} (queue full); listed in /api/status for redelivery`);
    if (queued.length === 0 && dropped.length > 0) return reply(res, 503, "queue full for every build VM; recorded for redelivery", { dropped });
    if (queued.length === 0) return reply(res, 202, "nothing to do");
    return reply(res, 202, `queued ${queued.length} call(s)${dropped.length ? `; dropped for ${dropped.join(", ")} (queue full)` : ""}`, { queued, dropped });
  };

  const server = http.createServer((req, res) => {
    const urlPath = (req.url ?? "").split("?")[0];
    if (urlPath === "/api/status" && isLocalOperator(req)) {
      req.resume();
      if (req.method !== "GET") {
        res.setHeader("Allow", "GET");
        return reply(res, 405, "Method not allowed");
      }
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(`${JSON.stringify(status(), null, 1)}\n`);
      return;
    }
    const m = /^\/api\/services\/([A-Za-z0-9_]+)\/?$/.exec(urlPath);
    const route = m?.[1];
    if (!route || !cfg.services.includes(route as "trigger_build")) {
      req.resume();
      return reply(res, 404, "Unknown service");
    }
    if (req.method !== "POST") {
      req.resume();
      res.setHeader("Allow", "POST");
      return reply(res, 405, "Method not allowed");
    }
    const refuse = (code: number, message: string, headers: Record<string, string> = {}) => {
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      res.setHeader("Connection", "close");
      reply(res, code, message);
      // Nothing of the body is read: the connection closes after the answer.
      res.on("finish", () => req.destroy());
    };
    const lengthHeader = req.headers["content-length"];
    if (lengthHeader === undefined) return refuse(411, "Content-Length required");
    const declared = Number(lengthHeader);
    if (!/^[0-9]{1,12}$/.test(lengthHeader) || !Number.isSafeInteger(declared)) return refuse(400, "bad Content-Length");
    if (declared > cfg.maxBodyBytes) return refuse(413, "Payload too large");
    // Room for one more unauthenticated body: a bounded number of requests, a bounded sum of bytes.
    if (unauthRequests >= cfg.maxUnauthenticatedRequests || unauthBytes + declared > cfg.unauthenticatedBudgetBytes) {
      counters.busy++;
      const claimed = req.headers["x-github-delivery"];
      const ev = req.headers["x-github-event"];
      busyRecent.push({
        time: new Date().toISOString(),
        claimedDelivery: typeof claimed === "string" && DELIVERY_ID_RE.test(claimed) ? claimed : null,
        event: typeof ev === "string" && KNOWN_EVENTS.has(ev) ? ev : null,
      });
      if (busyRecent.length > 100) busyRecent.shift();
      return refuse(503, "busy, retry later", { "Retry-After": "5" });
    }
    unauthRequests++;
    unauthBytes += declared;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      unauthRequests--;
      unauthBytes -= declared;
      clearTimeout(timer);
    };
    const timer = setTimeout(() => {
      release();
      refuse(408, "body not received in time");
    }, cfg.bodyTimeoutMs);
    req.on("close", release);
    const hmac = crypto.createHmac("sha256", secret);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (d: Buffer) => {
      if (!held) return;
      size += d.length;
      hmac.update(d);
      chunks.push(d);
    });
    req.on("end", () => {
      if (!held) return;
      release();
      if (size !== declared) return reply(res, 400, "body length differs from Content-Length");
      // 1. Authenticate before looking at anything else.
      const sig = req.headers["x-hub-signature-256"];
      const expected = Buffer.from(`sha256=${hmac.digest("hex")}`);
      const given = Buffer.from(typeof sig === "string" ? sig : "");
      if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
        counters.badSignature++;
        return reply(res, 401, "invalid signature");
      }
      handle(res, req, route, Buffer.concat(chunks)).catch((e: Error) => {
        log(SERVICE, `cannot record a delivery: ${e.message}`);
        reply(res, 500, "cannot record the delivery; send it again");
      });
    });
  });
  server.requestTimeout = 30000;
  server.headersTimeout = 10000;
  server.maxConnections = 4 * cfg.maxUnauthenticatedRequests;
  return { server, close: () => journal.close() };
}

function readSecret(): Buffer {
  const file = secretPath("webhooks");
  let s: string;
  try {
    s = fs.readFileSync(file, "utf8").trim();
  } catch (e) {
    throw new ConfigError(`cannot read webhook secret ${file}: ${(e as Error).message}`);
  }
  if (s.length < 16) throw new ConfigError(`webhook secret in ${file} is missing or shorter than 16 characters`);
  return Buffer.from(s, "utf8");
}

async function main(): Promise<void> {
  let cfg: WebhooksConfig;
  let secret: Buffer;
  try {
    cfg = loadConfig("webhooks", WebhooksConfig);
    secret = readSecret();
  } catch (e) {
    log(SERVICE, `refusing to start: ${(e as Error).message}`);
    process.exit(2);
  }
  const state = stateDir(path.join(homeDir(), ".local/state/qubes-build-infra/webhooks"));
  let rx: Receiver;
  try {
    rx = await startReceiver(cfg, secret, state);
  } catch (e) {
    log(SERVICE, `refusing to start: ${(e as Error).message}`);
    process.exit(2);
  }
  const { server } = rx;
  const listen = cfg.listen;
  const ready = () => {
    const a = server.address();
    process.stdout.write(`listening on ${typeof a === "string" ? a : `${a?.address}:${a?.port}`}\n`);
  };
  if ("socket" in listen) {
    fs.rmSync(listen.socket, { force: true });
    server.listen(listen.socket, () => {
      fs.chmodSync(listen.socket, 0o660);
      ready();
    });
  } else server.listen(listen.port, listen.host, ready);
  const stop = () => {
    server.close(() => {
      rx.close();
      process.exit(0);
    });
    // Keep-alive connections would hold close() open.
    server.closeIdleConnections();
    setTimeout(() => {
      rx.close();
      process.exit(0);
    }, 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (require.main === module) void main();
