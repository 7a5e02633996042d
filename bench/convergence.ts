/**
 * Convergence of the site (index.ts + site/) against qubes-sim, through the Automation API with a
 * local program: sites of 1, 5, 20 and 50 environments, each in a fresh sim daemon with a
 * throwaway backend: first `up`, no-op `up`, no-op `preview`, `refresh`, and a one-env change
 * (one env's volumeSize). Wall time, and Admin API calls by method as counted by the sim
 * (`sim.Stats`, read before and after each operation; the difference is the operation's calls).
 *
 * Floor in the same run: the engine's own `up` / `preview` / `refresh` of the empty program in
 * bench/empty/.
 *
 * Targets for 20 environments: no-op `up` within 2x the floor; at most one read call per VM and
 * per policy file; the one-env change touches only that env's resources.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { createAdminClient } from "../admin/client";
import { buildServices } from "../services/build";
import { parseSiteConfig } from "../site/config";
import { planSite, policyFiles as policyFilesOf } from "../site/plan";
import { openStack as openStackIn } from "../test/helpers/pulumi";
import { startSim } from "../test/helpers/sim";
import { githubDir, githubLogs, SITE_CONFIG, SITE_ENVS } from "../test/site/siteStack";
import { ratio, roundSummary, secondsSince, sig, summary, Summary, table, now } from "./stats";

export interface ConvergenceOptions {
  quick: boolean;
  workRoot: string;
  log: (line: string) => void;
  /** Seconds this case may take; sizes that would start after it are skipped (said so). */
  budgetSeconds: number;
}

const projectRoot = path.resolve(__dirname, "..");
const NS = "qubes-build-infra";

// ---------------------------------------------------------------------------------------------
// qubes-sim (started by the tests' startSim): its call counters over the qubesd wire protocol.

/** One Admin API call to the sim through the project's own client (the real wire protocol). */
export async function simCall(socket: string, method: string, dest = "dom0", arg = "", payload = ""): Promise<string> {
  const client = createAdminClient({ transport: "sim", socket });
  return (await client.call(method, dest, arg, payload)).toString("utf8");
}

export type Counts = Record<string, number>;

/** Finds the {method: count} table in whatever `sim.Stats` answers (JSON, or `method count` lines). */
export function parseStats(text: string): Counts {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    const out: Counts = {};
    for (const line of text.split("\n")) {
      const m = /^(\S+)[\s=:]+(\d+)\s*$/.exec(line.trim());
      if (m) out[m[1]] = Number(m[2]);
    }
    return out;
  }
  const isCounts = (o: unknown): o is Counts =>
    typeof o === "object" && o !== null && !Array.isArray(o) && Object.keys(o).length > 0 && Object.values(o).every((v) => typeof v === "number");
  const search = (o: unknown, depth: number): Counts | null => {
    if (isCounts(o) && Object.keys(o).some((k) => k.includes("."))) return o;
    if (depth > 3 || typeof o !== "object" || o === null) return null;
    for (const key of ["calls", "methods", "byMethod", "counts"]) {
      const v = (o as Record<string, unknown>)[key];
      const r = search(v, depth + 1);
      if (r) return r;
    }
    for (const v of Object.values(o)) {
      const r = search(v, depth + 1);
      if (r) return r;
    }
    return null;
  };
  return search(data, 0) ?? {};
}

async function readStats(socket: string): Promise<Counts> {
  return parseStats(await simCall(socket, "sim.Stats"));
}

/** Calls made between two readings, without the sim's own bookkeeping calls. */
function diffCounts(before: Counts, after: Counts): Counts {
  const out: Counts = {};
  for (const [k, v] of Object.entries(after)) {
    if (k.startsWith("sim.")) continue;
    const d = v - (before[k] ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}

const isRead = (method: string): boolean => /(\.Get|\.List|\.Info|CurrentState|GetSystemInfo|GetAll)/.test(method) && !/Set|Replace|Remove|Create/.test(method);
const total = (c: Counts): number => Object.values(c).reduce((a, b) => a + b, 0);
const reads = (c: Counts): number => Object.entries(c).reduce((a, [k, v]) => a + (isRead(k) ? v : 0), 0);

// ---------------------------------------------------------------------------------------------
// Stacks.


/** The stack `stackName` of the program in `workDir`, with its own backend directory. */
async function openStack(workDir: string, stackName: string, backend: string): Promise<Stack> {
  fs.mkdirSync(backend, { recursive: true });
  return openStackIn(workDir, stackName, backend);
}

interface OpResult {
  seconds: number;
  calls: Counts;
  /** URNs of resources the engine did something to (op other than `same`/`read`/`refresh`). */
  touched: string[];
  changes: Record<string, number>;
}

type Op = "up" | "preview" | "refresh";

const CLI_ARGS: Record<Op, string[]> = {
  up: ["up", "--yes", "--skip-preview"],
  preview: ["preview"],
  refresh: ["refresh", "--yes", "--skip-preview"],
};

interface EngineEvent {
  resourcePreEvent?: { metadata: { op: string; urn: string } };
  summaryEvent?: { resourceChanges?: Record<string, number> };
}

/**
 * Times one operation as a user runs it: the `pulumi` CLI process, wall clock. (The Automation
 * API adds `stack output` and `stack history` runs and a 200 ms-polled event tail after each
 * operation; those grow with the state and are not the engine's work.) The engine's events go
 * to an event log, read afterwards for what was touched and the change summary.
 */
async function runOp(stack: Stack, op: Op, socket: string | null, extraEnv: Record<string, string> = {}): Promise<OpResult> {
  const before = socket ? await readStats(socket) : {};
  const eventLog = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "qbi-bench-ev-")), "events.json");
  const env = { ...process.env, ...(stack.workspace as LocalWorkspace).envVars, PULUMI_DEBUG_COMMANDS: "true", ...extraEnv };
  const t0 = now();
  const r = spawnSync("pulumi", [...CLI_ARGS[op], "--stack", stack.name, "--non-interactive", "--event-log", eventLog],
    { cwd: stack.workspace.workDir, env, encoding: "utf8", maxBuffer: 64 << 20 });
  const seconds = secondsSince(t0);
  const events: EngineEvent[] = fs.existsSync(eventLog)
    ? fs.readFileSync(eventLog, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as EngineEvent)
    : [];
  fs.rmSync(path.dirname(eventLog), { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`pulumi ${op} failed (exit ${r.status}): ${(r.stderr || r.stdout).slice(-2000)}`);
  const touched = new Set<string>();
  let changes: Record<string, number> = {};
  for (const e of events) {
    const m = e.resourcePreEvent?.metadata;
    // The engine's default provider (its config is the stack's) is not a resource of the site.
    if (m && !["same", "read", "refresh"].includes(m.op) && !m.urn.includes("::pulumi:providers:")) touched.add(`${m.op} ${m.urn}`);
    if (e.summaryEvent?.resourceChanges) changes = e.summaryEvent.resourceChanges;
  }
  const after = socket ? await readStats(socket) : {};
  return { seconds, calls: diffCounts(before, after), touched: [...touched], changes };
}

// ---------------------------------------------------------------------------------------------
// The site's configuration for N environments.

const envName = (i: number): string => `env${i}`;

/**
 * The site of the site tests (test/site/fixtures/site.yaml: the builder pins of the sim's stand-in
 * GitHub, the maintainer key, the upload host, the logs repository) with N environments `env1..envN`:
 * every third one a builderv2 environment shaped as the fixture's `debian`, the others v1 ones
 * shaped as its `fedora`.
 */
function siteConfig(n: number, socket: string, volumeGiB: Record<string, number>): Record<string, unknown> {
  const base = Object.fromEntries(Object.entries(SITE_CONFIG).map(([k, v]) => [k.slice(NS.length + 1), v]));
  const envs: Record<string, unknown> = {};
  for (let i = 1; i <= n; i++) {
    const e = envName(i);
    envs[e] = { ...(i % 3 === 0 ? SITE_ENVS.debian : SITE_ENVS.fedora), volumeSize: `${volumeGiB[e] ?? 20}GiB` };
  }
  return { ...base, admin: { transport: "sim", socket }, envs };
}

async function setSiteConfig(stack: Stack, cfg: Record<string, unknown>): Promise<void> {
  const all: Record<string, { value: string; secret?: boolean }> = {};
  for (const [k, v] of Object.entries(cfg)) all[`${NS}:${k}`] = { value: typeof v === "string" ? v : JSON.stringify(v) };
  all[`${NS}:webhookSecret`] = { value: "bench-webhook-secret-0123456789abcdef", secret: true };
  all[`${NS}:githubApiToken`] = { value: "bench-github-token", secret: true };
  await stack.setAllConfig(all);
}

/** Why the site cannot be measured yet, or null when it can. */
export function siteReadiness(): string | null {
  const missing: string[] = [];
  if (!fs.existsSync(path.join(projectRoot, "index.ts"))) missing.push("index.ts");
  if (!fs.existsSync(path.join(projectRoot, "bin", "qubes-sim"))) missing.push("bin/qubes-sim");
  if (!fs.existsSync(path.join(projectRoot, "sim"))) missing.push("sim/");
  if (!fs.existsSync(path.join(projectRoot, "admin", "client.ts"))) missing.push("admin/client.ts");
  return missing.length ? `not yet in the checkout: ${missing.join(", ")}` : null;
}

// ---------------------------------------------------------------------------------------------

interface OpFigures {
  seconds: Summary;
  calls_total: Summary;
  read_calls: Summary;
  calls_by_method: Counts;
  changes: Record<string, number>;
}

function figures(rs: OpResult[]): OpFigures {
  return {
    seconds: roundSummary(summary(rs.map((r) => r.seconds))),
    calls_total: summary(rs.map((r) => total(r.calls))),
    read_calls: summary(rs.map((r) => reads(r.calls))),
    calls_by_method: rs[rs.length - 1]?.calls ?? {},
    changes: rs[rs.length - 1]?.changes ?? {},
  };
}

export async function benchConvergence(opts: ConvergenceOptions): Promise<Record<string, unknown>> {
  const { quick, log } = opts;
  const start = now();
  const root = fs.mkdtempSync(path.join(opts.workRoot, "convergence-"));
  const reps = quick ? 1 : 3;
  const out: Record<string, unknown> = { repetitions: reps };
  const rows: (string | number)[][] = [["convergence", "envs", "min", "median", "max", "unit", "vs floor", "calls", "reads"]];
  const stackFiles: string[] = [];
  try {
    // The floor: the engine's own work on an empty program.
    const emptyDir = path.join(__dirname, "empty");
    const floorStackName = `bench-floor-${process.pid}`;
    stackFiles.push(path.join(emptyDir, `Pulumi.${floorStackName}.yaml`));
    const fstack = await openStack(emptyDir, floorStackName, path.join(root, "backend-floor"));
    const floorFirst = await runOp(fstack, "up", null);
    const floorRuns: Record<Op, OpResult[]> = { up: [], preview: [], refresh: [] };
    for (let r = 0; r < (quick ? 2 : 5); r++) for (const op of ["up", "preview", "refresh"] as Op[]) floorRuns[op].push(await runOp(fstack, op, null));
    const floor = {
      first_up_s: sig(floorFirst.seconds),
      noop_up_s: roundSummary(summary(floorRuns.up.map((r) => r.seconds))),
      preview_s: roundSummary(summary(floorRuns.preview.map((r) => r.seconds))),
      refresh_s: roundSummary(summary(floorRuns.refresh.map((r) => r.seconds))),
    };
    out.floor_empty_program = floor;
    const floorOf: Record<string, Summary> = {
      "first up": summary([floorFirst.seconds]),
      "no-op up": summary(floorRuns.up.map((r) => r.seconds)),
      "no-op preview": summary(floorRuns.preview.map((r) => r.seconds)),
      refresh: summary(floorRuns.refresh.map((r) => r.seconds)),
      "one-env change": summary(floorRuns.up.map((r) => r.seconds)),
    };
    rows.push(["floor: empty program, first up", 0, floor.first_up_s, floor.first_up_s, floor.first_up_s, "s", 1, "", ""]);
    for (const [name, s] of [["no-op up", floor.noop_up_s], ["preview", floor.preview_s], ["refresh", floor.refresh_s]] as const) {
      rows.push([`floor: empty program, ${name}`, 0, s.min, s.median, s.max, "s", 1, "", ""]);
    }
    // A reference, not the floor: the same empty program under Pulumi's default TypeScript
    // runtime (ts-node with type checking), what a project set up by `pulumi new` pays.
    const refDir = path.join(__dirname, "empty-default");
    const refStackName = `bench-ref-${process.pid}`;
    stackFiles.push(path.join(refDir, `Pulumi.${refStackName}.yaml`));
    const rstack = await openStack(refDir, refStackName, path.join(root, "backend-ref"));
    await runOp(rstack, "up", null);
    const refRuns: OpResult[] = [];
    for (let r = 0; r < (quick ? 2 : 5); r++) refRuns.push(await runOp(rstack, "up", null));
    const ref = roundSummary(summary(refRuns.map((r) => r.seconds)));
    out.reference_default_typescript_runtime = { noop_up_s: ref };
    floorOf["reference no-op up"] = summary(refRuns.map((r) => r.seconds));
    rows.push(["reference: empty, ts-node runtime", 0, ref.min, ref.median, ref.max, "s", sig(ratio(summary(refRuns.map((r) => r.seconds)), floorOf["no-op up"])), "", ""]);
    log(`  convergence floor (empty program): first up ${floor.first_up_s} s, no-op up ${floor.noop_up_s.median} s, preview ${floor.preview_s.median} s, refresh ${floor.refresh_s.median} s`);

    const notReady = siteReadiness();
    // BENCH_CONVERGENCE_SIZES (e.g. "20,100") measures other sites than the defaults.
    const chosen = (process.env.BENCH_CONVERGENCE_SIZES ?? "").split(",").filter((x) => x.trim() !== "").map(Number);
    if (chosen.some((x) => !Number.isInteger(x) || x < 1)) throw new Error(`BENCH_CONVERGENCE_SIZES: expected a comma-separated list of environment counts, got "${process.env.BENCH_CONVERGENCE_SIZES}"`);
    const sizes = chosen.length > 0 ? chosen : quick ? [1, 5] : [1, 5, 20, 50];
    out.sizes = sizes;
    const skipped: string[] = [];
    if (notReady) {
      const line = `SKIPPED site convergence: the site is not runnable yet (${notReady}); only the floor was measured`;
      log(`  ${line}`);
      skipped.push(line);
    } else {
      // The site uploads the bundled services from dist/services.
      await buildServices(path.join(projectRoot, "dist", "services"));
      const bySize: Record<string, unknown> = {};
      let last: { n: number; seconds: number; reps: number } | null = null;
      for (const n of sizes) {
        const elapsed = secondsSince(start);
        // Sizes cost roughly in proportion to their number of environments, and to their number
        // of passes (the first up, then each repetition).
        const repsN = n >= 50 ? Math.min(reps, 2) : reps;
        const predicted = last ? ((last.seconds * n) / last.n) * ((repsN + 1) / (last.reps + 1)) : 0;
        if (elapsed + predicted > opts.budgetSeconds) {
          const line = `SKIPPED site convergence for ${n} envs: it would not finish within the case's time budget (${opts.budgetSeconds} s; ${Math.round(elapsed)} s used, ~${Math.round(predicted)} s predicted)`;
          log(`  ${line}`);
          skipped.push(line);
          continue;
        }
        const t0 = now();
        try {
          // Two repetitions at 50 envs keep the whole bench under its 15 minutes.
          bySize[n] = await measureSize(n, root, repsN, stackFiles, floorOf, rows, log);
          last = { n, seconds: secondsSince(t0), reps: repsN };
        } catch (e) {
          const line = `FAILED site convergence for ${n} envs: ${(e as Error).message.split("\n").slice(0, 6).join(" | ").slice(0, 600)}`;
          log(`  ${line}`);
          skipped.push(line);
          if (n === sizes[0]) {
            skipped.push("SKIPPED the larger sizes: the smallest site does not converge");
            break;
          }
        }
      }
      out.sites = bySize;
    }
    out.skipped = skipped;
  } finally {
    for (const f of stackFiles) fs.rmSync(f, { force: true });
    fs.rmSync(root, { recursive: true, force: true });
  }
  out.table = table(rows);
  out.seconds = sig(secondsSince(start));
  return out;
}

async function measureSize(
  n: number,
  root: string,
  reps: number,
  stackFiles: string[],
  floorOf: Record<string, Summary>,
  rows: (string | number)[][],
  log: (line: string) => void,
): Promise<Record<string, unknown>> {
  const dir = path.join(root, `site-${n}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.mkdirSync(path.join(dir, "sim"), { recursive: true });
  const sim = await startSim({ dir: path.join(dir, "sim") });
  const stackName = `bench-${process.pid}-${n}`;
  stackFiles.push(path.join(projectRoot, `Pulumi.${stackName}.yaml`));
  try {
    // The stand-in GitHub: the logs repository and the builder repositories the site checks out.
    githubLogs(sim);
    githubDir(sim);
    const volumes: Record<string, number> = {};
    const cfg = siteConfig(n, sim.socket, volumes);
    const plan = planSite(parseSiteConfig(cfg));
    const vmCount = plan.vms.length;
    const policyFiles = policyFilesOf(plan.rules).length;
    const stack = await openStack(projectRoot, stackName, path.join(dir, "backend"));
    await setSiteConfig(stack, cfg);

    const first = await runOp(stack, "up", sim.socket);
    const resources = first.changes.create ?? 0;
    log(`  ${n} envs: first up ${sig(first.seconds)} s, ${resources} resources, ${total(first.calls)} Admin API calls`);
    // The engine's own cost for as many resources: a program of that many do-nothing dynamic resources.
    const trivial = await trivialNoop(resources, dir, reps, stackFiles);
    const runs: Record<string, OpResult[]> = { "no-op up": [], "no-op preview": [], refresh: [], "one-env change": [] };
    const changed = envName(Math.min(n, 2));
    for (let r = 0; r < reps; r++) {
      runs["no-op up"].push(await runOp(stack, "up", sim.socket));
      runs["no-op preview"].push(await runOp(stack, "preview", sim.socket));
      runs.refresh.push(await runOp(stack, "refresh", sim.socket));
      volumes[changed] = 21 + r;
      await setSiteConfig(stack, siteConfig(n, sim.socket, volumes));
      runs["one-env change"].push(await runOp(stack, "up", sim.socket));
    }
    const res: Record<string, unknown> = {
      repetitions: reps, vms: vmCount, policy_files: policyFiles, resources, first_up: { ...figures([first]), seconds: sig(first.seconds) },
      trivial_resources_noop_up_s: roundSummary(trivial),
    };
    const addRow = (name: string, rs: OpResult[]) => {
      const f = figures(rs);
      rows.push([name, n, f.seconds.min, f.seconds.median, f.seconds.max, "s", sig(ratio(summary(rs.map((r) => r.seconds)), floorOf[name])), f.calls_total.median, f.read_calls.median]);
    };
    addRow("first up", [first]);
    if (n <= 20) {
      // Why the first up grows faster than the site: the same first up on a fresh sim and backend
      // with the engine writing the state once at the end instead of after every step.
      const once = await firstUpStateWrittenOnce(n, dir, stackFiles);
      res.first_up_state_written_once = { seconds: sig(once) };
      rows.push(["first up, state written once", n, sig(once), sig(once), sig(once), "s", sig(once / floorOf["first up"].median), "", ""]);
      log(`  ${n} envs: first up ${sig(first.seconds)} s with a checkpoint after every step, ${sig(once)} s with the state written once`);
    }
    rows.push([`engine only: ${resources} do-nothing resources, no-op up`, n, sig(trivial.min), sig(trivial.median), sig(trivial.max), "s", sig(ratio(trivial, floorOf["no-op up"])), "", ""]);
    for (const [name, rs] of Object.entries(runs)) {
      addRow(name, rs);
      res[name.replace(/[^a-z]+/g, "_")] = { ...figures(rs), ratio_to_floor: sig(ratio(summary(rs.map((r) => r.seconds)), floorOf[name])) };
    }
    // Targets (stated for 20 envs, checked for every size).
    const noop = runs["no-op up"];
    const noopRatio = ratio(summary(noop.map((r) => r.seconds)), floorOf["no-op up"]);
    const maxReads = Math.max(...noop.map((r) => reads(r.calls)));
    const boundary = new RegExp(`(^|[^a-z0-9])${changed}($|[^a-z0-9])`);
    const outside = new Set<string>();
    for (const r of runs["one-env change"]) for (const t of r.touched) if (!boundary.test(t.split("::").pop() ?? "")) outside.add(t);
    const touchedCount = Math.max(...runs["one-env change"].map((r) => r.touched.length));
    res.targets = {
      noop_up_within_2x_floor: { ok: noopRatio <= 2, ratio: sig(noopRatio) },
      // Not a target: the same ratio against the empty program under ts-node (reference row).
      noop_up_vs_default_runtime_reference: floorOf["reference no-op up"] ? sig(ratio(summary(noop.map((r) => r.seconds)), floorOf["reference no-op up"])) : null,
      at_most_one_read_per_vm_and_policy_file: { ok: maxReads <= vmCount + policyFiles, read_calls: maxReads, limit: vmCount + policyFiles },
      one_env_change_touches_only_that_env: {
        ok: outside.size === 0 && touchedCount > 0, env: changed, touched: touchedCount, outside: [...outside].slice(0, 20),
      },
    };
    (res.targets as Record<string, unknown>).noop_up_vs_engine_only_same_resources = sig(ratio(summary(noop.map((r) => r.seconds)), trivial));
    const vsRef = floorOf["reference no-op up"] ? `, ${sig(ratio(summary(noop.map((r) => r.seconds)), floorOf["reference no-op up"]))}x the ts-node reference` : "";
    log(`  ${n} envs: no-op up ${sig(noopRatio)}x floor${vsRef}, ${maxReads} reads for ${vmCount} VMs + ${policyFiles} policy file, change of ${changed} touched ${touchedCount} (${outside.size} outside)`);
    return res;
  } finally {
    await sim.stop();
  }
}

/** No-op `up` seconds of bench/trivial with `count` resources (its own backend), `reps` times after its first up. */
async function trivialNoop(count: number, root: string, reps: number, stackFiles: string[]): Promise<Summary> {
  const dir = path.join(__dirname, "trivial");
  const stackName = `bench-trivial-${process.pid}-${count}`;
  stackFiles.push(path.join(dir, `Pulumi.${stackName}.yaml`));
  const stack = await openStack(dir, stackName, path.join(root, "backend-trivial"));
  await stack.setConfig("qbi-bench-trivial:count", { value: String(count) });
  await runOp(stack, "up", null);
  const runs: number[] = [];
  for (let r = 0; r < Math.max(reps, 2); r++) runs.push((await runOp(stack, "up", null)).seconds);
  return summary(runs);
}

/** Seconds of a first up of the N-env site, fresh sim and backend, with PULUMI_SKIP_CHECKPOINTS. */
async function firstUpStateWrittenOnce(n: number, root: string, stackFiles: string[]): Promise<number> {
  const dir = path.join(root, "state-written-once");
  fs.mkdirSync(path.join(dir, "sim"), { recursive: true });
  const sim = await startSim({ dir: path.join(dir, "sim") });
  const stackName = `bench-${process.pid}-${n}-once`;
  stackFiles.push(path.join(projectRoot, `Pulumi.${stackName}.yaml`));
  try {
    githubLogs(sim);
    githubDir(sim);
    const stack = await openStack(projectRoot, stackName, path.join(dir, "backend"));
    await setSiteConfig(stack, siteConfig(n, sim.socket, {}));
    return (await runOp(stack, "up", sim.socket, { PULUMI_SKIP_CHECKPOINTS: "true" })).seconds;
  } finally {
    await sim.stop();
  }
}
