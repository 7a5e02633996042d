// Implementation of TransparencyLogKey (see providers/tlogKey.ts).
import { z } from "zod";
import { runAdmin } from "./admin";
import { DiffResult, hasUnknown, holdsConnection, legacyAdmin, parseProps, ProviderError, shq, step, withoutAdmin } from "./common";
import { checkPlaced, GONE, inVm, vmIdentity, vmReplaced } from "./inVm";

const KIND = "TransparencyLogKey";

export const inputs = z.object({
  ...legacyAdmin,
  /** The logs VM. */
  vm: z.string().min(1),
  ...vmIdentity,
  /** The log's origin (the first line of its checkpoints), e.g. `github.com/QubesOS/build-logs/logs`. */
  origin: z.string().regex(/^[\x21-\x2a\x2c-\x7e]{1,255}$/, "a log origin: printable ASCII without spaces or '+'"),
  /** The qbi-tlog program in the VM. */
  program: z.string().startsWith("/"),
  /** Where the private key lives in the VM (default `/home/user/.config/qubes-build-infra/tlog.key`). */
  privateKey: z.string().regex(/^\/home\/user\/[A-Za-z0-9._/-]+$/, "a path under /home/user").default("/home/user/.config/qubes-build-infra/tlog.key"),
});
type Inputs = z.infer<typeof inputs>;
const outputs = inputs.extend({ verifier: z.string() });

const KeyInfo = z.object({ origin: z.string(), verifier: z.string().regex(/^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/) });

const q = shq;
const who = (p: { vm: string; privateKey: string }) => `${KIND} in ${p.vm} (${p.privateKey})`;

/** Runs qbi-tlog in the VM as `user`; returns the key's origin and verifier, or null if absent. */
async function keyInfo(p: Inputs, create: boolean): Promise<z.infer<typeof KeyInfo> | null> {
  const key = q(p.privateKey);
  const script = create
    ? `set -e; if [ -e ${key} ]; then exec ${q(p.program)} pubkey --private ${key}; fi
mkdir -p -m 700 "$(dirname ${key})"; exec ${q(p.program)} keygen --origin ${q(p.origin)} --private-out ${key}`
    : `[ -e ${key} ] || exit 44; exec ${q(p.program)} pubkey --private ${key}`;
  const what = create ? "making sure the key is there" : "reading the key";
  const r = await step(who(p), what, () => runAdmin(p.admin).run(p.vm, script, { user: "user" }));
  if (!create && r.exitCode === 44) return null;
  if (r.exitCode !== 0) throw new ProviderError(who(p), what, undefined, `qbi-tlog failed (exit ${r.exitCode}): ${r.stderr.toString().trim().slice(0, 300)}`);
  let json: unknown;
  try {
    json = JSON.parse(r.stdout.toString());
  } catch {
    json = undefined;
  }
  const parsed = KeyInfo.safeParse(json);
  if (!parsed.success) throw new ProviderError(who(p), what, undefined, "unexpected qbi-tlog output (expected {origin, verifier})");
  return parsed.data;
}

/** Idempotent: a key already there (a run killed after making it) is adopted if its origin matches. */
async function ensure(p: Inputs): Promise<z.infer<typeof outputs>> {
  const k = await keyInfo(p, true);
  if (!k || k.origin !== p.origin) {
    throw new ProviderError(who(p), "checking the key's origin", undefined, `the key signs for origin ${k?.origin ?? "?"}, not ${p.origin}; `
      + "a log keeps its origin: set the old origin back, or move the key away on purpose to start a new log");
  }
  return { ...withoutAdmin(p), verifier: k.verifier };
}

export async function check(_olds: unknown, news: unknown) {
  return checkPlaced(inputs, news);
}

export async function create(raw: unknown) {
  const p = parseProps(inputs, raw, KIND);
  return { id: `${p.vm}:${p.privateKey}`, outs: await ensure(p) };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(outputs, oldsRaw, KIND);
  const moved = vmReplaced(o, newsRaw);
  if (moved) return moved;
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(inputs, newsRaw, KIND);
  const replaces = (["vm", "privateKey", "origin"] as const).filter((k) => o[k] !== n[k]);
  return { changes: replaces.length > 0 || o.program !== n.program || o.vmUuid !== n.vmUuid || holdsConnection(oldsRaw), replaces };
}

/** A new program path is checked against the key; bookkeeping changes cost no call. */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(outputs, oldsRaw, KIND);
  const n = parseProps(inputs, newsRaw, KIND);
  if (o.program === n.program) return { outs: { ...withoutAdmin(n), verifier: o.verifier } };
  return { outs: await ensure(n) };
}

export async function read(id: string, raw: unknown) {
  const o = parseProps(outputs, raw, KIND);
  const k = await inVm(runAdmin(o.admin), o, () => keyInfo(o, false));
  if (k === GONE || !k) return { id: "", props: {} };
  return { id, props: { ...o, verifier: k.verifier, origin: k.origin } };
}

/** Never deletes the key: forgetting it in state is all a destroy does. */
export async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
