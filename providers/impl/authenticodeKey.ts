// Implementation of AuthenticodeKey (see providers/authenticodeKey.ts).
import { z } from "zod";
import { runAdmin } from "./admin";
import { DiffResult, hasUnknown, holdsConnection, legacyAdmin, parseProps, ProviderError, shq, step, withoutAdmin } from "./common";
import { checkPlaced, GONE, inVm, vmIdentity, vmReplaced } from "./inVm";

const KIND = "AuthenticodeKey";
const KEYS_DIR = "/home/user/win-sign/keys";

export const inputs = z.object({
  ...legacyAdmin,
  /** The Windows keys VM. */
  vm: z.string().min(1),
  ...vmIdentity,
  /** The key name as builderv2 sends it (`__` for a space), e.g. `Qubes__Windows__Tools`. */
  name: z.string().regex(/^[A-Za-z0-9_]{1,64}$/, "letters, digits and _ (__ for a space)"),
  /** Validity of a generated certificate in days (default 3650, as upstream). */
  days: z.number().int().min(1).max(36500).default(3650),
});
type Inputs = z.infer<typeof inputs>;
const outputs = inputs.extend({ certificate: z.string() });

const q = shq;
const who = (p: { vm: string; name: string }) => `${KIND} ${p.name} in ${p.vm}`;
const files = (name: string) => {
  const base = `${KEYS_DIR}/${name.replace(/__/g, " ")}`;
  return { key: `${base}.key`, crt: `${base}.crt` };
};

/** The certificate (made first when `create` and absent), or null when the key is absent. */
async function certificate(p: Inputs, create: boolean): Promise<string | null> {
  const f = files(p.name);
  const subject = `/CN=${p.name.replace(/__/g, " ")}/`;
  const make = `mkdir -p -m 700 ${q(KEYS_DIR)}
umask 077
openssl req -nodes -new -x509 -newkey rsa:4096 -sha256 -keyout ${q(f.key)} -out ${q(f.crt)} -days ${p.days} -subj ${q(subject)} -addext basicConstraints=CA:FALSE >/dev/null || { rm -f ${q(f.key)} ${q(f.crt)}; exit 3; }`;
  const script = `set -e
if [ ! -s ${q(f.key)} ] || [ ! -s ${q(f.crt)} ]; then
  ${create ? make : "exit 44"}
fi
exec cat ${q(f.crt)}`;
  const what = create ? "making sure the key is there" : "reading the certificate";
  const r = await step(who(p), what, () => runAdmin(p.admin).run(p.vm, script, { user: "user" }));
  if (!create && r.exitCode === 44) return null;
  if (r.exitCode !== 0) throw new ProviderError(who(p), what, undefined, `openssl failed (exit ${r.exitCode}): ${r.stderr.toString().trim().slice(0, 300) || "no message"}`);
  const pem = r.stdout.toString();
  if (!/^-----BEGIN CERTIFICATE-----/.test(pem)) throw new ProviderError(who(p), what, undefined, `${f.crt} is not a PEM certificate`);
  return pem;
}

export async function check(_olds: unknown, news: unknown) {
  return checkPlaced(inputs, news);
}

/** Idempotent: a key made by a run killed before recording it is adopted. */
export async function create(raw: unknown) {
  const p = parseProps(inputs, raw, KIND);
  return { id: `${p.vm}:${p.name}`, outs: { ...withoutAdmin(p), certificate: (await certificate(p, true))! } };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(outputs, oldsRaw, KIND);
  const moved = vmReplaced(o, newsRaw);
  if (moved) return moved;
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(inputs, newsRaw, KIND);
  const replaces = (["vm", "name"] as const).filter((k) => o[k] !== n[k]);
  return { changes: replaces.length > 0 || o.days !== n.days || o.vmUuid !== n.vmUuid || holdsConnection(oldsRaw), replaces };
}

/** `days` applies to a key made from now on (an existing key is kept); so update only re-reads the certificate. */
export async function update(_id: string, _olds: unknown, newsRaw: unknown) {
  const p = parseProps(inputs, newsRaw, KIND);
  return { outs: { ...withoutAdmin(p), certificate: (await certificate(p, true))! } };
}

export async function read(id: string, raw: unknown) {
  const o = parseProps(outputs, raw, KIND);
  const pem = await inVm(runAdmin(o.admin), o, () => certificate(o, false));
  if (pem === GONE || pem === null) return { id: "", props: {} };
  return { id, props: { ...o, certificate: pem } };
}

/** Never deletes the key. */
export async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
