/**
 * nginx front for the webhook receiver (services/webhooks.ts): a pure function rendering one
 * `server { }` block. The site writes it into sys-net (/rw/config/qubes-build-infra/webhooks-nginx.conf,
 * linked into /etc/nginx/conf.d at boot); qubes-sim's network reads the same block. Here rather
 * than in services/ because the site renders it and services/ is not the site's to import.
 */
import { z } from "zod";

const CIDR_RE = /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\/(?:3[0-2]|[12]?\d)$|^[0-9a-fA-F:]+\/(?:12[0-8]|1[01]\d|[1-9]?\d)$/;

export const NginxInput = z
  .object({
    /** A port, or `address:port` (IPv6 in brackets). */
    listen: z.union([z.number().int().min(1).max(65535), z.string().regex(/^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):\d{1,5}$/)]),
    /** The receiver: a Unix socket path or a loopback TCP port. */
    upstreamSocketOrPort: z.union([z.number().int().min(1).max(65535), z.string().regex(/^\/[A-Za-z0-9_./-]+$/)]),
    maxBodyBytes: z.number().int().positive(),
    /** Source ranges allowed to reach the hooks (e.g. GitHub's `hooks` meta ranges); all others get 403. */
    allowCidrs: z.array(z.string().regex(CIDR_RE)).optional(),
    serverName: z.string().regex(/^[A-Za-z0-9_.-]+$/).default("_"),
    /** Serve HTTPS on `listen` with this certificate chain and key (files nginx reads, root-only key). */
    tls: z.object({ certificate: z.string().regex(/^\/[A-Za-z0-9_./-]+$/), key: z.string().regex(/^\/[A-Za-z0-9_./-]+$/) }).strict().optional(),
    /** With `tls`: a plain-HTTP port that only redirects to HTTPS (308 keeps the POST); absent: plain HTTP is not served. */
    httpRedirectPort: z.number().int().min(1).max(65535).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.httpRedirectPort !== undefined && !c.tls) ctx.addIssue({ code: "custom", path: ["httpRedirectPort"], message: "only with tls (without it, listen serves plain HTTP)" });
    const port = typeof c.listen === "number" ? c.listen : Number(c.listen.slice(c.listen.lastIndexOf(":") + 1));
    if (c.httpRedirectPort === port) ctx.addIssue({ code: "custom", path: ["httpRedirectPort"], message: `must differ from the HTTPS port ${port}` });
  });
export type NginxInput = z.input<typeof NginxInput>;

export function renderNginxConfig(input: NginxInput): string {
  const c = NginxInput.parse(input);
  const upstream = typeof c.upstreamSocketOrPort === "number" ? `http://127.0.0.1:${c.upstreamSocketOrPort}` : `http://unix:${c.upstreamSocketOrPort}:`;
  const access = c.allowCidrs ? [...c.allowCidrs.map((r) => `        allow ${r};`), "        deny all;"] : [];
  const httpsPort = typeof c.listen === "number" ? c.listen : Number(c.listen.slice(c.listen.lastIndexOf(":") + 1));
  const tls = c.tls
    ? [`    ssl_certificate ${c.tls.certificate};`, `    ssl_certificate_key ${c.tls.key};`, "    ssl_protocols TLSv1.2 TLSv1.3;", "    ssl_prefer_server_ciphers off;"]
    : [];
  const redirect = c.tls && c.httpRedirectPort !== undefined
    ? [
      "server {",
      `    listen ${c.httpRedirectPort};`,
      `    server_name ${c.serverName};`,
      "    server_tokens off;",
      ...access.map((l) => l.slice(4)),
      `    return 308 https://$host${httpsPort === 443 ? "" : `:${httpsPort}`}$request_uri;`,
      "}",
    ]
    : [];
  return [
    "# qubes-build-infra: GitHub webhook receiver (generated; do not edit)",
    "server {",
    `    listen ${c.listen}${c.tls ? " ssl" : ""};`,
    `    server_name ${c.serverName};`,
    ...tls,
    `    client_max_body_size ${c.maxBodyBytes};`,
    `    client_body_buffer_size ${Math.min(c.maxBodyBytes, 1024 * 1024)};`,
    "    server_tokens off;",
    "    location ~ ^/api/services/(trigger_build|process_comment)$ {",
    ...access,
    "        limit_except POST { deny all; }",
    `        proxy_pass ${upstream};`,
    "        proxy_http_version 1.1;",
    "        proxy_set_header Host $host;",
    "        proxy_set_header X-Forwarded-For $remote_addr;",
    "        proxy_request_buffering on;",
    "        proxy_read_timeout 30s;",
    "    }",
    "    location / {",
    "        return 404;",
    "    }",
    "}",
    ...redirect,
    "",
  ].join("\n");
}
