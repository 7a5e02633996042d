// Implementation of TemplateRequirement (see providers/templateRequirement.ts).
import { z } from "zod";
import type { QubesAdmin } from "../../admin/api";
import { adminConnection, adminFor } from "./admin";
import { CheckResult, checkWith, DiffResult, hasUnknown, parseProps, shq, step } from "./common";

const KIND = "TemplateRequirement";

export const reqInputs = z.object({
  admin: adminConnection,
  vm: z.string().min(1),
  commands: z.array(z.string().regex(/^[A-Za-z0-9._+-]+$/, "a command name")).min(1),
  purpose: z.string().default(""),
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
};

/** The message for missing commands: which ones, and what to install where. */
export function missingMessage(vm: string, missing: readonly string[], purpose: string): string {
  const fedora = [...new Set(missing.map((c) => PACKAGES[c]?.[0] ?? c))];
  const debian = [...new Set(missing.map((c) => PACKAGES[c]?.[1] ?? c))];
  return `template ${vm} lacks ${missing.join(", ")}${purpose ? ` (needed by ${purpose})` : ""}: install them in the template ` +
    `(Fedora: sudo dnf install ${fedora.join(" ")}; Debian: sudo apt install ${debian.join(" ")}), shut the template down, then run the preview again`;
}

/** The commands `command -v` does not find in the VM. */
export async function findMissing(admin: QubesAdmin, p: ReqInputs): Promise<string[]> {
  const script = `for c in ${p.commands.map(shq).join(" ")}; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done; exit 0`;
  const r = await step(`${KIND} ${p.vm}: checking for ${p.commands.join(", ")}`, () => admin.run(p.vm, script, { user: "user" }));
  if (r.exitCode !== 0) throw new Error(`${KIND} ${p.vm}: the check did not run (exit ${r.exitCode}): ${r.stderr.toString().trim()}`);
  return r.stdout.toString().split("\n").map((l) => l.trim()).filter((l) => l !== "");
}

/** Fails the preview when a command is missing. */
export async function check(_olds: unknown, news: unknown): Promise<CheckResult> {
  const base = checkWith(reqInputs, news);
  if (base.failures || hasUnknown(news)) return base;
  const p = reqInputs.parse(base.inputs);
  const missing = await findMissing(adminFor(p.admin), p);
  if (missing.length > 0) return { inputs: base.inputs, failures: [{ property: "commands", reason: missingMessage(p.vm, missing, p.purpose) }] };
  return { inputs: p };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(reqOutputs, oldsRaw, KIND);
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(reqInputs, newsRaw, KIND);
  const same = o.vm === n.vm && o.purpose === n.purpose && JSON.stringify(o.commands) === JSON.stringify(n.commands) && o.missing.length === 0;
  return { changes: !same };
}

async function verify(p: ReqInputs) {
  const missing = await findMissing(adminFor(p.admin), p);
  if (missing.length > 0) throw new Error(`${KIND}: ${missingMessage(p.vm, missing, p.purpose)}`);
  return { ...p, missing };
}

export async function create(inputs: unknown) {
  const p = parseProps(reqInputs, inputs, KIND);
  return { id: `${p.vm}:requires`, outs: await verify(p) };
}

export async function update(_id: string, _olds: unknown, newsRaw: unknown) {
  return { outs: await verify(parseProps(reqInputs, newsRaw, KIND)) };
}

/** Re-checks: what is missing now shows in the `missing` output (and the next preview fails). */
export async function read(id: string, raw: unknown) {
  const o = parseProps(reqOutputs, raw, KIND);
  const missing = await findMissing(adminFor(o.admin), o);
  return { id, props: { ...o, missing } };
}

/** Nothing to undo: the requirement changes nothing. */
async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
