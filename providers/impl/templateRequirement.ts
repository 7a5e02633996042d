// Implementation of TemplateRequirement (see providers/templateRequirement.ts).
import { z } from "zod";
import type { QubesAdmin } from "../../admin/api";
import { runAdmin } from "./admin";
import { CheckResult, checkWith, DiffResult, hasUnknown, holdsConnection, legacyAdmin, parseProps, ProviderError, shq, step, withoutAdmin } from "./common";
import { listedVm } from "./dom0";

const KIND = "TemplateRequirement";

export const reqInputs = z.object({
  ...legacyAdmin,
  /** The template (or any qube) that must provide the commands. */
  vm: z.string().min(1),
  /** Command names looked up with `command -v`. */
  commands: z.array(z.string().regex(/^[A-Za-z0-9._+-]+$/, "a command name")).min(1),
  /** Who needs them (shown in the error). */
  purpose: z.string().default(""),
  /** For messages: the stack config key(s) naming the template, e.g. `{ vm: "qubes-build-infra:buildTemplate" }`. */
  configKeys: z.record(z.string(), z.string()).optional(),
});
type ReqInputs = z.infer<typeof reqInputs>;
const reqOutputs = reqInputs.safeExtend({ missing: z.array(z.string()).default([]) });

/** Package names providing each command: Fedora, Debian. */
const PACKAGES: Record<string, [string, string]> = {
  node: ["nodejs", "nodejs"],
  gpg: ["gnupg2", "gnupg"],
  gpg2: ["gnupg2", "gnupg"],
  git: ["git", "git"],
  nginx: ["nginx", "nginx"],
  socat: ["socat", "socat"],
  flock: ["util-linux", "util-linux"],
  xz: ["xz", "xz-utils"],
  curl: ["curl", "curl"],
  rpm: ["rpm", "rpm"],
  sha256sum: ["coreutils", "coreutils"],
  osslsigncode: ["osslsigncode", "osslsigncode"],
  openssl: ["openssl", "openssl"],
  python3: ["python3", "python3"],
  make: ["make", "make"],
  "ssh-keygen": ["openssh-clients", "openssh-client"],
  ssh: ["openssh-clients", "openssh-client"],
};

/** The message for missing commands: which ones, and what to install where. */
export function missingMessage(vm: string, missing: readonly string[], purpose: string): string {
  const fedora = [...new Set(missing.map((c) => PACKAGES[c]?.[0] ?? c))];
  const debian = [...new Set(missing.map((c) => PACKAGES[c]?.[1] ?? c))];
  return `template ${vm} lacks ${missing.join(", ")}${purpose ? ` (needed by ${purpose})` : ""}: install them in the template ` +
    `(Fedora: sudo dnf install ${fedora.join(" ")}; Debian: sudo apt install ${debian.join(" ")}), shut the template down, then run the preview again`;
}

const notThere = (p: ReqInputs) =>
  `template ${p.vm} does not exist in dom0${p.configKeys?.vm ? ` (set by ${p.configKeys.vm})` : ""}: install it (qvm-template install ${p.vm}) or name an installed template`;

/** The commands `command -v` does not find in the VM (which it starts if halted, as qvm-run does). */
export async function findMissing(admin: QubesAdmin, p: ReqInputs): Promise<string[]> {
  const script = `for c in ${p.commands.map(shq).join(" ")}; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done; exit 0`;
  const what = `checking for ${p.commands.join(", ")}`;
  const r = await step(`${KIND} ${p.vm}`, what, () => admin.run(p.vm, script, { user: "user" }));
  if (r.exitCode !== 0) throw new ProviderError(`${KIND} ${p.vm}`, what, undefined, `the check did not run (exit ${r.exitCode}): ${r.stderr.toString().trim()}`);
  return r.stdout.toString().split("\n").map((l) => l.trim()).filter((l) => l !== "");
}

/**
 * The check at `up` (and refresh of a running template): runs `command -v` in the template and, if
 * the check had to start it, shuts it down again, so that a template is never left running.
 */
async function checkInVm(admin: QubesAdmin, p: ReqInputs): Promise<string[]> {
  const before = (await listedVm(admin, p.vm))?.power;
  if (before === undefined) throw new ProviderError(`${KIND} ${p.vm}`, "finding the template", undefined, notThere(p));
  try {
    return await findMissing(admin, p);
  } finally {
    if (before === "Halted") await step(`${KIND} ${p.vm}`, "shutting it down after the check", () => admin.vmShutdown(p.vm));
  }
}

/**
 * The preview's check, which must change nothing and start no VM: the template must be in dom0's
 * list (a read). The commands themselves are looked for at `up`, before anything that depends on
 * the template; what a refresh found missing fails the next preview (diff).
 */
export async function check(_olds: unknown, news: unknown): Promise<CheckResult> {
  const base = checkWith(reqInputs, news, (p) => withoutAdmin(p));
  if (base.failures || hasUnknown(news)) return base;
  const p = reqInputs.parse(base.inputs);
  const admin = runAdmin((news as { admin?: unknown }).admin);
  if (!(await listedVm(admin, p.vm))) return { inputs: base.inputs, failures: [{ property: "vm", reason: notThere(p) }] };
  return { inputs: withoutAdmin(p) };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(reqOutputs, oldsRaw, KIND);
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(reqInputs, newsRaw, KIND);
  const same = o.vm === n.vm && JSON.stringify(o.commands) === JSON.stringify(n.commands);
  // What the last refresh found missing fails the preview (the check no longer starts the template).
  const stillMissing = same ? o.missing.filter((c) => n.commands.includes(c)) : [];
  if (stillMissing.length > 0) throw new ProviderError(`${KIND} ${n.vm}`, "checking", undefined,
    `${missingMessage(n.vm, stillMissing, n.purpose)} (as the last pulumi refresh found: run pulumi refresh again after installing them)`);
  return { changes: !same || o.purpose !== n.purpose || holdsConnection(oldsRaw) };
}

async function verify(p: ReqInputs) {
  const admin = runAdmin(p.admin);
  const missing = await checkInVm(admin, p);
  if (missing.length > 0) throw new ProviderError(`${KIND} ${p.vm}`, `checking for ${p.commands.join(", ")}`, undefined, missingMessage(p.vm, missing, p.purpose));
  return { ...withoutAdmin(p), missing };
}

export async function create(inputs: unknown) {
  const p = parseProps(reqInputs, inputs, KIND);
  return { id: `${p.vm}:requires`, outs: await verify(p) };
}

/** Checks again only when the template or the commands changed; a purpose or bookkeeping change costs no call. */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(reqOutputs, oldsRaw, KIND);
  const n = parseProps(reqInputs, newsRaw, KIND);
  if (o.vm === n.vm && JSON.stringify(o.commands) === JSON.stringify(n.commands) && o.missing.length === 0) {
    return { outs: { ...withoutAdmin(n), missing: [] } };
  }
  return { outs: await verify(n) };
}

/**
 * Refresh re-checks a running template (what is missing shows in `missing`, and the next preview
 * fails); a halted one keeps what the last check found, since looking would start it. A removed
 * template is gone.
 */
export async function read(id: string, raw: unknown) {
  const o = parseProps(reqOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  const listed = await listedVm(admin, o.vm);
  if (!listed) return { id: "", props: {} };
  if (listed.power === "Halted") return { id, props: o };
  return { id, props: { ...o, missing: await findMissing(admin, o) } };
}

/** Nothing to undo: the requirement changes nothing. */
async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
