/**
 * A stand-in for GitHub's webhook deliveries: a push (or issue_comment) event signed with
 * HMAC-SHA256 (`X-Hub-Signature-256`), POSTed to the site's webhook receiver in sys-net.
 * The secret and the port are read, as dom0 could, from sys-net's private storage in the sim's
 * state (`/usr/local/etc/qubes-build-infra/{secrets/webhooks,webhooks.json}`) unless given.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as path from "path";

export interface WebhookResult {
  status: number;
  body: string;
}

/**
 * sys-net's webhook secret, the receiver's loopback port, and the URL the stand-in GitHub posts to:
 * sys-net's uplink address and front port, from `<state>/network.json` (written by the running sim).
 */
export function receiverOf(stateDir: string, netvm = "sys-net"): { secret: string; port: number; url: string } {
  const etc = path.join(stateDir, "vms", netvm, "rw", "usrlocal", "etc", "qubes-build-infra");
  const secret = fs.readFileSync(path.join(etc, "secrets", "webhooks"), "utf8").trim();
  const cfg = JSON.parse(fs.readFileSync(path.join(etc, "webhooks.json"), "utf8")) as { listen?: { port?: number } };
  const port = cfg.listen?.port;
  if (typeof port !== "number") throw new Error(`${netvm}'s webhooks.json does not listen on a TCP port`);
  const netFile = path.join(stateDir, "network.json");
  let front: { url?: unknown } | null = null;
  try {
    front = (JSON.parse(fs.readFileSync(netFile, "utf8")) as { webhookFront?: { url?: unknown } | null }).webhookFront ?? null;
  } catch (e) {
    throw new Error(`${netFile}: ${(e as Error).message} (is qubes-sim running?)`);
  }
  if (!front || typeof front.url !== "string") throw new Error(`${netvm} has no webhook front on its uplink (${netFile}: webhookFront is null; is the site deployed and ${netvm} running?)`);
  return { secret, port, url: front.url };
}

export function sign(secret: string, body: Buffer | string): string {
  return "sha256=" + crypto.createHmac("sha256", secret).update(body).digest("hex");
}

/** POST one event; `secret: null` sends it unsigned. */
export function sendWebhook(opts: { url: string; event: string; payload: unknown; secret: string | null; delivery?: string }): Promise<WebhookResult> {
  const body = Buffer.from(JSON.stringify(opts.payload));
  const headers: Record<string, string> = {
    "Content-Type": "application/json",
    "X-GitHub-Event": opts.event,
    "X-GitHub-Delivery": opts.delivery ?? crypto.randomUUID(),
    "User-Agent": "GitHub-Hookshot/qubes-sim",
  };
  if (opts.secret !== null) headers["X-Hub-Signature-256"] = sign(opts.secret, body);
  return new Promise((resolve, reject) => {
    const req = http.request(opts.url, { method: "POST", headers: { ...headers, "Content-Length": String(body.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A signed push of `QubesOS/qubes-<component>` to the receiver of the sim at `stateDir`. */
export async function triggerBuild(opts: { stateDir: string; component: string; repo?: string; url?: string; secret?: string }): Promise<WebhookResult> {
  const r = opts.secret && opts.url ? { secret: opts.secret, url: opts.url } : receiverOf(opts.stateDir);
  const url = opts.url ?? `${r.url}/api/services/trigger_build`;
  const full = opts.repo ?? `QubesOS/qubes-${opts.component}`;
  return sendWebhook({
    url,
    event: "push",
    secret: opts.secret ?? r.secret,
    payload: { ref: "refs/heads/main", repository: { full_name: full, name: full.split("/").pop() }, head_commit: { id: crypto.randomBytes(20).toString("hex") } },
  });
}
