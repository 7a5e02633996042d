// Implementation of SigningKey (see providers/signingKey.ts).
import { z } from "zod";
import { fingerprint } from "../../contracts/fingerprint";
import type { QubesAdmin } from "../../admin/api";
import { runAdmin } from "./admin";
import { checkWith, DiffResult, hasUnknown, holdsConnection, legacyAdmin, ProviderError, parseProps, shq, step, withoutAdmin } from "./common";
import { GONE, inVm, vmIdentity, vmReplaced } from "./inVm";

const KIND = "SigningKey";

export const keyInputs = z.object({
  ...legacyAdmin,
  /** The VM holding the key. */
  vm: z.string().min(1),
  ...vmIdentity,
  /** User id for a generated key, e.g. `Qubes OS build signing key (fedora)`. */
  uid: z.string().min(1),
  /** The fingerprint that must be present (production); absent: generate one if none. */
  expectFingerprint: fingerprint.optional(),
  /** GnuPG home in the VM (default `/home/user/.gnupg`). */
  gnupgHome: z.string().regex(/^\/[^\0']*$/, "an absolute path").default("/home/user/.gnupg"),
});
/** Inputs and outputs: the key found or made (absent before create). */
const props = keyInputs.extend({
  fingerprint: z.string().optional(),
  publicKey: z.string().optional(),
});
type Props = z.infer<typeof props>;

const who = (p: { vm: string }) => `${KIND} in ${p.vm}`;

/** Runs a gpg step as `user`; a failing gpg is an error (never read as an empty answer). */
async function gpg(admin: QubesAdmin, p: Props, what: string, script: string): Promise<string> {
  const r = await step(who(p), what, () => admin.run(p.vm, script, { user: "user" }));
  if (r.exitCode !== 0) throw new ProviderError(who(p), what, undefined, `gpg failed (exit ${r.exitCode}): ${r.stderr.toString().trim() || "no message"}`);
  return r.stdout.toString();
}

/** Fingerprints of the primary secret keys in the VM's keyring (the keyring is created when missing). */
export function parseSecretKeys(colons: string): string[] {
  const fprs: string[] = [];
  let inPrimary = false;
  for (const line of colons.split("\n")) {
    const f = line.split(":");
    if (f[0] === "sec") inPrimary = true;
    else if (f[0] === "ssb") inPrimary = false;
    else if (f[0] === "fpr" && inPrimary) {
      fprs.push(f[9]);
      inPrimary = false;
    }
  }
  return fprs;
}

async function secretKeys(admin: QubesAdmin, p: Props): Promise<string[]> {
  const home = shq(p.gnupgHome);
  return parseSecretKeys(await gpg(admin, p, "listing secret keys", `mkdir -p -m 700 ${home} && gpg --homedir ${home} --batch --with-colons --list-secret-keys`));
}

async function exportPublic(admin: QubesAdmin, p: Props, fpr: string): Promise<string> {
  const out = await gpg(admin, p, `exporting the public key ${fpr}`, `gpg --homedir ${shq(p.gnupgHome)} --batch --armor --export ${fpr}`);
  if (!out.includes("BEGIN PGP PUBLIC KEY BLOCK")) throw new ProviderError(who(p), `exporting the public key ${fpr}`, undefined, "gpg exported nothing");
  return out;
}

/**
 * The key, adopted or generated. Idempotent: a run killed after generating a key finds it the
 * next time (only a keyring without any secret key gets a new one).
 */
async function ensure(admin: QubesAdmin, p: Props): Promise<{ fingerprint: string; publicKey: string }> {
  const have = await secretKeys(admin, p);
  if (p.expectFingerprint) {
    if (!have.includes(p.expectFingerprint)) {
      throw new ProviderError(who(p), "finding the key", undefined,
        `the secret key ${p.expectFingerprint} is not in ${p.gnupgHome}; import it there (gpg --import) — it is never generated in its place`);
    }
    return { fingerprint: p.expectFingerprint, publicKey: await exportPublic(admin, p, p.expectFingerprint) };
  }
  if (have.length > 0) return { fingerprint: have[0], publicKey: await exportPublic(admin, p, have[0]) };
  await gpg(admin, p, "generating an ed25519 signing key", `gpg --homedir ${shq(p.gnupgHome)} --batch --passphrase '' --quick-gen-key ${shq(p.uid)} ed25519 sign never`);
  const now = await secretKeys(admin, p);
  if (now.length === 0) throw new ProviderError(who(p), "generating an ed25519 signing key", undefined, "gpg reported success but no secret key is present");
  return { fingerprint: now[0], publicKey: await exportPublic(admin, p, now[0]) };
}

export async function check(_olds: unknown, news: unknown) {
  return checkWith(props, news, (p) => withoutAdmin(p));
}

export async function create(inputs: unknown) {
  const p = parseProps(props, inputs, KIND);
  const key = await ensure(runAdmin(p.admin), p);
  return { id: `${p.vm}:${key.fingerprint}`, outs: { ...withoutAdmin(p), ...key } };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const olds = parseProps(props, oldsRaw, KIND);
  const moved = vmReplaced(olds, newsRaw);
  if (moved) return moved;
  if (hasUnknown(newsRaw)) return { changes: true };
  const news = parseProps(props, newsRaw, KIND);
  const replaces: string[] = [];
  if (olds.vm !== news.vm) replaces.push("vm");
  if (olds.gnupgHome !== news.gnupgHome) replaces.push("gnupgHome");
  if (news.expectFingerprint && news.expectFingerprint !== olds.fingerprint) replaces.push("expectFingerprint");
  return { changes: replaces.length > 0 || olds.uid !== news.uid || olds.vmUuid !== news.vmUuid || holdsConnection(oldsRaw), replaces };
}

/** Only bookkeeping changes reach update (the key itself is replaced, never changed): no gpg call. */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(props, oldsRaw, KIND);
  const p = parseProps(props, newsRaw, KIND);
  if (o.fingerprint && o.publicKey) return { outs: { ...withoutAdmin(p), fingerprint: o.fingerprint, publicKey: o.publicKey } };
  return { outs: { ...withoutAdmin(p), ...(await ensure(runAdmin(p.admin), p)) } };
}

/** The key is gone when its VM is gone, or the keyring no longer holds it. */
export async function read(id: string, raw: unknown) {
  const p = parseProps(props, raw, KIND);
  if (!p.fingerprint) return { id: "", props: {} };
  const admin = runAdmin(p.admin);
  const fpr = p.fingerprint;
  const got = await inVm(admin, p, async () => ((await secretKeys(admin, p)).includes(fpr) ? exportPublic(admin, p, fpr) : null));
  if (got === GONE || got === null) return { id: "", props: {} };
  return { id, props: { ...p, publicKey: got } };
}

/** Never deletes a signing key: forgetting it in state is all a destroy does. */
export async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
