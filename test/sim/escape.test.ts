/**
 * Escape attempts from inside qubes-sim VMs, as root and as user of the VM. Every one must be
 * refused. `QUBES_SIM_ISOLATION=off npx jest test/sim/escape.test.ts` runs the same attempts against
 * VMs without user namespace, capability drop and seccomp filter: then most of them succeed and
 * this suite fails (the proof that it can).
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { startSim, StartedSim } from "../helpers/sim";

jest.setTimeout(120_000);

let sim: StartedSim;
let probe = "";
let netInfo: { internet: string; github: string; sysNet: string };
const USERS = ["user", "root"] as const;
const SECRET = "victim-secret-7f3a";

const run = async (vm: string, cmd: string, user: "user" | "root") => {
  const r = await sim.client.run(vm, cmd, { user });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
};
/** Runs the probe in the attacker as each user: every attempt must print DENIED. */
async function refused(args: string, vm = "attacker"): Promise<void> {
  for (const u of USERS) {
    const r = await run(vm, `/usr/local/bin/probe ${args}`, u);
    expect([u, args, r.out.split(" ")[0]]).toEqual([u, args, "DENIED"]);
    expect(r.code).toBe(0);
  }
}
const hostHandle = (p: string): string => execFileSync(probe, ["handle-of", p]).toString().trim();

beforeAll(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qubes-sim-probe-"));
  probe = path.join(dir, "probe");
  execFileSync("gcc", ["-O1", "-o", probe, path.join(__dirname, "probe.c")]);
  sim = await startSim();
  const c = sim.client;
  await c.vmCreate("AppVM", "attacker", "red", "debian-13");
  await c.propertySet("attacker", "netvm", "sys-whonix");
  await c.vmCreate("AppVM", "victim", "black", "debian-13");
  await c.propertySet("victim", "netvm", "");
  await c.writeFile("victim", "/home/user/secret", `${SECRET}\n`, { mode: 0o600, owner: "user" });
  await c.writeFile("attacker", "/usr/local/bin/probe", fs.readFileSync(probe), { mode: 0o755 });
  netInfo = JSON.parse(fs.readFileSync(path.join(sim.stateDir, "network.json"), "utf8"));
});
afterAll(async () => {
  await sim?.stop();
});

describe("escapes from a VM", () => {
  it("open_by_handle_at cannot open another VM's file or directory", async () => {
    const [type, hex] = hostHandle(path.join(sim.stateDir, "vms", "victim", "rw", "home", "user", "secret")).split(" ");
    await refused(`open-handle /rw ${type} ${hex}`);
    const [dt, dh] = hostHandle(path.join(sim.stateDir, "vms", "victim", "rw", "home", "user")).split(" ");
    await refused(`open-handle /rw ${dt} ${dh} secret`);
  });

  it("the sim's Admin socket is out of reach by any path", async () => {
    const [type, hex] = hostHandle(path.dirname(sim.socket)).split(" ");
    await refused(`connect-handle /rw ${type} ${hex} ${path.basename(sim.socket)}`);
    await refused(`connect-path ${sim.socket}`);
    for (const u of USERS) {
      const r = await run("attacker", "find / -xdev -name qubesd.sock 2>/dev/null | wc -l; ls /run/qubes-sim", u);
      expect(r.out).toBe("0\nqrexec.sock\n");
    }
  });

  it("another VM's qrexec socket is out of reach by any path", async () => {
    const victimRun = path.join(sim.stateDir, "run", "victim");
    const [type, hex] = hostHandle(victimRun).split(" ");
    await refused(`connect-handle /rw ${type} ${hex} qrexec.sock`);
    await refused(`connect-path ${path.join(victimRun, "qrexec.sock")}`);
    await refused("connect-path /run/qubes-sim/../victim/qrexec.sock");
  });

  it("another VM's /rw is not reachable through /proc/<pid>/root", async () => {
    await sim.client.run("victim", "true");
    const pids = fs
      .readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes("--hostname\0victim\0");
        } catch {
          return false;
        }
      });
    expect(pids.length).toBeGreaterThan(0);
    for (const u of USERS) {
      const tries = [...pids, "1"].map((p) => `cat /proc/${p}/root/rw/home/user/secret 2>/dev/null`).join("; ");
      const r = await run("attacker", `${tries}; cat /proc/*/root/home/user/secret 2>/dev/null; true`, u);
      expect(r.out).not.toContain(SECRET);
    }
  });

  it("ptrace of another process is refused", async () => {
    await refused("ptrace-child");
    await refused("ptrace 1");
  });

  it("the read-only stand-in GitHub cannot be remounted, unmounted or written", async () => {
    await refused("remount /srv/qubes-sim-github");
    await refused("remount /usr");
    for (const u of USERS) {
      const r = await run("attacker", "touch /srv/qubes-sim-github/build-logs.git/x 2>&1; mount -o remount,rw /srv/qubes-sim-github 2>&1; echo done", u);
      expect(r.out).toMatch(/Read-only file system/);
      expect(fs.existsSync(path.join(sim.stateDir, "github", "build-logs.git", "x"))).toBe(false);
    }
  });

  it("keyctl, new user namespaces, raw sockets, bpf and setns are refused", async () => {
    await refused("keyctl");
    await refused("userns");
    await refused("raw");
    await refused("bpf");
    await refused("setns /proc/1/ns/mnt");
  });

  it("a VM cannot reconfigure its network or its netvm's firewall", async () => {
    for (const u of USERS) {
      const r = await run("sys-whonix", "nft flush ruleset 2>&1 && echo FLUSHED; ip addr add 10.9.9.9/32 dev lo 2>&1 && echo ADDED; true", u);
      expect(r.out).not.toMatch(/FLUSHED|ADDED/);
    }
  });

  it("the host's network is not reachable from a build VM or an offline VM", async () => {
    const server = net.createServer((c) => c.end("hello\n"));
    await new Promise<void>((r) => server.listen(0, "0.0.0.0", () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const hostAddrs = Object.entries(os.networkInterfaces())
      .filter(([n]) => !n.startsWith("qsim"))
      .flatMap(([, a]) => a ?? [])
      .filter((a) => a.family === "IPv4")
      .map((a) => a.address);
    try {
      for (const vm of ["attacker", "victim"]) {
        for (const addr of [...hostAddrs, netInfo.internet, netInfo.sysNet]) {
          const js = `const s=require("net").connect({host:"${addr}",port:${port},timeout:1500});s.on("data",()=>{console.log("REACHED");process.exit(0)});s.on("error",()=>process.exit(0));s.on("timeout",()=>process.exit(0))`;
          const r = await run(vm, `node -e '${js}'`, "user");
          expect([vm, addr, r.out]).toEqual([vm, addr, ""]);
        }
      }
    } finally {
      server.close();
    }
  });
});
