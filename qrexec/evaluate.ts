/** Policy evaluation as qrexec-policy-daemon does it: first matching rule wins, then the action resolves the target. */
import { argumentProblem, classifyToken as classifyUncached, isDom0, serviceProblem, TokenContext, TokenResult } from "./tokens";
import { DomainInfo, PolicySet, Request, Rule, SystemInfo, Verdict } from "./types";

// Caches. Evaluation is pure, and the policy pack calls it hundreds of thousands of times with the
// same rules array and the same system object, so per-rule and per-system work is done once:
// - rule arrays (`readonly Rule[]`, a PolicySet's `rules`) and the Rule objects in them are treated
//   as immutable once evaluated: the per-array index below (pre-classified tokens, per-service
//   candidate lists) is keyed by the array object and never invalidated. Build a new array to
//   change a policy (the parser and loadPolicySet always do).
// - SystemInfo objects are likewise treated as immutable once passed in (keyed by the object).
// Both are WeakMaps, so they go away with their keys.

const TOKEN_CACHE_MAX = 50000;
const tokenCache: Record<TokenContext, Map<string, TokenResult>> = {
  source: new Map(),
  target: new Map(),
  redirect: new Map(),
  request: new Map(),
};

/** Memoized classifyToken (per context, then text): tokens repeat across evaluations. */
function classifyToken(text: string, context: TokenContext): TokenResult {
  const memo = tokenCache[context];
  let r = memo.get(text);
  if (r === undefined) {
    if (memo.size >= TOKEN_CACHE_MAX) memo.clear();
    r = classifyUncached(text, context);
    memo.set(text, r);
  }
  return r;
}

/** A rule with its source and target tokens classified once. */
interface CompiledRule {
  readonly rule: Rule;
  readonly source: TokenResult;
  readonly target: TokenResult;
}

/** Per rules array: its compiled rules and, per requested service, the rules that can match it. */
interface RuleIndex {
  /** Every rule, in order. */
  readonly all: readonly CompiledRule[];
  /** Rules with service `*`, in order: the candidates for a service no rule names. */
  readonly wildcard: readonly CompiledRule[];
  /** Services some rule names exactly. */
  readonly named: ReadonlySet<string>;
  /** Lazily built: rules with service S or `*`, in original order (so first match is unchanged). */
  readonly byService: Map<string, readonly CompiledRule[]>;
}

const ruleIndexes = new WeakMap<readonly Rule[], RuleIndex>();

function ruleIndex(rules: readonly Rule[]): RuleIndex {
  let idx = ruleIndexes.get(rules);
  if (idx === undefined) {
    const all = rules.map((rule) => ({ rule, source: classifyToken(rule.source, "source"), target: classifyToken(rule.target, "target") }));
    idx = {
      all,
      wildcard: all.filter((c) => c.rule.service === "*"),
      named: new Set(all.map((c) => c.rule.service).filter((s) => s !== "*")),
      byService: new Map(),
    };
    ruleIndexes.set(rules, idx);
  }
  return idx;
}

/** The rules whose service is `service` or `*`, in policy order. */
function candidates(idx: RuleIndex, service: string): readonly CompiledRule[] {
  if (!idx.named.has(service)) return idx.wildcard;
  let list = idx.byService.get(service);
  if (list === undefined) {
    list = idx.all.filter((c) => c.rule.service === "*" || c.rule.service === service);
    idx.byService.set(service, list);
  }
  return list;
}

/** Per system: the uuid index and target expansions for ask dialogs. */
interface SystemCache {
  uuidIndex?: Map<string, string>;
  /** Domains by name (no `uuid:` keys). */
  named?: [string, DomainInfo][];
  /** `@dispvm:NAME` for each disposable template. */
  templates?: string[];
  /** expandTarget results by target token. */
  readonly expansions: Map<string, readonly string[]>;
}

const systemCaches = new WeakMap<SystemInfo, SystemCache>();

function systemCache(system: SystemInfo): SystemCache {
  let c = systemCaches.get(system);
  if (c === undefined) {
    c = { expansions: new Map() };
    systemCaches.set(system, c);
  }
  return c;
}

/** Name of the domain a name or `uuid:` token denotes in the system, or undefined. */
export function domainName(system: SystemInfo, token: string): string | undefined {
  const domains = system.domains;
  if (token.startsWith("uuid:")) {
    if (Object.prototype.hasOwnProperty.call(domains, token)) return domains[token].name ?? token;
    const cache = systemCache(system);
    let idx = cache.uuidIndex;
    if (idx === undefined) {
      idx = new Map();
      for (const [name, d] of Object.entries(domains)) if (typeof d?.uuid === "string") idx.set(d.uuid, name);
      cache.uuidIndex = idx;
    }
    const byUuid = idx.get(token.slice(5));
    if (byUuid !== undefined) return byUuid;
    return isDom0(token) ? "dom0" : undefined;
  }
  if (Object.prototype.hasOwnProperty.call(domains, token)) return token;
  return token === "dom0" ? "dom0" : undefined;
}

function info(system: SystemInfo, name: string | null | undefined): DomainInfo | undefined {
  if (name === null || name === undefined) return undefined;
  const n = domainName(system, name);
  return n !== undefined && Object.prototype.hasOwnProperty.call(system.domains, n) ? system.domains[n] : undefined;
}

function sameDomain(system: SystemInfo, a: string, b: string): boolean {
  if (a === b) return true;
  // Without a `uuid:` token each side resolves to itself or to nothing, so distinct tokens never agree.
  if (!a.startsWith("uuid:") && !b.startsWith("uuid:")) return false;
  const x = domainName(system, a);
  return x !== undefined && x === domainName(system, b);
}

/** Does a rule's source token match the (resolved, existing) source name? */
export function sourceMatches(token: string, source: string, system: SystemInfo): boolean {
  return sourceTokenMatches(classifyToken(token, "source"), token, source, system);
}

function sourceTokenMatches(t: TokenResult, token: string, source: string, system: SystemInfo): boolean {
  if (!t.ok) return false;
  const tok = t.token;
  switch (tok.kind) {
    case "wildcard":
      return true;
    case "anyvm":
      return !isDom0(source);
    case "adminvm":
      return isDom0(source);
    case "tag":
      return info(system, source)?.tags.includes(tok.value ?? "") ?? false;
    case "type":
      return info(system, source)?.type === tok.value;
    case "dispvm-template":
    case "dispvm-tag":
      // qrexec compares these against a disposable-template token; a request source is a plain name.
      return false;
    default:
      return isDom0(token) ? isDom0(source) : sameDomain(system, token, source);
  }
}

/** The disposable template named by an intended target `@dispvm` / `@dispvm:VM`, if any. */
function dispvmTemplateOf(intended: string, source: string, system: SystemInfo): string | undefined {
  if (intended === "@dispvm") return info(system, source)?.default_dispvm ?? undefined;
  if (intended.startsWith("@dispvm:")) return intended.slice(8);
  return undefined;
}

/** Does a rule's target token match the intended target (after request verification)? */
export function targetMatches(token: string, intended: string, source: string, system: SystemInfo): boolean {
  return targetTokenMatches(classifyToken(token, "target"), token, intended, source, system);
}

function targetTokenMatches(t: TokenResult, token: string, intended: string, source: string, system: SystemInfo): boolean {
  if (!t.ok) return false;
  const tok = t.token;
  switch (tok.kind) {
    case "wildcard":
      return true;
    case "anyvm":
      return !isDom0(intended);
    case "adminvm":
      return isDom0(intended);
    case "default":
      return intended === "@default";
    case "dispvm":
      return intended === "@dispvm";
    case "tag":
      return !intended.startsWith("@") && (info(system, intended)?.tags.includes(tok.value ?? "") ?? false);
    case "type":
      return !intended.startsWith("@") && info(system, intended)?.type === tok.value;
    case "dispvm-template": {
      const tmpl = dispvmTemplateOf(intended, source, system);
      return tmpl !== undefined && sameDomain(system, tok.value ?? "", tmpl);
    }
    case "dispvm-tag": {
      const d = info(system, dispvmTemplateOf(intended, source, system));
      return d !== undefined && d.template_for_dispvms === true && d.tags.includes(tok.value ?? "");
    }
    default:
      if (isDom0(token)) return isDom0(intended);
      return !intended.startsWith("@") && sameDomain(system, token, intended);
  }
}

/** Does the rule match service, argument and source (target ignored)? */
export function matchesButTarget(rule: Rule, service: string, argument: string, source: string, system: SystemInfo): boolean {
  return (
    (rule.service === "*" || rule.service === service) &&
    (rule.argument === "*" || rule.argument === argument) &&
    sourceMatches(rule.source, source, system)
  );
}

/** matchesButTarget for a compiled candidate (its service is already known to match). */
function candidateMatchesButTarget(c: CompiledRule, argument: string, source: string, system: SystemInfo): boolean {
  return (c.rule.argument === "*" || c.rule.argument === argument) && sourceTokenMatches(c.source, c.rule.source, source, system);
}

type Checked = { ok: true; value: string } | { ok: false; reason: string };

/** Verify a requested (or redirect) target as qrexec's IntendedTarget.verify does; unknown names become `@default`. */
export function verifyTarget(target: string, system: SystemInfo): Checked {
  const t = classifyToken(target === "" ? "@default" : target, "request");
  if (!t.ok) return { ok: false, reason: t.message };
  const tok = t.token;
  if (tok.kind === "adminvm" || tok.kind === "default" || tok.kind === "dispvm") return { ok: true, value: tok.text };
  if (tok.kind === "dispvm-template") {
    const name = domainName(system, tok.value ?? "");
    const d = name === undefined ? undefined : system.domains[name];
    if (d === undefined || d.template_for_dispvms !== true) return { ok: false, reason: `not a template for dispvm: ${tok.value}` };
    return { ok: true, value: "@dispvm:" + name };
  }
  if (isDom0(tok.text)) return { ok: true, value: "dom0" };
  const name = domainName(system, tok.text);
  return { ok: true, value: name ?? "@default" };
}

function deny(reason: string, rule?: Rule): Verdict {
  return rule ? { action: "deny", reason, rule, file: rule.file, line: rule.line } : { action: "deny", reason };
}

/** Targets a rule's target (or redirect) token stands for in an ask dialog; cached per system and token. */
function expandTarget(token: string, system: SystemInfo): readonly string[] {
  const cache = systemCache(system);
  let r = cache.expansions.get(token);
  if (r === undefined) {
    if (cache.expansions.size >= TOKEN_CACHE_MAX) cache.expansions.clear();
    r = expandTargetUncached(token, system, cache);
    cache.expansions.set(token, r);
  }
  return r;
}

function expandTargetUncached(token: string, system: SystemInfo, cache: SystemCache): string[] {
  const t = classifyToken(token, "target");
  if (!t.ok) return [];
  const tok = t.token;
  const all = (cache.named ??= Object.entries(system.domains).filter(([n]) => !n.startsWith("uuid:")));
  const templates = (cache.templates ??= all.filter(([, d]) => d.template_for_dispvms === true).map(([n]) => "@dispvm:" + n));
  switch (tok.kind) {
    case "wildcard":
      return [...all.map(([n]) => n), ...templates, "@dispvm"];
    case "anyvm":
      return [...all.filter(([n]) => !isDom0(n)).map(([n]) => n), ...templates, "@dispvm"];
    case "adminvm":
      return ["@adminvm"];
    case "default":
      return [];
    case "dispvm":
      return ["@dispvm"];
    case "tag":
      return all.filter(([, d]) => d.tags.includes(tok.value ?? "")).map(([n]) => n);
    case "type":
      return all.filter(([, d]) => d.type === tok.value).map(([n]) => n);
    case "dispvm-template": {
      const n = domainName(system, tok.value ?? "");
      return n !== undefined && system.domains[n]?.template_for_dispvms === true ? ["@dispvm:" + n] : [];
    }
    case "dispvm-tag":
      return all.filter(([, d]) => d.template_for_dispvms === true && d.tags.includes(tok.value ?? "")).map(([n]) => "@dispvm:" + n);
    default: {
      const n = domainName(system, tok.text);
      return n !== undefined && Object.prototype.hasOwnProperty.call(system.domains, n) ? [n] : [];
    }
  }
}

/** Targets an ask dialog offers (qrexec's collect_targets_for_ask), sorted. */
export function targetsForAsk(rules: readonly Rule[], service: string, argument: string, source: string, system: SystemInfo): string[] {
  const targets = new Set<string>();
  const list = candidates(ruleIndex(rules), service);
  for (let i = list.length - 1; i >= 0; i--) {
    const c = list[i];
    if (!candidateMatchesButTarget(c, argument, source, system)) continue;
    const r = c.rule;
    const expansion = expandTarget(r.action !== "deny" && r.params.target !== undefined ? r.params.target : r.target, system);
    for (const x of expansion) {
      if (r.action === "deny") targets.delete(x);
      else targets.add(x);
    }
  }
  if (targets.delete("@dispvm")) {
    const d = info(system, source)?.default_dispvm;
    if (d) targets.add("@dispvm:" + d);
  }
  if (targets.delete("@adminvm")) targets.add("dom0");
  targets.delete(source);
  for (const t of [...targets]) {
    const d = info(system, t.startsWith("@dispvm:") ? t.slice(8) : t);
    // qubesd sends the `internal` feature's value ("1", "" or null); qrexec tests its truth.
    if (d?.internal === true || (typeof d?.internal === "string" && d.internal !== "")) targets.delete(t);
  }
  return [...targets].sort();
}

function canSkipAutostart(target: string, system: SystemInfo): boolean {
  if (isDom0(target)) return true;
  if (target.startsWith("@dispvm")) return false;
  return info(system, target)?.power_state === "Running";
}

function allowVerdict(rule: Rule, source: string, intended: string, system: SystemInfo): Verdict {
  const at = `${rule.file}:${rule.line}`;
  let target = intended;
  if (rule.params.target !== undefined) {
    const v = verifyTarget(rule.params.target, system);
    if (!v.ok) return deny(`redirect at ${at}: ${v.reason}`, rule);
    target = v.value;
  }
  if (target === "@default") return deny(`allow at ${at} but no target is specified by caller or policy`, rule);
  if (target === "@dispvm") {
    const d = info(system, source)?.default_dispvm;
    if (!d) return deny(`allow to @dispvm at ${at} but ${source} has no default_dispvm`, rule);
    target = "@dispvm:" + d;
  } else if (isDom0(target)) target = "dom0";
  if (rule.params.autostart === false && !canSkipAutostart(target, system)) {
    return deny(`target ${target} would require autostart (autostart=no at ${at})`, rule);
  }
  if (target === source) return deny("loopback qrexec connection not supported", rule);
  const v: Verdict = { action: "allow", target, rule, file: rule.file, line: rule.line, reason: `allowed by ${at}` };
  if (rule.params.user !== undefined) v.user = rule.params.user;
  return v;
}

function askVerdict(rules: readonly Rule[], rule: Rule, req: Request, source: string, system: SystemInfo): Verdict {
  const at = `${rule.file}:${rule.line}`;
  const argument = req.argument === "" ? "+" : req.argument;
  let targets: string[];
  const redirect = rule.params.target;
  if (redirect !== undefined) targets = [isDom0(redirect) ? "dom0" : redirect];
  else targets = targetsForAsk(rules, req.service, argument, source, system);
  if (rule.params.autostart === false) targets = targets.filter((t) => canSkipAutostart(t, system));
  if (targets.length === 0) return deny(`ask at ${at} but no target is available to choose from`, rule);
  let def = rule.params.default_target;
  if (def === "@dispvm") def = info(system, source)?.default_dispvm ? "@dispvm:" + info(system, source)?.default_dispvm : undefined;
  else if (def !== undefined && isDom0(def)) def = "dom0";
  const v: Verdict = { action: "ask", targets, rule, file: rule.file, line: rule.line, reason: `ask by ${at}` };
  if (def !== undefined && targets.includes(def)) v.target = def;
  if (rule.params.user !== undefined) v.user = rule.params.user;
  return v;
}

/** Decide a call as qrexec does; never throws: unknown source, bad request, policy errors or no rule give deny. */
export function evaluate(policy: PolicySet | readonly Rule[], request: Request, system: SystemInfo): Verdict {
  try {
    const rules: readonly Rule[] = Array.isArray(policy) ? policy : (policy as PolicySet).rules;
    const errors = Array.isArray(policy) ? [] : (policy as PolicySet).errors;
    if (errors.length > 0) return deny(`policy has ${errors.length} error(s); qrexec refuses every call`);
    const sp = request.service === "*" ? "service must not be *" : serviceProblem(request.service);
    if (sp !== undefined) return deny(`invalid request: ${sp}`);
    const argument = request.argument === "" ? "+" : request.argument;
    const ap = argument === "*" ? "argument must not be *" : argumentProblem(argument);
    if (ap !== undefined) return deny(`invalid request: ${ap}`);
    const source = domainName(system, request.source);
    if (source === undefined || (source !== "dom0" && !Object.prototype.hasOwnProperty.call(system.domains, source))) {
      return deny(`unknown source ${JSON.stringify(request.source)}`);
    }
    const verified = verifyTarget(request.target, system);
    if (!verified.ok) return deny(`invalid target: ${verified.reason}`);
    const intended = verified.value;
    let rule: Rule | undefined;
    for (const c of candidates(ruleIndex(rules), request.service)) {
      if (candidateMatchesButTarget(c, argument, source, system) && targetTokenMatches(c.target, c.rule.target, intended, source, system)) {
        rule = c.rule;
        break;
      }
    }
    if (rule === undefined) return deny("no matching rule found");
    let v: Verdict;
    if (rule.action === "deny") v = deny(`denied by policy ${rule.file}:${rule.line}`, rule);
    else if (rule.action === "allow") v = allowVerdict(rule, source, intended, system);
    else v = askVerdict(rules, rule, request, source, system);
    if (intended === "@default" && request.target !== "" && request.target !== "@default") {
      v.reason = `unknown target ${JSON.stringify(request.target)} treated as @default; ${v.reason}`;
    }
    return v;
  } catch (e) {
    return deny(`evaluation failed: ${String(e)}`);
  }
}
