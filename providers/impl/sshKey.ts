// Implementation of SshKey (see providers/sshKey.ts).
import { z } from "zod";
import { adminConnection, adminFor } from "./admin";
import { checkWith, DiffResult, hasUnknown, parseProps, shq } from "./common";

const KIND = "SshKey";

export const keyInputs = z.object({
  admin: adminConnection,
  vm: z.string().min(1),
  path: z.string().regex(/^\/[A-Za-z0-9._/-]+$/, "an absolute path").refine((s) => !s.split("/").includes(".."), "no '..'"),
  comment: z.string().regex(/^[A-Za-z0-9 ()._@:-]*$/, "letters, digits, spaces and ()._@:-"),
  generation: z.number().int().min(1).default(1),
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

async function ensure(p: KeyInputs, rotate: boolean) {
  const r = await adminFor(p.admin).run(p.vm, ensureScript(p, rotate), { user: p.user });
  if (r.exitCode !== 0) throw new Error(`${KIND} ${p.vm}:${p.path}: ${r.stderr.toString().trim() || `exit ${r.exitCode}`}`);
  const [publicKey, fingerprint] = r.stdout.toString().trim().split("\n");
  if (!/^ssh-ed25519 [A-Za-z0-9+/=]+ /.test(publicKey ?? "") || !/^SHA256:/.test(fingerprint ?? "")) {
    throw new Error(`${KIND} ${p.vm}:${p.path}: unexpected ssh-keygen output`);
  }
  return { ...p, publicKey, fingerprint };
}

export async function check(_olds: unknown, news: unknown) {
  return checkWith(keyInputs, news);
}

export async function create(inputs: unknown) {
  const p = parseProps(keyInputs, inputs, KIND);
  return { id: `${p.vm}:${p.path}`, outs: await ensure(p, false) };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(keyOutputs, oldsRaw, KIND);
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(keyInputs, newsRaw, KIND);
  const replaces = (["vm", "path"] as const).filter((k) => o[k] !== n[k]);
  if (replaces.length) return { changes: true, replaces };
  return { changes: o.generation !== n.generation || o.comment !== n.comment || o.user !== n.user };
}

/** A new generation rotates the key; other changes only rewrite the public key file. */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(keyOutputs, oldsRaw, KIND);
  const n = parseProps(keyInputs, newsRaw, KIND);
  return { outs: await ensure(n, o.generation !== n.generation) };
}

export async function read(id: string, raw: unknown) {
  const o = parseProps(keyOutputs, raw, KIND);
  const r = await adminFor(o.admin).run(o.vm, `k=${shq(o.path)}; [ -e "$k" ] || exit 44
printf '%s %s\\n' "$(ssh-keygen -y -f "$k" | cut -d' ' -f1,2)" ${shq(o.comment)}
ssh-keygen -l -E sha256 -f "$k" | cut -d' ' -f2`, { user: o.user });
  if (r.exitCode === 44) return { id: "", props: {} };
  if (r.exitCode !== 0) throw new Error(`${KIND} ${o.vm}:${o.path}: cannot read the key: ${r.stderr.toString().trim()}`);
  const [publicKey, fingerprint] = r.stdout.toString().trim().split("\n");
  return { id, props: { ...o, publicKey, fingerprint } };
}

/** Never deletes a key: forgetting it in state is all a destroy does. */
async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
