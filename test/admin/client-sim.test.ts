import { QubesError } from "../../admin/errors";
import { startSim, StartedSim } from "../helpers/sim";

let sim: StartedSim;
beforeAll(async () => {
  sim = await startSim();
});
afterAll(async () => {
  await sim?.stop();
});

async function rejectsWith(p: Promise<unknown>, type: string, msg?: RegExp): Promise<QubesError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(QubesError);
    const q = e as QubesError;
    expect(q.qubesType).toBe(type);
    if (msg) expect(q.message).toMatch(msg);
    return q;
  }
  throw new Error(`expected ${type}`);
}

describe("AdminClient against qubes-sim", () => {
  it("lists the default world and labels", async () => {
    const c = sim.client;
    const vms = await c.vmList();
    expect(vms.map((v) => v.name)).toEqual(["debian-13", "dom0", "fedora-43-minimal", "fedora-43-xfce", "sys-firewall", "sys-net", "sys-whonix", "whonix-gateway-18"]);
    expect(vms.find((v) => v.name === "dom0")).toEqual({ name: "dom0", klass: "AdminVM", state: "Running" });
    expect(await c.labelList()).toEqual(["red", "orange", "yellow", "green", "gray", "blue", "purple", "black"]);
    expect(await c.vmListFrom("sys-net")).toHaveLength(1);
  });

  it("creates, configures and removes an AppVM", async () => {
    const c = sim.client;
    await c.vmCreate("AppVM", "work", "blue", "debian-13");
    expect(await c.propertyGet("work", "template")).toEqual({ isDefault: false, type: "vm", value: "debian-13" });
    expect(await c.propertyGet("work", "netvm")).toEqual({ isDefault: true, type: "vm", value: "sys-firewall" });
    expect(await c.propertyGet("work", "label")).toEqual({ isDefault: false, type: "label", value: "blue" });
    expect(await c.tagList("work")).toEqual(["created-by-dom0"]);
    await c.propertySet("work", "netvm", "");
    expect(await c.propertyGet("work", "netvm")).toEqual({ isDefault: false, type: "vm", value: "" });
    await c.propertySet("work", "memory", "800");
    await c.propertySet("work", "provides_network", "true");
    const all = await c.propertyGetAll("work");
    expect(all.memory).toEqual({ isDefault: false, type: "int", value: "800" });
    expect(all.provides_network.value).toBe("True");
    expect(all.qid.type).toBe("int");
    expect(await c.propertyList("work")).toContain("virt_mode");
    await c.propertyReset("work", "memory");
    expect((await c.propertyGet("work", "memory")).isDefault).toBe(true);
    await c.propertySet("work", "kernelopts", "a\nb\\c");
    expect((await c.propertyGetAll("work")).kernelopts.value).toBe("a\nb\\c");

    await c.featureSet("work", "service.cups", "1");
    expect(await c.featureList("work")).toEqual(["service.cups"]);
    expect(await c.featureGet("work", "service.cups")).toBe("1");
    await c.featureRemove("work", "service.cups");
    await rejectsWith(c.featureGet("work", "service.cups"), "QubesFeatureNotFoundError", /work.*service\.cups/);
    await rejectsWith(c.featureRemove("work", "nope"), "QubesFeatureNotFoundError");

    await c.tagSet("work", "build");
    expect(await c.tagList("work")).toEqual(["build", "created-by-dom0"]);
    await c.tagRemove("work", "build");
    await rejectsWith(c.tagRemove("work", "build"), "QubesTagNotFoundError", /work.*build/);

    expect(await c.volumeList("work")).toEqual(["kernel", "private", "root", "volatile"]);
    const info = await c.volumeInfo("work", "private");
    expect(info.size).toBe(String(2 * 1024 ** 3));
    await c.volumeResize("work", "private", 4n * 1024n ** 3n);
    expect((await c.volumeInfo("work", "private")).size).toBe(String(4 * 1024 ** 3));
    await rejectsWith(c.volumeResize("work", "private", 1024n), "StoragePoolException", /shrinking/);
    await rejectsWith(c.volumeInfo("work", "nope"), "PermissionDenied");

    await c.vmStart("work");
    expect((await c.vmCurrentState("work")).power_state).toBe("Running");
    await rejectsWith(c.vmRemove("work"), "QubesVMNotHaltedError");
    await c.vmShutdown("work");
    await rejectsWith(c.vmShutdown("work"), "QubesVMNotStartedError");
    await c.vmStart("work");
    await c.vmKill("work");
    expect((await c.vmCurrentState("work")).power_state).toBe("Halted");
    await c.vmRemove("work");
    await rejectsWith(c.propertyGet("work", "label"), "QubesVMNotFoundError", /work/);
  });

  it("validates like Qubes", async () => {
    const c = sim.client;
    await rejectsWith(c.vmCreate("AppVM", "1bad", "red", "debian-13"), "QubesValueError", /cannot start with hyphen, underscore, dot or numbers/);
    await rejectsWith(c.vmCreate("AppVM", "x", "pink", "debian-13"), "QubesLabelNotFoundError", /untrusted label/);
    await rejectsWith(c.vmCreate("AppVM", "sys-net", "red", "debian-13"), "QubesVMAlreadyExistsError", /already exists/);
    await rejectsWith(c.vmCreate("AppVM", "x", "red", "sys-net"), "QubesPropertyValueError", /TemplateVM/);
    await rejectsWith(c.vmCreate("TemplateVM", "x", "red", "debian-13"), "ProtocolError", /cannot be based on template/);
    await rejectsWith(c.vmCreate("DispVM", "x", "red", "sys-net"), "QubesException", /template_for_dispvms/);
    await c.vmCreate("AppVM", "app1", "red");
    expect((await c.propertyGet("app1", "template")).value).toBe("fedora-43-xfce");
    await rejectsWith(c.propertySet("app1", "netvm", "debian-13"), "QubesValueError", /does not provide network/);
    await rejectsWith(c.propertySet("app1", "netvm", "nonexistent"), "QubesPropertyValueError", /non-existing qube nonexistent/);
    await rejectsWith(c.propertySet("sys-net", "netvm", "sys-whonix"), "QubesValueError", /Loops/);
    await rejectsWith(c.propertySet("app1", "template", "sys-net"), "QubesPropertyValueError", /wrong VM class.*TemplateVM/);
    await rejectsWith(c.propertySet("app1", "nosuch", "1"), "QubesNoSuchPropertyError", /nosuch/);
    // maxmem 0 turns memory balancing off (Windows builders); memory must stay positive.
    await c.propertySet("app1", "maxmem", "0");
    expect((await c.propertyGet("app1", "maxmem")).value).toBe("0");
    await rejectsWith(c.propertySet("app1", "maxmem", "-1"), "QubesPropertyValueError", /maxmem value must be non-negative/);
    await rejectsWith(c.propertySet("app1", "memory", "0"), "QubesPropertyValueError", /memory value must be positive/);
    await rejectsWith(c.propertySet("debian-13", "template", "debian-13"), "QubesNoSuchPropertyError");
    await rejectsWith(c.propertySet("app1", "provides_network", "maybe"), "QubesValueError", /boolean/);
    await rejectsWith(c.propertySet("app1", "memory", "-5"), "QubesPropertyValueError", /memory/);
    await rejectsWith(c.propertySet("app1", "label", "pink"), "QubesLabelNotFoundError");
    await rejectsWith(c.propertySet("app1", "qid", "5"), "QubesPropertyValueError", /read-only/);
    await rejectsWith(c.propertyReset("app1", "label"), "QubesPropertyValueError");
    await rejectsWith(c.vmRemove("sys-firewall"), "QubesVMNotHaltedError", /sys-firewall/);
    await c.vmCreate("AppVM", "net2", "red");
    await c.propertySet("net2", "provides_network", "True");
    await c.propertySet("app1", "netvm", "net2");
    await rejectsWith(c.propertySet("net2", "provides_network", "False"), "QubesValueError", /app1/);
    await rejectsWith(c.vmRemove("net2"), "QubesVMInUseError", /net2.*app1\.netvm/);
    await c.propertyReset("app1", "netvm");
    await c.vmRemove("net2");
    await rejectsWith(c.vmRemove("fedora-43-xfce"), "QubesVMInUseError", /template/);
    await rejectsWith(c.vmRemove("dom0"), "QubesVMInUseError", /'dom0' cannot be removed/);
    await rejectsWith(c.vmShutdown("sys-firewall"), "QubesVMInUseError", /connected/);
    await rejectsWith(c.vmStart("nope"), "QubesVMNotFoundError");
    // A DVM template and a disposable from it; removal refused while used as default_dispvm.
    await c.propertySet("app1", "template_for_dispvms", "True");
    await c.vmCreate("DispVM", "disp1", "red", "app1");
    await c.propertySet("sys-net", "default_dispvm", "app1");
    await rejectsWith(c.vmRemove("app1"), "QubesVMInUseError", /default_dispvm|template/);
    await c.vmRemove("disp1");
    await c.propertyReset("sys-net", "default_dispvm");
    await c.vmRemove("app1");
  });

  it("internal.GetSystemInfo", async () => {
    const si = await sim.client.systemInfo();
    expect(si.domains["dom0"]).toMatchObject({ type: "AdminVM", uuid: "00000000-0000-0000-0000-000000000000", power_state: "Running" });
    expect(si.domains["sys-net"]).toMatchObject({ type: "AppVM", label: "red", template_for_dispvms: false });
  });

  it("policy admin with tokens", async () => {
    const c = sim.client;
    expect(await c.policyList()).toEqual([]);
    await c.policyReplace("30-build", "qubes.Gpg * build-a keys-a allow\n", "new");
    await rejectsWith(c.policyReplace("30-build", "x", "new"), "PolicyAdminTokenException", /exists/);
    const g = await c.policyGet("30-build");
    expect(g.content).toBe("qubes.Gpg * build-a keys-a allow\n");
    expect(g.token).toMatch(/^sha256:[0-9a-f]{64}$/);
    await c.policyReplace("30-build", "qubes.Gpg * build-b keys-b allow\n", g.token);
    await rejectsWith(c.policyReplace("30-build", "qubes.Gpg * a b deny\n", g.token), "PolicyAdminTokenException", /mismatch/);
    await rejectsWith(c.policyReplace("30-build", "this is not policy\n", "any"), "PolicyAdminSyntaxException");
    await rejectsWith(c.policyReplace("../etc", "", "any"), "ProtocolError");
    await rejectsWith(c.policyReplace("a.b", "", "any"), "PolicyAdminInvalidFileNameException");
    await rejectsWith(c.policyGet("missing"), "PolicyAdminFileNotFoundException");
    expect(await c.policyList()).toEqual(["30-build"]);
    await rejectsWith(c.policyRemove("30-build", g.token), "PolicyAdminTokenException");
    await c.policyRemove("30-build", (await c.policyGet("30-build")).token);
    expect(await c.policyList()).toEqual([]);
  });

  it("counts calls in sim.Stats", async () => {
    await sim.client.call("sim.Stats.Reset", "dom0");
    await sim.client.vmList();
    await sim.client.vmList();
    const stats = JSON.parse((await sim.client.call("sim.Stats", "dom0")).toString());
    expect(stats.calls).toEqual({ "admin.vm.List": 2 });
    expect(stats).toMatchObject({ writes: {}, starts: 0 });
  });

  it("counts writes (refused ones too) and VM starts in sim.Stats", async () => {
    await sim.client.vmCreate("AppVM", "stats-probe", "red", "fedora-43-xfce");
    await sim.client.call("sim.Stats.Reset", "dom0");
    await sim.client.propertyGet("stats-probe", "label");
    await sim.client.propertySet("stats-probe", "label", "blue");
    await rejectsWith(sim.client.propertySet("stats-probe", "label", "no-such-label"), "QubesLabelNotFoundError");
    await sim.client.run("stats-probe", "true");
    await sim.client.run("stats-probe", "true");
    const stats = JSON.parse((await sim.client.call("sim.Stats", "dom0")).toString());
    expect(stats.writes).toEqual({ "admin.vm.property.Set": 2 });
    // stats-probe booted once (the second run finds it running); its netvm was running already.
    expect(stats.starts).toBe(1);
    await sim.client.vmKill("stats-probe");
    await sim.client.vmRemove("stats-probe");
  });
});
