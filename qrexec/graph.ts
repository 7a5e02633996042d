/** Queries over a policy and a system: who reaches whom, and the whole call-flow graph (with DOT output). */
import { evaluate } from "./evaluate";
import { compareCLocale } from "./load";
import { Action, PolicySet, Rule, SystemInfo } from "./types";

/** A source that may reach a target, with the deciding rule. */
export interface Reach {
  /** Source domain name. */
  source: string;
  /** allow or ask. */
  action: Exclude<Action, "deny">;
  /** Resolved target (allow) or preselected target (ask), if any. */
  target?: string;
  /** The deciding rule. */
  rule: Rule;
}

/** One edge of the flow graph: `source` may call `service+argument` on `target`. */
export interface FlowEdge {
  /** Source domain. */
  source: string;
  /** Service name. */
  service: string;
  /** `""` or `+arg`. */
  argument: string;
  /** Requested target (domain name, `@default` or `@dispvm`). */
  target: string;
  /** Actual target after redirection, for allow. */
  resolvedTarget?: string;
  /** allow or ask. */
  action: Exclude<Action, "deny">;
  /** File of the deciding rule. */
  file: string;
  /** Line of the deciding rule. */
  line: number;
}

function rulesOf(policy: PolicySet | readonly Rule[]): readonly Rule[] {
  return Array.isArray(policy) ? policy : (policy as PolicySet).rules;
}

function sortedDomains(system: SystemInfo): string[] {
  return Object.keys(system.domains).filter((n) => !n.startsWith("uuid:")).sort(compareCLocale);
}

/** Domains of the system that may call `service+argument` on `target` (allow or ask), sorted by name. */
export function sourcesReaching(
  policy: PolicySet | readonly Rule[],
  system: SystemInfo,
  service: string,
  argument: string,
  target: string,
): Reach[] {
  const out: Reach[] = [];
  for (const source of sortedDomains(system)) {
    const v = evaluate(policy, { service, argument, source, target }, system);
    if (v.action === "deny" || v.rule === undefined) continue;
    const r: Reach = { source, action: v.action, rule: v.rule };
    if (v.target !== undefined) r.target = v.target;
    out.push(r);
  }
  return out;
}

/** Services named in the policy (not `*`), each with the specific arguments used plus `""`. */
export function servicesInPolicy(policy: PolicySet | readonly Rule[]): Map<string, string[]> {
  const m = new Map<string, Set<string>>();
  for (const r of rulesOf(policy)) {
    if (r.service === "*") continue;
    const s = m.get(r.service) ?? new Set([""]);
    if (r.argument !== "*" && r.argument !== "+") s.add(r.argument);
    m.set(r.service, s);
  }
  const out = new Map<string, string[]>();
  for (const k of [...m.keys()].sort(compareCLocale)) out.set(k, [...(m.get(k) ?? [])].sort(compareCLocale));
  return out;
}

/** Every allowed or asked call over all (source, target) pairs of the system, for the services named in the policy. */
export function flowGraph(policy: PolicySet | readonly Rule[], system: SystemInfo, services?: readonly string[]): FlowEdge[] {
  const named = servicesInPolicy(policy);
  const wanted = services === undefined ? [...named.keys()] : [...services];
  const domains = sortedDomains(system);
  const edges: FlowEdge[] = [];
  for (const service of wanted) {
    for (const argument of named.get(service) ?? [""]) {
      for (const source of domains) {
        for (const target of [...domains, "@default", "@dispvm"]) {
          if (target === source) continue;
          const v = evaluate(policy, { service, argument, source, target }, system);
          if (v.action === "deny" || v.file === undefined || v.line === undefined) continue;
          const e: FlowEdge = { source, service, argument, target, action: v.action, file: v.file, line: v.line };
          if (v.action === "allow" && v.target !== undefined && v.target !== target) e.resolvedTarget = v.target;
          edges.push(e);
        }
      }
    }
  }
  return edges;
}

function q(s: string): string {
  return '"' + s.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
}

/** Graphviz DOT text for flow edges: one arrow per (source, target, action), labelled with the services; ask is dashed. */
export function toDot(edges: readonly FlowEdge[], name = "qrexec"): string {
  const groups = new Map<string, { source: string; target: string; action: string; labels: Set<string> }>();
  const nodes = new Set<string>();
  for (const e of edges) {
    const target = e.resolvedTarget ?? e.target;
    nodes.add(e.source);
    nodes.add(target);
    const key = [e.source, target, e.action].join("\0");
    const g = groups.get(key) ?? { source: e.source, target, action: e.action, labels: new Set<string>() };
    g.labels.add(e.service + e.argument);
    groups.set(key, g);
  }
  const lines = [`digraph ${q(name)} {`, "  rankdir=LR;", "  node [shape=box];"];
  for (const n of [...nodes].sort(compareCLocale)) lines.push(`  ${q(n)};`);
  const keys = [...groups.keys()].sort(compareCLocale);
  for (const k of keys) {
    const g = groups.get(k);
    if (g === undefined) continue;
    const label = [...g.labels].sort(compareCLocale).join("\\n");
    const style = g.action === "ask" ? ", style=dashed" : "";
    lines.push(`  ${q(g.source)} -> ${q(g.target)} [label="${label.replace(/"/g, '\\"')}"${style}];`);
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}
