// Several Qubes machines: two qubes-sim daemons, one stack each of the same program (index.ts),
// state on the team's PostgreSQL, run together by `qubes-build-infra fleet` through the
// Automation API with the policy pack. A machine whose preview violates a policy is stopped and
// the other goes ahead; machines that would share an identity are refused before anything runs.
import { execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { LocalWorkspace, type Stack } from "@pulumi/pulumi/automation";
import { parse } from "yaml";
import { startPostgres, type StartedPostgres } from "../helpers/postgres";
import { projectRoot, pulumiEnv, tempDir, toolsBin } from "../helpers/pulumi";
import { startSim, type StartedSim } from "../helpers/sim";
import { createStandinGithub } from "../../sim/standin-builders";

jest.setTimeout(900_000);

const NS = "qubes-build-infra";
const localConfig = (parse(fs.readFileSync(path.join(projectRoot, "Pulumi.local.yaml"), "utf8")) as { config: Record<string, unknown> }).config;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** The table's row of a machine: its cells by column name. */
function row(table: string, machine: string): Record<string, string> {
  const lines = table.split("\n");
  const header = lines[0].trim().split(/\s{2,}/);
  const line = lines.find((l) => l.startsWith(`${machine} `));
  if (!line) throw new Error(`no row for ${machine} in:\n${table}`);
  const cells = line.trim().split(/\s{2,}/);
  return Object.fromEntries(header.map((h, i) => [h, cells[i]]));
}

describe("qubes-build-infra fleet", () => {
  let pg: StartedPostgres;
  let backendUrl = "";
  const sims: Record<string, StartedSim> = {};
  const stacks: Record<string, Stack> = {};
  const dir = tempDir("fleet");
  const name = (m: string) => `fleet${process.pid}${m}`;
  const passphrase = (m: string) => path.join(dir, `${m}.passphrase`);
  const fleetFile = (file: string, machines: string[]) => {
    const f = path.join(dir, file);
    fs.writeFileSync(f, `stacks:\n${machines.map((m) => `  - stack: ${name(m)}\n    passphraseFile: ${m}.passphrase\n`).join("")}`);
    return f;
  };

  /** Only what the operator's shell would hold: no passphrase; the backend they logged in to. */
  const fleetEnv = (): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${toolsBin}:${process.env.PATH ?? ""}`, PULUMI_BACKEND_URL: backendUrl };
    for (const k of ["PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "QBI_ADMIN"]) delete env[k];
    return env;
  };
  const fleet = (args: string[], extra: Record<string, string> = {}): Promise<Ran> => new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(projectRoot, "bin", "qubes-build-infra"), "fleet", ...args],
      { cwd: projectRoot, env: { ...fleetEnv(), ...extra }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });

  /** The machine's site: the local stack's with one environment (fedora), against its own sim. */
  const setSite = async (m: string, sim: StartedSim, patch: Record<string, unknown> = {}) => {
    const all: Record<string, { value: string; secret?: boolean }> = {};
    const envs = localConfig[`${NS}:envs`] as Record<string, unknown>;
    for (const [k, v] of Object.entries({ ...localConfig, [`${NS}:envs`]: { fedora: envs.fedora }, ...patch })) {
      // Secrets are encrypted with the local stack's passphrase: each machine gets its own below.
      if (v === undefined || (typeof v === "object" && v !== null && "secure" in v)) continue;
      all[k] = { value: typeof v === "string" ? v : JSON.stringify(v) };
    }
    all[`${NS}:admin`] = { value: JSON.stringify({ transport: "sim", socket: sim.socket }) };
    all[`${NS}:protectKeys`] = { value: "false" };
    all[`${NS}:webhookSecret`] = { value: `fleet-test-webhook-secret-${m}-0123456789`, secret: true };
    all[`${NS}:githubApiToken`] = { value: `fleet_test_token_${m}`, secret: true };
    await stacks[m].setAllConfig(all);
  };
  // Machine b publishes to its own branch of the logs repository, under its own log origin.
  const logsB = { ...(localConfig[`${NS}:logs`] as Record<string, unknown>), branch: "machine-b", tlogOrigin: "qubes-sim/machine-b" };

  beforeAll(async () => {
    pg = await startPostgres();
    backendUrl = await pg.url();
    for (const m of ["a", "b"]) {
      sims[m] = await startSim();
      const github = path.join(sims[m].stateDir, "github");
      fs.mkdirSync(github, { recursive: true });
      // The builder repositories the local config pins, as `make up` publishes them.
      createStandinGithub(github);
      if (!fs.existsSync(path.join(github, "build-logs.git"))) execFileSync("git", ["init", "-q", "--bare", "-b", "main", path.join(github, "build-logs.git")]);
    }
    for (const m of ["a", "b", "c"]) {
      // Each stack its own passphrase.
      fs.writeFileSync(passphrase(m), `passphrase of machine ${m} ${process.pid}\n`, { mode: 0o600 });
      const envVars: Record<string, string> = { ...pulumiEnv(dir), PULUMI_BACKEND_URL: backendUrl, PULUMI_CONFIG_PASSPHRASE_FILE: passphrase(m) };
      delete envVars.PULUMI_CONFIG_PASSPHRASE;
      process.env.PATH = envVars.PATH;
      stacks[m] = await LocalWorkspace.createOrSelectStack({ stackName: name(m), workDir: projectRoot }, { envVars });
    }
    await setSite("a", sims.a);
    // b points its build VMs at the clearnet: the policy pack stops it.
    await setSite("b", sims.b, { [`${NS}:logs`]: logsB });
    await stacks.b.setConfig(`${NS}:buildNetvm`, { value: "sys-net" });
    // c is a copy of a: the same sim, logs VM, branch and origin.
    await setSite("c", sims.a);
  });
  afterAll(async () => {
    for (const s of Object.values(sims)) await s.stop();
    await pg?.stop();
    for (const m of ["a", "b", "c"]) fs.rmSync(path.join(projectRoot, `Pulumi.${name(m)}.yaml`), { force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a fleet whose machines would share an identity, or with QBI_ADMIN set, before anything runs", async () => {
    const r = await fleet(["up", "--file", fleetFile("shared.yaml", ["a", "c"])]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("fleet: refused, nothing ran:");
    expect(r.stderr).toContain(`${name("a")} and ${name("c")} both manage the Qubes machine at qubes-sim socket ${sims.a.socket} (qubes-build-infra:admin)`);
    expect(r.stderr).toContain(`${name("a")} (logs VM logs) and ${name("c")} (logs VM logs) would sign transparency logs with one origin, local/srv/qubes-sim-github/build-logs/logs,`);
    expect(r.stderr).toContain(`and both have a logs VM named logs: both would publish their transparency logs as tlog/logs/`);

    const pinned = await fleet(["preview", "--file", fleetFile("ab.yaml", ["a", "b"])], { QBI_ADMIN: JSON.stringify({ transport: "sim", socket: sims.a.socket }) });
    expect(pinned.code).toBe(1);
    expect(pinned.stderr).toContain("QBI_ADMIN is set: it would point every stack at one Admin endpoint.");
    for (const s of Object.values(sims)) expect((await s.client.vmList()).map((v) => v.name)).not.toContain("build-fedora");
  });

  it("runs both machines' stacks at once: a policy violation stops one machine, the other is built", async () => {
    const file = fleetFile("fleet.yaml", ["a", "b"]);
    const r = await fleet(["up", "--file", file]);
    expect(r.code).toBe(1);
    const a = row(r.stdout, name("a"));
    const b = row(r.stdout, name("b"));
    // On failure, show what the fleet printed: the summary row alone does not say why.
    if (a.result !== "updated" || b.result !== "STOPPED (policy)") process.stderr.write(`fleet printed:\n${r.stdout}\n${r.stderr}\n`);
    expect(a).toMatchObject({ result: "updated", update: "0", delete: "0", mandatory: "0" });
    // The whole one-env site (its VMs, one VmFiles per VM, keys, checkouts, ...).
    expect(Number(a.create)).toBeGreaterThan(20);
    expect(b).toMatchObject({ result: "STOPPED (policy)", update: "0" });
    expect(Number(b.mandatory)).toBeGreaterThanOrEqual(1);
    // What b would have created, had the policy allowed it.
    expect(Number(b.create)).toBe(Number(a.create));
    expect(r.stdout).toMatch(new RegExp(`^${name("b")}: \\[mandatory\\] build-network-through-tor \\(build-fedora\\): .*netvm is sys-net, not the Tor gateway sys-whonix`, "m"));
    expect(r.stdout).toContain(`Not applied to ${name("b")}: the preview found mandatory policy violations.`);
    expect(r.stderr).toMatch(/fleet: up of .*, 2 at a time/);

    expect((await sims.a.client.vmList()).map((v) => v.name)).toEqual(expect.arrayContaining(["build-fedora", "keys-fedora", "logs"]));
    expect((await sims.b.client.vmList()).map((v) => v.name)).not.toContain("build-fedora");

    // b fixed, and run alone: built, with its own log origin on its own branch.
    await stacks.b.removeConfig(`${NS}:buildNetvm`);
    const again = await fleet(["up", "--file", fleetFile("b.yaml", ["b"])]);
    expect({ code: again.code, out: again.code === 0 ? "" : again.stdout + again.stderr }).toEqual({ code: 0, out: "" });
    expect(again.stdout.split("\n").filter((l) => l.startsWith("fleet"))).toHaveLength(1);
    expect(row(again.stdout, name("b"))).toMatchObject({ result: "updated", create: a.create, mandatory: "0" });
    expect((await sims.b.client.propertyGet("build-fedora", "netvm")).value).toBe("sys-whonix");
    const verifiers = (await stacks.b.outputs()).logVerifiers.value as Record<string, string>;
    expect(verifiers.logs).toMatch(/^qubes-sim\/machine-b\/logs\+[0-9a-f]{8}\+/);
    const branches = execFileSync("git", ["--git-dir", path.join(sims.b.stateDir, "github", "build-logs.git"), "branch", "--format=%(refname:short)"]).toString();
    expect(branches.split("\n")).toContain("machine-b");

    // A preview of the whole fleet: nothing left to do anywhere.
    const preview = await fleet(["preview", "--file", file]);
    expect(preview.code).toBe(0);
    for (const m of ["a", "b"]) expect(row(preview.stdout, name(m))).toMatchObject({ result: "no changes", create: "0", update: "0", delete: "0", mandatory: "0" });
  });
});
