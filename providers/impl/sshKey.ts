// Implementation of SshKey (see providers/sshKey.ts).
import { z } from "zod";
import { runAdmin } from "./admin";
import { DiffResult, hasUnknown, holdsConnection, legacyAdmin, parseProps, ProviderError, shq, step, withoutAdmin } from "./common";
import { checkPlaced, externalVms, GONE, inVm, vmIdentity, vmReplaced } from "./inVm";

const KIND = "SshKey";

export const keyInputs = z.object({
  ...legacyAdmin,
  /** The VM holding the key. Changing it replaces the resource. */
  vm: z.string().min(1),
  ...vmIdentity,
  ...externalVms,
  /** The private key's path (e.g. `/home/user/.ssh/id_ed25519`); the public key is `<path>.pub`. */
  path: z.string().regex(/^\/[A-Za-z0-9._/-]+$/, "an absolute path").refine((s) => !s.split("/").includes(".."), "no '..'"),
  /** The key's comment, e.g. `logs deploy key (qubes-build-infra)`. */
  comment: z.string().regex(/^[A-Za-z0-9 ()._@:-]*$/, "letters, digits, spaces and ()._@:-"),
  /** Bump to rotate (default 1). */
  generation: z.number().int().min(1).default(1),
  /** Owner (default `user`). */
  user: z.string().regex(/^[a-z_][a-z0-9_-]*$/).default("user"),
});
type KeyInputs = z.infer<typeof keyInputs>;
const keyOutputs = keyInputs.safeExtend({ publicKey: z.string(), fingerprint: z.string() });

/**
 * Makes sure a key is at `path` (generating one, or a new one with `rotate`), with modes 0600 /
 * 0644 and its directory 0700, and prints the public key then its fingerprint line.
 */
export function ensureScript(p: KeyInputs, rotate: boolean): string {
  return `set -eu
k=${shq(p.path)}; d=$(dirname "$k")
mkdir -p "$d"; chmod 700 "$d"
${rotate ? 'rm -f -- "$k" "$k.pub"' : ""}
if [ ! -e "$k" ]; then
  ssh-keygen -q -t ed25519 -N '' -C ${shq(p.comment)} -f "$k" </dev/null >/dev/null
fi
chmod 600 "$k"
ssh-keygen -y -f "$k" > "$k.pub.tmp"
# Keep the comment: ssh-keygen -y prints only type and key.
printf '%s %s\\n' "$(cut -d' ' -f1,2 "$k.pub.tmp")" ${shq(p.comment)} > "$k.pub"; rm -f "$k.pub.tmp"
chmod 644 "$k.pub"
cat "$k.pub"
ssh-keygen -l -E sha256 -f "$k.pub" | cut -d' ' -f2
`;
}

const who = (p: { vm: string; path: string }) => `${KIND} ${p.vm}:${p.path}`;

/** Idempotent: a key already there is kept (a run killed after generating one finds it). */
async function ensure(p: KeyInputs, rotate: boolean) {
  const what = rotate ? "rotating the key" : "making sure the key is there";
  const r = await step(who(p), what, () => runAdmin(p.admin).run(p.vm, ensureScript(p, rotate), { user: p.user }));
  if (r.exitCode !== 0) throw new ProviderError(who(p), what, undefined, `ssh-keygen failed (exit ${r.exitCode}): ${r.stderr.toString().trim() || "no message"}`);
  const [publicKey, fingerprint] = r.stdout.toString().trim().split("\n");
  if (!/^ssh-ed25519 [A-Za-z0-9+/=]+ /.test(publicKey ?? "") || !/^SHA256:/.test(fingerprint ?? "")) {
    throw new ProviderError(who(p), what, undefined, "unexpected ssh-keygen output");
  }
  return { ...withoutAdmin(p), publicKey, fingerprint };
}

export async function check(_olds: unknown, news: unknown) {
  return checkPlaced(keyInputs, news);
}

export async function create(inputs: unknown) {
  const p = parseProps(keyInputs, inputs, KIND);
  return { id: `${p.vm}:${p.path}`, outs: await ensure(p, false) };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(keyOutputs, oldsRaw, KIND);
  const moved = vmReplaced(o, newsRaw);
  if (moved) return moved;
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(keyInputs, newsRaw, KIND);
  const replaces = (["vm", "path"] as const).filter((k) => o[k] !== n[k]);
  if (replaces.length) return { changes: true, replaces };
  return { changes: o.generation !== n.generation || o.comment !== n.comment || o.user !== n.user || o.vmUuid !== n.vmUuid || holdsConnection(oldsRaw) };
}

/** A new generation rotates the key; a comment or owner change rewrites the public key file; bookkeeping costs no call. */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(keyOutputs, oldsRaw, KIND);
  const n = parseProps(keyInputs, newsRaw, KIND);
  if (o.generation === n.generation && o.comment === n.comment && o.user === n.user) {
    return { outs: { ...withoutAdmin(n), publicKey: o.publicKey, fingerprint: o.fingerprint } };
  }
  return { outs: await ensure(n, o.generation !== n.generation) };
}

export async function read(id: string, raw: unknown) {
  const o = parseProps(keyOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  const r = await inVm(admin, o, () => step(who(o), "reading the key", () => admin.run(o.vm, `k=${shq(o.path)}; [ -e "$k" ] || exit 44
printf '%s %s\\n' "$(ssh-keygen -y -f "$k" | cut -d' ' -f1,2)" ${shq(o.comment)}
ssh-keygen -l -E sha256 -f "$k" | cut -d' ' -f2`, { user: o.user })));
  if (r === GONE || r.exitCode === 44) return { id: "", props: {} };
  if (r.exitCode !== 0) throw new ProviderError(who(o), "reading the key", undefined, `ssh-keygen failed (exit ${r.exitCode}): ${r.stderr.toString().trim() || "no message"}`);
  const [publicKey, fingerprint] = r.stdout.toString().trim().split("\n");
  if (!/^ssh-ed25519 [A-Za-z0-9+/=]+ /.test(publicKey ?? "") || !/^SHA256:/.test(fingerprint ?? "")) {
    throw new ProviderError(who(o), "reading the key", undefined, `unexpected ssh-keygen output: ${r.stderr.toString().trim() || "no message"}`);
  }
  return { id, props: { ...o, publicKey, fingerprint } };
}

/** Never deletes a key: forgetting it in state is all a destroy does. */
async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
