/**
 * Webhook receiver over real HTTP (loopback port and Unix socket), and once through Debian's
 * nginx running the config rendered by contracts/nginx.ts.
 */
import { ChildProcess, execFileSync, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as https from "https";
import * as net from "net";
import * as path from "path";
import { Delivery, DeliveryJournal } from "../../services/lib/delivery-journal";
import { renderNginxConfig } from "../../contracts/nginx";
import { buildDist, fakeQrexec, runJs, start, tempDir, waitFor, writeJson } from "./helpers";

const SECRET = "test-webhook-secret-0123456789";
let dist: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dist = await buildDist();
});
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
});

interface Receiver {
  dir: string;
  port: number;
  pid: number;
  calls: ReturnType<typeof fakeQrexec>["calls"];
  routeDir: string;
  stop: (signal?: NodeJS.Signals) => Promise<void>;
  env: Record<string, string>;
}

async function startReceiver(opts: { config?: Record<string, unknown>; dir?: string } = {}): Promise<Receiver> {
  const dir = opts.dir ?? tempDir("wh");
  const fake = fakeQrexec(dir);
  const vms = path.join(dir, "build-vms.list");
  if (!fs.existsSync(vms)) fs.writeFileSync(vms, "build-a\n# comment\nbuild-b\nbad name!\n");
  const secretFile = path.join(dir, "secret");
  fs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  const config = writeJson(path.join(dir, "webhooks.json"), { listen: { port: 0 }, buildVmsFile: vms, ...opts.config });
  const env = { PATH: `${fake.bin}:${process.env.PATH}`, QBI_CONFIG: config, QBI_SECRET_FILE: secretFile, QBI_STATE_DIR: path.join(dir, "state"), HOME: dir };
  const child = start(path.join(dist, "webhooks.js"), { env });
  children.push(child);
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  let err = "";
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const addr = await waitFor(() => /listening on (\S+)/.exec(out)?.[1], 10000, `receiver start (${err})`);
  const port = Number(addr.split(":").pop());
  return {
    dir,
    port,
    pid: child.pid ?? 0,
    env,
    calls: fake.calls,
    routeDir: fake.routeDir,
    stop: (signal: NodeJS.Signals = "SIGTERM") =>
      new Promise((r) => {
        if (child.exitCode !== null || child.signalCode !== null) return r();
        child.on("close", () => r());
        child.kill(signal);
      }),
  };
}

function sign(body: string | Buffer, secret = SECRET): string {
  return `sha256=${crypto.createHmac("sha256", secret).update(body).digest("hex")}`;
}

let deliveryN = 0;
function delivery(): string {
  return `d${Date.now()}-${deliveryN++}`;
}

function request(
  target: { port: number } | { socketPath: string },
  method: string,
  urlPath: string,
  body: string | Buffer,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...target, host: "127.0.0.1", method, path: urlPath, headers: { "content-length": String(Buffer.byteLength(body)), ...headers } }, (res) => {
      let data = "";
      res.on("data", (d: Buffer) => (data += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on("error", (e: NodeJS.ErrnoException) => {
      // The receiver may close an oversize upload before reading it all.
      if (e.code === "EPIPE" || e.code === "ECONNRESET") resolve({ status: -1, body: e.code });
      else reject(e);
    });
    req.end(body);
  });
}

/**
 * A signed delivery. GitHub's bodies differ from one event to the next (commit ids, times), and
 * the receiver refuses a body it has seen: objects get a fresh `after`, as a push has.
 */
function github(event: string, payload: unknown, extra: Record<string, string> = {}) {
  const fresh = payload && typeof payload === "object" && !Array.isArray(payload) ? { ...payload, after: crypto.randomBytes(20).toString("hex") } : payload;
  const body = JSON.stringify(fresh);
  return { body, headers: { "content-type": "application/json", "x-github-event": event, "x-github-delivery": delivery(), "x-hub-signature-256": sign(body), ...extra } };
}

const PUSH = { ref: "refs/tags/v4.2.1", repository: { full_name: "QubesOS/qubes-core-admin", name: "qubes-core-admin" } };
const BLOCK = [
  "-----BEGIN PGP SIGNED MESSAGE-----",
  "Hash: SHA256",
  "",
  "Upload-component r4.2 core-admin 0123456789abcdef0123456789abcdef01234567 current all",
  "-----BEGIN PGP SIGNATURE-----",
  "",
  "iHUEARYIAB0WIQTexample",
  "=abcd",
  "-----END PGP SIGNATURE-----",
];

describe("receiver on a loopback port", () => {
  let rx: Receiver;
  beforeAll(async () => {
    rx = await startReceiver();
  });
  afterAll(() => rx.stop());

  test("a signed push is accepted at once and forwarded to every build VM as TriggerBuild+<component>", async () => {
    const g = github("push", PUSH);
    const r = await request({ port: rx.port }, "POST", "/api/services/trigger_build", g.body, g.headers);
    expect(r.status).toBe(202);
    const calls = await waitFor(() => {
      const c = rx.calls().filter((x) => x.service.startsWith("qubesbuilder.TriggerBuild"));
      return c.length === 2 ? c : null;
    });
    expect(calls.map((c) => [c.target, c.service, c.stdin]).sort()).toEqual([
      ["build-a", "qubesbuilder.TriggerBuild+core-admin", ""],
      ["build-b", "qubesbuilder.TriggerBuild+core-admin", ""],
    ]);
  });

  test("a signed comment with a clearsigned block goes, normalised, to ProcessGithubCommand", async () => {
    const body = `Looks good.\r\n\r\n${BLOCK.map((l) => `${l}  \r`).join("\n")}\n\nthanks`;
    const g = github("issue_comment", { action: "created", comment: { body }, issue: { number: 1 } });
    const r = await request({ port: rx.port }, "POST", "/api/services/process_comment", g.body, g.headers);
    expect(r.status).toBe(202);
    const calls = await waitFor(() => {
      const c = rx.calls().filter((x) => x.service === "qubesbuilder.ProcessGithubCommand");
      return c.length === 2 ? c : null;
    });
    for (const c of calls) expect(c.stdin).toBe(`${BLOCK.join("\n")}\n`);
  });

  test.each([
    ["edited comment", { action: "edited", comment: { body: BLOCK.join("\n") } }],
    ["comment without a block", { action: "created", comment: { body: "just talk" } }],
    ["non-ASCII block", { action: "created", comment: { body: BLOCK.join("\n").replace("Upload", "Üpload") } }],
  ])("does nothing for: %s", async (_name, payload) => {
    const before = rx.calls().length;
    const g = github("issue_comment", payload);
    const r = await request({ port: rx.port }, "POST", "/api/services/process_comment", g.body, g.headers);
    expect(r.status).toBe(202);
    expect(r.body).toMatch(/nothing to do/);
    await new Promise((res) => setTimeout(res, 200));
    expect(rx.calls().length).toBe(before);
  });

  type Bad = [string, () => { method?: string; path?: string; body: string | Buffer; headers: Record<string, string> }, number, RegExp];
  const bad: Bad[] = [
    ["unsigned", () => ({ ...github("push", PUSH), headers: { "x-github-event": "push", "x-github-delivery": delivery() } }), 401, /invalid signature/],
    ["wrong secret", () => github("push", PUSH, { "x-hub-signature-256": sign(JSON.stringify(PUSH), "wrong-secret-wrong-secret") }), 401, /invalid signature/],
    ["signature of another body", () => github("push", PUSH, { "x-hub-signature-256": sign("{}") }), 401, /invalid signature/],
    ["sha1 signature header only", () => ({ ...github("push", PUSH), headers: { "x-hub-signature": "sha1=abc", "x-github-event": "push", "x-github-delivery": delivery() } }), 401, /invalid signature/],
    ["unsigned unknown event (auth comes first)", () => ({ body: "{}", headers: { "x-github-event": "evil", "x-github-delivery": delivery() } }), 401, /invalid signature/],
    ["unknown event", () => github("evil", PUSH), 400, /unknown event/],
    ["missing delivery id", () => github("push", PUSH, { "x-github-delivery": "" }), 400, /Delivery/],
    ["bad delivery id", () => github("push", PUSH, { "x-github-delivery": "../../x" }), 400, /Delivery/],
    ["not JSON", () => ({ body: "not json", headers: { "x-github-event": "push", "x-github-delivery": delivery(), "x-hub-signature-256": sign("not json") } }), 400, /not JSON/],
    ["push without repository", () => github("push", { ref: "x" }), 400, /invalid push payload/],
    ["repository name is not a component", () => github("push", { repository: { full_name: "QubesOS/qubes-a.b;rm" } }), 400, /not a component/],
    ["repository name with leading dash", () => github("push", { repository: { full_name: "QubesOS/-rf" } }), 400, /not a component/],
    ["comment payload without body", () => ({ ...github("issue_comment", { action: "created" }), path: "/api/services/process_comment" }), 400, /invalid issue_comment/],
    ["unknown service", () => ({ ...github("push", PUSH), path: "/api/services/run_shell" }), 404, /Unknown service/],
    ["other path", () => ({ ...github("push", PUSH), path: "/../etc/passwd" }), 404, /Unknown service/],
    ["GET", () => ({ ...github("push", PUSH), method: "GET", body: "" }), 405, /Method not allowed/],
    ["oversize body (declared)", () => github("push", { ...PUSH, pad: "x".repeat(1100000) }), 413, /too large/],
  ];
  test.each(bad)("refuses: %s", async (_name, make, status, message) => {
    const before = rx.calls().length;
    const req = make();
    const r = await request({ port: rx.port }, req.method ?? "POST", req.path ?? "/api/services/trigger_build", req.body, req.headers);
    if (status === 413 && r.status === -1) return; // connection closed before the answer was read
    expect(r.status).toBe(status);
    expect(r.body).toMatch(message);
    await new Promise((res) => setTimeout(res, 100));
    expect(rx.calls().length).toBe(before);
  });

  test("a body sent chunked (no Content-Length) is refused with 411, before any of it is read", async () => {
    const body = JSON.stringify({ ...PUSH, pad: "x".repeat(1100000) });
    const r = await new Promise<number>((resolve) => {
      const req = http.request(
        { port: rx.port, host: "127.0.0.1", method: "POST", path: "/api/services/trigger_build", headers: { "transfer-encoding": "chunked", "x-hub-signature-256": sign(body) } },
        (res) => resolve(res.statusCode ?? 0),
      );
      req.on("error", () => resolve(-1));
      req.write(body.slice(0, 600000));
      req.end(body.slice(600000));
    });
    expect([411, -1]).toContain(r);
  });

  test("a replayed delivery is refused with 409, also after a restart", async () => {
    const g = github("push", PUSH);
    expect((await request({ port: rx.port }, "POST", "/api/services/trigger_build", g.body, g.headers)).status).toBe(202);
    const again = await request({ port: rx.port }, "POST", "/api/services/trigger_build", g.body, g.headers);
    expect(again.status).toBe(409);
    const rx2 = await startReceiver({ dir: rx.dir });
    try {
      const third = await request({ port: rx2.port }, "POST", "/api/services/trigger_build", g.body, g.headers);
      expect(third.status).toBe(409);
    } finally {
      await rx2.stop();
    }
  });
});

test("forwarding is asynchronous: a slow build VM does not hold the HTTP response", async () => {
  const rx = await startReceiver();
  try {
    const marker = path.join(rx.dir, "slow-done");
    fs.writeFileSync(path.join(rx.routeDir, "qubesbuilder.TriggerBuild"), `#!/bin/sh\nsleep 1.5\necho "$QREXEC_REQUESTED_TARGET" >> ${marker}\n`, { mode: 0o755 });
    const g = github("push", PUSH);
    const t0 = Date.now();
    const r = await request({ port: rx.port }, "POST", "/api/services/trigger_build", g.body, g.headers);
    expect(r.status).toBe(202);
    expect(Date.now() - t0).toBeLessThan(1000);
    const done = await waitFor(() => fs.existsSync(marker) && fs.readFileSync(marker, "utf8").trim().split("\n").length === 2, 10000, "slow calls");
    expect(done).toBe(true);
  } finally {
    await rx.stop();
  }
});

test.each([
  ["missing secret file", (dir: string) => fs.rmSync(path.join(dir, "secret"))],
  ["empty secret", (dir: string) => fs.writeFileSync(path.join(dir, "secret"), "\n")],
  ["short secret", (dir: string) => fs.writeFileSync(path.join(dir, "secret"), "short\n")],
])("refuses to start: %s", async (_name, breakIt) => {
  const dir = tempDir("wh-nosecret");
  const secret = path.join(dir, "secret");
  fs.writeFileSync(secret, `${SECRET}\n`);
  breakIt(dir);
  const config = writeJson(path.join(dir, "webhooks.json"), { listen: { port: 0 } });
  const r = await runJs(path.join(dist, "webhooks.js"), { env: { QBI_CONFIG: config, QBI_SECRET_FILE: secret, QBI_STATE_DIR: dir, HOME: dir } });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/refusing to start: .*secret/);
});

describe("renderNginxConfig", () => {
  test("renders a server for a Unix socket upstream with source filtering", () => {
    const conf = renderNginxConfig({ listen: 80, upstreamSocketOrPort: "/run/webhooks/webhooks.sock", maxBodyBytes: 1048576, allowCidrs: ["140.82.112.0/20", "2a0a:a440::/29"] });
    expect(conf).toContain("listen 80;");
    expect(conf).toContain("client_max_body_size 1048576;");
    expect(conf).toContain("proxy_pass http://unix:/run/webhooks/webhooks.sock:;");
    expect(conf).toMatch(/allow 140\.82\.112\.0\/20;\n\s+allow 2a0a:a440::\/29;\n\s+deny all;/);
  });
  test.each([
    ["socket path injection", { listen: 80, upstreamSocketOrPort: "/run/x.sock; include /etc/passwd", maxBodyBytes: 1 }],
    ["relative socket", { listen: 80, upstreamSocketOrPort: "run/x.sock", maxBodyBytes: 1 }],
    ["bad listen", { listen: "0.0.0.0:80; evil", upstreamSocketOrPort: 8080, maxBodyBytes: 1 }],
    ["bad cidr", { listen: 80, upstreamSocketOrPort: 8080, maxBodyBytes: 1, allowCidrs: ["all; allow"] }],
    ["zero body", { listen: 80, upstreamSocketOrPort: 8080, maxBodyBytes: 0 }],
  ])("rejects %s", (_name, input) => {
    expect(() => renderNginxConfig(input as Parameters<typeof renderNginxConfig>[0])).toThrow();
  });
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const nginxBin = "/usr/sbin/nginx";
test("through Debian's nginx with the generated config (Unix socket upstream)", async () => {
  const dir = tempDir("nginx");
  const sock = path.join(dir, "webhooks.sock");
  const rx = await startReceiver({ dir, config: { listen: { socket: sock } } });
  const [open, filtered] = [await freePort(), await freePort()];
  const servers = [
    renderNginxConfig({ listen: `127.0.0.1:${open}`, upstreamSocketOrPort: sock, maxBodyBytes: 65536 }),
    renderNginxConfig({ listen: `127.0.0.1:${filtered}`, upstreamSocketOrPort: sock, maxBodyBytes: 65536, allowCidrs: ["192.0.2.0/24"] }),
  ];
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `    ${t}_temp_path ${dir}/${t};`).join("\n");
  const main = `user root;\ndaemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents { worker_connections 64; }\nhttp {\n    access_log off;\n${temp}\n${servers.join("\n")}\n}\n`;
  fs.writeFileSync(path.join(dir, "nginx.conf"), main);
  const nginx = spawn(nginxBin, ["-p", dir, "-c", path.join(dir, "nginx.conf")], { stdio: ["ignore", "ignore", "pipe"] });
  children.push(nginx);
  let err = "";
  nginx.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  try {
    const deadline = Date.now() + 10000;
    for (;;) {
      const ok = await new Promise<boolean>((r) => {
        const c = net.connect(open, "127.0.0.1", () => {
          c.destroy();
          r(true);
        });
        c.on("error", () => r(false));
      });
      if (ok) break;
      if (Date.now() > deadline || nginx.exitCode !== null) throw new Error(`nginx did not start: ${err} ${fs.existsSync(`${dir}/error.log`) ? fs.readFileSync(`${dir}/error.log`, "utf8") : ""}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const g = github("push", PUSH);
    const ok = await request({ port: open }, "POST", "/api/services/trigger_build", g.body, g.headers);
    expect(ok.status).toBe(202);
    await waitFor(() => rx.calls().length === 2, 10000, "forwarded calls");
    const unsigned = await request({ port: open }, "POST", "/api/services/trigger_build", g.body, { "x-github-event": "push", "x-github-delivery": delivery() });
    expect(unsigned.status).toBe(401);
    const big = github("push", { ...PUSH, pad: "x".repeat(70000) });
    const tooBig = await request({ port: open }, "POST", "/api/services/trigger_build", big.body, big.headers);
    expect([413, -1]).toContain(tooBig.status);
    expect((await request({ port: open }, "GET", "/api/services/trigger_build", "", {})).status).toBe(403);
    expect((await request({ port: open }, "POST", "/other", "", {})).status).toBe(404);
    expect((await request({ port: open }, "GET", "/api/status", "", {})).status).toBe(404); // the operator's, never through nginx
    const g2 = github("push", PUSH);
    expect((await request({ port: filtered }, "POST", "/api/services/trigger_build", g2.body, g2.headers)).status).toBe(403);
    expect(rx.calls()).toHaveLength(2);
  } finally {
    nginx.kill("SIGTERM");
    await new Promise((r) => (nginx.exitCode !== null ? r(null) : nginx.on("close", r)));
    await rx.stop();
  }
});

/** Runs Debian's nginx with these server blocks until `waitPort` accepts connections. */
async function startNginx(dir: string, servers: string[], waitPort: number): Promise<ChildProcess> {
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `    ${t}_temp_path ${dir}/${t};`).join("\n");
  const main = `user root;\ndaemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents { worker_connections 64; }\nhttp {\n    access_log off;\n${temp}\n${servers.join("\n")}\n}\n`;
  fs.writeFileSync(path.join(dir, "nginx.conf"), main);
  const nginx = spawn(nginxBin, ["-p", dir, "-c", path.join(dir, "nginx.conf")], { stdio: ["ignore", "ignore", "pipe"] });
  children.push(nginx);
  let err = "";
  nginx.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  for (const deadline = Date.now() + 10000; !(await connects(waitPort)); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > deadline || nginx.exitCode !== null) throw new Error(`nginx did not start: ${err} ${fs.existsSync(`${dir}/error.log`) ? fs.readFileSync(`${dir}/error.log`, "utf8") : ""}`);
  }
  return nginx;
}
const connects = (port: number) => new Promise<boolean>((r) => {
  const c = net.connect(port, "127.0.0.1", () => {
    c.destroy();
    r(true);
  });
  c.on("error", () => r(false));
});
async function stopNginx(nginx: ChildProcess): Promise<void> {
  nginx.kill("SIGTERM");
  await new Promise((r) => (nginx.exitCode !== null ? r(null) : nginx.on("close", r)));
}

function httpsPost(port: number, ca: string, urlPath: string, g: { body: string; headers: Record<string, string> }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: "127.0.0.1", servername: "localhost", port, ca, method: "POST", path: urlPath,
      headers: { "content-length": String(Buffer.byteLength(g.body)), ...g.headers } }, (res) => {
      let data = "";
      res.on("data", (d: Buffer) => (data += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on("error", reject);
    req.end(g.body);
  });
}

test("through Debian's nginx with TLS: HTTPS forwarded, plain HTTP redirected where asked, never reaching the receiver", async () => {
  const dir = tempDir("nginx-tls");
  const sock = path.join(dir, "webhooks.sock");
  const rx = await startReceiver({ dir, config: { listen: { socket: sock } } });
  const [cert, key] = [path.join(dir, "tls.crt"), path.join(dir, "tls.key")];
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert], { stdio: "ignore" });
  const ca = fs.readFileSync(cert, "utf8");
  const [tlsPort, httpPort, tlsOnly] = [await freePort(), await freePort(), await freePort()];
  const tls = { certificate: cert, key };
  const nginx = await startNginx(dir, [
    renderNginxConfig({ listen: `127.0.0.1:${tlsPort}`, upstreamSocketOrPort: sock, maxBodyBytes: 65536, tls, httpRedirectPort: httpPort }),
    renderNginxConfig({ listen: `127.0.0.1:${tlsOnly}`, upstreamSocketOrPort: sock, maxBodyBytes: 65536, tls }),
  ], tlsPort);
  try {
    expect((await httpsPost(tlsPort, ca, "/api/services/trigger_build", github("push", PUSH))).status).toBe(202);
    expect((await httpsPost(tlsOnly, ca, "/api/services/trigger_build", github("push", PUSH))).status).toBe(202);
    // Two deliveries, each to both build VMs (the receiver answers 202 before the calls run).
    await waitFor(() => rx.calls().length >= 4, 10000, "forwarded calls");
    expect(rx.calls()).toHaveLength(4);
    const g = github("push", PUSH);
    const redirected = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: httpPort, method: "POST", path: "/api/services/trigger_build", headers: { ...g.headers, host: "hooks.example.org" } }, resolve);
      req.on("error", reject);
      req.end(g.body);
    });
    redirected.resume();
    expect(redirected.statusCode).toBe(308);
    expect(redirected.headers.location).toBe(`https://hooks.example.org:${tlsPort}/api/services/trigger_build`);
    // Plain HTTP on the HTTPS port is an nginx error page, not a delivery.
    expect((await request({ port: tlsPort }, "POST", "/api/services/trigger_build", g.body, g.headers)).status).toBe(400);
    await new Promise((r) => setTimeout(r, 500));
    expect(rx.calls()).toHaveLength(4);
  } finally {
    await stopNginx(nginx);
    await rx.stop();
  }
});

test("renderNginxConfig with TLS: an ssl listener, the redirect server only when asked, and no redirect without TLS", () => {
  const tls = { certificate: "/rw/config/qubes-build-infra/webhooks-tls.crt", key: "/rw/config/qubes-build-infra/webhooks-tls.key" };
  const conf = renderNginxConfig({ listen: 443, upstreamSocketOrPort: 8099, maxBodyBytes: 1024, tls, httpRedirectPort: 80, allowCidrs: ["192.30.252.0/22"] });
  expect(conf).toContain("listen 443 ssl;");
  expect(conf).toContain(`ssl_certificate_key ${tls.key};`);
  expect(conf).toMatch(/server \{\n {4}listen 80;\n[\s\S]*allow 192\.30\.252\.0\/22;\n {4}deny all;\n {4}return 308 https:\/\/\$host\$request_uri;\n\}/);
  expect(renderNginxConfig({ listen: 443, upstreamSocketOrPort: 8099, maxBodyBytes: 1024, tls })).not.toContain("return 308");
  expect(() => renderNginxConfig({ listen: 80, upstreamSocketOrPort: 8099, maxBodyBytes: 1024, httpRedirectPort: 8080 })).toThrow(/only with tls/);
  expect(() => renderNginxConfig({ listen: 443, upstreamSocketOrPort: 8099, maxBodyBytes: 1024, tls, httpRedirectPort: 443 })).toThrow(/must differ/);
  expect(() => renderNginxConfig({ listen: 443, upstreamSocketOrPort: 8099, maxBodyBytes: 1024, tls: { certificate: "/x.crt; include /etc/passwd", key: "/k" } })).toThrow();
});

// ---------------------------------------------------------------- one build VM never stalls, replays into or starves another

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs = 10000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * TriggerBuild in the fake build VMs: each call appends `<vm> <component>` to a log; calls to the
 * `stalled` VMs first wait until `open()` (at most 60 s).
 */
function gatedTrigger(rx: Receiver, stalled: string[]) {
  const logFile = path.join(rx.dir, "trigger.log");
  const gate = path.join(rx.dir, "gate");
  fs.rmSync(gate, { force: true });
  const script = `#!/bin/sh
case " ${stalled.join(" ")} " in *" $QREXEC_REQUESTED_TARGET "*)
  i=0; while [ ! -e ${gate} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done;;
esac
echo "$QREXEC_REQUESTED_TARGET $QREXEC_SERVICE_ARGUMENT" >> ${logFile}
`;
  fs.writeFileSync(path.join(rx.routeDir, "qubesbuilder.TriggerBuild"), script, { mode: 0o755 });
  const lines = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").split("\n").filter(Boolean) : []);
  return { open: () => fs.writeFileSync(gate, ""), lines, of: (vm: string) => lines().filter((l) => l.startsWith(`${vm} `)) };
}

const push = (component: string) => github("push", { ref: "refs/heads/main", repository: { full_name: `QubesOS/qubes-${component}` } });
const post = (rx: Receiver, g: { body: string; headers: Record<string, string> }, route = "trigger_build") =>
  request({ port: rx.port }, "POST", `/api/services/${route}`, g.body, g.headers);

interface Status {
  queues: Record<string, { waiting: number; limit: number; running: { delivery: string; service: string } | null }>;
  dropped: { delivery: string; ids: string[]; vms: Record<string, string>; redeliver: string; repository?: string }[];
  unauthenticated: { bytes: number; budgetBytes: number; requests: number; maxRequests: number };
  counters: Record<string, number>;
  busyRecent: { claimedDelivery: string | null }[];
}
async function getStatus(rx: Receiver, headers: Record<string, string> = {}): Promise<Status> {
  const r = await request({ port: rx.port }, "GET", "/api/status", "", headers);
  if (r.status !== 200) throw new Error(`/api/status: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as Status;
}

test("a stalled build VM does not delay the other build VMs' calls", async () => {
  const rx = await startReceiver({ config: { callTimeoutMs: 60000 } });
  const t = gatedTrigger(rx, ["build-a"]);
  try {
    for (const c of ["c1", "c2", "c3", "c4"]) expect((await post(rx, push(c))).status).toBe(202);
    const b = await waitFor(() => (t.of("build-b").length === 4 ? t.of("build-b") : null), 8000, "build-b's four calls while build-a is stalled");
    expect(b).toEqual(["build-b c1", "build-b c2", "build-b c3", "build-b c4"]);
    expect(t.of("build-a")).toEqual([]);
    const st = await getStatus(rx);
    expect(st.queues["build-a"]).toMatchObject({ waiting: 3, running: { service: "qubesbuilder.TriggerBuild+c1" } });
    expect(st.queues["build-b"]).toMatchObject({ waiting: 0, running: null });
    t.open();
    expect(await waitFor(() => (t.of("build-a").length === 4 ? t.of("build-a") : null), 15000, "build-a after the stall")).toEqual([
      "build-a c1",
      "build-a c2",
      "build-a c3",
      "build-a c4",
    ]);
  } finally {
    t.open();
    await rx.stop();
  }
});

test("a full queue drops that VM's call only; /api/status lists it; a redelivery reaches that VM, once", async () => {
  const rx = await startReceiver({ config: { queueLimit: 1 } });
  const t = gatedTrigger(rx, ["build-a"]);
  try {
    const [d1, d2, d3] = [push("c1"), push("c2"), push("c3")];
    const id3 = d3.headers["x-github-delivery"];
    expect((await post(rx, d1)).status).toBe(202);
    await until(async () => (await getStatus(rx)).queues["build-a"]?.running, 5000, "build-a running c1");
    expect((await post(rx, d2)).status).toBe(202);
    const q = (await getStatus(rx)).queues["build-a"];
    expect([q.waiting, q.running?.service]).toEqual([1, "qubesbuilder.TriggerBuild+c1"]);
    const r3 = await post(rx, d3);
    expect([r3.status, JSON.parse(r3.body)]).toEqual([202, expect.objectContaining({ queued: ["build-b"], dropped: ["build-a"] })]);
    await waitFor(() => t.of("build-b").length === 3, 5000, "build-b's calls");
    const st = await getStatus(rx);
    expect(st.dropped).toEqual([
      expect.objectContaining({
        delivery: id3,
        vms: { "build-a": expect.stringMatching(/queue full/) },
        repository: "QubesOS/qubes-c3",
        redeliver: expect.stringContaining(id3),
      }),
    ]);
    expect(st.dropped[0].redeliver).toContain("repos/QubesOS/qubes-c3/hooks/");
    // Sent again while build-a's queue is still full: 503, still listed.
    expect((await post(rx, d3)).status).toBe(503);
    t.open();
    await until(async () => {
      const q = (await getStatus(rx)).queues["build-a"];
      return q.waiting === 0 && q.running === null;
    }, 10000, "build-a's queue to drain");
    const again = await post(rx, d3);
    expect([again.status, JSON.parse(again.body)]).toEqual([202, expect.objectContaining({ queued: ["build-a"] })]);
    await waitFor(() => t.of("build-a").includes("build-a c3"), 5000, "the redelivered call");
    expect((await post(rx, d3)).status).toBe(409);
    expect((await getStatus(rx)).dropped).toEqual([]);
    await sleep(300);
    expect(t.lines().sort()).toEqual(["build-a c1", "build-a c2", "build-a c3", "build-b c1", "build-b c2", "build-b c3"]);
  } finally {
    t.open();
    await rx.stop();
  }
});

test("when every queue is full the answer is 503, and the delivery is still redeliverable", async () => {
  const dir = tempDir("wh-one");
  fs.writeFileSync(path.join(dir, "build-vms.list"), "build-a\n");
  const rx = await startReceiver({ dir, config: { queueLimit: 1 } });
  const t = gatedTrigger(rx, ["build-a"]);
  try {
    expect((await post(rx, push("c1"))).status).toBe(202);
    await until(async () => (await getStatus(rx)).queues["build-a"]?.running, 5000, "build-a running c1");
    expect((await post(rx, push("c2"))).status).toBe(202);
    const d3 = push("c3");
    const r = await post(rx, d3);
    expect([r.status, r.body]).toEqual([503, expect.stringMatching(/queue full/)]);
    t.open();
    await until(async () => (await getStatus(rx)).queues["build-a"].waiting === 0, 10000, "the queue to drain");
    expect((await post(rx, d3)).status).toBe(202);
    await waitFor(() => t.of("build-a").length === 3, 5000, "the three calls");
  } finally {
    t.open();
    await rx.stop();
  }
});

test("a call that times out is killed with what it started, and listed for redelivery", async () => {
  const rx = await startReceiver({ config: { callTimeoutMs: 700 } });
  const t = gatedTrigger(rx, ["build-a"]);
  try {
    const g = push("c5");
    expect((await post(rx, g)).status).toBe(202);
    const st = await until(async () => {
      const s = await getStatus(rx);
      return s.dropped.length ? s : null;
    }, 5000, "the timed-out call in /api/status");
    expect(st.dropped[0]).toMatchObject({ delivery: g.headers["x-github-delivery"], vms: { "build-a": "timed out after 700 ms" } });
    expect(t.of("build-b")).toEqual(["build-b c5"]);
    // The waiting script was killed with its process group: opening the gate now runs nothing.
    t.open();
    await sleep(600);
    expect(t.of("build-a")).toEqual([]);
    const again = await post(rx, g);
    expect([again.status, JSON.parse(again.body)]).toEqual([202, expect.objectContaining({ queued: ["build-a"] })]);
    await waitFor(() => t.of("build-a").length === 1, 5000, "the redelivered call");
    expect(t.of("build-b")).toEqual(["build-b c5"]);
  } finally {
    t.open();
    await rx.stop();
  }
});

test("the same signed body under a new delivery id is refused (the id is not covered by the HMAC)", async () => {
  const rx = await startReceiver();
  try {
    const g = push("c6");
    expect((await post(rx, g)).status).toBe(202);
    const replay = { body: g.body, headers: { ...g.headers, "x-github-delivery": delivery() } };
    const r = await post(rx, replay);
    expect([r.status, r.body]).toEqual([409, expect.stringMatching(/already processed/)]);
    const c = github("issue_comment", { action: "created", comment: { body: BLOCK.join("\n") } });
    expect((await post(rx, c, "process_comment")).status).toBe(202);
    expect((await post(rx, { body: c.body, headers: { ...c.headers, "x-github-delivery": delivery() } }, "process_comment")).status).toBe(409);
    // A known id with another (signed) body is refused too.
    const other = push("c7");
    expect((await post(rx, { body: other.body, headers: { ...other.headers, "x-github-delivery": g.headers["x-github-delivery"] } })).status).toBe(409);
    await waitFor(() => rx.calls().length >= 4, 5000, "the four calls");
    await sleep(400);
    expect(rx.calls().map((x) => `${x.target} ${x.service}`).sort()).toEqual([
      "build-a qubesbuilder.ProcessGithubCommand",
      "build-a qubesbuilder.TriggerBuild+c6",
      "build-b qubesbuilder.ProcessGithubCommand",
      "build-b qubesbuilder.TriggerBuild+c6",
    ]);
    // The same body on the other route is another delivery (a second hook may send it there).
    expect((await post(rx, { body: g.body, headers: { ...g.headers, "x-github-delivery": delivery() } }, "process_comment")).status).toBe(202);
  } finally {
    await rx.stop();
  }
});

/** Opens a connection that sends headers declaring `declared` bytes and `sent` bytes of body, then waits. */
function partialRequest(port: number, declared: number, sent: number, id: string) {
  const s = net.connect(port, "127.0.0.1");
  let response = "";
  let closed = false;
  s.on("error", () => undefined);
  s.on("data", (d: Buffer) => (response += d.toString("latin1")));
  s.on("close", () => (closed = true));
  s.write(
    `POST /api/services/trigger_build HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n` +
      `X-GitHub-Event: push\r\nX-GitHub-Delivery: ${id}\r\nX-Hub-Signature-256: sha256=${"0".repeat(64)}\r\n\r\n`,
  );
  if (sent > 0) s.write(Buffer.alloc(sent, 0x61));
  return { socket: s, response: () => response, closed: () => closed };
}

test("partial unauthenticated bodies cannot grow the receiver's memory beyond its budget", async () => {
  const rx = await startReceiver(); // defaults: 1 MiB bodies, 8 MiB and 32 requests unauthenticated
  const rss = () => Number((/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${rx.pid}/status`, "utf8")) as RegExpExecArray)[1]) * 1024;
  const conns: ReturnType<typeof partialRequest>[] = [];
  try {
    const before = rss();
    for (let i = 0; i < 100; i++) conns.push(partialRequest(rx.port, MiB, MiB - 1, `partial-${i}`));
    // Every connection is turned away, or held with all but one byte of its body received.
    const refused = () => conns.filter((c) => /^HTTP\/1\.1 503/.test(c.response()) || c.closed()).length;
    await waitFor(() => refused() >= 92, 20000, `92 of 100 refused (${refused()})`).catch(() => undefined);
    await sleep(1000);
    const grown = rss() - before;
    expect(grown).toBeLessThan(48 * MiB);
    const held = conns.filter((c) => !c.closed() && c.response() === "");
    expect(held.length).toBeLessThanOrEqual(8);
    expect(refused()).toBeGreaterThanOrEqual(92);
    const st = await getStatus(rx);
    expect(st.unauthenticated.bytes).toBeLessThanOrEqual(8 * MiB);
    expect(st.counters.busy).toBeGreaterThanOrEqual(92);
    expect(st.busyRecent.map((b) => b.claimedDelivery)).toContain("partial-99");
    for (const c of conns) c.socket.destroy();
    await until(async () => (await getStatus(rx)).unauthenticated.requests === 0, 5000, "the budget to be released");
    expect((await post(rx, push("c8"))).status).toBe(202);
  } finally {
    for (const c of conns) c.socket.destroy();
    await rx.stop();
  }
});

test("at most maxUnauthenticatedRequests bodies are read at once; a slow one is cut after bodyTimeoutMs", async () => {
  const rx = await startReceiver({ config: { maxUnauthenticatedRequests: 1, bodyTimeoutMs: 800 } });
  try {
    const slow = partialRequest(rx.port, 100, 10, "slow-1");
    await sleep(200);
    const g = push("c9");
    const busy = await post(rx, g);
    expect([busy.status, busy.body]).toEqual([503, expect.stringMatching(/busy/)]);
    await waitFor(() => /^HTTP\/1\.1 408/.test(slow.response()), 5000, "408 for the slow body");
    expect((await post(rx, g)).status).toBe(202);
  } finally {
    await rx.stop();
  }
});

test("/api/status answers the operator on loopback only, never a proxied request", async () => {
  const rx = await startReceiver();
  try {
    expect((await request({ port: rx.port }, "GET", "/api/status", "", {})).status).toBe(200);
    const proxied: Record<string, string>[] = [{ "x-forwarded-for": "203.0.113.9" }, { "x-real-ip": "203.0.113.9" }, { forwarded: "for=203.0.113.9" }];
    for (const h of proxied) {
      expect((await request({ port: rx.port }, "GET", "/api/status", "", h)).status).toBe(404);
    }
  } finally {
    await rx.stop();
  }
});

test("calls accepted but not made when the receiver is killed are made after a restart", async () => {
  const dir = tempDir("wh-restart");
  fs.writeFileSync(path.join(dir, "build-vms.list"), "build-a\n");
  const rx = await startReceiver({ dir });
  const t = gatedTrigger(rx, ["build-a"]);
  try {
    expect((await post(rx, push("r1"))).status).toBe(202);
    expect((await post(rx, push("r2"))).status).toBe(202);
    await until(async () => (await getStatus(rx)).queues["build-a"]?.waiting === 1, 5000, "r2 waiting");
    await rx.stop("SIGKILL");
    t.open();
    const rx2 = await startReceiver({ dir });
    try {
      // r1 was running when the receiver died (it may run twice: at least once), r2 had not started.
      await waitFor(() => t.of("build-a").includes("build-a r2"), 10000, "r2 after the restart");
      expect(t.of("build-a")).toContain("build-a r1");
    } finally {
      await rx2.stop();
    }
  } finally {
    t.open();
    await rx.stop();
  }
});

test("ids remembered in the earlier format (deliveries.json) are still refused, then the file is replaced", async () => {
  const dir = tempDir("wh-legacy");
  fs.mkdirSync(path.join(dir, "state"), { recursive: true });
  fs.writeFileSync(path.join(dir, "state", "deliveries.json"), JSON.stringify(["old-delivery-1", "old-delivery-2"]));
  const rx = await startReceiver({ dir });
  try {
    const g = push("c10");
    expect((await post(rx, { body: g.body, headers: { ...g.headers, "x-github-delivery": "old-delivery-2" } })).status).toBe(409);
    expect(fs.existsSync(path.join(dir, "state", "deliveries.json"))).toBe(false);
    expect(fs.readFileSync(path.join(dir, "state", "deliveries.base.jsonl"), "utf8")).toContain("old-delivery-1");
  } finally {
    await rx.stop();
  }
});

describe("DeliveryJournal (the receiver's append-only memory)", () => {
  const hashOf = (i: number) => crypto.createHash("sha256").update(`body ${i}`).digest("hex");
  const rec = (i: number): Delivery => ({
    h: hashOf(i),
    ids: [`id-${i}`],
    t: i,
    ev: "push",
    route: "trigger_build",
    call: { s: `qubesbuilder.TriggerBuild+c${i}`, in: "" },
    vms: { "build-a": { st: "queued" }, "build-b": { st: "queued" } },
  });
  const open = async (dir: string, capacity: number, compactAfterLines?: number) => {
    const messages: string[] = [];
    const j = new DeliveryJournal(dir, { capacity, compactAfterLines, log: (m) => messages.push(m) });
    await j.open();
    return { j, messages };
  };

  test("compacts into a snapshot: the log stays short, and reopened it knows the same deliveries and what is owed", async () => {
    const dir = tempDir("journal");
    const { j } = await open(dir, 50, 100);
    for (let i = 0; i < 500; i++) {
      j.add(rec(i));
      j.setCall(hashOf(i), "build-a", "done");
      j.setCall(hashOf(i), "build-b", i % 7 === 0 ? "owed" : "done", i % 7 === 0 ? "queue full (200 waiting)" : undefined);
      if (i % 50 === 0) await j.durable();
    }
    await j.durable();
    expect(j.stats().compactions).toBeGreaterThanOrEqual(1);
    await j.compact(); // one may still be running (appends go on meanwhile): this one starts after it
    await j.compact();
    j.close();
    const log = fs.readFileSync(path.join(dir, "deliveries.jsonl"), "utf8").split("\n").filter(Boolean);
    expect(log.length).toBeLessThan(100);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith("deliveries.seg-"))).toEqual([]);
    const { j: again } = await open(dir, 50, 100);
    expect(again.size).toBe(50);
    expect(again.get(hashOf(449))).toBeUndefined();
    expect(again.get(hashOf(497))?.vms["build-b"]).toEqual({ st: "owed", why: "queue full (200 waiting)" });
    expect(again.get(hashOf(497))?.call).toEqual({ s: "qubesbuilder.TriggerBuild+c497", in: "" });
    expect(again.get(hashOf(498))?.call).toBeUndefined(); // done everywhere: the call is not kept
    expect(again.byDelivery("trigger_build", "id-499")?.h).toBe(hashOf(499));
    again.close();
  });

  test("a compaction cut short (log rotated, snapshot not yet written, or written but the log not yet removed) loses nothing", async () => {
    for (const snapshotWritten of [false, true]) {
      const dir = tempDir("journal-cut");
      const { j } = await open(dir, 100, 1000000);
      for (let i = 0; i < 10; i++) j.add(rec(i));
      j.setCall(hashOf(3), "build-a", "owed", "timed out after 60000 ms");
      await j.durable();
      j.close();
      // What a rotation leaves behind.
      fs.renameSync(path.join(dir, "deliveries.jsonl"), path.join(dir, "deliveries.seg-1.jsonl"));
      if (snapshotWritten) {
        const { j: k } = await open(tempDir("unused"), 100);
        k.close();
        const base = [JSON.stringify({ k: "base", gen: 1 }), ...fs.readFileSync(path.join(dir, "deliveries.seg-1.jsonl"), "utf8").split("\n").filter(Boolean)];
        fs.writeFileSync(path.join(dir, "deliveries.base.jsonl"), `${base.join("\n")}\n`);
      }
      const { j: again } = await open(dir, 100, 1000000);
      expect(again.size).toBe(10);
      expect(again.get(hashOf(3))?.vms["build-a"]).toEqual({ st: "owed", why: "timed out after 60000 ms" });
      expect(fs.readdirSync(dir).filter((f) => f.startsWith("deliveries.seg-"))).toEqual([]);
      again.close();
    }
  });

  test("a line cut by a crash is skipped with its file:line, and later appends start on a new line", async () => {
    const dir = tempDir("journal-torn");
    const { j } = await open(dir, 100);
    j.add(rec(1));
    await j.durable();
    j.close();
    fs.appendFileSync(path.join(dir, "deliveries.jsonl"), '{"k":"new","h":"ab');
    const { j: again, messages } = await open(dir, 100);
    expect(messages).toEqual([expect.stringMatching(/deliveries\.jsonl:2: skipping an unreadable journal line/)]);
    again.add(rec(2));
    await again.durable();
    again.close();
    const { j: third } = await open(dir, 100);
    expect([third.get(hashOf(1))?.ids, third.get(hashOf(2))?.ids]).toEqual([["id-1"], ["id-2"]]);
    third.close();
  });

  test("group commit: a hundred acceptances waiting together share a few fdatasyncs", async () => {
    const dir = tempDir("journal-sync");
    const { j } = await open(dir, 1000);
    try {
      const before = j.stats().syncs;
      const waits: Promise<void>[] = [];
      for (let i = 0; i < 100; i++) {
        j.add(rec(i));
        waits.push(j.durable());
      }
      await Promise.all(waits);
      expect(j.stats().syncs - before).toBe(1);
      // Written after a sync started: waits for the next one.
      j.add(rec(100));
      await j.durable();
      expect(j.stats().syncs - before).toBe(2);
    } finally {
      j.close();
    }
  });
});
