// The provider implementations over an in-memory QubesAdmin: create/update/read/delete behaviour
// and error wording. (test/providers/engine.test.ts runs them for real through Pulumi and qubes-sim.)
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { qubesErrorOf } from "../../admin/errors";
import { configure, dropRunCache, runConnection, setAdminForTests, setRunConnectionForTests } from "../../providers/impl/admin";
import { ProviderError, UNKNOWN } from "../../providers/impl/common";
import * as checkout from "../../providers/impl/builderCheckout";
import * as file from "../../providers/impl/managedFile";
import * as policy from "../../providers/impl/qrexecPolicy";
import * as vm from "../../providers/impl/qubesVm";
import * as proxy from "../../providers/impl/sshProxyConfig";
import * as key from "../../providers/impl/signingKey";
import * as req from "../../providers/impl/templateRequirement";
import * as rpc from "../../providers/impl/rpcService";
import { projectFile } from "../../providers/projectFile";
import { FakeAdmin } from "./fakeAdmin";

const OWNER = "qbi-owner-test-unit";
let fake: FakeAdmin;
beforeEach(() => {
  fake = new FakeAdmin(["fedora-43-xfce", "sys-net", "sys-whonix"]);
  setRunConnectionForTests({ transport: "socket", socket: "/var/run/qubesd.sock" });
  setAdminForTests(() => fake);
});
afterAll(() => {
  setAdminForTests(undefined);
  setRunConnectionForTests(undefined);
});
/** A new provider process: nothing read from dom0 yet. */
const newProcess = () => dropRunCache();
const writes = () => fake.calls.filter((c) => !/^(systemInfo|vmList|propertyGet|propertyGetAll|featureList|featureGet|tagList|volumeInfo|readFile|policyGet|policyList|run)\b/.test(c));

const vmArgs = {
  name: "build-a", klass: "AppVM", template: "fedora-43-xfce", label: "green", netvm: "sys-whonix", features: { f: "1" }, tags: ["qbi-site"],
  privateVolumeSize: "20GiB", ownerTag: OWNER, configKeys: { netvm: "qubes-build-infra:buildNetvm" },
};

describe("the Admin connection of a run", () => {
  const cfg = (admin?: string) => ({ config: { get: (k: string) => (k === "qubes-build-infra:admin" ? admin : undefined) } });

  it("comes from the stack config the engine passes, relative sockets resolved in the project", async () => {
    setRunConnectionForTests(undefined);
    await configure(cfg('{"transport":"sim","socket":".qubes-sim/qubesd.sock"}'));
    expect(runConnection({ transport: "sim", socket: "/stored/elsewhere.sock" })).toEqual({ transport: "sim", socket: path.resolve(".qubes-sim/qubesd.sock") });
  });

  it("QBI_ADMIN wins over the stack config", async () => {
    setRunConnectionForTests(undefined);
    process.env.QBI_ADMIN = '{"transport":"qrexec"}';
    try {
      await configure(cfg('{"transport":"sim","socket":"/a.sock"}'));
      expect(runConnection()).toEqual({ transport: "qrexec" });
    } finally {
      delete process.env.QBI_ADMIN;
    }
  });

  it("falls back to the connection stored by old state only when the run was never configured, and says what to set when there is none", async () => {
    setRunConnectionForTests(undefined);
    expect(runConnection({ transport: "sim", socket: "/old.sock" })).toEqual({ transport: "sim", socket: "/old.sock" });
    expect(() => runConnection()).toThrow(/no Admin API connection for this run: set qubes-build-infra:admin in the stack configuration or QBI_ADMIN/);
    await expect(configure(cfg('{"transport":"carrier-pigeon"}'))).rejects.toThrow(/^qubes-build-infra:admin: transport: /);
  });
});

describe("QubesVm", () => {
  async function created() {
    const checked = await vm.check({}, vmArgs);
    expect(checked.failures).toBeUndefined();
    return { inputs: checked.inputs, res: await vm.create(checked.inputs) };
  }

  it("records the creation on dom0 first, tags the VM as the stack's right after creating it, and sets only what is asked", async () => {
    const { res } = await created();
    expect(writes()).toEqual([
      `featureSet dom0 ${vm.intentFeature("build-a")}`, "vmCreate build-a", `tagSet build-a ${OWNER}`, "propertySet build-a netvm sys-whonix",
      "featureSet build-a f", "tagSet build-a qbi-site", `volumeResize build-a ${20 * 1024 ** 3}`, `featureRemove dom0 ${vm.intentFeature("build-a")}`,
    ]);
    expect(fake.vms.get("build-a")?.props.template.value).toBe("fedora-43-xfce");
    expect(fake.vms.get("dom0")?.features.size).toBe(0);
    expect(res.outs).toMatchObject({ privateVolumeBytes: 20 * 1024 ** 3, uuid: fake.vms.get("build-a")?.uuid, drift: "" });
  });

  it("refresh reports the inputs the next check records for a converged VM (so the engine need not rewrite the state for it)", async () => {
    const { res } = await created();
    newProcess();
    const refreshed = await vm.read(res.id, res.outs);
    newProcess();
    const next = await vm.check(refreshed.props, vmArgs);
    expect(refreshed.inputs).toEqual(next.inputs);
  });

  it("adopts the VM an interrupted run created (owner tag), changing only what differs", async () => {
    const left = fake.addVm("build-a", "AppVM", "fedora-43-xfce");
    left.tags.add(OWNER);
    const res = await vm.create((await vm.check({}, vmArgs)).inputs);
    expect(writes()).toEqual(["propertySet build-a label green", "propertySet build-a netvm sys-whonix", "featureSet build-a f", "tagSet build-a qbi-site", `volumeResize build-a ${20 * 1024 ** 3}`]);
    expect(res.outs.uuid).toBe(left.uuid);
  });

  it("adopts a VM killed between its creation and its tag (the creation recorded on dom0)", async () => {
    fake.vms.get("dom0")!.features.set(vm.intentFeature("build-a"), OWNER);
    fake.addVm("build-a", "AppVM", "fedora-43-xfce");
    await vm.create((await vm.check({}, vmArgs)).inputs);
    expect(writes()).toContain(`tagSet build-a ${OWNER}`);
    expect(writes()).not.toContain("vmCreate build-a");
    expect(fake.vms.get("dom0")?.features.has(vm.intentFeature("build-a"))).toBe(false);
  });

  it("refuses a same-named VM the stack did not create, with the exact commands for dom0 and for qubes-sim", async () => {
    fake.addVm("build-a", "AppVM", "fedora-43-xfce");
    const inputs = (await vm.check({}, vmArgs)).inputs;
    await expect(vm.create(inputs)).rejects.toThrow(
      `QubesVm build-a: creating the VM: a VM named build-a already exists and this stack did not create it (it lacks the tag ${OWNER}): ` +
      `if it is this site's VM, in dom0: qvm-tags build-a add ${OWNER}; if not: qvm-remove build-a`);
    setRunConnectionForTests({ transport: "sim", socket: "/s.sock" });
    await expect(vm.create(inputs)).rejects.toThrow(`QBI_ADMIN='{"transport":"sim","socket":"/s.sock"}' bin/qubes-build-infra admin admin.vm.tag.Set build-a ${OWNER}`);
    expect(writes()).toEqual([]);
  });

  it("removes the VM again when create fails half-way, and says so, keeping the cause", async () => {
    fake.failNext.set("tagSet", "QubesValueError");
    const e = await vm.create((await vm.check({}, vmArgs)).inputs).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ProviderError);
    expect((e as Error).message).toBe(`QubesVm build-a: adding tag ${OWNER}: QubesValueError: tagSet refused (the half-created VM build-a was removed again)`);
    expect(qubesErrorOf(e)?.code).toBe("value");
    expect(fake.vms.has("build-a")).toBe(false);
    expect(fake.vms.get("dom0")?.features.size).toBe(0);
  });

  it("fails the check for a netvm or template dom0 does not have, naming the config key, without starting anything", async () => {
    const r = await vm.check({}, { ...vmArgs, netvm: "sys-nope" });
    expect(r.failures).toEqual([
      { property: "netvm", reason: "netvm: sys-nope does not exist in dom0 (set by qubes-build-infra:buildNetvm): create it first or name an existing VM" },
    ]);
    fake.vms.get("sys-net")!.klass = "AppVM";
    newProcess();
    const t = await vm.check({}, { ...vmArgs, template: "sys-net" });
    expect(t.failures).toEqual([{ property: "template", reason: "template: sys-net is a AppVM, not a TemplateVM" }]);
    expect(fake.calls.filter((c) => c.startsWith("run") || c.startsWith("vmStart"))).toEqual([]);
  });

  it("compares with dom0 on every check and diff, one read per VM, shows a hand edit as drift, and update puts it back", async () => {
    const args = { ...vmArgs, features: {} };
    const checked0 = await vm.check({}, args);
    const res = await vm.create(checked0.inputs);
    const inputs = checked0.inputs;
    const v = fake.vms.get("build-a")!;
    v.props.netvm = { isDefault: false, type: "vm", value: "sys-net" };
    v.tags.delete("qbi-site");
    newProcess();
    fake.calls.length = 0;
    const checked = await vm.check(inputs, args);
    expect(checked.inputs.drift).toBe("netvm is sys-net (recorded: sys-whonix); tag qbi-site missing");
    expect(await vm.diff("build-a", res.outs, checked.inputs)).toEqual({ changes: true });
    expect(fake.calls).toEqual(["systemInfo", "propertyGetAll build-a"]);
    await vm.update("build-a", res.outs, checked.inputs);
    expect(writes()).toEqual(["propertySet build-a netvm sys-whonix", "tagSet build-a qbi-site"]);
    newProcess();
    expect(await vm.diff("build-a", res.outs, checked.inputs)).toEqual({ changes: false });
  });

  it("a VM removed by hand: the diff replaces it, refresh drops it, delete has nothing to do", async () => {
    const { inputs, res } = await created();
    fake.vms.delete("build-a");
    newProcess();
    expect((await vm.check(inputs, vmArgs)).inputs.drift).toMatch(/^build-a does not exist in dom0 any more/);
    expect(await vm.diff("build-a", res.outs, inputs)).toEqual({ changes: true, replaces: ["drift"], deleteBeforeReplace: true });
    expect(await vm.read("build-a", res.outs)).toEqual({ id: "", props: {} });
    await vm.delete("build-a", res.outs);
  });

  it("a VM recreated by someone (another uuid) is not the resource's: replaced, never removed by it", async () => {
    const { inputs, res } = await created();
    fake.vms.delete("build-a");
    fake.addVm("build-a", "AppVM", "fedora-43-xfce");
    newProcess();
    expect(await vm.diff("build-a", res.outs, inputs)).toMatchObject({ replaces: ["drift"] });
    expect(await vm.read("build-a", res.outs)).toEqual({ id: "", props: {} });
    await vm.delete("build-a", res.outs);
    expect(fake.vms.has("build-a")).toBe(true);
  });

  it("updates with only the calls that differ", async () => {
    const { inputs, res } = await created();
    newProcess();
    fake.calls.length = 0;
    await vm.update("build-a", res.outs, { ...inputs, netvm: null });
    expect(writes()).toEqual(["propertySet build-a netvm "]);
  });

  it("outputs written before the connection left the state are rewritten once, without an Admin write", async () => {
    const { inputs, res } = await created();
    const old = { ...res.outs, admin: { transport: "sim", socket: "/old/machine/qubesd.sock" } };
    newProcess();
    fake.calls.length = 0;
    expect(await vm.diff("build-a", old, inputs)).toEqual({ changes: true });
    const u = await vm.update("build-a", old, inputs);
    expect(u.outs).not.toHaveProperty("admin");
    expect(writes()).toEqual([]);
  });

  it("refresh reports drift in props and inputs, limited to managed features and tags", async () => {
    const { res } = await created();
    const v = fake.vms.get("build-a")!;
    v.props.netvm = { isDefault: false, type: "vm", value: "sys-net" };
    v.features.set("f", "2");
    v.features.set("other", "x");
    v.tags.delete("qbi-site");
    newProcess();
    const r = await vm.read("build-a", res.outs);
    expect(r.inputs).toMatchObject({ netvm: "sys-net", features: { f: "2" }, tags: [], ownerTag: OWNER });
    expect(r.inputs?.tags).not.toContain("created-by-dom0");
    expect(await vm.diff("build-a", r.props, res.outs)).toEqual({ changes: true });
  });

  it("works where internal.GetSystemInfo is refused (the VM list and tags are read one by one)", async () => {
    const { inputs, res } = await created();
    fake.refuseSystemInfo = true;
    newProcess();
    fake.calls.length = 0;
    expect(await vm.diff("build-a", res.outs, inputs)).toEqual({ changes: false });
    expect(fake.calls).toEqual(["systemInfo", "vmList", "propertyGetAll build-a", "tagList build-a", "featureList build-a", "featureGet build-a f"]);
  });

  it("halts before removing, and explains a refused delete with Qubes' own error", async () => {
    const { res } = await created();
    fake.vms.get("build-a")!.running = true;
    fake.failNext.set("vmRemove", "QubesVMInUseError");
    await expect(vm.delete("build-a", res.outs)).rejects.toThrow(/QubesVm build-a: removing it: cannot remove it: QubesVMInUseError: vmRemove refused\. Qubes refuses .*netvm/);
    expect(fake.vms.get("build-a")?.running).toBe(false);
    await vm.delete("build-a", res.outs);
    expect(fake.vms.has("build-a")).toBe(false);
  });
});

describe("QrexecPolicy", () => {
  const rule = (service: string) => ({ service, argument: "*", source: "build-a", target: "keys-a", action: "allow", params: {} });
  const args = { name: "20-qubes-build-infra", rules: [rule("qubes.Gpg")] };

  it("shows a hand edit on the next preview (one read) and a plain update puts the site's rules back", async () => {
    const c = await policy.create((await policy.check({}, args)).inputs);
    expect(fake.policies.get("20-qubes-build-infra")).toMatch(/^# Managed by qubes-build-infra.*\nqubes\.Gpg \* build-a keys-a allow\n$/s);
    await fake.policyReplace("20-qubes-build-infra", "qubes.Gpg * @anyvm keys-a allow\n", "any");
    newProcess();
    fake.calls.length = 0;
    const checked = await policy.check(args, args);
    expect(checked.inputs.ruleDiff).toBe("20-qubes-build-infra.policy: 1 rule(s) added, 1 removed, 0 kept\n- qubes.Gpg * @anyvm keys-a allow\n+ qubes.Gpg * build-a keys-a allow");
    expect(await policy.diff("x", c.outs, checked.inputs)).toEqual({ changes: true });
    expect(fake.calls).toEqual(["policyGet 20-qubes-build-infra"]);
    await policy.update("x", c.outs, checked.inputs);
    expect(fake.policies.get("20-qubes-build-infra")).toBe(c.outs.content);
    newProcess();
    expect(await policy.diff("x", c.outs, checked.inputs)).toEqual({ changes: false });
  });

  it("outputs that held the connection are rewritten once, without writing the file", async () => {
    const c = await policy.create((await policy.check({}, args)).inputs);
    const old = { ...c.outs, admin: { transport: "sim", socket: "/old.sock" } };
    newProcess();
    expect(await policy.diff("x", old, (await policy.check(args, args)).inputs)).toEqual({ changes: true });
    fake.calls.length = 0;
    const u = await policy.update("x", old, (await policy.check(args, args)).inputs);
    expect(u.outs).not.toHaveProperty("admin");
    expect(writes()).toEqual([]);
  });

  it("never overwrites an edit made after this run read the file", async () => {
    const c = await policy.create((await policy.check({}, args)).inputs);
    newProcess();
    const next = { ...args, rules: [rule("qubes.Gpg"), rule("qubesbuilder.LogReceived")] };
    const checked = await policy.check(args, next);
    expect(await policy.diff("x", c.outs, checked.inputs)).toEqual({ changes: true });
    await fake.policyReplace("20-qubes-build-infra", "qubes.Gpg * @anyvm keys-a allow\n", "any");
    await expect(policy.update("x", c.outs, checked.inputs)).rejects.toThrow(
      /^QrexecPolicy 20-qubes-build-infra\.policy: replacing the file: refused: the file changed in dom0 while this run was applying \(PolicyAdminTokenException: token mismatch\); it was not overwritten/);
    expect(fake.policies.get("20-qubes-build-infra")).toBe("qubes.Gpg * @anyvm keys-a allow\n");
  });

  it("refresh makes the file's rules the inputs; delete refuses a file edited since", async () => {
    const c = await policy.create((await policy.check({}, args)).inputs);
    await fake.policyReplace("20-qubes-build-infra", "qubes.Gpg * @anyvm keys-a allow\n", "any");
    newProcess();
    const r = await policy.read("x", c.outs);
    expect(r.inputs?.rules).toEqual([{ ...rule("qubes.Gpg"), source: "@anyvm" }]);
    expect(r.props).toMatchObject({ ruleDiff: expect.stringContaining("+ qubes.Gpg * @anyvm keys-a allow") });
    await expect(policy.delete("x", c.outs)).rejects.toThrow(/removing the file: refused: the file was changed outside Pulumi/);
    await policy.delete("x", r.props);
    expect(fake.policies.size).toBe(0);
    await policy.delete("x", r.props);
  });

  it("takes over the file an interrupted run wrote, and refuses a file it did not write", async () => {
    const first = (await policy.check({}, args)).inputs;
    await policy.create(first);
    newProcess();
    const again = await policy.create(first);
    expect(again.outs.token).toMatch(/^[0-9a-f]{64}$/);
    fake.policies.set("30-other", "qubes.Gpg * @anyvm @anyvm allow\n");
    newProcess();
    await expect(policy.create({ ...first, name: "30-other" })).rejects.toThrow(
      "QrexecPolicy 30-other.policy: creating the file: /etc/qubes/policy.d/30-other.policy already exists and was not written by qubes-build-infra");
    expect(fake.policies.get("30-other")).toBe("qubes.Gpg * @anyvm @anyvm allow\n");
  });

  it("writes a policy too big to align in one Admin request without alignment, and refuses one too big even so at check", async () => {
    // 701 rules: aligned ~80 KB, one space between columns ~52 KB (qubesd takes 64 KiB a request).
    const many = Array.from({ length: 700 }, (_, i) => ({ ...rule(`qubesbuilder.Service${i}`), source: `build-environment-${i}`, target: `keys-environment-${i}` }));
    const big = { ...args, rules: [rule("qubesbuilder.AVeryLongServiceNameThatWidensTheFirstColumn"), ...many] };
    const checked = await policy.check({}, big);
    expect(checked.failures).toBeUndefined();
    await policy.create(checked.inputs);
    const text = fake.policies.get("20-qubes-build-infra")!;
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(policy.POLICY_MAX_BYTES);
    expect(text).toContain("\nqubesbuilder.Service0 * build-environment-0 keys-environment-0 allow\n");
    const tooBig = { ...args, rules: [...many, ...many.map((r) => ({ ...r, argument: "+other" }))] };
    const refused = await policy.check({}, tooBig);
    expect(refused.failures?.[0]).toMatchObject({ property: "rules" });
    expect(refused.failures?.[0].reason).toMatch(/^20-qubes-build-infra\.policy would be \d+ bytes \(1400 rules\) even without column alignment; qubesd takes at most 65536 bytes per Admin API request/);
  });

  it("rejects rules that do not survive rendering at check", async () => {
    const bad = await policy.check({}, { ...args, rules: [{ ...rule("qubes.Gpg"), source: "bad name!" }] });
    expect(bad.failures?.[0]).toMatchObject({ property: "rules" });
  });
});

describe("resources in a VM", () => {
  async function inBuildA() {
    const v = fake.addVm("build-a", "AppVM", "fedora-43-xfce");
    const c = await file.create((await file.check({}, { vm: "build-a", vmUuid: v.uuid, path: "/home/user/x", content: "x\n" })).inputs);
    return { v, c };
  }

  it("records the content applied and its hash (the engine keeps a secret input's output secret)", async () => {
    const c = await file.create((await file.check({}, { vm: "sys-net", path: "/s/webhooks", content: "hunter2", mode: 0o600, owner: "user" })).inputs);
    expect(c.outs).toMatchObject({ content: "hunter2", sha256: "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7" });
    expect(fake.vms.get("sys-net")?.files.get("/s/webhooks")).toMatchObject({ mode: 0o600, owner: "user" });
  });

  it("are gone when their VM is gone: refresh drops them and delete has nothing to do, without touching any VM", async () => {
    const { c } = await inBuildA();
    fake.vms.delete("build-a");
    newProcess();
    fake.calls.length = 0;
    expect(await file.read(c.id, c.outs)).toEqual({ id: "", props: {} });
    await file.delete(c.id, c.outs);
    expect(fake.calls).toEqual(["systemInfo"]);
  });

  it("are gone when the VM of that name is another one (recreated), and never touch it", async () => {
    const { c } = await inBuildA();
    fake.vms.delete("build-a");
    const other = fake.addVm("build-a", "AppVM", "fedora-43-xfce");
    await fake.writeFile("build-a", "/home/user/x", "theirs\n", { mode: 0o644 });
    newProcess();
    expect(await file.read(c.id, c.outs)).toEqual({ id: "", props: {} });
    await file.delete(c.id, c.outs);
    expect(other.files.get("/home/user/x")?.content.toString()).toBe("theirs\n");
  });

  it("are replaced with their VM (new uuid, or one not known yet because the VM is being replaced)", async () => {
    const { c } = await inBuildA();
    const same = { vm: "build-a", vmUuid: c.outs.vmUuid, path: "/home/user/x", content: "x\n", mode: 0o644, owner: "root", kind: "file", blockId: "main" };
    expect(await file.diff(c.id, c.outs, same)).toEqual({ changes: false });
    expect(await file.diff(c.id, c.outs, { ...same, vmUuid: UNKNOWN })).toEqual({ changes: true, replaces: ["vmUuid"], deleteBeforeReplace: true });
    expect(await file.diff(c.id, c.outs, { ...same, vmUuid: "another" })).toEqual({ changes: true, replaces: ["vmUuid"], deleteBeforeReplace: true });
  });

  it("record the VM's identity once, without writing the file again (state from before it was recorded)", async () => {
    const { v, c } = await inBuildA();
    const { vmUuid: _u, ...old } = c.outs;
    const now = { ...old, vmUuid: v.uuid };
    expect(await file.diff(c.id, { ...old, admin: { transport: "sim", socket: "/x" } }, now)).toEqual({ changes: true });
    fake.calls.length = 0;
    const u = await file.update(c.id, old, now);
    expect(u.outs).toMatchObject({ vmUuid: v.uuid, sha256: c.outs.sha256 });
    expect(fake.calls).toEqual([]);
  });

  it("a VM named by the config must exist at check, named with its key", async () => {
    const r = await rpc.check({}, { vm: "sys-nett", service: "local.ConnectSSH", content: "x", configKeys: { vm: "qubes-build-infra:netvm" } });
    expect(r.failures).toEqual([{ property: "vm", reason: "vm: sys-nett does not exist in dom0 (set by qubes-build-infra:netvm): create it first or name an existing VM" }]);
    expect((await rpc.check({}, { vm: "sys-net", service: "local.ConnectSSH", content: "x", configKeys: { vm: "qubes-build-infra:netvm" } })).failures).toBeUndefined();
  });

  it("a ManagedFile manages only its block and removes only its block", async () => {
    await fake.writeFile("sys-net", "/rw/config/rc.local", "#!/bin/sh\necho mine\n", { mode: 0o755 });
    const c = await file.create((await file.check({}, { vm: "sys-net", path: "/rw/config/rc.local", content: "start-webhooks", mode: 0o755, kind: "block", blockId: "webhooks" })).inputs);
    expect(fake.text("sys-net", "/rw/config/rc.local")).toBe("#!/bin/sh\necho mine\n# BEGIN qubes-build-infra webhooks\nstart-webhooks\n# END qubes-build-infra webhooks\n");
    const same = await file.read(c.id, c.outs);
    expect(await file.diff(c.id, same.props, { ...c.outs, content: "start-webhooks" })).toEqual({ changes: false });
    await file.delete(c.id, c.outs);
    expect(fake.text("sys-net", "/rw/config/rc.local")).toBe("#!/bin/sh\necho mine\n");
  });
});

describe("content by reference (contentFile + contentSha256)", () => {
  let dir: string;
  let prog: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-ref-"));
    prog = path.join(dir, "build-log.js");
    fs.writeFileSync(prog, "#!/usr/bin/env node\nconsole.log('v1');\n");
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("installs the referenced text and keeps only the reference and its hash", async () => {
    const ref = projectFile(prog);
    expect(ref).toEqual({ contentFile: prog, contentSha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    fake.addVm("logs", "AppVM", "fedora-43-xfce");
    const checked = await rpc.check({}, { vm: "logs", service: "qubesbuilder.BuildLog", ...ref });
    expect(checked.failures).toBeUndefined();
    const c = await rpc.create(checked.inputs);
    expect(fake.text("logs", "/usr/local/etc/qubes-rpc/qubesbuilder.BuildLog")).toBe("#!/usr/bin/env node\nconsole.log('v1');\n");
    expect(c.outs).toMatchObject({ contentFile: prog, sha256: ref.contentSha256 });
    expect(JSON.stringify(c.outs)).not.toContain("console.log");
    expect(await rpc.diff(c.id, c.outs, checked.inputs)).toEqual({ changes: false });
    // A new build of the program is a change, seen from the hash alone.
    fs.writeFileSync(prog, "console.log('v2');\n");
    expect(await rpc.diff(c.id, c.outs, { ...checked.inputs, ...projectFile(prog) })).toEqual({ changes: true });
  });

  it("writes nothing when the file changed after the program hashed it", async () => {
    const ref = projectFile(prog);
    fs.writeFileSync(prog, "tampered\n");
    const inputs = (await file.check({}, { vm: "sys-net", path: "/usr/local/lib/webhooks.js", ...ref, mode: 0o755 })).inputs;
    await expect(file.create(inputs)).rejects.toThrow(`ManagedFile sys-net:/usr/local/lib/webhooks.js: contentFile ${prog} changed since the program read it`);
    expect(fake.vms.get("sys-net")?.files.has("/usr/local/lib/webhooks.js")).toBe(false);
    fs.rmSync(prog);
    await expect(file.create(inputs)).rejects.toThrow(/contentFile .* cannot be read \(ENOENT\); nothing was written/);
  });

  it("refuses both ways at once, half a reference, neither, and a referenced block", async () => {
    const ref = projectFile(prog);
    const base = { vm: "sys-net", path: "/x" };
    const reasons = async (extra: Record<string, unknown>) => (await file.check({}, { ...base, ...extra })).failures?.map((f) => f.reason);
    expect(await reasons({ content: "a", ...ref })).toEqual(["contentFile: give either content or contentFile, not both"]);
    expect(await reasons({ contentFile: ref.contentFile })).toEqual(["contentSha256: contentFile and contentSha256 go together"]);
    expect(await reasons({})).toEqual(["content: content (or contentFile with contentSha256) is required"]);
    expect(await reasons({ ...ref, kind: "block" })).toEqual(["contentFile: a block takes inline content only"]);
    expect(await reasons({ contentFile: "x", contentSha256: "nothex" })).toEqual(["contentSha256: a sha256 in hex"]);
  });

  it("brings outputs that still hold the text in line once (states from before references)", async () => {
    const text = fs.readFileSync(prog, "utf8");
    const inline = await file.create((await file.check({}, { vm: "sys-net", path: "/p.js", content: text })).inputs);
    const byRef = (await file.check({}, { vm: "sys-net", path: "/p.js", ...projectFile(prog) })).inputs;
    expect(await file.diff(inline.id, inline.outs, byRef)).toEqual({ changes: true });
    const u = await file.update(inline.id, inline.outs, byRef);
    expect(u.outs.content).toBeUndefined();
    expect(await file.diff(inline.id, u.outs, byRef)).toEqual({ changes: false });
  });
});

describe("SshProxyConfig", () => {
  it("puts its Host blocks first in an existing config and keeps the rest", async () => {
    fake.addVm("build-a", "AppVM", "fedora-43-xfce");
    await fake.writeFile("build-a", proxy.CONFIG, "Host *\n    User me\n", { mode: 0o600, owner: "user" });
    const c = await proxy.create({ vm: "build-a", netvm: "sys-net", hosts: [{ host: "up.example.org", user: "u", hostKeys: [{ type: "ssh-ed25519", key: "AAAA" }] }] });
    const cfg = fake.text("build-a", proxy.CONFIG)!;
    expect(cfg.startsWith("# BEGIN qubes-build-infra ssh-proxy\nHost up.example.org\n")).toBe(true);
    expect(cfg.endsWith("# END qubes-build-infra ssh-proxy\nHost *\n    User me\n")).toBe(true);
    expect(fake.vms.get("build-a")?.files.get(proxy.KNOWN_HOSTS)).toMatchObject({ mode: 0o644, owner: "user" });
    expect((await proxy.read(c.id, c.outs)).props).toEqual(c.outs);
    await proxy.delete(c.id, c.outs);
    expect(fake.text("build-a", proxy.CONFIG)).toBe("Host *\n    User me\n");
  });
});

describe("SigningKey", () => {
  it("a failing gpg is an error naming the step and gpg's message, never an empty key list (no second key is generated)", async () => {
    fake.addVm("keys-a", "AppVM", "fedora-43-xfce");
    fake.runResults.push({ exitCode: 2, stdout: Buffer.alloc(0), stderr: Buffer.from("gpg: Fatal: can't open keybox\n") });
    await expect(key.create({ vm: "keys-a", uid: "test" })).rejects.toThrow(
      "SigningKey in keys-a: listing secret keys: gpg failed (exit 2): gpg: Fatal: can't open keybox");
    expect(fake.calls.filter((c) => c.startsWith("run"))).toEqual(["run keys-a"]);
  });

  it("parses only primary secret-key fingerprints", () => {
    const colons = "sec:u:255:22:AAAA:1::::::scESC:::+:::ed25519:::0:\nfpr:::::::::1111111111111111111111111111111111111111:\n" +
      "ssb:u:255:18:BBBB:1::::::e:::+:::cv25519::\nfpr:::::::::2222222222222222222222222222222222222222:\n";
    expect(key.parseSecretKeys(colons)).toEqual(["1111111111111111111111111111111111111111"]);
  });
});

describe("TemplateRequirement", () => {
  const args = { vm: "fedora-43-xfce", commands: ["node", "nginx", "socat"], purpose: "the net VM" };

  it("checks at preview only what the VM list says: no command runs, no VM starts", async () => {
    fake.missingCommands = new Set(["nginx", "socat"]);
    const r = await req.check({}, args);
    expect(r.failures).toBeUndefined();
    expect(fake.calls).toEqual(["systemInfo"]);
    expect(fake.vms.get("fedora-43-xfce")?.running).toBe(false);
  });

  it("fails the check for a template dom0 does not have, naming the config key, without starting anything", async () => {
    const r = await req.check({}, { vm: "fedora-99", commands: ["node"], configKeys: { vm: "qubes-build-infra:buildTemplate" } });
    expect(r.failures).toEqual([{ property: "vm", reason: "template fedora-99 does not exist in dom0 (set by qubes-build-infra:buildTemplate): install it (qvm-template install fedora-99) or name an installed template" }]);
    expect(fake.calls.filter((c) => c.startsWith("run"))).toEqual([]);
  });

  it("fails `up` with the missing commands, and shuts down the template it had to start", async () => {
    fake.missingCommands = new Set(["nginx", "socat"]);
    await expect(req.create(args)).rejects.toThrow("template fedora-43-xfce lacks nginx, socat (needed by the net VM)");
    expect(fake.calls).toEqual(["systemInfo", "run fedora-43-xfce", "vmShutdown fedora-43-xfce"]);
    expect(fake.vms.get("fedora-43-xfce")?.running).toBe(false);
    fake.missingCommands.clear();
    await expect(req.create(args)).resolves.toMatchObject({ outs: { missing: [] } });
  });

  it("leaves a running template running, and refreshes only a running one", async () => {
    fake.vms.get("fedora-43-xfce")!.running = true;
    const made = await req.create(args);
    expect(fake.calls).toEqual(["systemInfo", "run fedora-43-xfce"]);
    fake.missingCommands = new Set(["socat"]);
    expect(((await req.read(made.id, made.outs)).props as { missing?: string[] }).missing).toEqual(["socat"]);
    fake.vms.get("fedora-43-xfce")!.running = false;
    newProcess();
    fake.calls.length = 0;
    expect(((await req.read(made.id, made.outs)).props as { missing?: string[] }).missing).toEqual([]);
    expect(fake.calls).toEqual(["systemInfo"]);
  });
});

// The resource classes pass only what the program gives; the defaults live on the providers' schemas.
describe("check fills in every default the resource classes used to set", () => {
  const same = async (check: (o: unknown, n: unknown) => Promise<{ inputs: Record<string, unknown>; failures?: unknown }>,
    given: Record<string, unknown>, defaults: Record<string, unknown>) => {
    const bare = await check({}, given);
    expect(bare.failures).toBeUndefined();
    expect(bare.inputs).toMatchObject(defaults);
    expect(bare.inputs).toEqual((await check({}, { ...defaults, ...given })).inputs);
  };
  const fpr = "0123456789ABCDEF0123456789ABCDEF01234567";

  it("SigningKey: gnupgHome", () => same(key.check, { vm: "keys-a", uid: "k" }, { gnupgHome: "/home/user/.gnupg" }));
  it("BuilderCheckout: submodules and user", () => same(checkout.check,
    { vm: "build-a", dir: "/home/user/b", url: "https://example.org/b.git", commit: "a".repeat(40), maintainers: [fpr], keys: "k", label: "b" },
    { submodules: false, user: "user" }));
  it("ManagedFile: mode, owner, kind and blockId", () => same(file.check, { vm: "build-a", path: "/home/user/x", content: "x\n" },
    { mode: 0o644, owner: "root", kind: "file", blockId: "main" }));
  it("RpcService: mode", () => same(rpc.check, { vm: "build-a", service: "qbi.Test", content: "x" }, { mode: 0o755 }));
  it("QubesVm: features and tags", () => {
    const { features: _f, tags: _t, ...rest } = vmArgs;
    return same(vm.check, rest, { features: {}, tags: [] });
  });
});
