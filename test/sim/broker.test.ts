/** qubes-sim's qrexec broker: policy-enforced calls between VM sandboxes, dom0 admin calls, journal, rc.local. */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { startSim, StartedSim } from "../helpers/sim";

const ROOT = path.resolve(__dirname, "..", "..");
let sim: StartedSim;

const POLICY = `test.Echo * alice bob allow
test.Echo * alice @default allow target=bob
test.Args +x alice @adminvm allow target=bob
admin.vm.List * alice @adminvm allow
admin.vm.CurrentState * alice bob allow target=dom0
test.Echo * @anyvm @anyvm deny
test.Echo * @anyvm @adminvm deny
policy.Get * alice @adminvm allow
`;

const ECHO = `#!/bin/sh
echo "from=$QREXEC_REMOTE_DOMAIN arg=\${QREXEC_SERVICE_ARGUMENT-unset} full=$QREXEC_SERVICE_FULL_NAME req=$QREXEC_REQUESTED_TARGET type=$QREXEC_REQUESTED_TARGET_TYPE vm=$QUBES_SIM_VM"
echo to-stderr >&2
cat
exit 7
`;

beforeAll(async () => {
  sim = await startSim();
  const c = sim.client;
  for (const vm of ["alice", "bob", "carol"]) {
    await c.vmCreate("AppVM", vm, "red", "debian-13");
    await c.propertySet(vm, "netvm", "");
  }
  await c.policyReplace("10-test", POLICY, "new");
  await c.writeFile("bob", "/usr/local/etc/qubes-rpc/test.Echo", ECHO, { mode: 0o755 });
  await c.writeFile("bob", "/usr/local/etc/qubes-rpc/test.Args+x", ECHO, { mode: 0o755 });
});
afterAll(async () => {
  await sim?.stop();
});

const call = (vm: string, cmd: string, input = "") => sim.client.run(vm, cmd, { input });
const journal = () =>
  fs
    .readFileSync(path.join(sim.stateDir, "qrexec-journal.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));

describe("qrexec broker", () => {
  it("runs an allowed service in the target's sandbox with the qrexec environment, stdio and exit status", async () => {
    await sim.client.vmShutdown("bob").catch(() => undefined);
    const r = await call("alice", "printf 'hello\\n' | qrexec-client-vm -- bob test.Echo+a1", "");
    expect(r.stdout.toString()).toBe("from=alice arg=a1 full=test.Echo+a1 req=bob type=name vm=bob\nhello\n");
    expect(r.stderr.toString()).toBe("to-stderr\n");
    expect(r.exitCode).toBe(7);
    expect((await sim.client.vmCurrentState("bob")).power_state).toBe("Running");
    const j = journal().pop();
    expect(j).toMatchObject({ source: "alice", service: "test.Echo+a1", requestedTarget: "bob", resolvedTarget: "bob", verdict: "allow", rule: "/etc/qubes/policy.d/10-test.policy:1" });
  });

  it("follows target= redirects (@default, @adminvm) and prefers <service>+<arg>", async () => {
    const d = await call("alice", "qrexec-client-vm @default test.Echo </dev/null");
    expect(d.stdout.toString()).toBe("from=alice arg=unset full=test.Echo req=@default type=keyword vm=bob\n");
    const a = await call("alice", "qrexec-client-vm dom0 test.Args+x </dev/null");
    expect(a.stdout.toString()).toContain("arg=x full=test.Args+x req=@adminvm type=keyword vm=bob");
    expect(journal().pop()).toMatchObject({ requestedTarget: "dom0", resolvedTarget: "bob", rule: "/etc/qubes/policy.d/10-test.policy:3" });
  });

  it("refuses denied calls with 126 and journals the deciding rule; the caller is the socket, not the client", async () => {
    const r = await call("carol", "qrexec-client-vm -- bob test.Echo </dev/null");
    expect(r.exitCode).toBe(126);
    expect(r.stderr.toString()).toContain("Request refused");
    expect(journal().pop()).toMatchObject({ source: "carol", verdict: "deny", rule: "/etc/qubes/policy.d/10-test.policy:6" });
    // A client that points at another VM's socket path does not exist in the sandbox.
    const spoof = await call("carol", "QUBES_SIM_QREXEC_SOCKET=/run/qubes-sim/../alice/qrexec.sock qrexec-client-vm bob test.Echo </dev/null");
    expect(spoof.exitCode).toBe(126);
    const none = await call("alice", "qrexec-client-vm bob test.Missing </dev/null");
    expect(none.exitCode).toBe(126);
    expect(journal().pop()).toMatchObject({ verdict: "deny", reason: "no matching rule found" });
  });

  it("serves admin.* resolved to dom0 with the caller as source and the requested target as destination", async () => {
    const r = await call("alice", "qrexec-client-vm dom0 admin.vm.List </dev/null");
    expect(r.exitCode).toBe(0);
    expect(r.stdout.subarray(0, 2).toString("latin1")).toBe("0\0");
    expect(r.stdout.toString()).toContain("carol class=AppVM");
    const s = await call("alice", "qrexec-client-vm bob admin.vm.CurrentState </dev/null");
    expect(s.stdout.toString()).toContain("power_state=Running");
    const denied = await call("bob", "qrexec-client-vm dom0 admin.vm.List </dev/null");
    expect(denied.exitCode).toBe(126);
  });

  it("serves policy.* resolved to dom0 as qubes-core-qrexec's policy services: the data, or the exception on stderr and exit 1", async () => {
    const r = await call("alice", "qrexec-client-vm dom0 policy.Get+10-test </dev/null");
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toMatch(/^sha256:[0-9a-f]{64}\ntest\.Echo \* alice bob allow\n/);
    const missing = await call("alice", "qrexec-client-vm dom0 policy.Get+nope </dev/null");
    expect(missing.exitCode).toBe(1);
    expect(missing.stdout.toString()).toBe("");
    expect(missing.stderr.toString()).toBe(`PolicyAdminFileNotFoundException Not found: ${path.join(sim.stateDir, "dom0/etc/qubes/policy.d/nope.policy")}\n`);
  });

  it("streams output before the service ends", async () => {
    await sim.client.writeFile("bob", "/usr/local/etc/qubes-rpc/test.Echo+slow", "#!/bin/sh\necho first\nsleep 2\necho second\n", { mode: 0o755 });
    const r = await call("alice", "qrexec-client-vm bob test.Echo+slow </dev/null | while read l; do echo \"$(date +%s) $l\"; done");
    const [a, b] = r.stdout.toString().trim().split("\n").map((l) => Number(l.split(" ")[0]));
    expect(b - a).toBeGreaterThanOrEqual(1);
  });

  it("runs services inside the running VM: what they detach outlives the call", async () => {
    await sim.client.writeFile("bob", "/usr/local/etc/qubes-rpc/test.Echo+bg", "#!/bin/sh\nsetsid sh -c 'sleep 1; echo done > /home/user/bg' </dev/null >/dev/null 2>&1 &\nexit 0\n", { mode: 0o755 });
    const r = await call("alice", "qrexec-client-vm bob test.Echo+bg </dev/null");
    expect(r.exitCode).toBe(0);
    await new Promise((res) => setTimeout(res, 2000));
    expect(fs.readFileSync(path.join(sim.stateDir, "vms", "bob", "rw", "home", "user", "bg"), "utf8")).toBe("done\n");
  });

  it("bin/qubes-sim journal shows the calls", () => {
    const out = execFileSync(path.join(ROOT, "bin", "qubes-sim"), ["journal", "--tail", "2", "--state", sim.stateDir], { cwd: ROOT }).toString();
    expect(out.trim().split("\n")).toHaveLength(2);
    expect(out).toContain("test.Echo+bg");
  });

  it("runs /rw/config/rc.local at start and keeps what it backgrounds until the VM halts", async () => {
    const c = sim.client;
    await c.vmCreate("AppVM", "svc", "red", "debian-13");
    await c.writeFile("svc", "/rw/config/rc.local", "#!/bin/sh\n(while :; do date +%s > /home/user/alive; sleep 0.2; done) &\n", { mode: 0o755 });
    await c.vmShutdown("svc");
    await c.vmStart("svc");
    await new Promise((r) => setTimeout(r, 1000));
    const f = path.join(sim.stateDir, "vms", "svc", "rw", "home", "user", "alive");
    const t1 = fs.readFileSync(f, "utf8");
    await new Promise((r) => setTimeout(r, 1500));
    expect(fs.readFileSync(f, "utf8")).not.toBe(t1);
    await c.vmShutdown("svc");
    await new Promise((r) => setTimeout(r, 500));
    const t2 = fs.readFileSync(f, "utf8");
    await new Promise((r) => setTimeout(r, 1000));
    expect(fs.readFileSync(f, "utf8")).toBe(t2);
  });

  it("binds the stand-in GitHub in VMs with network and in sys-net", async () => {
    expect(fs.existsSync(path.join(sim.stateDir, "github", "build-logs.git", "HEAD"))).toBe(true);
    const n = await call("sys-net", "git -C /srv/qubes-sim-github/build-logs.git rev-parse --is-bare-repository");
    expect(n.stdout.toString()).toBe("true\n");
    const none = await call("alice", "test -e /srv/qubes-sim-github && echo yes || echo no");
    expect(none.stdout.toString()).toBe("no\n");
  });
});
