// A preview must never change the machine: a `pulumi preview` of the whole local site (index.ts,
// the `local` stack's config, the policy pack) through the real Pulumi engine against a real
// qubes-sim makes no Admin or policy write and starts no VM (qubes-sim counts both in sim.Stats).
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { createStandinGithub } from "../../sim/standin-builders";
import { openStack, projectRoot, tempDir } from "../helpers/pulumi";
import { startSim, type StartedSim } from "../helpers/sim";
import type { Stack } from "@pulumi/pulumi/automation";

jest.setTimeout(600_000);

const NS = "qubes-build-infra";
const localConfig = (parse(fs.readFileSync(path.join(projectRoot, "Pulumi.local.yaml"), "utf8")) as { config: Record<string, unknown> }).config;

interface SimStats {
  calls: Record<string, number>;
  writes: Record<string, number>;
  starts: number;
}

describe("a preview of the whole local site", () => {
  let sim: StartedSim;
  let stack: Stack;
  const backend = tempDir("preview-backend");
  const stackName = `previewtest${process.pid}`;
  const stackFile = path.join(projectRoot, `Pulumi.${stackName}.yaml`);
  const stats = async (): Promise<SimStats> => JSON.parse((await sim.client.call("sim.Stats", "dom0")).toString()) as SimStats;

  beforeAll(async () => {
    sim = await startSim();
    createStandinGithub(path.join(sim.stateDir, "github"));
    stack = await openStack(projectRoot, stackName, backend);
    const all: Record<string, { value: string; secret?: boolean }> = {};
    for (const [k, v] of Object.entries(localConfig)) {
      // The stack file's secrets are encrypted with its own passphrase: set below instead.
      if (typeof v === "object" && v !== null && "secure" in v) continue;
      all[k] = { value: typeof v === "string" ? v : JSON.stringify(v) };
    }
    all[`${NS}:githubApiToken`] = { value: "preview-test-token", secret: true };
    all[`${NS}:admin`] = { value: JSON.stringify({ transport: "sim", socket: sim.socket }) };
    all[`${NS}:webhookSecret`] = { value: "preview-test-webhook-secret-0123456789", secret: true };
    await stack.setAllConfig(all);
  });
  afterAll(async () => {
    await sim?.stop();
    fs.rmSync(stackFile, { force: true });
    fs.rmSync(backend, { recursive: true, force: true });
  });

  it("makes no write call and starts no VM", async () => {
    const halted = (await sim.client.vmList()).filter((v) => v.state === "Halted").map((v) => v.name).sort();
    await sim.client.call("sim.Stats.Reset", "dom0");
    const preview = await stack.preview({ policyPacks: [path.join(projectRoot, "policy")] });
    // The whole local site (its VMs, one VmFiles per VM, keys, checkouts, ...).
    expect(preview.changeSummary.create).toBeGreaterThan(30);
    const s = await stats();
    // It did ask Qubes (the templates exist, the policy files), so the counters saw the preview.
    expect((s.calls["internal.GetSystemInfo"] ?? 0) + (s.calls["admin.vm.List"] ?? 0)).toBeGreaterThan(0);
    expect(s.writes).toEqual({});
    expect(s.starts).toBe(0);
    expect(s.calls["sim.vm.Run"] ?? 0).toBe(0);
    expect((await sim.client.vmList()).filter((v) => v.state === "Halted").map((v) => v.name).sort()).toEqual(halted);
  });
});
