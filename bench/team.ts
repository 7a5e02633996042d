/**
 * The team's shared state: a no-op `up` of the local-size site (Pulumi.local.yaml: two
 * environments) with its state on PostgreSQL against the same with the file backend. Target:
 * PostgreSQL within 1.3x.
 *
 * One qubes-sim daemon and one deployed site; its state exported from the file backend and
 * imported into a PostgreSQL server started by scripts/postgres.sh with the settings a team runs
 * (fsync on, password login over the Unix socket), so both backends describe the same machine.
 * Then no-op `up`s (`--skip-preview`, the `pulumi` CLI process timed) alternate between the two,
 * so that the machine's noise falls on both alike.
 */
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { buildServices } from "../services/build";
import { startPostgres } from "../test/helpers/postgres";
import { openStack, pulumiEnv } from "../test/helpers/pulumi";
import { startSim } from "../test/helpers/sim";
import { now, ratio, roundSummary, secondsSince, sig, summary, table } from "./stats";

export interface TeamBenchOptions {
  quick: boolean;
  workRoot: string;
  log: (line: string) => void;
}

const projectRoot = path.resolve(__dirname, "..");
const NS = "qubes-build-infra";

export async function benchTeam(opts: TeamBenchOptions): Promise<Record<string, unknown>> {
  const { quick, log } = opts;
  const start = now();
  const reps = quick ? 2 : 5;
  const root = fs.mkdtempSync(path.join(opts.workRoot, "team-"));
  const stack = `bench-team-${process.pid}`;
  const stackFile = path.join(projectRoot, `Pulumi.${stack}.yaml`);
  await buildServices(path.join(projectRoot, "dist", "services"));
  const pg = await startPostgres({ durable: true });
  fs.mkdirSync(path.join(root, "sim"));
  const sim = await startSim({ dir: path.join(root, "sim") });
  try {
    const backends: Record<string, string> = { file: `file://${path.join(root, "backend")}`, postgres: await pg.url() };
    const pulumi = (backend: string, ...args: string[]): { seconds: number; out: string } => {
      const env = { ...process.env, ...pulumiEnv(root), PULUMI_BACKEND_URL: backends[backend] };
      const t0 = now();
      const r = spawnSync("pulumi", [...args, "--stack", stack, "--non-interactive"], { cwd: projectRoot, env, encoding: "utf8", maxBuffer: 64 << 20 });
      const seconds = secondsSince(t0);
      if (r.status !== 0) throw new Error(`pulumi ${args[0]} on ${backend} failed: ${(r.stderr || r.stdout).slice(-1500)}`);
      return { seconds, out: r.stdout };
    };

    // The local site against this sim, deployed once through the file backend.
    const github = path.join(sim.stateDir, "github");
    fs.mkdirSync(github, { recursive: true });
    if (!fs.existsSync(path.join(github, "build-logs.git"))) execFileSync("git", ["init", "-q", "--bare", "-b", "main", path.join(github, "build-logs.git")]);
    const local = (parse(fs.readFileSync(path.join(projectRoot, "Pulumi.local.yaml"), "utf8")) as { config: Record<string, unknown> }).config;
    fs.mkdirSync(path.join(root, "backend"));
    const site = await openStack(projectRoot, stack, path.join(root, "backend"));
    const config: Record<string, { value: string; secret?: boolean }> = {};
    for (const [k, v] of Object.entries(local)) config[k] = { value: typeof v === "string" ? v : JSON.stringify(v) };
    config[`${NS}:admin`] = { value: JSON.stringify({ transport: "sim", socket: sim.socket }) };
    config[`${NS}:protectKeys`] = { value: "false" };
    config[`${NS}:webhookSecret`] = { value: "bench-webhook-secret-0123456789abcdef", secret: true };
    await site.setAllConfig(config);
    const first = pulumi("file", "up", "--yes", "--skip-preview");
    log(`  team: the local site deployed in ${sig(first.seconds)} s (file backend)`);

    // The same state in PostgreSQL (the stack's settings, Pulumi.<stack>.yaml, are shared).
    const exported = path.join(root, "state.json");
    pulumi("file", "stack", "export", "--file", exported);
    pulumi("postgres", "stack", "init");
    pulumi("postgres", "stack", "import", "--file", exported);

    const times: Record<string, number[]> = { file: [], postgres: [] };
    let resources = 0;
    for (let r = 0; r < reps; r++) {
      for (const backend of r % 2 === 0 ? ["file", "postgres"] : ["postgres", "file"]) {
        const { seconds, out } = pulumi(backend, "up", "--yes", "--skip-preview");
        const same = /(\d+) unchanged/.exec(out);
        if (/\b(created|updated|deleted|replaced)\b/.test(out) || !same) throw new Error(`the ${backend} up was not a no-op:\n${out.slice(-1500)}`);
        resources = Number(same[1]);
        times[backend].push(seconds);
      }
    }
    const file = summary(times.file);
    const postgres = summary(times.postgres);
    const r = ratio(postgres, file);
    log(`  team: no-op up ${sig(file.median)} s (file) vs ${sig(postgres.median)} s (PostgreSQL): ${sig(r)}x (target <= 1.3x)`);
    const rows: (string | number)[][] = [["team: no-op up, local site", "min", "median", "max", "unit", "vs file"]];
    rows.push(["state in files (.pulumi-state)", sig(file.min), sig(file.median), sig(file.max), "s", 1]);
    rows.push(["state in PostgreSQL", sig(postgres.min), sig(postgres.median), sig(postgres.max), "s", sig(r)]);
    return {
      repetitions: reps,
      resources,
      noop_up_file_s: roundSummary(file),
      noop_up_postgres_s: roundSummary(postgres),
      targets: { postgres_within_1_3x_of_file: { ok: r <= 1.3, ratio: sig(r) } },
      table: table(rows),
      seconds: sig(secondsSince(start)),
    };
  } finally {
    await sim.stop();
    await pg.stop();
    fs.rmSync(stackFile, { force: true });
    fs.rmSync(root, { recursive: true, force: true });
  }
}
