// The providers through the real Pulumi engine (Automation API) against a real qubes-sim: one
// stack walked through create, convergence, a one-property change, drift seen by a plain preview,
// a VM removed by hand, interrupted creations taken over, a same-named VM refused, a refused
// shrink, and a stack moved to another socket, refreshed and destroyed there.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type { EngineEvent, LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { parseStats } from "../../bench/convergence";
import { ownerTagFor } from "../../providers/qubesVm";
import { renderPolicy } from "../../qrexec";
import { openStack, projectRoot, tempDir } from "../helpers/pulumi";
import { startSim, type StartedSim } from "../helpers/sim";

jest.setTimeout(300_000);

type Counts = Record<string, number>;
const MUTATING = /\.(Set|Reset|Create|Remove|Resize|Replace|Start|Shutdown|Kill)\b|\.Create\./;
const VM = "qbi-ptest";
const POLICY = "70-qbi-provider-test";
const SERVICE = "#!/bin/sh\necho qbi-test\n";
const OWNER = ownerTagFor("providers-fixture", "providers");
const IN_VM = ["service", "secret", "rc-local", "ssh"];

describe("the providers through the Pulumi engine against qubes-sim", () => {
  let sim: StartedSim;
  let stack: Stack;
  const backend = tempDir("providers-backend");
  const program = path.join(projectRoot, "test", "providers", `.fixture-${process.pid}`);
  const rule = (service: string, target: string) => ({ service, argument: "*", source: VM, target, action: "allow", params: {} });
  const rules = [rule("qubes.Filecopy", "dom0")];
  let nets: string[] = [];

  const stats = async (): Promise<Counts> => parseStats((await sim.client.call("sim.Stats", "dom0")).toString());
  const delta = (before: Counts, after: Counts, only?: RegExp): Counts => {
    const out: Counts = {};
    for (const [k, v] of Object.entries(after)) if ((!only || only.test(k)) && v - (before[k] ?? 0) > 0) out[k] = v - (before[k] ?? 0);
    return out;
  };
  const propOf = async (prop: string) => (await sim.client.propertyGet(VM, prop)).value;
  const setAdmin = (socket: string) => stack.setConfig("qubes-build-infra:admin", { value: JSON.stringify({ transport: "sim", socket }) });
  /** The resources a preview would change, by operation (with the display text when `out` is given). */
  const planned = async (out?: string[]): Promise<Record<string, string[]>> => {
    const ops: Record<string, string[]> = {};
    await stack.preview({
      ...(out ? { diff: true, onOutput: (o: string) => out.push(o) } : {}),
      onEvent: (e: EngineEvent) => {
        const m = e.resourcePreEvent?.metadata;
        if (!m || ["same", "create-replacement", "delete-replaced"].includes(m.op) || m.type === "pulumi:pulumi:Stack" || m.type.startsWith("pulumi:providers:")) return;
        (ops[m.op] ??= []).push(m.urn.split("::").pop() ?? m.urn);
      },
    });
    for (const v of Object.values(ops)) v.sort();
    return ops;
  };

  beforeAll(async () => {
    sim = await startSim();
    fs.cpSync(path.join(projectRoot, "test", "providers", "fixture"), program, { recursive: true });
    // The providers load their implementation relative to the program's directory.
    fs.symlinkSync(path.join(projectRoot, "providers"), path.join(program, "providers"));
    const vms = await sim.client.vmList();
    const template = vms.find((v) => v.klass === "TemplateVM")?.name;
    nets = vms.filter((v) => v.klass !== "TemplateVM" && v.name !== "dom0").map((v) => v.name);
    if (!template || nets.length < 2) throw new Error(`qubes-sim has no template or too few qubes: ${JSON.stringify(vms)}`);
    stack = await openStack(program, "providers", backend);
    // refresh and destroy run the program, so that providers get this run's stack config.
    (stack.workspace as LocalWorkspace).envVars.PULUMI_RUN_PROGRAM = "true";
    await stack.setAllConfig({
      "qubes-build-infra:admin": { value: JSON.stringify({ transport: "sim", socket: sim.socket }) },
      vm: { value: VM },
      template: { value: template },
      netvm: { value: nets[0] },
      sshNetvm: { value: nets[0] },
      volumeSize: { value: "8GiB" },
      policyName: { value: POLICY },
      rules: { value: JSON.stringify(rules) },
      service: { value: SERVICE },
      secret: { value: "s3cret-webhook-key", secret: true },
      commands: { value: JSON.stringify(["sh", "cat"]) },
    });
  });
  afterAll(async () => {
    fs.rmSync(program, { recursive: true, force: true });
    fs.rmSync(backend, { recursive: true, force: true });
    await sim?.stop();
  });

  it("creates everything, converges, and keeps no Admin connection in the state", async () => {
    const up = await stack.up();
    expect(up.summary.resourceChanges).toEqual({ create: 8 });
    expect((await sim.client.vmList()).map((v) => v.name)).toContain(VM);
    expect(await propOf("netvm")).toBe(nets[0]);
    expect(Number((await sim.client.volumeInfo(VM, "private")).size)).toBeGreaterThanOrEqual(8 * 1024 ** 3);
    expect(await sim.client.tagList(VM)).toEqual(expect.arrayContaining(["qbi-test", OWNER]));
    expect((await sim.client.policyGet(POLICY)).content).toBe(renderPolicy(rules.map((r, i) => ({ ...r, action: "allow" as const, file: "", line: i }))));
    expect((await sim.client.readFile(VM, "/usr/local/etc/qubes-rpc/qbi.Test"))?.toString()).toBe(SERVICE);
    expect((await sim.client.readFile(VM, "/home/user/qbi-secret"))?.toString()).toBe("s3cret-webhook-key");
    expect((await sim.client.readFile(VM, "/rw/config/rc.local"))?.toString()).toContain("# BEGIN qubes-build-infra ptest\necho qbi-test\n");
    const ssh = (await sim.client.readFile(VM, "/home/user/.ssh/config"))?.toString() ?? "";
    expect(ssh).toContain(`ProxyCommand /usr/bin/qrexec-client-vm ${nets[0]} local.ConnectSSH+%h`);
    expect(ssh).not.toContain("Host *");
    // The secret is in the state only encrypted; the socket path of this machine is not in it at all.
    const stored = (fs.readdirSync(backend, { recursive: true }) as string[]).filter((f) => f.endsWith(".json"));
    expect(stored.length).toBeGreaterThan(0);
    type Exported = { resources: { urn: string; type: string; inputs?: object; outputs?: Record<string, unknown> }[] };
    const deployment = (await stack.exportStack()).deployment as Exported;
    for (const r of deployment.resources.filter((x) => x.type.startsWith("pulumi-nodejs:dynamic"))) {
      expect(JSON.stringify([r.inputs, r.outputs])).not.toContain(sim.socket);
    }
    for (const f of stored) expect(fs.readFileSync(path.join(backend, f), "utf8")).not.toContain("s3cret-webhook-key");
    const secretRes = deployment.resources.find((r) => r.urn.endsWith("ManagedFile::secret"));
    // The content is kept in the outputs, as a secret (encrypted in the state), like its input.
    expect(secretRes?.outputs?.content).toEqual(expect.objectContaining({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270" }));
    // Everything placed in the VM is tied to its identity.
    const uuid = (await sim.client.propertyGet(VM, "uuid")).value;
    expect(up.outputs.vmUuidOut.value).toBe(uuid);

    const again = await stack.up();
    expect(again.summary.resourceChanges).toEqual({ same: 8 });
  });

  it("a plain preview compares dom0 at one read per VM and per policy file, starting no VM", async () => {
    await sim.client.call("sim.Stats.Reset", "dom0");
    const before = await stats();
    expect(await planned()).toEqual({});
    // One property read for the VM, its managed feature (the site manages none), the policy file; no VM started.
    const calls = delta(before, await stats());
    expect(calls).toEqual({ "admin.vm.property.GetAll": 1, "internal.GetSystemInfo": 1, "policy.Get": 1, "admin.vm.feature.List": 1, "admin.vm.feature.Get": 1 });
  });

  it("changes one property with exactly that Admin call", async () => {
    await stack.setConfig("netvm", { value: "none" });
    const before = await stats();
    const up = await stack.up();
    expect(up.summary.resourceChanges).toEqual({ same: 7, update: 1 });
    expect(delta(before, await stats(), MUTATING)).toEqual({ "admin.vm.property.Set": 1 });
    expect(await propOf("netvm")).toBe("");
  });

  it("shows hand edits of dom0 on a plain preview and repairs them with a plain up; files in VMs are found by refresh", async () => {
    await sim.client.propertySet(VM, "netvm", nets[1]);
    await sim.client.propertySet(VM, "label", "red");
    await sim.client.tagRemove(VM, "qbi-test");
    await sim.client.policyReplace(POLICY, "qubes.Filecopy * @anyvm dom0 allow\n", "any");
    await sim.client.writeFile(VM, "/usr/local/etc/qubes-rpc/qbi.Test", "#!/bin/sh\nevil\n", { mode: 0o755 });

    const events: string[] = [];
    expect(await planned(events)).toEqual({ update: ["policy", "vm"] });
    const shown = events.join("");
    expect(shown).toContain(`drift            : "label is red (recorded: green); netvm is ${nets[1]} (recorded: none); tag qbi-test missing"`);
    expect(shown).toContain("- qubes.Filecopy * @anyvm dom0 allow");
    const up = await stack.up();
    expect(up.summary.resourceChanges).toMatchObject({ update: 2 });
    expect(await propOf("netvm")).toBe("");
    expect(await propOf("label")).toBe("green");
    expect(await sim.client.tagList(VM)).toContain("qbi-test");
    expect((await sim.client.policyGet(POLICY)).content).not.toContain("@anyvm");
    expect(up.outputs.ruleDiff.value).toContain("- qubes.Filecopy * @anyvm dom0 allow");

    // The service file is inside the VM: refresh (which may start the VM) finds it, up puts it back.
    expect(await planned()).toEqual({});
    const refresh = await stack.refresh();
    expect(refresh.summary.resourceChanges?.update).toBe(1);
    await stack.up();
    expect((await sim.client.readFile(VM, "/usr/local/etc/qubes-rpc/qbi.Test"))?.toString()).toBe(SERVICE);
  });

  it("a VM removed by hand: a plain up rebuilds it with everything in it; after a refresh too", async () => {
    const removeVm = async () => {
      await sim.client.vmKill(VM).catch(() => undefined);
      await sim.client.vmRemove(VM);
    };
    await removeVm();
    expect(await planned()).toEqual({ replace: [...IN_VM, "vm"].sort() });
    await stack.up();
    expect((await sim.client.readFile(VM, "/usr/local/etc/qubes-rpc/qbi.Test"))?.toString()).toBe(SERVICE);
    expect((await sim.client.readFile(VM, "/home/user/qbi-secret"))?.toString()).toBe("s3cret-webhook-key");
    expect(await planned()).toEqual({});

    // refresh first: the VM and everything in it leave the state (no error), up creates them again.
    await removeVm();
    const refresh = await stack.refresh();
    expect(refresh.summary.result).toBe("succeeded");
    expect(refresh.summary.resourceChanges?.delete).toBe(1 + IN_VM.length);
    const up = await stack.up();
    expect(up.summary.resourceChanges).toMatchObject({ create: 1 + IN_VM.length });
    expect((await sim.client.readFile(VM, "/rw/config/rc.local"))?.toString()).toContain("echo qbi-test");
    expect(await planned()).toEqual({});
  });

  it("takes over what an interrupted run created but did not record: no duplicate VM, policy file or block", async () => {
    // The state of a run killed after its creations: none of them recorded.
    const exported = await stack.exportStack();
    const d = exported.deployment as { resources: { type: string }[] };
    d.resources = d.resources.filter((r) => !r.type.startsWith("pulumi-nodejs:dynamic"));
    await stack.importStack(exported);
    const before = await stats();
    const up = await stack.up();
    // The seven resources again (the stack itself stayed): created, the VM and the policy file taken over.
    expect(up.summary.resourceChanges).toEqual({ create: 7, same: 1 });
    expect(delta(before, await stats(), /admin\.vm\.Create|admin\.vm\.Remove/)).toEqual({});
    expect((await sim.client.vmList()).filter((v) => v.name === VM)).toHaveLength(1);
    expect((await sim.client.readFile(VM, "/rw/config/rc.local"))?.toString().match(/BEGIN qubes-build-infra ptest/g)).toHaveLength(1);
    expect(await planned()).toEqual({});
  });

  it("refuses a volume shrink at preview with nothing changed", async () => {
    await stack.setConfig("volumeSize", { value: "1MiB" });
    const before = await stats();
    await expect(stack.preview()).rejects.toThrow(new RegExp(`QubesVm ${VM}: planning: privateVolumeSize 1 MiB .* is smaller than the private volume's current size`));
    await expect(stack.up()).rejects.toThrow(/Qubes volumes only grow/);
    expect(delta(before, await stats(), MUTATING)).toEqual({});
    await stack.setConfig("volumeSize", { value: "8GiB" });
  });

  it("state written when resources kept the connection is migrated: one up drops it without an Admin write; refresh never uses it", async () => {
    const old = { transport: "sim", socket: "/nonexistent/old-machine/qubesd.sock" };
    const withOldConnection = async () => {
      const exported = await stack.exportStack();
      const d = exported.deployment as { resources: { type: string; inputs?: Record<string, unknown>; outputs?: Record<string, unknown> }[] };
      for (const r of d.resources.filter((x) => x.type.startsWith("pulumi-nodejs:dynamic"))) {
        r.inputs = { ...r.inputs, admin: old };
        r.outputs = { ...r.outputs, admin: old };
      }
      await stack.importStack(exported);
    };
    await withOldConnection();
    const before = await stats();
    const up = await stack.up();
    expect(up.summary.resourceChanges).toMatchObject({ update: 7 });
    expect(delta(before, await stats(), MUTATING)).toEqual({});
    expect(JSON.stringify((await stack.exportStack()).deployment)).not.toContain("old-machine");
    expect(await planned()).toEqual({});
    await withOldConnection();
    expect((await stack.refresh()).summary.result).toBe("succeeded");
    await stack.up();
    expect(JSON.stringify((await stack.exportStack()).deployment)).not.toContain("old-machine");
  });

  it("moved to another socket (the same machine), refresh and destroy reach it through the current config, not the state", async () => {
    const state = sim.stateDir;
    await sim.stop();
    const moved = path.join(tempDir("moved-sim"), "elsewhere.sock");
    sim = await startSim({ dir: path.dirname(state), socket: moved });
    await setAdmin(moved);
    const refresh = await stack.refresh();
    expect(refresh.summary.result).toBe("succeeded");
    expect(refresh.summary.resourceChanges).toEqual({ same: 8 });
    const destroy = await stack.destroy();
    expect(destroy.summary.resourceChanges?.delete).toBe(8);
    expect((await sim.client.vmList()).map((v) => v.name)).not.toContain(VM);
    expect(await sim.client.policyList()).not.toContain(POLICY);
  });

  it("refuses a same-named VM it did not create, with a command that settles it", async () => {
    await sim.client.vmCreate("AppVM", VM, "green");
    await expect(stack.up()).rejects.toThrow(new RegExp(`a VM named ${VM} already exists and this stack did not create it \\(it lacks the tag ${OWNER}\\)`));
    expect((await sim.client.vmList()).filter((v) => v.name === VM)).toHaveLength(1);
    // The command the message gives, run as printed (from the project directory): the VM is adopted.
    const refused = (await stack.up().then(() => "", (e: Error) => e.message));
    const command = new RegExp(`if it is this site's VM: (QBI_ADMIN='[^']*' bin/qubes-build-infra admin admin\\.vm\\.tag\\.Set ${VM} ${OWNER});`).exec(refused)?.[1];
    expect(command).toBeDefined();
    execFileSync("sh", ["-c", command!], { cwd: projectRoot, stdio: "pipe" });
    const up = await stack.up();
    // The template requirement was created by the refused run; the VM is adopted, everything in it created.
    expect(up.summary.resourceChanges).toEqual({ create: 6, same: 2 });
    expect((await sim.client.vmList()).filter((v) => v.name === VM)).toHaveLength(1);
    await stack.destroy();
  });

  it("moves a file, a block and a service from a resource each into one VmFiles in one up, losing nothing, the secret still encrypted", async () => {
    expect((await stack.up()).summary.resourceChanges).toEqual({ create: 8 });
    await stack.setConfig("vmFiles", { value: "true" });
    expect(await planned()).toEqual({ create: ["files"], delete: ["rc-local", "secret", "service"] });
    const writes = /\.(Set|Remove|Replace|Create\.)|^sim\.vm\.Run$/;
    const moved = await stack.up();
    expect(moved.summary.resourceChanges).toEqual({ create: 1, delete: 3, same: 5 });
    expect((await sim.client.readFile(VM, "/usr/local/etc/qubes-rpc/qbi.Test"))?.toString()).toBe(SERVICE);
    expect((await sim.client.readFile(VM, "/home/user/qbi-secret"))?.toString()).toBe("s3cret-webhook-key");
    const rc = (await sim.client.readFile(VM, "/rw/config/rc.local"))?.toString() ?? "";
    expect(rc.split("# BEGIN qubes-build-infra ptest").length).toBe(2);
    type Exported = { resources: { urn: string; outputs?: { files?: Record<string, { content?: unknown }> } }[] };
    const files = ((await stack.exportStack()).deployment as Exported).resources.find((r) => r.urn.endsWith("VmFiles::files"));
    expect(files?.outputs?.files?.["/home/user/qbi-secret"]?.content).toEqual(expect.objectContaining({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270" }));
    for (const f of (fs.readdirSync(backend, { recursive: true }) as string[]).filter((x) => x.endsWith(".json"))) {
      expect(fs.readFileSync(path.join(backend, f), "utf8")).not.toContain("s3cret-webhook-key");
    }
    // Converged: nothing to change, no write.
    const before = await stats();
    expect((await stack.up()).summary.resourceChanges).toEqual({ same: 6 });
    expect(delta(before, await stats(), writes)).toEqual({});
    // Drift in the VM is found by one refresh and repaired by the next up.
    await sim.client.writeFile(VM, "/usr/local/etc/qubes-rpc/qbi.Test", "#!/bin/sh\necho evil\n", { mode: 0o755 });
    expect((await stack.refresh()).summary.resourceChanges).toEqual({ update: 1, same: 5 });
    await stack.up();
    expect((await sim.client.readFile(VM, "/usr/local/etc/qubes-rpc/qbi.Test"))?.toString()).toBe(SERVICE);
    await stack.destroy();
    await stack.setConfig("vmFiles", { value: "false" });
  });
});
