/**
 * `qubes-build-infra fleet preview|up (--stacks a,b | --file fleet.yaml) [--parallel N] [--json]`
 *
 * Several Qubes machines, one stack each of the same program, run together: every machine's
 * preview is gated by the policy pack, `up` changes only the machines whose preview passed, and
 * one table sums it up (changes and violations per machine).
 *
 * Exit codes: 0 every machine is fine; 1 a machine failed or a policy stopped it, or the fleet was
 * refused (machines sharing an identity, see fleet/identities.ts); 2 usage.
 */
import * as fs from "fs";
import * as path from "path";
import { runFleet } from "./run";
import { specFromFile, specFromList, type FleetSpec } from "./spec";
import { exitCode, renderSummary, type Mode } from "./summary";

const USAGE = "usage: qubes-build-infra fleet preview|up (--stacks <stack>,<stack>... | --file <fleet.yaml>) [--parallel N] [--json]\n";
const projectRoot = path.resolve(__dirname, "..");

export interface FleetArgs {
  mode: Mode;
  spec: FleetSpec;
  json: boolean;
}

/** The command line, or what is wrong with it. Reads the fleet file. */
export function parseArgs(argv: string[]): FleetArgs | string {
  const [mode, ...rest] = argv;
  if (mode !== "preview" && mode !== "up") return mode ? `unknown fleet command ${mode}: preview or up` : "preview or up?";
  let stacks: string | undefined;
  let file: string | undefined;
  let parallel: number | undefined;
  let json = false;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const [flag, inline] = a.startsWith("--") && a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
    const value = (): string | undefined => {
      const v = inline ?? rest[++i];
      return v === undefined || v === "" || (inline === undefined && v.startsWith("--")) ? undefined : v;
    };
    if (flag === "--stacks" || flag === "--file") {
      const v = value();
      if (v === undefined) return `${flag} needs a value`;
      if (flag === "--stacks") stacks = v;
      else file = v;
    } else if (flag === "--parallel") {
      const v = value();
      parallel = Number(v);
      if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) return `--parallel ${v ?? ""}: a whole number from 1 to 64`;
    } else if (flag === "--json" && inline === undefined) json = true;
    else return `unexpected argument ${a}`;
  }
  if ((stacks === undefined) === (file === undefined)) return "give the stacks with either --stacks a,b or --file fleet.yaml";
  try {
    if (stacks !== undefined) return { mode, spec: specFromList(stacks, projectRoot, parallel), json };
    let text: string;
    try {
      text = fs.readFileSync(file!, "utf8");
    } catch (e) {
      return `--file ${file}: ${(e as Error).message}`;
    }
    return { mode, spec: specFromFile(text, file!, projectRoot, parallel), json };
  } catch (e) {
    return (e as Error).message;
  }
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (typeof args === "string") {
    process.stderr.write(`fleet: ${args}\n${USAGE}`);
    return 2;
  }
  const log = (line: string) => process.stderr.write(`fleet: ${line}\n`);
  const stacks = args.spec.stacks.map((s) => s.name).join(", ");
  log(`${args.mode} of ${stacks}, ${Math.min(args.spec.parallel, args.spec.stacks.length)} at a time`);
  try {
    const report = await runFleet({ mode: args.mode, spec: args.spec, projectRoot, env: process.env, log });
    if (report.refused.length > 0) {
      if (args.json) process.stdout.write(`${JSON.stringify({ refused: report.refused }, null, 2)}\n`);
      process.stderr.write(`fleet: refused, nothing ran:\n${report.refused.map((p) => `  - ${p}`).join("\n")}\n`);
      return 1;
    }
    process.stdout.write(args.json ? `${JSON.stringify({ mode: args.mode, results: report.results }, null, 2)}\n` : renderSummary(args.mode, report.results));
    return exitCode(report.results);
  } catch (e) {
    process.stderr.write(`fleet: ${(e as Error).message}\n`);
    return 1;
  }
}
