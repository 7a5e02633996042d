// Fault injection: `pulumi up` (and `pulumi destroy`) of the test site killed with SIGKILL at many
// points, counted in Admin writes since the run started; after each kill, the documented recovery
// (`qubes-build-infra settle`, then the same command again, as `make up` does) must converge: no VM
// left outside the state, no pending operation, no duplicate or half-written file, nothing left to
// change. Every kill point and its result is printed.
import { spawn, execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type { Stack } from "@pulumi/pulumi/automation";
import { parseStats } from "../../bench/convergence";
import { pulumiEnv, projectRoot, tempDir } from "../helpers/pulumi";
import { startSim, type StartedSim } from "../helpers/sim";
import { NS, SITE_ENVS, siteConfig, siteStack, stackFile } from "./siteStack";

jest.setTimeout(1_200_000);

const WRITES = /\.(Set|Reset|Remove|Resize|Replace|Start|Shutdown|Kill)$|\.Create\.|^sim\.vm\.Run$/;
const CLI = path.join(projectRoot, "bin", "qubes-build-infra");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("kill -9 at many points of a deployment, a change and a destroy; the documented recovery converges", () => {
  let sim: StartedSim;
  let stack: Stack;
  let name = "";
  let round = 0;
  const backend = tempDir("faults-backend");
  const env = { ...process.env, ...pulumiEnv(backend), PULUMI_RUN_PROGRAM: "true" } as Record<string, string>;
  const report: string[] = [];

  const writes = async () => Object.entries(parseStats((await sim.client.call("sim.Stats", "dom0")).toString()))
    .filter(([m]) => WRITES.test(m)).reduce((n, [, c]) => n + c, 0);
  const pulumi = (...args: string[]): string => {
    try {
      return execFileSync("pulumi", [...args, "--stack", name], { cwd: projectRoot, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 30 });
    } catch (e) {
      const x = e as { stdout?: string; stderr?: string };
      const lines = `${x.stdout ?? ""}\n${x.stderr ?? ""}`.split("\n").filter((l) => l.trim() !== "");
      throw new Error(`pulumi ${args.join(" ")} failed:\n${[...lines.filter((l) => /rror/.test(l)).slice(0, 12), "last lines:", ...lines.slice(-15)].join("\n")}`);
    }
  };
  const deployment = () => (JSON.parse(pulumi("stack", "export")) as { deployment: { resources?: { type: string; outputs?: { name?: string } }[]; pending_operations?: { type: string; resource: { urn: string } }[] } }).deployment;

  /** Runs `pulumi <op>` and kills its whole process group once it made `after` Admin writes (if it gets that far). */
  async function killedRun(op: "up" | "destroy", after: number): Promise<string> {
    const start = await writes();
    const child = spawn("pulumi", [op, "--yes", "--non-interactive", "--skip-preview", "--stack", name], { cwd: projectRoot, env, detached: true, stdio: "ignore" });
    let exit: number | null | undefined;
    const closed = new Promise<void>((r) => child.on("close", (code) => {
      exit = code;
      r();
    }));
    for (;;) {
      if (exit !== undefined) return `${op} finished (exit ${exit}) before ${after} writes`;
      const n = (await writes()) - start;
      if (n >= after) {
        process.kill(-child.pid!, "SIGKILL");
        await closed;
        const pending = (deployment().pending_operations ?? []).map((o) => `${o.type} ${o.resource.urn.split("::").pop()}`);
        return `${op} killed after ${n} writes; pending: ${pending.length ? pending.join(", ") : "none"}`;
      }
      await sleep(40);
    }
  }

  /** The documented recovery: settle what the killed run left, then run the operation again. */
  function recover(op: "up" | "destroy"): string {
    execFileSync(CLI, ["settle", "--stack", name], { cwd: projectRoot, env, stdio: ["ignore", "ignore", "pipe"] });
    pulumi(op, "--yes", "--non-interactive", "--skip-preview");
    return `settle + ${op}`;
  }

  /** The site is exactly what the state says and what the config asks for. */
  async function assertConverged(label: string, expectVms: boolean): Promise<void> {
    const d = deployment();
    expect({ label, pending: d.pending_operations ?? [] }).toEqual({ label, pending: [] });
    const inState = (d.resources ?? []).filter((r) => r.type.endsWith("qubes:QubesVm")).map((r) => r.outputs?.name ?? "").sort();
    const info = await sim.client.systemInfo();
    const site = Object.values(info.domains).filter((v) => v.tags.includes("qbi-site")).map((v) => v.name).sort();
    const leaked = site.filter((v) => !inState.includes(v));
    const missing = inState.filter((v) => !site.includes(v));
    expect({ label, leaked, missing }).toEqual({ label, leaked: [], missing: [] });
    const intents = (await sim.client.featureList("dom0")).filter((f) => f.startsWith("qbi-creating-"));
    expect({ label, intents }).toEqual({ label, intents: [] });
    if (!expectVms) {
      expect({ label, site }).toEqual({ label, site: [] });
      expect(await sim.client.policyList()).not.toContain("20-qubes-build-infra");
      return;
    }
    pulumi("preview", "--expect-no-changes", "--non-interactive");
    for (const vm of [...site, "sys-net"]) {
      const r = await sim.client.run(vm, "find /rw /home /usr/local -name '.qbi-tmp.*' 2>/dev/null; for f in /rw/config/rc.local /home/user/.ssh/config /home/user/.ssh/known_hosts; do " +
        "[ -f \"$f\" ] && grep -c '^# BEGIN qubes-build-infra' \"$f\" | sed \"s|^|$f |\"; done; true", { user: "root" });
      const lines = r.stdout.toString().trim().split("\n").filter((l) => l !== "");
      expect({ label, vm, leftovers: lines.filter((l) => l.includes(".qbi-tmp.")), doubled: lines.filter((l) => / ([2-9]|\d\d+)$/.test(l)) })
        .toEqual({ label, vm, leftovers: [], doubled: [] });
    }
    for (const k of site.filter((v) => v.startsWith("keys-"))) {
      const keys = (await sim.client.run(k, "gpg --batch --with-colons --list-secret-keys | grep -c '^sec'", { user: "user" })).stdout.toString().trim();
      expect({ label, k, keys }).toEqual({ label, k, keys: "1" });
    }
  }

  /** A fresh start: a new qubes-sim (nothing deployed, an empty stand-in GitHub) and a new stack. */
  async function fresh(): Promise<void> {
    await sim?.stop();
    if (name) fs.rmSync(stackFile(name), { force: true });
    sim = await startSim();
    name = `faults${process.pid}r${++round}`;
    stack = await siteStack(name, backend, sim);
  }

  afterAll(async () => {
    process.stdout.write(`\nfault injection (kill -9 points and results):\n${report.map((l) => `  ${l}`).join("\n")}\n`);
    await sim?.stop();
    if (name) fs.rmSync(stackFile(name), { force: true });
    fs.rmSync(backend, { recursive: true, force: true });
  });

  it.each([3, 12, 30, 60, 100])("first deployment of two environments killed after %i Admin writes", async (after) => {
    await fresh();
    const killed = await killedRun("up", after);
    const how = recover("up");
    await assertConverged(`first up, kill at ${after}`, true);
    report.push(`first up, kill at ${after}: ${killed}; ${how}: converged`);
  });

  it.each([4, 20])("a change (a new environment, a grown volume) killed after %i Admin writes", async (after) => {
    await fresh();
    pulumi("up", "--yes", "--non-interactive", "--skip-preview");
    const grown = { ...SITE_ENVS, fedora: { ...SITE_ENVS.fedora, volumeSize: `${30 + after}GiB` }, arch: { logs: "logs", builders: [{ dir: "/home/user/builder-arch", release: "4.3" }] } };
    await stack.setAllConfig(siteConfig(sim, { [`${NS}:envs`]: grown }));
    const killed = await killedRun("up", after);
    const how = recover("up");
    await assertConverged(`change, kill at ${after}`, true);
    expect((await sim.client.vmList()).map((v) => v.name)).toContain("build-arch");
    report.push(`change, kill at ${after}: ${killed}; ${how}: converged`);
  });

  it.each([3, 15, 40])("destroy killed after %i Admin writes", async (after) => {
    await fresh();
    pulumi("up", "--yes", "--non-interactive", "--skip-preview");
    const killed = await killedRun("destroy", after);
    const how = recover("destroy");
    await assertConverged(`destroy, kill at ${after}`, false);
    report.push(`destroy, kill at ${after}: ${killed}; ${how}: nothing left`);
  });
});
