/**
 * Webhook receiver (sys-net): a small HTTP server behind nginx for GitHub's
 * `POST /api/services/trigger_build` and `POST /api/services/process_comment`.
 *
 * Order of checks: method/route (405/404) → body size (413) → HMAC-SHA256 signature with the
 * configured secret, constant-time (401) → delivery id (400 if missing, 409 if already seen) →
 * event and payload (400) → queue (503 when full) → 202. Forwarding to the build VMs over
 * qrexec happens after the response, from a bounded queue. See services/README.md.
 *
 * Start: `node webhooks.js` with `QBI_CONFIG` (default /usr/local/etc/qubes-build-infra/webhooks.json),
 * `QBI_SECRET_FILE` (default .../secrets/webhooks), `QBI_STATE_DIR`. It prints
 * `listening on <address>` on stdout once ready and exits on SIGTERM.
 */
import { spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { z } from "zod";
import { COMPONENT_RE, ConfigError, homeDir, isVmName, loadConfig, log, printable, secretPath, stateDir, writeFileAtomic } from "./lib/common";

const SERVICE = "webhooks";

export const WebhooksConfig = z
  .object({
    listen: z.union([
      z.object({ socket: z.string().startsWith("/") }).strict(),
      z.object({ host: z.string().default("127.0.0.1"), port: z.number().int().min(0).max(65535) }).strict(),
    ]),
    services: z.array(z.enum(["trigger_build", "process_comment"])).default(["trigger_build", "process_comment"]),
    maxBodyBytes: z.number().int().positive().default(1024 * 1024),
    buildVmsFile: z.string().startsWith("/").optional(),
    deliveryCacheSize: z.number().int().positive().default(10000),
    queueLimit: z.number().int().positive().default(200),
    callTimeoutMs: z.number().int().positive().default(120000),
  })
  .strict();
type WebhooksConfig = z.infer<typeof WebhooksConfig>;

const PushEvent = z.object({ repository: z.object({ full_name: z.string().min(1).max(200), name: z.string().max(100).optional() }) });
const CommentEvent = z.object({ action: z.string(), comment: z.object({ body: z.string().max(65536) }) });

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

interface Job {
  vm: string;
  service: string;
  input: string;
  delivery: string;
}

class DeliveryCache {
  private ids: string[];
  private set: Set<string>;
  constructor(private file: string, private max: number) {
    let ids: string[] = [];
    try {
      ids = z.array(z.string()).parse(JSON.parse(fs.readFileSync(file, "utf8")));
    } catch {
      ids = [];
    }
    this.ids = ids.slice(-max);
    this.set = new Set(this.ids);
  }
  has(id: string): boolean {
    return this.set.has(id);
  }
  add(id: string): void {
    this.ids.push(id);
    this.set.add(id);
    while (this.ids.length > this.max) this.set.delete(this.ids.shift() as string);
    writeFileAtomic(this.file, JSON.stringify(this.ids));
  }
}

export function startServer(cfg: WebhooksConfig, secret: Buffer, state: string): http.Server {
  const deliveries = new DeliveryCache(path.join(state, "deliveries.json"), cfg.deliveryCacheSize);
  const buildVmsFile = cfg.buildVmsFile ?? path.join(homeDir(), ".config/qubes-builder-github/build-vms.list");
  const queue: Job[] = [];
  let running = false;

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
        if (!isVmName(l)) log(SERVICE, `ignoring bad build VM name ${printable(l)}`);
        return isVmName(l);
      });
  };

  const pump = () => {
    if (running) return;
    const job = queue.shift();
    if (!job) return;
    running = true;
    const child = spawn("qrexec-client-vm", ["--", job.vm, job.service], { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      if (err.length < 2000) err += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), cfg.callTimeoutMs);
    const done = (code: number | null) => {
      clearTimeout(timer);
      log(SERVICE, `delivery ${job.delivery}: ${job.service} in ${job.vm} -> ${code ?? "killed"}${err ? `: ${printable(err.trim(), 200)}` : ""}`);
      running = false;
      setImmediate(pump);
    };
    child.on("error", (e) => {
      err = e.message;
      done(127);
    });
    child.on("close", done);
    child.stdin.on("error", () => undefined);
    child.stdin.end(job.input);
  };

  const reply = (res: http.ServerResponse, status: number, message: string) => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(`${JSON.stringify({ message })}\n`);
  };

  const server = http.createServer((req, res) => {
    const m = /^\/api\/services\/([A-Za-z0-9_]+)\/?$/.exec((req.url ?? "").split("?")[0]);
    const name = m?.[1];
    if (!m || !cfg.services.includes(name as "trigger_build")) {
      req.resume();
      return reply(res, 404, "Unknown service");
    }
    if (req.method !== "POST") {
      req.resume();
      res.setHeader("Allow", "POST");
      return reply(res, 405, "Method not allowed");
    }
    const declared = Number(req.headers["content-length"] ?? "0");
    if (declared > cfg.maxBodyBytes) {
      res.setHeader("Connection", "close");
      reply(res, 413, "Payload too large");
      req.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let aborted = false;
    req.on("data", (d: Buffer) => {
      if (aborted) return;
      size += d.length;
      if (size > cfg.maxBodyBytes) {
        aborted = true;
        res.setHeader("Connection", "close");
        reply(res, 413, "Payload too large");
        req.destroy();
        return;
      }
      chunks.push(d);
    });
    req.on("end", () => {
      if (aborted) return;
      const body = Buffer.concat(chunks);
      // 1. Authenticate before looking at anything else (W5).
      const sig = req.headers["x-hub-signature-256"];
      const expected = Buffer.from(`sha256=${crypto.createHmac("sha256", secret).update(body).digest("hex")}`);
      const given = Buffer.from(typeof sig === "string" ? sig : "");
      if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return reply(res, 401, "invalid signature");
      // 2. Replays.
      const delivery = req.headers["x-github-delivery"];
      if (typeof delivery !== "string" || !/^[A-Za-z0-9-]{1,64}$/.test(delivery)) return reply(res, 400, "missing or bad X-GitHub-Delivery");
      if (deliveries.has(delivery)) return reply(res, 409, "delivery already processed");
      // 3. Event and payload.
      const event = req.headers["x-github-event"];
      if (typeof event !== "string" || !KNOWN_EVENTS.has(event)) return reply(res, 400, "unknown event");
      let payload: unknown;
      try {
        payload = JSON.parse(body.toString("utf8"));
      } catch {
        return reply(res, 400, "body is not JSON");
      }
      const vms = buildVms();
      const jobs: Job[] = [];
      if (event === "ping") {
        deliveries.add(delivery);
        return reply(res, 200, "pong");
      }
      if (name === "trigger_build" && event === "push") {
        const p = PushEvent.safeParse(payload);
        if (!p.success) return reply(res, 400, "invalid push payload");
        const component = componentFromRepo(p.data.repository.full_name);
        if (!component) return reply(res, 400, "repository name is not a component name");
        for (const vm of vms) jobs.push({ vm, service: `qubesbuilder.TriggerBuild+${component}`, input: "", delivery });
      } else if (name === "process_comment" && event === "issue_comment") {
        const p = CommentEvent.safeParse(payload);
        if (!p.success) return reply(res, 400, "invalid issue_comment payload");
        const block = p.data.action === "created" ? extractSignedBlock(p.data.comment.body) : null;
        if (block) for (const vm of vms) jobs.push({ vm, service: "qubesbuilder.ProcessGithubCommand", input: block, delivery });
      }
      if (queue.length + jobs.length > cfg.queueLimit) return reply(res, 503, "queue full, retry later");
      deliveries.add(delivery);
      queue.push(...jobs);
      reply(res, 202, jobs.length ? `queued ${jobs.length} call(s)` : "nothing to do");
      setImmediate(pump);
    });
  });
  server.requestTimeout = 30000;
  server.headersTimeout = 10000;
  return server;
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

function main(): void {
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
  const server = startServer(cfg, secret, state);
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
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (require.main === module) main();
