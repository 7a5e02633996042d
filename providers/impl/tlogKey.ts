// Implementation of TransparencyLogKey (see providers/tlogKey.ts).
import { z } from "zod";
import { adminConnection, adminFor } from "./admin";
import { checkWith, hasUnknown, parseProps } from "./common";

const KIND = "TransparencyLogKey";

const inputs = z.object({
  admin: adminConnection,
  vm: z.string().min(1),
  origin: z.string().regex(/^[\x21-\x2a\x2c-\x7e]{1,255}$/, "a log origin: printable ASCII without spaces or '+'"),
  program: z.string().startsWith("/"),
  privateKey: z.string().regex(/^\/home\/user\/[A-Za-z0-9._/-]+$/, "a path under /home/user"),
});
type Inputs = z.infer<typeof inputs>;
const outputs = inputs.extend({ verifier: z.string() });

const KeyInfo = z.object({ origin: z.string(), verifier: z.string().regex(/^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/) });

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs qbi-tlog in the VM as `user`; returns the key's origin and verifier, or null if absent. */
async function keyInfo(p: Inputs, create: boolean): Promise<z.infer<typeof KeyInfo> | null> {
  const key = q(p.privateKey);
  const script = create
    ? `set -e; if [ -e ${key} ]; then exec ${q(p.program)} pubkey --private ${key}; fi
mkdir -p -m 700 "$(dirname ${key})"; exec ${q(p.program)} keygen --origin ${q(p.origin)} --private-out ${key}`
    : `[ -e ${key} ] || exit 44; exec ${q(p.program)} pubkey --private ${key}`;
  const r = await adminFor(p.admin).run(p.vm, script, { user: "user" });
  if (!create && r.exitCode === 44) return null;
  if (r.exitCode !== 0) throw new Error(`${KIND} in ${p.vm} (${p.privateKey}): qbi-tlog failed (exit ${r.exitCode}): ${r.stderr.toString().trim().slice(0, 300)}`);
  const parsed = KeyInfo.safeParse(JSON.parse(r.stdout.toString()));
  if (!parsed.success) throw new Error(`${KIND} in ${p.vm}: unexpected qbi-tlog output`);
  return parsed.data;
}

async function ensure(p: Inputs): Promise<z.infer<typeof outputs>> {
  const k = await keyInfo(p, true);
  if (!k || k.origin !== p.origin) {
    throw new Error(`${KIND} in ${p.vm}: the key at ${p.privateKey} signs for origin ${k?.origin ?? "?"}, not ${p.origin}; `
      + "a log keeps its origin: set the old origin back, or move the key away on purpose to start a new log");
  }
  return { ...p, verifier: k.verifier };
}

export async function check(_olds: unknown, news: unknown) {
  return checkWith(inputs, news);
}

export async function create(raw: unknown) {
  const p = parseProps(inputs, raw, KIND);
  return { id: `${p.vm}:${p.privateKey}`, outs: await ensure(p) };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  if (hasUnknown(newsRaw)) return { changes: true };
  const o = parseProps(outputs, oldsRaw, KIND);
  const n = parseProps(inputs, newsRaw, KIND);
  const replaces = (["vm", "privateKey", "origin"] as const).filter((k) => o[k] !== n[k]);
  return { changes: replaces.length > 0 || o.program !== n.program, replaces };
}

export async function update(_id: string, _olds: unknown, newsRaw: unknown) {
  return { outs: await ensure(parseProps(inputs, newsRaw, KIND)) };
}

export async function read(id: string, raw: unknown) {
  const o = parseProps(outputs, raw, KIND);
  const k = await keyInfo(o, false);
  if (!k) return { id: "", props: {} };
  return { id, props: { ...o, verifier: k.verifier, origin: k.origin } };
}

/** Never deletes the key: forgetting it in state is all a destroy does. */
export async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
