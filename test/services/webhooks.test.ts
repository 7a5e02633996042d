/**
 * Webhook receiver over real HTTP (loopback port and Unix socket), and once through Debian's
 * nginx running the config rendered by services/nginx.ts.
 */
import { ChildProcess, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as net from "net";
import * as path from "path";
import { renderNginxConfig } from "../../services/nginx";
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
  calls: ReturnType<typeof fakeQrexec>["calls"];
  routeDir: string;
  stop: () => Promise<void>;
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
    env,
    calls: fake.calls,
    routeDir: fake.routeDir,
    stop: () =>
      new Promise((r) => {
        child.on("close", () => r());
        child.kill("SIGTERM");
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

function github(event: string, payload: unknown, extra: Record<string, string> = {}) {
  const body = JSON.stringify(payload);
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

  test("an oversize body sent chunked (no Content-Length) is refused with 413", async () => {
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
    expect([413, -1]).toContain(r);
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

test("a full queue answers 503 without recording the delivery (GitHub may redeliver)", async () => {
  const rx = await startReceiver({ config: { queueLimit: 1 } });
  try {
    const g = github("push", PUSH);
    const r = await request({ port: rx.port }, "POST", "/api/services/trigger_build", g.body, g.headers);
    expect(r.status).toBe(503);
    const state = path.join(rx.dir, "state", "deliveries.json");
    expect(fs.existsSync(state) ? fs.readFileSync(state, "utf8") : "").not.toContain(g.headers["x-github-delivery"]);
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
    const g2 = github("push", PUSH);
    expect((await request({ port: filtered }, "POST", "/api/services/trigger_build", g2.body, g2.headers)).status).toBe(403);
    expect(rx.calls()).toHaveLength(2);
  } finally {
    nginx.kill("SIGTERM");
    await new Promise((r) => (nginx.exitCode !== null ? r(null) : nginx.on("close", r)));
    await rx.stop();
  }
});
