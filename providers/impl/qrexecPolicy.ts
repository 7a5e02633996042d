// Implementation of QrexecPolicy (see providers/qrexecPolicy.ts).
import { z } from "zod";
import type { QubesAdmin } from "../../admin/api";
import { QUBESD_MAX_REQUEST } from "../../admin/wire";
import { checkRules, diffRules, parsePolicyFile, renderPolicy, type Rule } from "../../qrexec";
import { adminConnection, adminFor } from "./admin";
import { checkWith, CheckResult, describeError, DiffResult, hasUnknown, isNotFound, parseProps, step } from "./common";

const KIND = "QrexecPolicy";

const ruleInput = z.object({
  service: z.string(),
  argument: z.string(),
  source: z.string(),
  target: z.string(),
  action: z.enum(["allow", "deny", "ask"]),
  params: z.object({
    target: z.string().optional(),
    default_target: z.string().optional(),
    user: z.string().optional(),
    notify: z.boolean().optional(),
    autostart: z.boolean().optional(),
  }).default({}),
});
/** A rule as this resource takes it: the qrexec module's `Rule` without file and line. */
export type RuleInput = z.infer<typeof ruleInput>;

export const policyInputs = z.object({
  admin: adminConnection,
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "a policy file name without .policy (letters, digits, '.', '_', '-')"),
  rules: z.array(ruleInput),
  header: z.union([z.string(), z.array(z.string())]).optional(),
  /** Set by check: the rule-level change against the previous inputs, for the preview. */
  ruleDiff: z.string().optional(),
});
type PolicyInputs = z.infer<typeof policyInputs>;

const policyOutputs = policyInputs.safeExtend({
  /** The text written (or found by refresh). */
  content: z.string(),
  /** The policy admin token of that text: the next write must present it. */
  token: z.string(),
  /** Problems found by refresh in a hand-edited file. */
  parseErrors: z.array(z.string()).optional(),
});

const fileOf = (name: string) => `${name}.policy`;
const asRules = (name: string, rules: RuleInput[]): Rule[] => rules.map((r, i) => ({ ...r, params: r.params ?? {}, file: fileOf(name), line: i + 1 }));
/**
 * The payload admin.policy.Replace may carry: qubesd refuses a request over QUBESD_MAX_REQUEST
 * bytes, and the request also holds its header and the token line (< 200 bytes together).
 */
export const POLICY_MAX_BYTES = QUBESD_MAX_REQUEST - 512;

/**
 * The file as written: columns aligned for reading; when that would not fit one Admin API
 * request (a site of ~35 environments), one space between columns (about half the bytes).
 */
const render = (p: PolicyInputs): string => {
  const opts = p.header === undefined ? {} : { header: p.header };
  const aligned = renderPolicy(asRules(p.name, p.rules), opts);
  if (Buffer.byteLength(aligned) <= POLICY_MAX_BYTES) return aligned;
  return renderPolicy(asRules(p.name, p.rules), { ...opts, align: false });
};
const strip = (r: Rule): RuleInput => ({ service: r.service, argument: r.argument, source: r.source, target: r.target, action: r.action, params: { ...r.params } });

/** A human-readable, rule-level summary: `+ rule` / `- rule` lines (`""` when the rules are the same). */
export function summarizeRuleDiff(name: string, oldRules: RuleInput[], newRules: RuleInput[]): string {
  const d = diffRules(asRules(name, oldRules), asRules(name, newRules));
  if (d.added.length === 0 && d.removed.length === 0) return "";
  const lines = d.lines.filter((l) => l.op !== " ").map((l) => `${l.op} ${l.text}`);
  return `${fileOf(name)}: ${d.added.length} rule(s) added, ${d.removed.length} removed, ${d.unchanged} kept\n${lines.join("\n")}`;
}

const STALE_HINT = "run `pulumi refresh` to review what changed (the preview then shows the rule-level difference), then `pulumi up` to put the site's rules back";

/** A write refused for a stale token becomes an error that says so; others name the file. */
async function guarded<T>(admin: QubesAdmin, name: string, token: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    let now: string | undefined;
    try {
      now = (await admin.policyGet(name)).token;
    } catch {
      now = undefined;
    }
    if (now !== undefined && now !== token) {
      throw new Error(`QrexecPolicy ${fileOf(name)}: ${what} refused: the file was changed outside Pulumi since the last apply (${describeError(e)}); it was not overwritten: ${STALE_HINT}`);
    }
    throw new Error(`QrexecPolicy ${fileOf(name)}: ${what} failed: ${describeError(e)}`);
  }
}

export async function check(olds: unknown, news: unknown): Promise<CheckResult> {
  const base = checkWith(policyInputs, news);
  if (base.failures || hasUnknown(news)) return base;
  const p = policyInputs.parse(base.inputs);
  const errors = checkRules(asRules(p.name, p.rules), fileOf(p.name));
  if (errors.length > 0) {
    return { inputs: base.inputs, failures: errors.map((e) => ({ property: "rules", reason: `rule ${e.line}: ${e.message}` })) };
  }
  const size = Buffer.byteLength(render(p));
  if (size > POLICY_MAX_BYTES) {
    return { inputs: base.inputs, failures: [{ property: "rules", reason: `${fileOf(p.name)} would be ${size} bytes (${p.rules.length} rules) even without column alignment; qubesd takes at most ${QUBESD_MAX_REQUEST} bytes per Admin API request (admin.policy.Replace), so it cannot be written: split the site into several stacks (fewer environments each)` }] };
  }
  const o = policyInputs.safeParse(olds);
  const ruleDiff = o.success ? summarizeRuleDiff(p.name, o.data.rules, p.rules) : summarizeRuleDiff(p.name, [], p.rules);
  return { inputs: { ...p, ruleDiff } };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(policyOutputs, oldsRaw, KIND);
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(policyInputs, newsRaw, KIND);
  if (o.name !== n.name) return { changes: true, replaces: ["name"], deleteBeforeReplace: true };
  return { changes: render(n) !== o.content };
}

async function write(p: PolicyInputs, token: string, what: string) {
  const admin = adminFor(p.admin);
  const content = render(p);
  await guarded(admin, p.name, token, what, () => admin.policyReplace(p.name, content, token));
  const now = await step(`QrexecPolicy ${fileOf(p.name)}: reading back`, () => admin.policyGet(p.name));
  return { ...p, content, token: now.token };
}

export async function create(inputs: unknown) {
  const p = parseProps(policyInputs, inputs, KIND);
  const outs = await write(p, "new", "creating the file");
  return { id: p.name, outs };
}

export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(policyOutputs, oldsRaw, KIND);
  const n = parseProps(policyInputs, newsRaw, KIND);
  const outs = await write({ ...n, ruleDiff: summarizeRuleDiff(n.name, o.rules, n.rules) }, o.token, "replacing the file");
  return { outs };
}

/** The file as it is: its rules become the inputs, so the next preview shows the rule-level change back. */
export async function read(id: string, raw: unknown) {
  const o = parseProps(policyOutputs, raw, KIND);
  const admin = adminFor(o.admin);
  let got: { content: string; token: string };
  try {
    got = await admin.policyGet(o.name);
  } catch (e) {
    if (isNotFound(e)) return { id: "", props: {} };
    throw new Error(`QrexecPolicy ${fileOf(o.name)}: reading failed: ${describeError(e)}`);
  }
  const parsed = parsePolicyFile(got.content, fileOf(o.name));
  const rules = parsed.rules.map(strip);
  const inputs = { admin: o.admin, name: o.name, rules, ...(o.header !== undefined ? { header: o.header } : {}) };
  const parseErrors = parsed.errors.map((e) => `line ${e.line}: ${e.message}`);
  return {
    id,
    props: { ...inputs, content: got.content, token: got.token, ruleDiff: summarizeRuleDiff(o.name, o.rules, rules), ...(parseErrors.length ? { parseErrors } : {}) },
    inputs,
  };
}

async function delete_(_id: string, raw: unknown): Promise<void> {
  const o = parseProps(policyOutputs, raw, KIND);
  const admin = adminFor(o.admin);
  try {
    await guarded(admin, o.name, o.token, "removing the file", () => admin.policyRemove(o.name, o.token));
  } catch (e) {
    // Already gone: nothing to do.
    const exists = await admin.policyList().then((l) => l.includes(o.name), () => true);
    if (!exists) return;
    throw e;
  }
}
export { delete_ as delete };
