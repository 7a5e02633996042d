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

/** The commands `command -v` does not find in the VM (starts it if it is halted, as qvm-run does). */
export async function findMissing(admin: QubesAdmin, p: ReqInputs): Promise<string[]> {
  const script = `for c in ${p.commands.map(shq).join(" ")}; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done; exit 0`;
  const r = await step(`${KIND} ${p.vm}: checking for ${p.commands.join(", ")}`, () => admin.run(p.vm, script, { user: "user" }));
  if (r.exitCode !== 0) throw new Error(`${KIND} ${p.vm}: the check did not run (exit ${r.exitCode}): ${r.stderr.toString().trim()}`);
  return r.stdout.toString().split("\n").map((l) => l.trim()).filter((l) => l !== "");
}

/** The VM's power state from the VM list (a read: starts nothing); undefined when Qubes has no such VM. */
async function powerOf(admin: QubesAdmin, vm: string): Promise<string | undefined> {
  const list = await step(`${KIND} ${vm}: listing qubes`, () => admin.vmList());
  return list.find((v) => v.name === vm)?.state;
}

/**
 * The check at `up` (and refresh of a running template): runs `command -v` in the template and, if
 * the check had to start it, shuts it down again, so that a template is never left running.
 */
async function checkInVm(admin: QubesAdmin, p: ReqInputs): Promise<string[]> {
  const before = await powerOf(admin, p.vm);
  if (before === undefined) throw new Error(`${KIND}: ${notFound(p.vm, p.purpose)}`);
  try {
    return await findMissing(admin, p);
  } finally {
    if (before === "Halted") await step(`${KIND} ${p.vm}: shutting it down after the check`, () => admin.vmShutdown(p.vm));
  }
}

const notFound = (vm: string, purpose: string) =>
  `template ${vm}${purpose ? ` (needed by ${purpose})` : ""} does not exist in Qubes: install it (qvm-template install ${vm}) or name another one in the stack config`;

/**
 * The preview's check, which must change nothing and start no VM: the template must exist (the VM
 * list is a read). The commands themselves are looked for at `up`, before anything that depends on
 * the template; what a refresh found missing shows as an update (diff), which `up` re-checks.
 */
export async function check(_olds: unknown, news: unknown): Promise<CheckResult> {
  const base = checkWith(reqInputs, news);
  if (base.failures || hasUnknown(news)) return base;
  const p = reqInputs.parse(base.inputs);
  if ((await powerOf(adminFor(p.admin), p.vm)) === undefined) return { inputs: p, failures: [{ property: "vm", reason: notFound(p.vm, p.purpose) }] };
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
  const missing = await checkInVm(adminFor(p.admin), p);
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

/**
 * Refresh re-checks a running template (what is missing shows in `missing`, and the next preview
 * fails); a halted one keeps what the last check found, since looking would start it.
 */
export async function read(id: string, raw: unknown) {
  const o = parseProps(reqOutputs, raw, KIND);
  const admin = adminFor(o.admin);
  const power = await powerOf(admin, o.vm);
  if (power === undefined || power === "Halted") return { id, props: o };
  return { id, props: { ...o, missing: await findMissing(admin, o) } };
}

/** Nothing to undo: the requirement changes nothing. */
async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
