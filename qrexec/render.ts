/** Canonical rendering of rules to policy text, and rule-level diffs for previews. */
import { parsePolicyFile } from "./parser";
import { PolicyError, Rule, RuleParams } from "./types";

/** The first line of every file this project manages. */
export const MANAGED_HEADER = "# Managed by qubes-build-infra; edits are overwritten by pulumi up";

/** Options of renderPolicy. */
export interface RenderOptions {
  /** Extra comment lines after the managed marker (without `#`), or false for no header at all. */
  header?: string | string[] | false;
  /** Pad columns so rules line up (default true); false: one space between columns, about half the bytes. */
  align?: boolean;
}

const PARAM_ORDER: readonly (keyof RuleParams)[] = ["target", "default_target", "user", "notify", "autostart"];

/** Render the parameters of a rule in canonical order. */
export function renderParams(params: RuleParams): string[] {
  const out: string[] = [];
  for (const k of PARAM_ORDER) {
    const v = params[k];
    if (v === undefined) continue;
    out.push(`${k}=${typeof v === "boolean" ? (v ? "yes" : "no") : v}`);
  }
  return out;
}

function columns(rule: Rule): string[] {
  return [rule.service, rule.argument, rule.source, rule.target, rule.action];
}

/** One rule as a single unaligned line (also the identity used by diffRules). */
export function ruleKey(rule: Rule): string {
  return [...columns(rule), ...renderParams(rule.params)].join(" ");
}

/** Render rules as a policy file: managed header, then rules (columns aligned unless `align: false`); deterministic bytes. */
export function renderPolicy(rules: readonly Rule[], options: RenderOptions = {}): string {
  const lines: string[] = [];
  if (options.header !== false) {
    lines.push(MANAGED_HEADER);
    const extra = options.header === undefined ? [] : ([] as string[]).concat(options.header);
    for (const h of extra) for (const l of h.split(/\r\n|\r|\n/)) lines.push(l === "" ? "#" : `# ${l}`);
  }
  const widths = [0, 0, 0, 0, 0];
  if (options.align !== false) for (const r of rules) columns(r).forEach((c, i) => (widths[i] = Math.max(widths[i], c.length)));
  for (const r of rules) {
    const cells = [...columns(r)];
    const params = renderParams(r.params);
    const last = params.length > 0 ? cells.length : cells.length - 1;
    const padded = cells.map((c, i) => (i < last ? c.padEnd(widths[i]) : c));
    lines.push([...padded, ...params].join(" "));
  }
  return lines.length === 0 ? "" : lines.join("\n") + "\n";
}

/** True when the text starts with the managed-file marker. */
export function isManaged(text: string): boolean {
  return text.startsWith(MANAGED_HEADER);
}

/** Check that rules render to text that parses back to the same rules; returns the errors. */
export function checkRules(rules: readonly Rule[], file = "<rendered>"): PolicyError[] {
  const parsed = parsePolicyFile(renderPolicy(rules, { header: false }), file);
  if (parsed.errors.length > 0) return parsed.errors;
  const errors: PolicyError[] = [];
  rules.forEach((r, i) => {
    const back = parsed.rules[i];
    if (back === undefined || ruleKey(back) !== ruleKey(r)) {
      errors.push({ file, line: i + 1, message: `rule does not survive rendering: ${ruleKey(r)}` });
    }
  });
  return errors;
}

/** One line of a rule diff. */
export interface DiffLine {
  /** `+` added, `-` removed, ` ` unchanged. */
  op: "+" | "-" | " ";
  /** The rule. */
  rule: Rule;
  /** Canonical text of the rule. */
  text: string;
}

/** Rule-level diff (order-aware, like a line diff), for provider previews. */
export interface RuleDiff {
  /** Rules only in the new list. */
  added: Rule[];
  /** Rules only in the old list. */
  removed: Rule[];
  /** Number of rules kept. */
  unchanged: number;
  /** The full edit script in order. */
  lines: DiffLine[];
}

/** Compute an order-aware diff between two rule lists, ignoring file and line. */
export function diffRules(oldRules: readonly Rule[], newRules: readonly Rule[]): RuleDiff {
  const a = oldRules.map(ruleKey);
  const b = newRules.map(ruleKey);
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const n = a.length - pre - suf;
  const m = b.length - pre - suf;
  // LCS table over the differing middle part.
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[pre + i] === b[pre + j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const lines: DiffLine[] = [];
  for (let k = 0; k < pre; k++) lines.push({ op: " ", rule: newRules[k], text: b[k] });
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[pre + i] === b[pre + j]) {
      lines.push({ op: " ", rule: newRules[pre + j], text: b[pre + j] });
      i++;
      j++;
    } else if (i < n && (j >= m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      lines.push({ op: "-", rule: oldRules[pre + i], text: a[pre + i] });
      i++;
    } else {
      lines.push({ op: "+", rule: newRules[pre + j], text: b[pre + j] });
      j++;
    }
  }
  for (let k = b.length - suf; k < b.length; k++) lines.push({ op: " ", rule: newRules[k], text: b[k] });
  return {
    added: lines.filter((l) => l.op === "+").map((l) => l.rule),
    removed: lines.filter((l) => l.op === "-").map((l) => l.rule),
    unchanged: lines.filter((l) => l.op === " ").length,
    lines,
  };
}
