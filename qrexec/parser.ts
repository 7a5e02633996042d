/** Parser for policy files (`/etc/qubes/policy.d/*.policy`); it reports errors as values and never throws. */
import { Action, Directive, ParsedFile, PolicyError, Rule, RuleParams, Statement } from "./types";
import { argumentProblem, classifyToken, serviceProblem } from "./tokens";

interface Field {
  text: string;
  column: number;
}

/** Split a line into whitespace-separated fields with 1-based columns. */
function fields(line: string): Field[] {
  const out: Field[] = [];
  const re = /\S+/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) out.push({ text: m[0], column: m.index + 1 });
  return out;
}

/** Split text into lines the way Python's universal newlines do. */
export function splitLines(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

const PARAMS_BY_ACTION: Record<Action, readonly (keyof RuleParams)[]> = {
  allow: ["target", "user", "notify", "autostart"],
  ask: ["target", "default_target", "user", "notify", "autostart"],
  deny: ["notify"],
};

const ALL_PARAMS: readonly string[] = ["target", "default_target", "user", "notify", "autostart"];

/** Parse `service argument source target action [params]` from fields already split. */
function parseRuleFields(fs: Field[], file: string, line: number, errors: PolicyError[]): Rule | undefined {
  const before = errors.length;
  const err = (f: Field | undefined, message: string): void => {
    errors.push({ file, line, column: f?.column ?? 1, message });
  };
  if (fs.length < 5) {
    err(fs[0], `expected at least 5 fields (service argument source target action [params]), found ${fs.length}`);
    return undefined;
  }
  const [svc, arg, src, tgt, act, ...params] = fs;
  const sp = serviceProblem(svc.text);
  if (sp !== undefined) err(svc, sp);
  const ap = argumentProblem(arg.text);
  if (ap !== undefined) err(arg, ap);
  else if (svc.text === "*" && arg.text !== "*") err(arg, "only * argument allowed for * service");
  const s = classifyToken(src.text, "source");
  if (!s.ok) err(src, s.message);
  const t = classifyToken(tgt.text, "target");
  if (!t.ok) err(tgt, t.message);
  if (act.text !== "allow" && act.text !== "deny" && act.text !== "ask") {
    err(act, `invalid action ${JSON.stringify(act.text)}: expected allow, deny or ask`);
    return undefined;
  }
  const action: Action = act.text;
  const out: RuleParams = {};
  const seen = new Set<string>();
  for (const p of params) {
    const eq = p.text.indexOf("=");
    if (eq <= 0) {
      err(p, `invalid parameter ${JSON.stringify(p.text)}: expected key=value`);
      continue;
    }
    const key = p.text.slice(0, eq);
    const value = p.text.slice(eq + 1);
    if (seen.has(key)) {
      err(p, `parameter ${key}= given twice`);
      continue;
    }
    seen.add(key);
    if (!ALL_PARAMS.includes(key)) {
      err(p, `unknown parameter ${JSON.stringify(key)}; expected one of ${PARAMS_BY_ACTION[action].map((k) => k + "=").join(", ")}`);
      continue;
    }
    const k = key as keyof RuleParams;
    if (!PARAMS_BY_ACTION[action].includes(k)) {
      const valid = (Object.keys(PARAMS_BY_ACTION) as Action[]).filter((a) => PARAMS_BY_ACTION[a].includes(k));
      err(p, `parameter ${key}= is not valid for ${action} (only for ${valid.join(", ")}); ${action} takes ${PARAMS_BY_ACTION[action].map((x) => x + "=").join(", ")}`);
      continue;
    }
    if (k === "notify" || k === "autostart") {
      if (value !== "yes" && value !== "no") err(p, `${key}= is ${JSON.stringify(value)}, expected yes or no`);
      else out[k] = value === "yes";
    } else if (k === "target" || k === "default_target") {
      const r = classifyToken(value, "redirect");
      if (!r.ok) err(p, `${key}=: ${r.message}`);
      else out[k] = value;
    } else {
      if (value === "") err(p, "user= needs a user name");
      else out.user = value;
    }
  }
  if (t.ok && t.token.kind === "default" && action === "allow" && out.target === undefined && !seen.has("target")) {
    err(act, "allow action for @default target must specify target= (redirect target)");
  }
  if (errors.length > before) return undefined;
  return { service: svc.text, argument: arg.text, source: src.text, target: tgt.text, action, params: out, file, line };
}

function parseDirective(fs: Field[], file: string, line: number, errors: PolicyError[]): Directive | undefined {
  const [d, ...params] = fs;
  const count = (n: number, usage: string): boolean => {
    if (params.length === n) return true;
    errors.push({ file, line, column: d.column, message: `${d.text} expects ${n} parameter(s): ${usage}, found ${params.length}` });
    return false;
  };
  switch (d.text) {
    case "!include":
      return count(1, "!include PATH") ? { kind: "include", path: params[0].text, file, line } : undefined;
    case "!include-dir":
      return count(1, "!include-dir PATH") ? { kind: "include-dir", path: params[0].text, file, line } : undefined;
    case "!include-service": {
      if (!count(3, "!include-service SERVICE ARGUMENT PATH")) return undefined;
      const [svc, arg, path] = params;
      const before = errors.length;
      const sp = serviceProblem(svc.text);
      if (sp !== undefined) errors.push({ file, line, column: svc.column, message: sp });
      const ap = argumentProblem(arg.text);
      if (ap !== undefined) errors.push({ file, line, column: arg.column, message: ap });
      else if (svc.text === "*" && arg.text !== "*") {
        errors.push({ file, line, column: arg.column, message: "only * argument allowed for * service" });
      }
      if (errors.length > before) return undefined;
      return { kind: "include-service", service: svc.text, argument: arg.text, path: path.text, file, line };
    }
    case "!compat-4.0":
      return count(0, "!compat-4.0") ? { kind: "compat-4.0", file, line } : undefined;
    default:
      errors.push({
        file,
        line,
        column: d.column,
        message: `unknown directive ${JSON.stringify(d.text)}; expected !include, !include-dir, !include-service or !compat-4.0`,
      });
      return undefined;
  }
}

/** Decode bytes as UTF-8, reporting invalid input as an error value. */
function asText(input: unknown, file: string): { text?: string; error?: PolicyError } {
  if (typeof input === "string") return { text: input };
  if (input instanceof Uint8Array) {
    try {
      return { text: new TextDecoder("utf-8", { fatal: true }).decode(input) };
    } catch {
      return { error: { file, line: 0, message: "file is not valid UTF-8" } };
    }
  }
  return { error: { file, line: 0, message: "expected policy text (string or UTF-8 bytes)" } };
}

function emptyResult(file: string): ParsedFile {
  return { file, statements: [], rules: [], directives: [], errors: [] };
}

function collect(result: ParsedFile, s: Statement): void {
  result.statements.push(s);
  if (s.kind === "rule") result.rules.push(s.rule);
  else result.directives.push(s);
}

/** Parse a policy file in the 4.2+ format; never throws, errors are returned as values. */
export function parsePolicyFile(text: string | Uint8Array, file: string): ParsedFile {
  const name = typeof file === "string" ? file : String(file);
  const result = emptyResult(name);
  try {
    const decoded = asText(text, name);
    if (decoded.error) {
      result.errors.push(decoded.error);
      return result;
    }
    splitLines(decoded.text ?? "").forEach((raw, i) => {
      const line = i + 1;
      const trimmed = raw.trim();
      if (trimmed === "" || trimmed.startsWith("#")) return;
      const fs = fields(raw);
      if (trimmed.startsWith("!")) {
        const d = parseDirective(fs, name, line, result.errors);
        if (d) collect(result, d);
        return;
      }
      const rule = parseRuleFields(fs, name, line, result.errors);
      if (rule) collect(result, { kind: "rule", rule });
    });
  } catch (e) {
    result.errors.push({ file: name, line: 0, message: `internal parser error: ${String(e)}` });
  }
  return result;
}

/**
 * Parse a file included by `!include-service` (the 4.0 format: `source target action[,params]`,
 * `$` for `@`, `$include:PATH`); rules get the given service and argument.
 */
export function parseServicePolicyFile(text: string | Uint8Array, file: string, service: string, argument: string): ParsedFile {
  const result = emptyResult(file);
  try {
    const decoded = asText(text, file);
    if (decoded.error) {
      result.errors.push(decoded.error);
      return result;
    }
    splitLines(decoded.text ?? "").forEach((raw, i) => {
      const line = i + 1;
      const trimmed = raw.trim();
      if (trimmed === "" || trimmed.startsWith("#")) return;
      const rewritten = trimmed.replace(/\$include:/g, "!include ").replace(/\$/g, "@").replace(/,/g, " ");
      const fs = fields(rewritten);
      if (rewritten.startsWith("!")) {
        if (fs[0].text !== "!include") {
          result.errors.push({ file, line, column: 1, message: "only $include:PATH is allowed in a service policy file" });
          return;
        }
        if (fs.length !== 2) {
          result.errors.push({ file, line, column: 1, message: `$include expects 1 parameter, found ${fs.length - 1}` });
          return;
        }
        collect(result, { kind: "include-service", service, argument, path: fs[1].text, file, line });
        return;
      }
      if (fs.length < 3) {
        result.errors.push({ file, line, column: 1, message: `expected at least 3 fields (source target action[,params]), found ${fs.length}` });
        return;
      }
      const svc = { text: service, column: 0 };
      const arg = { text: argument, column: 0 };
      const rule = parseRuleFields([svc, arg, ...fs], file, line, result.errors);
      if (rule) collect(result, { kind: "rule", rule });
    });
  } catch (e) {
    result.errors.push({ file, line: 0, message: `internal parser error: ${String(e)}` });
  }
  return result;
}
