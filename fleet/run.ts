/**
 * Runs the stacks of a fleet concurrently through the Automation API: reads every stack's config,
 * refuses a fleet whose machines would share an identity (fleet/identities.ts), then per machine
 * a `preview` with the policy packs and, for `up`, the update only when that preview found no
 * mandatory violation (the Automation API's `up` skips the preview, and with it the gate).
 *
 * Every CLI call goes through bin/pulumi, so each stack gets its own passphrase (its fleet-file
 * entry, or stacks/<stack>.passphrase) and the backend the operator chose (`pulumi login`).
 */
import * as fs from "fs";
import { LocalWorkspace, PulumiCommand, Stack, type ConfigMap, type EngineEvent } from "@pulumi/pulumi/automation";
import { parseSiteConfig } from "../site/config";
import { rawSiteConfig } from "../site/stackConfig";
import { identityProblems, type Machine } from "./identities";
import type { FleetSpec, FleetStack } from "./spec";
import type { MachineResult, Mode, Violation } from "./summary";

const NAMESPACE = "qubes-build-infra";

export interface FleetRunOptions {
  mode: Mode;
  spec: FleetSpec;
  projectRoot: string;
  /** The environment the fleet was started with (checked, and passed on to every CLI call). */
  env: NodeJS.ProcessEnv;
  /** Progress, one line at a time. */
  log: (line: string) => void;
}

export interface FleetReport {
  /** Why the fleet was refused before any machine ran (empty when it ran). */
  refused: string[];
  results: MachineResult[];
}

/** The CLI's own words from an Automation API error: its `error:` lines, without the wrapping. */
export function cliError(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const m = /\n stderr: ([\s\S]*?)\n err\?: ([\s\S]*)$/.exec(text);
  const raw = m ? (m[1].trim() || m[2].trim()) : text;
  const lines = raw.split("\n").map((l) => l.trim())
    .filter((l) => l !== "" && !/^Command failed with exit code/.test(l) && !/^(error: )?update failed$/i.test(l));
  const errors = lines.filter((l) => /^error: /.test(l)).map((l) => l.slice("error: ".length));
  return (errors.length > 0 ? errors : lines).join(" | ").slice(0, 1200) || text.slice(0, 1200);
}

/** Why an operation failed: the engine's error diagnostics, else what the CLI said. */
function failure(errors: string[], e: unknown): string {
  // eslint-disable-next-line no-control-regex
  const plain = errors.map((m) => m.replace(/\x1b\[[0-9;]*m|<\{%[^%]*%\}>/g, "").trim()).filter((m) => m !== "");
  return plain.length > 0 ? plain.join(" | ").replace(/\s*\n\s*/g, " | ").slice(0, 2000) : cliError(e);
}

/** Before anything runs: settings of the fleet's own environment that would blur the machines. */
export function environmentProblems(spec: FleetSpec, env: NodeJS.ProcessEnv): string[] {
  const problems: string[] = [];
  if (env.QBI_ADMIN) {
    problems.push("QBI_ADMIN is set: it would point every stack at one Admin endpoint. Unset it: each stack's "
      + `${NAMESPACE}:admin says where its machine is`);
  }
  const withFile = spec.stacks.filter((s) => s.passphraseFile).map((s) => s.name);
  if (env.PULUMI_CONFIG_PASSPHRASE !== undefined && withFile.length > 0) {
    problems.push(`PULUMI_CONFIG_PASSPHRASE is set, and would win over the passphraseFile of ${withFile.join(", ")}: unset it`);
  }
  for (const s of spec.stacks) {
    if (s.passphraseFile && !fs.existsSync(s.passphraseFile)) problems.push(`${s.name}: passphraseFile ${s.passphraseFile} does not exist`);
  }
  return problems;
}

interface Opened {
  entry: FleetStack;
  stack: Stack;
  config: ConfigMap;
}

/**
 * The stack, through a workspace of its own, without changing the operator's selected stack:
 * "selecting" reads the stack's config instead (which also proves the stack exists and that its
 * secrets open).
 */
async function openStack(entry: FleetStack, projectRoot: string, pulumiCommand: PulumiCommand): Promise<Opened> {
  const envVars: Record<string, string> = entry.passphraseFile ? { PULUMI_CONFIG_PASSPHRASE_FILE: entry.passphraseFile } : {};
  const ws = await LocalWorkspace.create({ workDir: projectRoot, pulumiCommand, envVars });
  let config: ConfigMap = {};
  ws.selectStack = async (name: string) => {
    config = await ws.getAllConfig(name);
  };
  const stack = await Stack.select(entry.name, ws);
  return { entry, stack, config };
}

interface OpenedMachine {
  o: Opened;
  machine: Machine;
}

function siteConfigOf(o: Opened, projectRoot: string): Machine {
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(o.config)) if (!v.secret) flat[k] = v.value;
  return { stack: o.entry.name, config: parseSiteConfig(rawSiteConfig(flat, NAMESPACE, projectRoot, {})) };
}

/** Runs `fn` over `items`, at most `limit` at a time, results in the items' order. */
async function pool<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

const seconds = (t0: number): number => (Date.now() - t0) / 1000;
const changed = (c: Record<string, number>): boolean => Object.entries(c).some(([k, n]) => k !== "same" && n > 0);

async function runMachine(o: Opened, opts: FleetRunOptions): Promise<MachineResult> {
  const t0 = Date.now();
  const name = o.entry.name;
  const violations: Violation[] = [];
  // The engine's own error diagnostics say best why an operation failed.
  const errors: string[] = [];
  // What the engine planned or did, also when the operation then failed (a policy violation
  // fails a preview after its plan is complete).
  let summary: Record<string, number> | undefined;
  const onEvent = (e: EngineEvent) => {
    if (e.summaryEvent?.resourceChanges) summary = e.summaryEvent.resourceChanges as Record<string, number>;
    const d = e.diagnosticEvent;
    if (d?.severity === "error") errors.push(`${d.urn ? `${d.urn.split("::").pop()}: ` : ""}${d.message}`);
    const p = e.policyEvent;
    if (!p) return;
    violations.push({
      level: p.enforcementLevel,
      policy: p.policyName,
      ...(p.resourceUrn ? { resource: p.resourceUrn.split("::").pop() } : {}),
      message: p.message,
    });
  };
  const policy = {
    policyPacks: opts.spec.policyPacks,
    ...(opts.spec.policyPackConfig ? { policyPackConfigs: [opts.spec.policyPackConfig] } : {}),
  };
  const mandatory = () => violations.some((v) => v.level === "mandatory");

  opts.log(`${name}: preview with the policy pack`);
  let planned: Record<string, number>;
  try {
    planned = (await o.stack.preview({ ...policy, onEvent })).changeSummary as Record<string, number>;
  } catch (e) {
    if (mandatory()) return { stack: name, outcome: "stopped", changes: summary ?? {}, violations, seconds: seconds(t0) };
    return { stack: name, outcome: "failed", changes: summary ?? {}, violations, error: `preview: ${failure(errors, e)}`, seconds: seconds(t0) };
  }
  if (mandatory()) return { stack: name, outcome: "stopped", changes: planned, violations, seconds: seconds(t0) };
  if (opts.mode === "preview") {
    return { stack: name, outcome: changed(planned) ? "changed" : "unchanged", changes: planned, violations, seconds: seconds(t0) };
  }

  opts.log(`${name}: up`);
  // The pack runs again after the update: a violation that appeared since the preview (another
  // operator's change in between) is then at least reported, as a failure.
  const previewViolations = violations.length;
  summary = undefined;
  errors.length = 0;
  try {
    const up = await o.stack.up({ ...policy, onEvent });
    const applied = (up.summary.resourceChanges ?? {}) as Record<string, number>;
    if (violations.slice(previewViolations).some((v) => v.level === "mandatory")) {
      return { stack: name, outcome: "failed", changes: applied, violations, error: "up: mandatory violations after the update (the stack changed since its preview)", seconds: seconds(t0) };
    }
    return { stack: name, outcome: changed(applied) ? "changed" : "unchanged", changes: applied, violations: violations.slice(0, previewViolations), seconds: seconds(t0) };
  } catch (e) {
    return { stack: name, outcome: "failed", changes: summary ?? {}, violations, error: `up: ${failure(errors, e)}`, seconds: seconds(t0) };
  }
}

export async function runFleet(opts: FleetRunOptions): Promise<FleetReport> {
  const refused = environmentProblems(opts.spec, opts.env);
  if (refused.length > 0) return { refused, results: [] };
  const pulumiCommand = await PulumiCommand.get({ root: opts.projectRoot });

  // Every stack's config first: a machine that cannot be read fails alone, and the identities of
  // the others are checked against each other before anything changes.
  const limit = Math.max(1, opts.spec.parallel);
  const opened = await pool(opts.spec.stacks, limit, async (entry): Promise<OpenedMachine | { failed: MachineResult }> => {
    const t0 = Date.now();
    try {
      const o = await openStack(entry, opts.projectRoot, pulumiCommand);
      return { o, machine: siteConfigOf(o, opts.projectRoot) };
    } catch (e) {
      const error = e instanceof Error && /invalid stack configuration/.test(e.message) ? e.message.replace(/\n/g, " | ") : cliError(e);
      return { failed: { stack: entry.name, outcome: "failed", changes: {}, violations: [], error, seconds: seconds(t0) } };
    }
  });
  const machines = opened.flatMap((x) => ("machine" in x ? [x.machine] : []));
  const problems = identityProblems(machines);
  if (problems.length > 0) return { refused: problems, results: [] };

  const results = await pool(opened, limit, async (x) => ("o" in x ? runMachine(x.o, opts) : x.failed));
  for (const r of results) opts.log(`${r.stack}: ${r.outcome} (${r.seconds.toFixed(1)} s)`);
  return { refused: [], results };
}
