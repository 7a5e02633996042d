// Implementation of LogsRepository (see providers/logsRepository.ts).
import { z } from "zod";
import { adminConnection, adminFor } from "./admin";
import { checkWith, hasUnknown } from "./common";

const props = z.object({
  admin: adminConnection,
  vm: z.string(),
  dir: z.string().regex(/^\/home\/user\/[A-Za-z0-9._/-]+$/, "a path under /home/user"),
  remote: z.string().min(1).refine((s) => !s.startsWith("-"), "must not start with '-'"),
  branch: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*$/),
  signingKey: z.string().regex(/^[0-9A-F]{40}$/, "a 40-hex fingerprint"),
  authorName: z.string().min(1),
  authorEmail: z.string().min(3),
  head: z.string().optional(),
});
type Props = z.infer<typeof props>;

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The setup script, run as `user` in the logs VM. Idempotent: an existing clone of the same remote
 * is only re-verified and re-configured. Prints the head commit on its last line.
 */
export function setupScript(p: Props): string {
  const d = q(p.dir);
  return `set -eu
export GIT_TERMINAL_PROMPT=0
dir=${d}; remote=${q(p.remote)}; branch=${q(p.branch)}; key=${q(p.signingKey)}
configure() {
  git -C "$dir" config user.name ${q(p.authorName)}
  git -C "$dir" config user.email ${q(p.authorEmail)}
  git -C "$dir" config user.signingkey "$key"
  git -C "$dir" config commit.gpgsign true
}
signer_ok() {
  # The fingerprint of the key that made a good signature on $1 must be the logs key.
  st=$(git -C "$dir" log -1 --format='%G?' "$1")
  fp=$(git -C "$dir" log -1 --format='%GF %GP' "$1")
  case "$st" in G|U) ;; *) return 1 ;; esac
  case " $fp " in *" $key "*) return 0 ;; *) return 1 ;; esac
}
if [ -d "$dir/.git" ]; then
  have=$(git -C "$dir" remote get-url origin)
  [ "$have" = "$remote" ] || { echo "working copy $dir tracks $have, not $remote" >&2; exit 3; }
  configure
  git -C "$dir" rev-parse HEAD
  exit 0
fi
mkdir -p "$dir"
git -C "$dir" init -q -b "$branch"
git -C "$dir" remote add origin "$remote"
configure
adopt() {
  git -C "$dir" fetch -q origin "$branch"
  if ! signer_ok FETCH_HEAD; then
    echo "the head of $remote $branch is not signed by the logs key $key: refusing to check it out" >&2
    rm -rf "$dir"; exit 4
  fi
  git -C "$dir" checkout -q -B "$branch" FETCH_HEAD
  git -C "$dir" branch -q --set-upstream-to="origin/$branch" 2>/dev/null || true
}
if git -C "$dir" ls-remote --exit-code origin "refs/heads/$branch" >/dev/null 2>&1; then
  adopt
else
  printf 'Build logs of a Qubes OS build site, each commit signed by %s.\\n' "$key" > "$dir/README.md"
  git -C "$dir" add README.md
  git -C "$dir" commit -q -m "Start of the build logs"
  # Another logs VM of the site may have started the same remote meanwhile: then adopt its head.
  if ! git -C "$dir" push -q origin "$branch" 2>/dev/null; then
    git -C "$dir" ls-remote --exit-code origin "refs/heads/$branch" >/dev/null 2>&1 || { echo "cannot push to $remote" >&2; exit 5; }
    adopt
  fi
fi
git -C "$dir" rev-parse HEAD
`;
}

async function apply(p: Props): Promise<string> {
  const r = await adminFor(p.admin).run(p.vm, setupScript(p), { user: "user" });
  if (r.exitCode !== 0) {
    throw new Error(`LogsRepository in ${p.vm} (${p.dir}): ${r.stderr.toString().trim() || `exit ${r.exitCode}`}`);
  }
  const lines = r.stdout.toString().trim().split("\n");
  return lines[lines.length - 1];
}

export async function check(_olds: unknown, news: unknown) {
  return checkWith(props, news);
}

export async function create(inputs: unknown) {
  const p = props.parse(inputs);
  const head = await apply(p);
  return { id: `${p.vm}:${p.dir}`, outs: { ...p, head } };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  if (hasUnknown(newsRaw)) return { changes: true };
  const o = props.parse(oldsRaw);
  const n = props.parse(newsRaw);
  const replaces = (["vm", "dir", "remote", "branch"] as const).filter((k) => o[k] !== n[k]);
  const changes = replaces.length > 0 || (["signingKey", "authorName", "authorEmail"] as const).some((k) => o[k] !== n[k]);
  return { changes, replaces, deleteBeforeReplace: true };
}

export async function update(_id: string, _olds: unknown, newsRaw: unknown) {
  const p = props.parse(newsRaw);
  return { outs: { ...p, head: await apply(p) } };
}

export async function read(id: string, raw: unknown) {
  const p = props.parse(raw);
  const r = await adminFor(p.admin).run(p.vm, `git -C ${q(p.dir)} remote get-url origin 2>/dev/null`, { user: "user" });
  if (r.exitCode !== 0 || r.stdout.toString().trim() !== p.remote) return { id: "", props: {} };
  return { id, props: p };
}

/** The working copy may hold unpushed logs: it is never removed by Pulumi. */
export async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
