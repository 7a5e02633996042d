// Implementation of AuthenticodeKey (see providers/authenticodeKey.ts).
import { z } from "zod";
import { adminConnection, adminFor } from "./admin";
import { checkWith, hasUnknown, parseProps } from "./common";

const KIND = "AuthenticodeKey";
const KEYS_DIR = "/home/user/win-sign/keys";

const inputs = z.object({
  admin: adminConnection,
  vm: z.string().min(1),
  name: z.string().regex(/^[A-Za-z0-9_]{1,64}$/, "letters, digits and _ (__ for a space)"),
  days: z.number().int().min(1).max(36500).default(3650),
});
type Inputs = z.infer<typeof inputs>;
const outputs = inputs.extend({ certificate: z.string() });

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
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
  const r = await adminFor(p.admin).run(p.vm, script, { user: "user" });
  if (!create && r.exitCode === 44) return null;
  if (r.exitCode !== 0) throw new Error(`${KIND} ${p.name} in ${p.vm}: ${create ? "making the key" : "reading the certificate"} failed (exit ${r.exitCode}): ${r.stderr.toString().trim().slice(0, 300)}`);
  const pem = r.stdout.toString();
  if (!/^-----BEGIN CERTIFICATE-----/.test(pem)) throw new Error(`${KIND} ${p.name} in ${p.vm}: ${f.crt} is not a PEM certificate`);
  return pem;
}

export async function check(_olds: unknown, news: unknown) {
  return checkWith(inputs, news);
}

export async function create(raw: unknown) {
  const p = parseProps(inputs, raw, KIND);
  return { id: `${p.vm}:${p.name}`, outs: { ...p, certificate: (await certificate(p, true))! } };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  if (hasUnknown(newsRaw)) return { changes: true };
  const o = parseProps(outputs, oldsRaw, KIND);
  const n = parseProps(inputs, newsRaw, KIND);
  const replaces = (["vm", "name"] as const).filter((k) => o[k] !== n[k]);
  return { changes: replaces.length > 0 || o.days !== n.days, replaces };
}

export async function update(_id: string, _olds: unknown, newsRaw: unknown) {
  const p = parseProps(inputs, newsRaw, KIND);
  return { outs: { ...p, certificate: (await certificate(p, true))! } };
}

export async function read(id: string, raw: unknown) {
  const o = parseProps(outputs, raw, KIND);
  const pem = await certificate(o, false);
  if (pem === null) return { id: "", props: {} };
  return { id, props: { ...o, certificate: pem } };
}

/** Never deletes the key. */
export async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
