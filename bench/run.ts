/**
 * `npm run bench`: how fast the site converges and how its cost grows. Plain figures, each case
 * measured several times (min/median/max), ratios only against floors measured in the same run.
 *
 *   npm run bench                       # every case (under 15 minutes on 2 cores)
 *   BENCH_QUICK=1 npm run bench         # smoke run (~2 minutes)
 *   npm run bench -- --only logs        # one case (repeatable, or comma-separated)
 *   npm run bench -- --quick --only team   # state on PostgreSQL against the file backend
 *   npm run bench -- --quick --only policy,webhooks
 *
 * Writes bench/results/<timestamp>.json and bench/results/latest.json, and
 * bench/results/convergence.svg when the convergence case ran.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { lineChart, Series } from "./chart";
import { benchConvergence } from "./convergence";
import { benchLogs } from "./logs";
import { benchQrexec } from "./qrexec";
import { benchSigning } from "./signing";
import { secondsSince, now, table, sig } from "./stats";
import { benchTeam } from "./team";
import { benchWebhooks } from "./webhooks";

const CASES = ["policy", "logs", "signing", "webhooks", "team", "convergence"] as const;
type Case = (typeof CASES)[number];

const resultsDir = path.join(__dirname, "results");

function parseArgs(argv: string[]): { only: Case[]; quick: boolean } {
  const only: Case[] = [];
  let quick = process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") quick = true;
    else if (a === "--only" || a.startsWith("--only=")) {
      const v = a === "--only" ? argv[++i] : a.slice("--only=".length);
      for (const c of (v ?? "").split(",").filter(Boolean)) {
        if (!(CASES as readonly string[]).includes(c)) throw new Error(`unknown case ${c}; cases: ${CASES.join(", ")}`);
        only.push(c as Case);
      }
    } else if (a === "--help" || a === "-h") {
      process.stdout.write(`usage: npm run bench -- [--quick] [--only <${CASES.join("|")}>[,...]]\n`);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return { only: only.length ? only : [...CASES], quick };
}

function machine(): Record<string, unknown> {
  const cpuinfo = fs.existsSync("/proc/cpuinfo") ? fs.readFileSync("/proc/cpuinfo", "utf8") : "";
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? "unknown";
  let commit = "";
  let nproc = os.cpus().length;
  try {
    commit = execFileSync("git", ["-C", path.join(__dirname, ".."), "rev-parse", "--short", "HEAD"]).toString().trim();
    nproc = Number(execFileSync("nproc").toString().trim());
  } catch {
    /* not essential */
  }
  return {
    nproc,
    memory_gib: sig(os.totalmem() / 2 ** 30),
    cpu_model: model,
    node: process.version,
    kernel: os.release(),
    commit,
  };
}

function policyTable(r: Record<string, unknown>): string {
  const rows: (string | number)[][] = [["policy (qrexec module)", "min", "median", "max", "unit"]];
  for (const [k, v] of Object.entries(r)) {
    if (typeof v !== "object" || v === null) continue;
    const s = v as { min: number; median: number; max: number };
    rows.push([k.replace(/_per_s_(\d+)$/, " ($1 rules)"), s.min, s.median, s.max, k.startsWith("parse") ? "rules/s" : "requests/s"]);
  }
  return table(rows);
}

function convergenceChart(r: Record<string, unknown>): string {
  const sites = (r.sites ?? {}) as Record<string, Record<string, { seconds: { median: number } | number }>>;
  const ops: [string, string][] = [["first_up", "first up"], ["no_op_up", "no-op up"], ["no_op_preview", "no-op preview"], ["refresh", "refresh"], ["one_env_change", "one-env change"]];
  const series: Series[] = ops.map(([key, name]) => ({
    name,
    points: Object.entries(sites)
      .filter(([, s]) => s[key])
      .map(([n, s]) => {
        const v = s[key].seconds;
        return [Number(n), typeof v === "number" ? v : v.median] as [number, number];
      }),
  })).filter((s) => s.points.length > 0);
  const floor = r.floor_empty_program as { noop_up_s: { median: number } } | undefined;
  const skipped = (r.skipped ?? []) as string[];
  return lineChart({
    title: "Site convergence time against number of environments (qubes-sim, median)",
    xLabel: "environments",
    yLabel: "seconds",
    series,
    hlines: floor ? [{ name: "floor: empty no-op up", y: floor.noop_up_s.median }] : [],
    note: series.length === 0 ? (skipped[0] ?? "no site measured").slice(0, 110) : undefined,
  });
}

async function main(): Promise<void> {
  const { only, quick } = parseArgs(process.argv.slice(2));
  const started = new Date();
  const t0 = now();
  const info = machine();
  const log = (line: string) => process.stdout.write(`${line}\n`);
  log(`bench: ${quick ? "quick" : "full"} run of ${only.join(", ")} on ${info.nproc} CPU(s) (${info.cpu_model}), ${info.memory_gib} GiB, node ${info.node}, commit ${info.commit}`);
  const workRoot = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-bench-"));
  const results: Record<string, unknown> = {};
  const tables: string[] = [];
  const caseSeconds: Record<string, number> = {};
  try {
    for (const c of CASES.filter((x) => only.includes(x))) {
      const ct = now();
      log(`\n== ${c}`);
      try {
        if (c === "policy") {
          const r = await benchQrexec();
          results.policy = r;
          tables.push(policyTable(r));
        } else if (c === "logs") {
          const r = await benchLogs({ quick, workRoot, log });
          tables.push(String(r.table));
          delete r.table;
          results.logs = r;
        } else if (c === "signing") {
          const r = await benchSigning({ quick, workRoot, log });
          tables.push(String(r.table));
          delete r.table;
          results.signing = r;
        } else if (c === "webhooks") {
          const r = await benchWebhooks({ quick, workRoot, log });
          tables.push(String(r.table));
          delete r.table;
          results.webhooks = r;
        } else if (c === "team") {
          const r = await benchTeam({ quick, workRoot, log });
          tables.push(String(r.table));
          delete r.table;
          results.team = r;
        } else {
          // Whatever the other cases left of the 15 minutes, at most 9 minutes.
          // BENCH_CONVERGENCE_BUDGET (seconds) lets a longer run reach the larger sites.
          const override = Number(process.env.BENCH_CONVERGENCE_BUDGET ?? "");
          const budgetSeconds = override > 0 ? override : quick ? 150 : Math.max(120, Math.min(540, 840 - secondsSince(t0)));
          const r = await benchConvergence({ quick, workRoot, log, budgetSeconds });
          tables.push(String(r.table));
          for (const s of (r.skipped ?? []) as string[]) tables.push(s);
          delete r.table;
          results.convergence = r;
          fs.mkdirSync(resultsDir, { recursive: true });
          fs.writeFileSync(path.join(resultsDir, "convergence.svg"), convergenceChart(r));
        }
      } catch (e) {
        const msg = `${c}: FAILED: ${e instanceof Error ? e.stack ?? e.message : String(e)}`;
        log(msg);
        results[c] = { failed: msg };
        tables.push(`${c}: FAILED (see above)`);
      }
      caseSeconds[c] = sig(secondsSince(ct));
      log(`== ${c} took ${caseSeconds[c]} s`);
    }
  } finally {
    fs.rmSync(workRoot, { recursive: true, force: true });
  }
  const totalSeconds = sig(secondsSince(t0));
  const doc = { started: started.toISOString(), quick, cases: only, machine: info, seconds: totalSeconds, case_seconds: caseSeconds, results };
  fs.mkdirSync(resultsDir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, "-");
  const file = path.join(resultsDir, `${stamp}.json`);
  fs.writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  fs.writeFileSync(path.join(resultsDir, "latest.json"), `${JSON.stringify(doc, null, 2)}\n`);
  log(`\n${tables.join("\n\n")}\n`);
  log(`bench: ${totalSeconds} s in all; results in ${path.relative(process.cwd(), file)} and bench/results/latest.json`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
