/** qubes-sim's modelled network: netvm chain, Tor gateway, sys-net's uplink and webhook front. */
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { planNetwork, uplinkOf, webFrontOf } from "../../sim/network";
import { startSim, StartedSim } from "../helpers/sim";

jest.setTimeout(120_000);

let sim: StartedSim;
let n: { internet: string; github: string; sysNet: string; torExit: string; webhookFront: { url: string } | null };
const readNet = () => JSON.parse(fs.readFileSync(path.join(sim.stateDir, "network.json"), "utf8")) as typeof n;

/** From inside a VM: `connected <local address>` or the error code. */
const tcp = async (vm: string, host: string, port: number): Promise<string> => {
  const js = `const s=require("net").connect({host:"${host}",port:${port},timeout:1500});s.on("connect",()=>{console.log("connected "+s.localAddress);s.destroy()});` +
    `s.on("error",(e)=>console.log(e.code));s.on("timeout",()=>{console.log("timeout");s.destroy()})`;
  return (await sim.client.run(vm, `node -e '${js}'`)).stdout.toString().trim();
};

/** A server on the host; resolves the peers it saw. */
async function hostServer(addr: string): Promise<{ port: number; peers: string[]; close: () => void }> {
  const peers: string[] = [];
  const s = net.createServer((c) => {
    peers.push(String(c.remoteAddress));
    c.end();
  });
  await new Promise<void>((r) => s.listen(0, addr, () => r()));
  return { port: (s.address() as net.AddressInfo).port, peers, close: () => s.close() };
}

beforeAll(async () => {
  sim = await startSim();
  const c = sim.client;
  await c.vmCreate("AppVM", "torvm", "red", "debian-13");
  await c.propertySet("torvm", "netvm", "sys-whonix");
  await c.vmCreate("AppVM", "clear", "red", "debian-13");
  await c.vmCreate("AppVM", "offline", "black", "debian-13");
  await c.propertySet("offline", "netvm", "");
  n = readNet();
});
afterAll(async () => {
  await sim?.stop();
});

describe("the modelled network", () => {
  it("plans the netvm chain: addresses, routes back through the subtree, the Tor exit behind the gateway", () => {
    const up = uplinkOf(7);
    const plan = planNetwork(
      [
        { name: "sys-net", qid: 5, netvm: null, providesNetwork: true, torGateway: false },
        { name: "sys-firewall", qid: 6, netvm: "sys-net", providesNetwork: true, torGateway: false },
        { name: "sys-whonix", qid: 7, netvm: "sys-firewall", providesNetwork: true, torGateway: true },
        { name: "b", qid: 300, netvm: "sys-whonix", providesNetwork: false, torGateway: false },
        { name: "k", qid: 9, netvm: null, providesNetwork: false, torGateway: false },
      ],
      up,
    );
    expect(plan.uplinkVm).toBe("sys-net");
    expect([...plan.links]).toEqual([["sys-firewall", "sys-net"], ["sys-whonix", "sys-firewall"], ["b", "sys-whonix"]]);
    expect(plan.scripts.get("b")).toContain("ip addr replace 10.137.1.44/32 dev eth0");
    expect(plan.scripts.get("sys-net")).toContain(`ip route replace ${up.torExit} via 10.137.0.6 dev vif6 onlink`);
    expect(plan.scripts.get("sys-net")).not.toContain("10.137.1.44");
    expect(plan.scripts.get("sys-whonix")).toContain(`snat ip to ${up.torExit}`);
    expect(plan.scripts.get("sys-whonix")).toContain(`oifname "eth0" ip daddr { ${up.github} } accept`);
    expect(plan.scripts.get("k")).not.toMatch(/eth0|nft/);
  });

  it("reads sys-net's webhook front from the nginx block rc.local links, and refuses what it cannot apply", () => {
    const dir = fs.mkdtempSync(path.join(sim.stateDir, "front-"));
    fs.mkdirSync(path.join(dir, "config", "x"), { recursive: true });
    fs.writeFileSync(path.join(dir, "config", "rc.local"), "ln -sf /rw/config/x/n.conf /etc/nginx/conf.d/n.conf\n");
    const conf = (body: string) => fs.writeFileSync(path.join(dir, "config", "x", "n.conf"), body);
    conf("server {\n    listen 80;\n    location / {\n        allow 192.30.252.0/22;\n        deny all;\n        proxy_pass http://127.0.0.1:8099;\n    }\n}\n");
    expect(webFrontOf(dir)).toEqual({ port: 80, target: 8099, allow: ["192.30.252.0/22"] });
    conf("server {\n    listen 8080;\n    proxy_pass http://127.0.0.1:9000;\n}\n");
    expect(webFrontOf(dir)).toEqual({ port: 8080, target: 9000, allow: [] });
    conf("server {\n    listen 80;\n    allow 2001:db8::/32;\n    deny all;\n    proxy_pass http://127.0.0.1:9000;\n}\n");
    expect(webFrontOf(dir)).toBeUndefined();
    conf("server {\n    listen 80;\n    proxy_pass http://upstream;\n}\n");
    expect(webFrontOf(dir)).toBeUndefined();
    // HTTPS (with its plain-HTTP redirect server after it) is nginx's work: not forwarded to the receiver in clear.
    conf("server {\n    listen 443 ssl;\n    proxy_pass http://127.0.0.1:9000;\n}\nserver {\n    listen 80;\n    return 308 https://$host$request_uri;\n}\n");
    expect(webFrontOf(dir)).toBeUndefined();
  });

  it("a VM without netvm has loopback only; Tor traffic reaches only GitHub, marked; clearnet reaches the internet", async () => {
    expect((await sim.client.run("offline", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")).stdout.toString().trim()).toBe("lo");
    const gh = await hostServer(n.github);
    const inet = await hostServer(n.internet);
    try {
      expect(await tcp("offline", n.github, gh.port)).not.toMatch(/^connected/);
      expect(await tcp("torvm", "github.qubes-sim.test", gh.port)).toMatch(/^connected 10\.137\./);
      expect(await tcp("torvm", "uploads.qubes-sim.test", inet.port)).not.toMatch(/^connected/);
      expect(await tcp("clear", "uploads.qubes-sim.test", inet.port)).toMatch(/^connected/);
      expect(await tcp("clear", "github.qubes-sim.test", gh.port)).toMatch(/^connected/);
      expect(gh.peers.map((a) => a.replace(/^::ffff:/, ""))).toEqual([n.torExit, n.sysNet]);
      expect(inet.peers.map((a) => a.replace(/^::ffff:/, ""))).toEqual([n.sysNet]);
    } finally {
      gh.close();
      inet.close();
    }
  });

  it("no client reaches another client or its netvm; a netvm change rewires the VM", async () => {
    await sim.client.run("torvm", "true");
    const torIp = (await sim.client.propertyGet("torvm", "ip")).value;
    await sim.client.run("torvm", "(node -e 'require(\"net\").createServer(c=>c.end(\"x\")).listen(7777)' >/dev/null 2>&1 &) ; sleep 0.5");
    expect(await tcp("clear", torIp, 7777)).not.toMatch(/^connected/);
    await sim.client.run("sys-firewall", "(node -e 'require(\"net\").createServer(c=>c.end(\"x\")).listen(7778)' >/dev/null 2>&1 &) ; sleep 0.5");
    expect(await tcp("clear", (await sim.client.propertyGet("sys-firewall", "ip")).value, 7778)).not.toMatch(/^connected/);
    const inet = await hostServer(n.internet);
    try {
      await sim.client.propertySet("torvm", "netvm", "sys-firewall");
      expect(await tcp("torvm", "uploads.qubes-sim.test", inet.port)).toMatch(/^connected/);
      await sim.client.propertySet("torvm", "netvm", "sys-whonix");
      expect(await tcp("torvm", "uploads.qubes-sim.test", inet.port)).not.toMatch(/^connected/);
    } finally {
      inet.close();
    }
  });

  it("sys-net forwards its webhook front only from the allowed ranges, to the loopback receiver", async () => {
    const c = sim.client;
    await c.writeFile("sys-net", "/rw/config/front/n.conf", "server {\n    listen 8080;\n    location / {\n        allow 203.0.113.0/24;\n        deny all;\n        proxy_pass http://127.0.0.1:9000;\n    }\n}\n", { mode: 0o644 });
    await c.writeFile("sys-net", "/rw/config/rc.local", "ln -sf /rw/config/front/n.conf /etc/nginx/conf.d/front.conf 2>/dev/null\n", { mode: 0o755 });
    await c.run("sys-net", "(node -e 'require(\"net\").createServer(c=>c.end(\"receiver\\n\")).listen(9000,\"127.0.0.1\")' >/dev/null 2>&1 &); sleep 0.5");
    await c.run("sys-net", "true");
    const hit = () =>
      new Promise<string>((resolve) => {
        const s = net.connect({ host: n.sysNet, port: 8080, timeout: 1500 });
        let data = "";
        s.on("data", (d) => (data += d.toString()));
        s.on("end", () => resolve(data));
        s.on("error", (e) => resolve((e as NodeJS.ErrnoException).code ?? "error"));
        s.on("timeout", () => {
          s.destroy();
          resolve("timeout");
        });
      });
    expect(readNet().webhookFront).toMatchObject({ port: 8080, target: 9000, allow: ["203.0.113.0/24"] });
    expect(await hit()).toBe("timeout");
    await c.writeFile("sys-net", "/rw/config/front/n.conf", `server {\n    listen 8080;\n    location / {\n        allow ${n.internet}/32;\n        deny all;\n        proxy_pass http://127.0.0.1:9000;\n    }\n}\n`, { mode: 0o644 });
    await c.run("sys-net", "true");
    expect(await hit()).toBe("receiver\n");
    // From inside, nothing reaches sys-net's receiver: not a Tor VM, not a clearnet VM.
    expect(await tcp("torvm", n.sysNet, 8080)).not.toMatch(/^connected/);
    expect(await tcp("clear", n.sysNet, 8080)).not.toMatch(/^connected/);
  });
});
