// Implementation of SigningKey (see providers/signingKey.ts).
import { z } from "zod";
import { adminConnection, adminFor } from "./admin";
import { checkWith, hasUnknown } from "./common";

const props = z.object({
  admin: adminConnection,
  vm: z.string(),
  uid: z.string().min(1),
  expectFingerprint: z.string().regex(/^[0-9A-F]{40}$/).optional(),
  gnupgHome: z.string().default("/home/user/.gnupg"),
  fingerprint: z.string().optional(),
  publicKey: z.string().optional(),
});
type Props = z.infer<typeof props>;

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Secret-key fingerprints present in the VM's keyring. */
async function secretKeys(p: Props): Promise<string[]> {
  const admin = adminFor(p.admin);
  const r = await admin.run(p.vm, `mkdir -p -m 700 ${q(p.gnupgHome)} && gpg --homedir ${q(p.gnupgHome)} --batch --with-colons --list-secret-keys 2>/dev/null || true`);
  const fprs: string[] = [];
  let inPrimary = false;
  for (const line of r.stdout.toString().split("\n")) {
    const f = line.split(":");
    if (f[0] === "sec") inPrimary = true;
    else if (f[0] === "ssb") inPrimary = false;
    else if (f[0] === "fpr" && inPrimary) { fprs.push(f[9]); inPrimary = false; }
  }
  return fprs;
}

async function exportPublic(p: Props, fpr: string): Promise<string> {
  const r = await adminFor(p.admin).run(p.vm, `gpg --homedir ${q(p.gnupgHome)} --batch --armor --export ${fpr}`);
  if (r.exitCode !== 0) throw new Error(`SigningKey ${p.vm}: cannot export ${fpr}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

async function ensure(p: Props): Promise<{ fingerprint: string; publicKey: string }> {
  const have = await secretKeys(p);
  if (p.expectFingerprint) {
    if (!have.includes(p.expectFingerprint)) {
      throw new Error(`SigningKey in ${p.vm}: the secret key ${p.expectFingerprint} is not in ${p.gnupgHome}; import it there (gpg --import) — it is never generated in its place`);
    }
    return { fingerprint: p.expectFingerprint, publicKey: await exportPublic(p, p.expectFingerprint) };
  }
  if (have.length > 0) return { fingerprint: have[0], publicKey: await exportPublic(p, have[0]) };
  const admin = adminFor(p.admin);
  const gen = await admin.run(p.vm, `gpg --homedir ${q(p.gnupgHome)} --batch --passphrase '' --quick-gen-key ${q(p.uid)} ed25519 sign never`);
  if (gen.exitCode !== 0) throw new Error(`SigningKey in ${p.vm}: key generation failed: ${gen.stderr.toString().trim()}`);
  const now = await secretKeys(p);
  if (now.length === 0) throw new Error(`SigningKey in ${p.vm}: gpg reported success but no secret key is present`);
  return { fingerprint: now[0], publicKey: await exportPublic(p, now[0]) };
}

export async function check(_olds: unknown, news: unknown) {
  return checkWith(props, news);
}

export async function create(inputs: unknown) {
  const p = props.parse(inputs);
  const key = await ensure(p);
  return { id: `${p.vm}:${key.fingerprint}`, outs: { ...p, ...key } };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  if (hasUnknown(newsRaw)) return { changes: true };
  const olds = props.parse(oldsRaw);
  const news = props.parse(newsRaw);
  const replaces: string[] = [];
  if (olds.vm !== news.vm) replaces.push("vm");
  if (olds.gnupgHome !== news.gnupgHome) replaces.push("gnupgHome");
  if (news.expectFingerprint && news.expectFingerprint !== olds.fingerprint) replaces.push("expectFingerprint");
  return { changes: replaces.length > 0 || olds.uid !== news.uid, replaces };
}

export async function update(_id: string, _olds: unknown, newsRaw: unknown) {
  const p = props.parse(newsRaw);
  return { outs: { ...p, ...(await ensure(p)) } };
}

export async function read(id: string, raw: unknown) {
  const p = props.parse(raw);
  if (!p.fingerprint) return { id: "", props: {} };
  const have = await secretKeys(p);
  if (!have.includes(p.fingerprint)) return { id: "", props: {} };
  return { id, props: { ...p, publicKey: await exportPublic(p, p.fingerprint) } };
}

/** Never deletes a signing key: forgetting it in state is all a destroy does. */
export async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
