/**
 * One table for a fleet run: per machine (stack), what happened, the changes and the policy
 * violations; then each violation and failure in full. Pure.
 */

export type Mode = "preview" | "up";

export interface Violation {
  /** `mandatory` stops the machine; `advisory` (the engine may say `warning`) is reported only. */
  level: string;
  policy: string;
  /** The resource's name (last part of its URN), when the policy names one. */
  resource?: string;
  message: string;
}

export type Outcome =
  /** preview: nothing would change; up: nothing changed. */
  | "unchanged"
  /** preview: changes planned; up: changes applied. */
  | "changed"
  /** A mandatory violation at preview (with `up`: nothing was applied to this machine). */
  | "stopped"
  /** The operation failed (config, connection, lock, engine). */
  | "failed";

export interface MachineResult {
  stack: string;
  outcome: Outcome;
  /** Resource operations by kind (create, update, replace, delete, same): planned, or applied by `up`. */
  changes: Record<string, number>;
  violations: Violation[];
  /** Why it failed, short. */
  error?: string;
  seconds: number;
}

const CHANGE_COLUMNS = ["create", "update", "replace", "delete", "same"] as const;

function outcomeText(mode: Mode, r: MachineResult): string {
  switch (r.outcome) {
    case "unchanged":
      return mode === "up" ? "up to date" : "no changes";
    case "changed":
      return mode === "up" ? "updated" : "changes";
    case "stopped":
      return mode === "up" ? "STOPPED (policy)" : "VIOLATES POLICY";
    case "failed":
      return "FAILED";
  }
}

function pad(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  // Text columns left-aligned, numbers right-aligned.
  return rows
    .map((r) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd())
    .join("\n");
}

const count = (r: MachineResult, level: (l: string) => boolean): number => r.violations.filter((v) => level(v.level)).length;
const isMandatory = (l: string): boolean => l === "mandatory";

/** The table and the details under it. */
export function renderSummary(mode: Mode, results: MachineResult[]): string {
  const rows: string[][] = [["machine", "result", ...CHANGE_COLUMNS, "mandatory", "advisory", "seconds"]];
  for (const r of results) {
    // A machine that failed before its engine ran has no counts: a dash, not a zero.
    const known = r.outcome !== "failed" || Object.keys(r.changes).length > 0;
    rows.push([
      r.stack,
      outcomeText(mode, r),
      ...CHANGE_COLUMNS.map((c) => (known ? String(r.changes[c] ?? 0) : "-")),
      String(count(r, isMandatory)),
      String(count(r, (l) => !isMandatory(l))),
      r.seconds.toFixed(1),
    ]);
  }
  const lines = [pad(rows)];
  const details: string[] = [];
  for (const r of results) {
    for (const v of r.violations) {
      details.push(`${r.stack}: [${v.level}] ${v.policy}${v.resource ? ` (${v.resource})` : ""}: ${v.message.trim().replace(/\s*\n\s*/g, " | ")}`);
    }
    if (r.error) details.push(`${r.stack}: ${r.error}`);
  }
  if (details.length > 0) lines.push("", ...details);
  const stopped = results.filter((r) => r.outcome === "stopped").map((r) => r.stack);
  if (mode === "up" && stopped.length > 0) lines.push("", `Not applied to ${stopped.join(", ")}: the preview found mandatory policy violations.`);
  return `${lines.join("\n")}\n`;
}

/** 0 when every machine is fine, 1 when any failed or was stopped by a policy. */
export function exitCode(results: MachineResult[]): number {
  return results.some((r) => r.outcome === "failed" || r.outcome === "stopped") ? 1 : 0;
}
