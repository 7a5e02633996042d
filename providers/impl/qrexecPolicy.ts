// Implementation of QrexecPolicy (see providers/qrexecPolicy.ts).
import { z } from "zod";
import type { QubesAdmin } from "../../admin/api";
import { QUBESD_MAX_REQUEST } from "../../admin/wire";
import { hasQubesCode } from "../../admin/errors";
import { checkRules, diffRules, isManaged, parsePolicyFile, policyRule, renderPolicy, type PolicyRule, type Rule } from "../../qrexec";
import { dropRunCache, runAdmin, runCache } from "./admin";
import {
  checkWith, CheckResult, describeError, DiffResult, hasUnknown, holdsConnection, isPolicyNotFound, keptAdmin, legacyAdmin, parseProps, ProviderError, step,
  withoutAdmin,
} from "./common";

const KIND = "QrexecPolicy";

export const policyInputs = z.object({
  ...legacyAdmin,
  /** File name without `.policy`, e.g. `20-qubes-build-infra`. Changing it replaces the file. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "a policy file name without .policy (letters, digits, '.', '_', '-')"),
  /** The rules, in order. */
  rules: z.array(policyRule),
  /** Comment lines after the managed-file marker. */
  header: z.union([z.string(), z.array(z.string())]).optional(),
  /** Set by check: the rule-level change `up` would make to the file as it is in dom0, for the preview. */
  ruleDiff: z.string().optional(),
});
type PolicyInputs = z.infer<typeof policyInputs>;

const policyOutputs = policyInputs.safeExtend({
  /** The text written (or found by refresh). */
  content: z.string(),
  /** The policy admin token of that text. */
  token: z.string(),
  /** Problems found by refresh in a hand-edited file. */
  parseErrors: z.array(z.string()).optional(),
});

const fileOf = (name: string) => `${name}.policy`;
const asRules = (name: string, rules: PolicyRule[]): Rule[] => rules.map((r, i) => ({ ...r, params: r.params ?? {}, file: fileOf(name), line: i + 1 }));
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
const strip = (r: Rule): PolicyRule => ({
  service: r.service, argument: r.argument, source: r.source, target: r.target, action: r.action, params: { ...r.params },
});

/** A human-readable, rule-level summary: `+ rule` / `- rule` lines (`""` when the rules are the same). */
export function summarizeRuleDiff(name: string, oldRules: PolicyRule[], newRules: PolicyRule[]): string {
  const d = diffRules(asRules(name, oldRules), asRules(name, newRules));
  if (d.added.length === 0 && d.removed.length === 0) return "";
  const lines = d.lines.filter((l) => l.op !== " ").map((l) => `${l.op} ${l.text}`);
  return `${fileOf(name)}: ${d.added.length} rule(s) added, ${d.removed.length} removed, ${d.unchanged} kept\n${lines.join("\n")}`;
}

/** The file as it is in dom0 now (null when absent): one read per file and process, shared by check and diff. */
function live(admin: QubesAdmin, name: string): Promise<{ content: string; token: string } | null> {
  const p = runCache(`policy:${name}`, async () => {
    try {
      return await admin.policyGet(name);
    } catch (e) {
      if (isPolicyNotFound(e)) return null;
      throw new ProviderError(`${KIND} ${fileOf(name)}`, "reading it from dom0", e);
    }
  });
  return p.catch((e: unknown) => {
    dropRunCache(`policy:${name}`);
    throw e;
  });
}

const rulesOf = (name: string, content: string): PolicyRule[] => parsePolicyFile(content, fileOf(name)).rules.map(strip);

/**
 * Writes `content` over the file as this run found it (`token`: `new` when absent). A refusal
 * because the file changed since this run read it says so; nothing is overwritten then.
 */
async function write(admin: QubesAdmin, p: PolicyInputs, token: string, what: string) {
  const content = render(p);
  const where = `${KIND} ${fileOf(p.name)}`;
  try {
    await admin.policyReplace(p.name, content, token);
  } catch (e) {
    if (hasQubesCode(e, "policy-token")) {
      throw new ProviderError(where, what, e, `refused: the file changed in dom0 while this run was applying (${describeError(e)}); it was not overwritten: run \`pulumi preview\` to see the difference, then \`pulumi up\` again`);
    }
    throw new ProviderError(where, what, e);
  } finally {
    dropRunCache(`policy:${p.name}`);
  }
  const now = await step(where, "reading it back", () => admin.policyGet(p.name));
  return { ...withoutAdmin(p), content, token: now.token };
}

export async function check(olds: unknown, news: unknown): Promise<CheckResult> {
  const base = checkWith(policyInputs, news);
  if (base.failures || hasUnknown(news)) return base;
  const p = withoutAdmin(policyInputs.parse(base.inputs)) as PolicyInputs;
  const errors = checkRules(asRules(p.name, p.rules), fileOf(p.name));
  if (errors.length > 0) {
    return { inputs: base.inputs, failures: errors.map((e) => ({ property: "rules", reason: `rule ${e.line}: ${e.message}` })) };
  }
  const size = Buffer.byteLength(render(p));
  if (size > POLICY_MAX_BYTES) {
    return { inputs: base.inputs, failures: [{ property: "rules", reason: `${fileOf(p.name)} would be ${size} bytes (${p.rules.length} rules) even without column alignment; qubesd takes at most ${QUBESD_MAX_REQUEST} bytes per Admin API request (admin.policy.Replace), so it cannot be written: split the site into several stacks (fewer environments each)` }] };
  }
  // The rule-level change against the file as dom0 has it (hand edits included); a new resource
  // whose file does not exist yet: against nothing.
  const o = policyInputs.safeParse(olds);
  let before: PolicyRule[] = [];
  if (o.success && o.data.name === p.name) {
    const now = await live(runAdmin((news as { admin?: unknown }).admin), p.name);
    before = now === null ? [] : rulesOf(p.name, now.content);
  }
  return { inputs: { ...p, ruleDiff: summarizeRuleDiff(p.name, before, p.rules) } };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(policyOutputs, oldsRaw, KIND);
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(policyInputs, newsRaw, KIND);
  if (o.name !== n.name) return { changes: true, replaces: ["name"], deleteBeforeReplace: true };
  const now = await live(runAdmin(o.admin), o.name);
  return { changes: now?.content !== render(n) || holdsConnection(oldsRaw) };
}

/** Creates the file; one this site wrote before (a run interrupted before recording it) is taken over. */
export async function create(inputs: unknown) {
  const p = withoutAdmin(parseProps(policyInputs, inputs, KIND)) as PolicyInputs;
  const admin = runAdmin((inputs as { admin?: unknown }).admin);
  dropRunCache(`policy:${p.name}`);
  const now = await live(admin, p.name);
  if (now !== null && !isManaged(now.content)) {
    throw new ProviderError(`${KIND} ${fileOf(p.name)}`, "creating the file", undefined,
      `/etc/qubes/policy.d/${fileOf(p.name)} already exists and was not written by qubes-build-infra (no managed header): review it, move its rules elsewhere, then remove it (in dom0: sudo rm /etc/qubes/policy.d/${fileOf(p.name)}) and run pulumi up again`);
  }
  const outs = await write(admin, p, now?.token ?? "new", now ? "taking over the file left by an interrupted run" : "creating the file");
  return { id: p.name, outs };
}

/** Writes the site's rules over the file as this run found it (a hand edit shown by the preview is put back). */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(policyOutputs, oldsRaw, KIND);
  const n = withoutAdmin(parseProps(policyInputs, newsRaw, KIND)) as PolicyInputs;
  const admin = runAdmin(o.admin);
  const now = await live(admin, n.name);
  // The file already holds these rules (only bookkeeping changed, e.g. old outputs): nothing to write.
  if (now !== null && now.content === render(n)) return { outs: { ...n, ruleDiff: "", content: now.content, token: now.token } };
  const outs = await write(admin, { ...n, ruleDiff: summarizeRuleDiff(n.name, now === null ? [] : rulesOf(n.name, now.content), n.rules) }, now?.token ?? "new", "replacing the file");
  return { outs };
}

/** The file as it is: its rules become the inputs, so the next preview shows the rule-level change back. */
export async function read(id: string, raw: unknown) {
  const o = parseProps(policyOutputs, raw, KIND);
  const got = await live(runAdmin(o.admin), o.name);
  if (got === null) return { id: "", props: {} };
  const parsed = parsePolicyFile(got.content, fileOf(o.name));
  const rules = parsed.rules.map(strip);
  const inputs = { name: o.name, rules, ...(o.header !== undefined ? { header: o.header } : {}) };
  const parseErrors = parsed.errors.map((e) => `line ${e.line}: ${e.message}`);
  return {
    id,
    props: {
      ...inputs, ...keptAdmin(o), content: got.content, token: got.token, ruleDiff: summarizeRuleDiff(o.name, o.rules, rules),
      ...(parseErrors.length ? { parseErrors } : {}),
    },
    inputs,
  };
}

/** Removes the file as recorded; a file edited since is refused (it is not the site's any more). */
async function delete_(_id: string, raw: unknown): Promise<void> {
  const o = parseProps(policyOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  const where = `${KIND} ${fileOf(o.name)}`;
  try {
    await admin.policyRemove(o.name, o.token);
  } catch (e) {
    if (isPolicyNotFound(e)) return;
    if (hasQubesCode(e, "policy-token")) {
      throw new ProviderError(where, "removing the file", e, `refused: the file was changed outside Pulumi since the last apply (${describeError(e)}); it was not removed: run \`pulumi refresh\` to review it, then destroy again`);
    }
    throw new ProviderError(where, "removing the file", e);
  }
}
export { delete_ as delete };
