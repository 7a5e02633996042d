/** Lexical rules of the policy language: VM tokens, names, services and arguments. */
import { MAX_VM_NAME, vmNameProblem } from "../contracts/names";

/** Where a VM token appears; each context admits a different set of token kinds. */
export type TokenContext = "source" | "target" | "redirect" | "request";

/** Kind of a VM token. */
export type TokenKind =
  | "wildcard"
  | "anyvm"
  | "adminvm"
  | "default"
  | "dispvm"
  | "dispvm-template"
  | "dispvm-tag"
  | "tag"
  | "type"
  | "uuid"
  | "name";

/** A classified VM token; `value` is the part after the prefix (tag, type, template name). */
export interface Token {
  /** Token kind. */
  kind: TokenKind;
  /** Token as written. */
  text: string;
  /** Suffix after the keyword prefix, if any. */
  value?: string;
}

/** Token kinds allowed per context (as in qrexec's Source/Target/Redirect/IntendedTarget classes). */
export const ALLOWED_KINDS: Readonly<Record<TokenContext, readonly TokenKind[]>> = {
  source: ["wildcard", "anyvm", "adminvm", "dispvm-template", "dispvm-tag", "tag", "type", "uuid", "name"],
  target: ["wildcard", "anyvm", "adminvm", "default", "dispvm", "dispvm-template", "dispvm-tag", "tag", "type", "uuid", "name"],
  redirect: ["adminvm", "dispvm", "dispvm-template", "uuid", "name"],
  request: ["adminvm", "default", "dispvm", "dispvm-template", "uuid", "name"],
};

const CONTEXT_NAMES: Record<TokenContext, string> = {
  source: "source",
  target: "target",
  redirect: "redirect target",
  request: "requested target",
};

/** The UUID qubesd gives dom0. */
export const DOM0_UUID = "00000000-0000-0000-0000-000000000000";

/** True for the three spellings of the admin VM: `dom0`, `@adminvm`, dom0's `uuid:`. */
export function isDom0(token: string): boolean {
  return token === "dom0" || token === "@adminvm" || token === "uuid:" + DOM0_UUID;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TAG_RE = /^[A-Za-z0-9_.-]+$/;
const TYPE_RE = /^[A-Za-z][A-Za-z0-9]*$/;
const SERVICE_RE = /^[A-Za-z0-9._-]+$/;
const ARGUMENT_RE = /^\+[A-Za-z0-9+._-]*$/;

/** A qube's name is Qubes' rule, shared with the site, the providers, the services and the sim. */
export { MAX_VM_NAME, vmNameProblem };

/** Service name rules (`*` or qrexec's safe charset without `+`); returns the problem or undefined. */
export function serviceProblem(service: string): string | undefined {
  if (service === "*") return undefined;
  if (service.includes("+")) {
    return `service ${JSON.stringify(service)} must not contain '+'; put the argument in the second column`;
  }
  if (!SERVICE_RE.test(service)) {
    return `invalid service ${JSON.stringify(service)}: expected * or letters, digits, '.', '_' or '-'`;
  }
  return undefined;
}

/** Argument column rules (`*` or `+` and qrexec's safe charset); returns the problem or undefined. */
export function argumentProblem(argument: string): string | undefined {
  if (argument === "*") return undefined;
  if (!argument.startsWith("+")) return `invalid argument ${JSON.stringify(argument)}: expected * or +ARGUMENT`;
  if (!ARGUMENT_RE.test(argument)) {
    return `invalid argument ${JSON.stringify(argument)}: after '+' only letters, digits, '+', '.', '_' or '-' are allowed`;
  }
  return undefined;
}

/** Result of classifying a token: the token or a message naming what was expected. */
export type TokenResult = { ok: true; token: Token } | { ok: false; message: string };

function expected(context: TokenContext): string {
  const names: Record<TokenKind, string> = {
    wildcard: "*",
    anyvm: "@anyvm",
    adminvm: "@adminvm",
    default: "@default",
    dispvm: "@dispvm",
    "dispvm-template": "@dispvm:VM",
    "dispvm-tag": "@dispvm:@tag:TAG",
    tag: "@tag:TAG",
    type: "@type:TYPE",
    uuid: "uuid:UUID",
    name: "a qube name",
  };
  return ALLOWED_KINDS[context].map((k) => names[k]).join(", ");
}

function plain(text: string): TokenResult {
  if (text.startsWith("uuid:")) {
    return UUID_RE.test(text.slice(5))
      ? { ok: true, token: { kind: "uuid", text, value: text.slice(5) } }
      : { ok: false, message: `invalid uuid token ${JSON.stringify(text)}: expected uuid: and a lowercase UUID` };
  }
  const problem = vmNameProblem(text);
  return problem === undefined ? { ok: true, token: { kind: "name", text } } : { ok: false, message: problem };
}

function lexToken(text: string): TokenResult {
  if (text === "") return { ok: false, message: "empty token" };
  if (text === "*") return { ok: true, token: { kind: "wildcard", text } };
  if (!text.startsWith("@")) return plain(text);
  const exact: Record<string, TokenKind> = {
    "@anyvm": "anyvm",
    "@adminvm": "adminvm",
    "@default": "default",
    "@dispvm": "dispvm",
  };
  if (exact[text] !== undefined) return { ok: true, token: { kind: exact[text], text } };
  const prefixed: [string, TokenKind, (v: string) => string | undefined][] = [
    ["@dispvm:@tag:", "dispvm-tag", (v) => (TAG_RE.test(v) ? undefined : "expected a tag of letters, digits, '_', '.', '-'")],
    ["@dispvm:", "dispvm-template", (v) => (v.startsWith("@") ? "unknown keyword after @dispvm:" : plainProblem(v))],
    ["@tag:", "tag", (v) => (TAG_RE.test(v) ? undefined : "expected a tag of letters, digits, '_', '.', '-'")],
    ["@type:", "type", (v) => (TYPE_RE.test(v) ? undefined : "expected a qube class such as AppVM")],
  ];
  for (const [prefix, kind, check] of prefixed) {
    if (!text.startsWith(prefix)) continue;
    const value = text.slice(prefix.length);
    if (value === "") return { ok: false, message: `empty value after ${prefix} in ${JSON.stringify(text)}` };
    const problem = check(value);
    if (problem !== undefined) return { ok: false, message: `invalid token ${JSON.stringify(text)}: ${problem}` };
    return { ok: true, token: { kind, text, value } };
  }
  return { ok: false, message: `unknown keyword ${JSON.stringify(text)}` };
}

function plainProblem(v: string): string | undefined {
  const r = plain(v);
  return r.ok ? undefined : r.message;
}

/** Classify a VM token and check that it is allowed in the given context. */
export function classifyToken(text: string, context: TokenContext): TokenResult {
  const r = lexToken(text);
  const what = CONTEXT_NAMES[context];
  if (!r.ok) return { ok: false, message: `invalid ${what} ${JSON.stringify(text)}: ${r.message}; expected ${expected(context)}` };
  if (!ALLOWED_KINDS[context].includes(r.token.kind)) {
    return { ok: false, message: `${JSON.stringify(text)} is not allowed as ${what}; expected ${expected(context)}` };
  }
  return r;
}
