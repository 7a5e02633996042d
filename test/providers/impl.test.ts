// The provider implementations over an in-memory QubesAdmin: create/update/read/delete behaviour
// and error wording. (test/providers/engine.test.ts runs them for real through Pulumi and qubes-sim.)
import { setAdminForTests } from "../../providers/impl/admin";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as file from "../../providers/impl/managedFile";
import * as policy from "../../providers/impl/qrexecPolicy";
import * as vm from "../../providers/impl/qubesVm";
import * as proxy from "../../providers/impl/sshProxyConfig";
import * as req from "../../providers/impl/templateRequirement";
import * as rpc from "../../providers/impl/rpcService";
import { projectFile } from "../../providers/projectFile";
import { FakeAdmin } from "./fakeAdmin";

const admin = { transport: "sim" as const, socket: "/tmp/none.sock" };
let fake: FakeAdmin;
beforeEach(() => {
  fake = new FakeAdmin(["fedora-43-xfce", "sys-net", "sys-whonix"]);
  setAdminForTests(() => fake);
});
afterAll(() => setAdminForTests(undefined));

const vmArgs = { admin, name: "build-a", klass: "AppVM", template: "fedora-43-xfce", label: "green", netvm: "sys-whonix", features: { f: "1" }, tags: ["qbi-site"], privateVolumeSize: "20GiB" };

describe("QubesVm", () => {
  async function created() {
    const checked = await vm.check({}, vmArgs);
    expect(checked.failures).toBeUndefined();
    return { inputs: checked.inputs, res: await vm.create(checked.inputs) };
  }

  it("creates with the template in the create call and sets only what is asked", async () => {
    const { res } = await created();
    expect(fake.calls).toEqual([
      "vmCreate build-a", "propertySet build-a netvm sys-whonix", "featureSet build-a f", "tagSet build-a qbi-site",
      "volumeInfo build-a private", `volumeResize build-a ${20 * 1024 ** 3}`,
    ]);
    expect(fake.vms.get("build-a")?.props.template.value).toBe("fedora-43-xfce");
    expect(res.outs.privateVolumeBytes).toBe(20 * 1024 ** 3);
  });

  it("removes the VM again when create fails half-way, and says so", async () => {
    fake.failNext.set("tagSet", "QubesValueError");
    await expect(vm.create((await vm.check({}, vmArgs)).inputs)).rejects.toThrow(
      /QubesVm build-a: adding tag qbi-site: QubesValueError: tagSet refused \(the half-created VM build-a was removed again\)/);
    expect(fake.vms.has("build-a")).toBe(false);
  });

  it("ignores the admin connection, replaces on name or class, and refuses a shrink at diff", async () => {
    const { inputs, res } = await created();
    expect(await vm.diff("build-a", res.outs, { ...inputs, admin: { transport: "socket", socket: "/elsewhere" } })).toEqual({ changes: false });
    expect(await vm.diff("build-a", res.outs, { ...inputs, klass: "StandaloneVM" })).toMatchObject({ changes: true, replaces: ["klass"], deleteBeforeReplace: true });
    const small = (await vm.check({}, { ...vmArgs, privateVolumeSize: "10GiB" })).inputs;
    await expect(vm.diff("build-a", res.outs, small)).rejects.toThrow(
      "QubesVm build-a: privateVolumeSize 10 GiB (10737418240 bytes) is smaller than the private volume's current size 20 GiB (21474836480 bytes)");
  });

  it("updates with only the calls that differ", async () => {
    const { inputs, res } = await created();
    fake.calls.length = 0;
    await vm.update("build-a", res.outs, { ...inputs, netvm: null });
    expect(fake.calls).toEqual(["propertySet build-a netvm "]);
  });

  it("refresh reports drift in props and inputs, limited to managed features and tags", async () => {
    const { res } = await created();
    const v = fake.vms.get("build-a")!;
    v.props.netvm = { isDefault: false, type: "vm", value: "sys-net" };
    v.features.set("f", "2");
    v.features.set("other", "x");
    v.tags.delete("qbi-site");
    const r = await vm.read("build-a", res.outs);
    expect(r.inputs).toMatchObject({ netvm: "sys-net", features: { f: "2" }, tags: [] });
    expect(r.inputs?.tags).not.toContain("created-by-dom0");
    expect(await vm.diff("build-a", r.props, res.outs)).toEqual({ changes: true });
  });

  it("halts before removing, and explains a refused delete", async () => {
    const { res } = await created();
    fake.vms.get("build-a")!.running = true;
    fake.failNext.set("vmRemove", "QubesVMInUseError");
    await expect(vm.delete("build-a", res.outs)).rejects.toThrow(/QubesVm build-a: cannot remove it: QubesVMInUseError: vmRemove refused\. Qubes refuses .*netvm/);
    expect(fake.vms.get("build-a")?.running).toBe(false);
    await vm.delete("build-a", res.outs);
    expect(fake.vms.has("build-a")).toBe(false);
  });
});

describe("QrexecPolicy", () => {
  const rule = (service: string) => ({ service, argument: "*", source: "build-a", target: "keys-a", action: "allow", params: {} });
  const args = { admin, name: "20-qubes-build-infra", rules: [rule("qubes.Gpg")] };

  it("creates with token new, refuses to overwrite someone else's edit, and refresh shows it", async () => {
    const c = await policy.create((await policy.check({}, args)).inputs);
    expect(fake.policies.get("20-qubes-build-infra")).toMatch(/^# Managed by qubes-build-infra.*\nqubes\.Gpg \* build-a keys-a allow\n$/s);
    await fake.policyReplace("20-qubes-build-infra", "qubes.Gpg * @anyvm keys-a allow\n", "any");
    const next = { ...args, rules: [rule("qubes.Gpg"), rule("qubesbuilder.LogReceived")] };
    await expect(policy.update("x", c.outs, next)).rejects.toThrow(/changed outside Pulumi.*PolicyTokenMismatchError.*not overwritten: run `pulumi refresh`/);
    expect(fake.policies.get("20-qubes-build-infra")).toBe("qubes.Gpg * @anyvm keys-a allow\n");
    const r = await policy.read("x", c.outs);
    expect(r.inputs?.rules).toEqual([{ ...rule("qubes.Gpg"), source: "@anyvm" }]);
    expect(r.props).toMatchObject({ ruleDiff: expect.stringContaining("+ qubes.Gpg * @anyvm keys-a allow") });
    const checked = await policy.check(r.inputs, next);
    expect(checked.inputs.ruleDiff).toMatch(/2 rule\(s\) added, 1 removed/);
    const u = await policy.update("x", r.props, checked.inputs);
    expect(fake.policies.get("20-qubes-build-infra")).toContain("qubesbuilder.LogReceived");
    await policy.delete("x", u.outs);
    expect(fake.policies.size).toBe(0);
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

describe("ManagedFile", () => {
  it("records the content applied and its hash (the engine keeps a secret input's output secret)", async () => {
    const c = await file.create((await file.check({}, { admin, vm: "sys-net", path: "/s/webhooks", content: "hunter2", mode: 0o600, owner: "user" })).inputs);
    expect(c.outs).toMatchObject({ content: "hunter2", sha256: "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7" });
    expect(fake.vms.get("sys-net")?.files.get("/s/webhooks")).toMatchObject({ mode: 0o600, owner: "user" });
  });

  it("manages only its block and removes only its block", async () => {
    await fake.writeFile("sys-net", "/rw/config/rc.local", "#!/bin/sh\necho mine\n", { mode: 0o755 });
    const c = await file.create((await file.check({}, { admin, vm: "sys-net", path: "/rw/config/rc.local", content: "start-webhooks", mode: 0o755, kind: "block", blockId: "webhooks" })).inputs);
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
    const checked = await rpc.check({}, { admin, vm: "logs", service: "qubesbuilder.BuildLog", ...ref });
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
    const inputs = (await file.check({}, { admin, vm: "sys-net", path: "/usr/local/lib/webhooks.js", ...ref, mode: 0o755 })).inputs;
    await expect(file.create(inputs)).rejects.toThrow(`ManagedFile sys-net:/usr/local/lib/webhooks.js: contentFile ${prog} changed since the program read it`);
    expect(fake.vms.get("sys-net")?.files.has("/usr/local/lib/webhooks.js")).toBe(false);
    fs.rmSync(prog);
    await expect(file.create(inputs)).rejects.toThrow(/contentFile .* cannot be read \(ENOENT\); nothing was written/);
  });

  it("refuses both ways at once, half a reference, neither, and a referenced block", async () => {
    const ref = projectFile(prog);
    const base = { admin, vm: "sys-net", path: "/x" };
    const reasons = async (extra: Record<string, unknown>) => (await file.check({}, { ...base, ...extra })).failures?.map((f) => f.reason);
    expect(await reasons({ content: "a", ...ref })).toEqual(["contentFile: give either content or contentFile, not both"]);
    expect(await reasons({ contentFile: ref.contentFile })).toEqual(["contentSha256: contentFile and contentSha256 go together"]);
    expect(await reasons({})).toEqual(["content: content (or contentFile with contentSha256) is required"]);
    expect(await reasons({ ...ref, kind: "block" })).toEqual(["contentFile: a block takes inline content only"]);
    expect(await reasons({ contentFile: "x", contentSha256: "nothex" })).toEqual(["contentSha256: a sha256 in hex"]);
  });

  it("brings outputs that still hold the text in line once (states from before references)", async () => {
    const text = fs.readFileSync(prog, "utf8");
    const inline = await file.create((await file.check({}, { admin, vm: "sys-net", path: "/p.js", content: text })).inputs);
    const byRef = (await file.check({}, { admin, vm: "sys-net", path: "/p.js", ...projectFile(prog) })).inputs;
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
    const c = await proxy.create({ admin, vm: "build-a", netvm: "sys-net", hosts: [{ host: "up.example.org", user: "u", hostKeys: [{ type: "ssh-ed25519", key: "AAAA" }] }] });
    const cfg = fake.text("build-a", proxy.CONFIG)!;
    expect(cfg.startsWith("# BEGIN qubes-build-infra ssh-proxy\nHost up.example.org\n")).toBe(true);
    expect(cfg.endsWith("# END qubes-build-infra ssh-proxy\nHost *\n    User me\n")).toBe(true);
    expect(fake.vms.get("build-a")?.files.get(proxy.KNOWN_HOSTS)).toMatchObject({ mode: 0o644, owner: "user" });
    expect((await proxy.read(c.id, c.outs)).props).toEqual(c.outs);
    await proxy.delete(c.id, c.outs);
    expect(fake.text("build-a", proxy.CONFIG)).toBe("Host *\n    User me\n");
  });
});

describe("TemplateRequirement", () => {
  const args = { admin, vm: "fedora-43-xfce", commands: ["node", "nginx", "socat"], purpose: "the net VM" };

  it("checks at preview only what the VM list says: no command runs, no VM starts", async () => {
    fake.missingCommands = new Set(["nginx", "socat"]);
    const r = await req.check({}, args);
    expect(r.failures).toBeUndefined();
    expect(fake.calls).toEqual(["vmList"]);
    expect(fake.vms.get("fedora-43-xfce")?.running).toBe(false);
    const absent = await req.check({}, { ...args, vm: "fedora-99" });
    expect(absent.failures).toEqual([{ property: "vm", reason: expect.stringMatching(/template fedora-99 \(needed by the net VM\) does not exist in Qubes: install it/) }]);
  });

  it("fails `up` with the missing commands, and shuts down the template it had to start", async () => {
    fake.missingCommands = new Set(["nginx", "socat"]);
    await expect(req.create(args)).rejects.toThrow("template fedora-43-xfce lacks nginx, socat (needed by the net VM)");
    expect(fake.calls).toEqual(["vmList", "run fedora-43-xfce", "vmShutdown fedora-43-xfce"]);
    expect(fake.vms.get("fedora-43-xfce")?.running).toBe(false);
    fake.missingCommands.clear();
    await expect(req.create(args)).resolves.toMatchObject({ outs: { missing: [] } });
  });

  it("leaves a running template running, and refreshes only a running one", async () => {
    fake.vms.get("fedora-43-xfce")!.running = true;
    const made = await req.create(args);
    expect(fake.calls).toEqual(["vmList", "run fedora-43-xfce"]);
    fake.missingCommands = new Set(["socat"]);
    expect((await req.read(made.id, made.outs)).props.missing).toEqual(["socat"]);
    fake.vms.get("fedora-43-xfce")!.running = false;
    fake.calls.length = 0;
    expect((await req.read(made.id, made.outs)).props.missing).toEqual([]);
    expect(fake.calls).toEqual(["vmList"]);
  });
});
