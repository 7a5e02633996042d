// The providers through the real Pulumi engine (Automation API) against a real qubes-sim: one
// stack walked through create, convergence, a one-property change, drift, a stale policy token,
// a refused shrink and destroy.
import * as fs from "fs";
import * as path from "path";
import type { Stack } from "@pulumi/pulumi/automation";
import type { AdminClient } from "../../admin/client";
import { parseStats } from "../../bench/convergence";
import { renderPolicy } from "../../qrexec";
import { openStack, projectRoot, tempDir } from "../helpers/pulumi";
import { startSim } from "../helpers/sim";

jest.setTimeout(240_000);

interface Sim {
  socket: string;
  stateDir: string;
  client: AdminClient;
  stop(): Promise<void>;
}

type Counts = Record<string, number>;
const MUTATING = /\.(Set|Reset|Create|Remove|Resize|Replace|Start|Shutdown|Kill)\b|\.Create\./;

describe("the providers through the Pulumi engine against qubes-sim", () => {
  let sim: Sim;
  let stack: Stack;
  const backend = tempDir("providers-backend");
  const program = path.join(projectRoot, "test", "providers", `.fixture-${process.pid}`);
  const VM = "qbi-ptest";
  const POLICY = "70-qbi-provider-test";
  const SERVICE = "#!/bin/sh\necho qbi-test\n";
  const rule = (service: string, target: string) => ({ service, argument: "*", source: VM, target, action: "allow", params: {} });
  let rules = [rule("qubes.Filecopy", "dom0")];

  const stats = async (): Promise<Counts> => parseStats((await sim.client.call("sim.Stats", "dom0")).toString());
  const writes = (before: Counts, after: Counts): Counts => {
    const out: Counts = {};
    for (const [k, v] of Object.entries(after)) if (MUTATING.test(k) && v - (before[k] ?? 0) > 0) out[k] = v - (before[k] ?? 0);
    return out;
  };
  const propOf = async (prop: string) => (await sim.client.propertyGet(VM, prop)).value;

  beforeAll(async () => {
    sim = await startSim();
    fs.cpSync(path.join(projectRoot, "test", "providers", "fixture"), program, { recursive: true });
    // The providers load their implementation relative to the program's directory.
    fs.symlinkSync(path.join(projectRoot, "providers"), path.join(program, "providers"));
    const vms = await sim.client.vmList();
    const template = vms.find((v) => v.klass === "TemplateVM")?.name;
    const nets = vms.filter((v) => v.klass !== "TemplateVM" && v.name !== "dom0").map((v) => v.name);
    if (!template || nets.length < 2) throw new Error(`qubes-sim has no template or too few qubes: ${JSON.stringify(vms)}`);
    stack = await openStack(program, "providers", backend);
    await stack.setAllConfig({
      admin: { value: JSON.stringify({ transport: "sim", socket: sim.socket }) },
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
    (globalThis as { __nets?: string[] }).__nets = nets;
  });
  afterAll(async () => {
    fs.rmSync(program, { recursive: true, force: true });
    fs.rmSync(backend, { recursive: true, force: true });
    await sim?.stop();
  });
  const nets = () => (globalThis as { __nets?: string[] }).__nets ?? [];

  it("creates everything, then converges with no changes", async () => {
    const up = await stack.up();
    expect(up.summary.resourceChanges).toEqual({ create: 8 });
    expect((await sim.client.vmList()).map((v) => v.name)).toContain(VM);
    expect(await propOf("netvm")).toBe(nets()[0]);
    expect(Number((await sim.client.volumeInfo(VM, "private")).size)).toBeGreaterThanOrEqual(8 * 1024 ** 3);
    expect((await sim.client.tagList(VM))).toContain("qbi-test");
    expect((await sim.client.policyGet(POLICY)).content).toBe(renderPolicy(rules.map((r, i) => ({ ...r, action: "allow" as const, file: "", line: i }))));
    expect((await sim.client.readFile(VM, "/usr/local/etc/qubes-rpc/qbi.Test"))?.toString()).toBe(SERVICE);
    expect((await sim.client.readFile(VM, "/home/user/qbi-secret"))?.toString()).toBe("s3cret-webhook-key");
    expect((await sim.client.readFile(VM, "/rw/config/rc.local"))?.toString()).toContain("# BEGIN qubes-build-infra ptest\necho qbi-test\n");
    const ssh = (await sim.client.readFile(VM, "/home/user/.ssh/config"))?.toString() ?? "";
    expect(ssh).toContain(`ProxyCommand /usr/bin/qrexec-client-vm ${nets()[0]} local.ConnectSSH+%h`);
    expect(ssh).not.toContain("Host *");
    // The secret is in the state only encrypted: the outputs hold a (secret) hash, never the text.
    const stored = (fs.readdirSync(backend, { recursive: true }) as string[]).filter((f) => f.endsWith(".json"));
    expect(stored.length).toBeGreaterThan(0);
    for (const f of stored) expect(fs.readFileSync(path.join(backend, f), "utf8")).not.toContain("s3cret-webhook-key");
    const secretRes = (await stack.exportStack()).deployment.resources.find((r: { urn: string }) => r.urn.endsWith("ManagedFile::secret"));
    // The content is kept in the outputs, as a secret (encrypted in the state), like its input.
    expect(secretRes.outputs.content).toEqual(expect.objectContaining({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270" }));

    const again = await stack.up();
    expect(again.summary.resourceChanges).toEqual({ same: 8 });
  });

  it("changes one property with exactly that Admin call", async () => {
    await stack.setConfig("netvm", { value: "none" });
    const before = await stats();
    const up = await stack.up();
    expect(up.summary.resourceChanges).toEqual({ same: 7, update: 1 });
    expect(writes(before, await stats())).toEqual({ "admin.vm.property.Set": 1 });
    expect(await propOf("netvm")).toBe("");
  });

  it("finds drift with refresh and repairs it with up", async () => {
    await sim.client.propertySet(VM, "netvm", nets()[1]);
    const { token } = await sim.client.policyGet(POLICY);
    await sim.client.policyReplace(POLICY, "qubes.Filecopy * @anyvm dom0 allow\n", "any");
    expect(token).not.toBe((await sim.client.policyGet(POLICY)).token);
    await sim.client.writeFile(VM, "/usr/local/etc/qubes-rpc/qbi.Test", "#!/bin/sh\nevil\n", { mode: 0o755 });

    const refresh = await stack.refresh();
    expect(refresh.summary.resourceChanges?.update).toBe(3);
    const preview = await stack.preview();
    expect(preview.changeSummary).toMatchObject({ update: 3 });
    const up = await stack.up();
    expect(up.summary.resourceChanges).toMatchObject({ update: 3 });
    expect(await propOf("netvm")).toBe("");
    expect((await sim.client.policyGet(POLICY)).content).not.toContain("@anyvm");
    expect((await sim.client.readFile(VM, "/usr/local/etc/qubes-rpc/qbi.Test"))?.toString()).toBe(SERVICE);
    expect(up.outputs.ruleDiff.value).toContain("- qubes.Filecopy * @anyvm dom0 allow");
  });

  it("refuses a stale policy token, tells the user to refresh, and overwrites nothing", async () => {
    const edited = "qubes.Filecopy * @anyvm dom0 allow\n";
    await sim.client.policyReplace(POLICY, edited, "any");
    rules = [...rules, rule("qubes.GetDate", "dom0")];
    await stack.setConfig("rules", { value: JSON.stringify(rules) });
    await expect(stack.up()).rejects.toThrow(/changed outside Pulumi since the last apply.*run `pulumi refresh`/s);
    expect((await sim.client.policyGet(POLICY)).content).toBe(edited);
    await stack.refresh();
    await stack.up();
    expect((await sim.client.policyGet(POLICY)).content).toContain("qubes.GetDate");
  });

  it("fails a volume shrink at preview with nothing changed", async () => {
    await stack.setConfig("volumeSize", { value: "1MiB" });
    const before = await stats();
    await expect(stack.preview()).rejects.toThrow(new RegExp(`QubesVm ${VM}: privateVolumeSize 1 MiB .* is smaller than the private volume's current size`));
    await expect(stack.up()).rejects.toThrow(/Qubes volumes only grow/);
    expect(writes(before, await stats())).toEqual({});
    await stack.setConfig("volumeSize", { value: "8GiB" });
  });

  it("destroys everything", async () => {
    const destroy = await stack.destroy();
    expect(destroy.summary.resourceChanges).toEqual({ delete: 8 });
    expect((await sim.client.vmList()).map((v) => v.name)).not.toContain(VM);
    expect(await sim.client.policyList()).not.toContain(POLICY);
  });
});
