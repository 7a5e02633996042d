// Implementation of LogsRepository (see providers/logsRepository.ts).
import { z } from "zod";
import { fingerprint } from "../../contracts/fingerprint";
import { runAdmin } from "./admin";
import { checkWith, DiffResult, hasUnknown, holdsConnection, legacyAdmin, parseProps, ProviderError, shq as q, step, withoutAdmin } from "./common";
import { GONE, inVm, vmIdentity, vmReplaced } from "./inVm";

const KIND = "LogsRepository";

export const repoInputs = z.object({
  ...legacyAdmin,
  /** The logs VM. */
  vm: z.string().min(1),
  ...vmIdentity,
  /** Working copy path in the VM. */
  dir: z.string().regex(/^\/home\/user\/[A-Za-z0-9._/-]+$/, "a path under /home/user"),
  /** Git URL of the remote (ssh in production, file:// in qubes-sim). */
  remote: z.string().min(1).refine((s) => !s.startsWith("-"), "must not start with '-'"),
  /** The branch the logs are pushed to. */
  branch: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*$/),
  /** Fingerprint of the logs key: signs commits, and must have signed the remote head. */
  signingKey: fingerprint,
  /**
   * Logs keys the site used before (fingerprint → armored public key): a remote head signed by one
   * of them is taken over (the operator's decision, in the stack config), and a handover commit
   * signed by `signingKey` is pushed on top. Without it, a head signed by any other key fails the
   * update with the command that sets it.
   */
  previousKeys: z.record(fingerprint, z.string().includes("BEGIN PGP PUBLIC KEY BLOCK", { message: "an armored OpenPGP public key" })).default({}),
  /** The commit author's name (the bot identity), set in the repository. */
  authorName: z.string().min(1),
  /** The commit author's email, set in the repository. */
  authorEmail: z.string().min(3),
});
/** Inputs and outputs: the head found or made (absent before create). */
const props = repoInputs.extend({ head: z.string().optional() });
type Props = z.infer<typeof props>;

/** Exit status of the setup script when the remote head is signed by no key it may trust. */
export const UNTRUSTED_HEAD_EXIT = 4;

/**
 * The setup script, run as `user` in the logs VM. Idempotent: an existing clone of the same remote
 * is only re-verified and re-configured. Prints the head commit on its last line. Every git and
 * gpg failure stops it (set -e) with git's own message on stderr.
 */
export function setupScript(p: Props): string {
  const prev = Object.keys(p.previousKeys);
  const imports = Object.entries(p.previousKeys).map(([fpr, key]) => [
    `printf '%s\\n' ${q(key)} | gpg --batch --quiet --import`,
    `gpg --batch --with-colons --fingerprint ${fpr} | grep -q '^fpr:::::::::${fpr}:' || { echo "previousKeys: the public key given for ${fpr} has another fingerprint" >&2; exit 6; }`,
  ].join("\n")).join("\n");
  return `set -eu
export GIT_TERMINAL_PROMPT=0
dir=${q(p.dir)}; remote=${q(p.remote)}; branch=${q(p.branch)}; key=${q(p.signingKey)}; previous=${q(prev.join(" "))}
${imports}
configure() {
  git -C "$dir" config user.name ${q(p.authorName)}
  git -C "$dir" config user.email ${q(p.authorEmail)}
  git -C "$dir" config user.signingkey "$key"
  git -C "$dir" config commit.gpgsign true
}
# The fingerprint of the key that made a good signature on $1, or nothing.
signer() {
  st=$(git -C "$dir" log -1 --format='%G?' "$1")
  case "$st" in G|U) git -C "$dir" log -1 --format='%GF %GP' "$1" ;; *) echo "" ;; esac
}
if [ -d "$dir/.git" ]; then
  have=$(git -C "$dir" remote get-url origin)
  [ "$have" = "$remote" ] || { echo "working copy $dir tracks $have, not $remote: move it away (mv $dir $dir.old) or set the site's logs repository to $have" >&2; exit 3; }
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
  fp=" $(signer FETCH_HEAD) "
  handover=""
  case "$fp" in
    *" $key "*) ;;
    *)
      for old in $previous; do case "$fp" in *" $old "*) handover=$old ;; esac; done
      if [ -z "$handover" ]; then
        got=$(git -C "$dir" log -1 --format='%G? %GK' FETCH_HEAD)
        echo "the head of $remote $branch is not signed by the logs key $key (signature status and key: \${got:-none}): refusing to check it out." >&2
        echo "If that head is signed by this site's previous logs key, take it over on purpose: pulumi config set --path 'qubes-build-infra:logs.previousKeys.<FINGERPRINT>' -- \\"\\$(gpg --armor --export <FINGERPRINT>)\\" (where that public key is), then pulumi up" >&2
        rm -rf "$dir"; exit ${UNTRUSTED_HEAD_EXIT}
      fi ;;
  esac
  git -C "$dir" checkout -q -B "$branch" FETCH_HEAD
  git -C "$dir" branch -q --set-upstream-to="origin/$branch"
  if [ -n "$handover" ]; then
    git -C "$dir" commit -q --allow-empty -m "Logs key handover: $handover to $key"
    git -C "$dir" push -q origin "$branch"
  fi
}
if git -C "$dir" ls-remote --exit-code origin "refs/heads/$branch" >/dev/null; then
  adopt
else
  rc=$?
  [ "$rc" = 2 ] || { echo "cannot read $remote (git ls-remote exit $rc)" >&2; exit 5; }
  printf 'Build logs of a Qubes OS build site, each commit signed by %s.\\n' "$key" > "$dir/README.md"
  git -C "$dir" add README.md
  git -C "$dir" commit -q -m "Start of the build logs"
  # Another logs VM of the site may have started the same remote meanwhile: then adopt its head.
  if ! err=$(git -C "$dir" push -q origin "$branch" 2>&1); then
    git -C "$dir" ls-remote --exit-code origin "refs/heads/$branch" >/dev/null || { echo "cannot push to $remote: $err" >&2; exit 5; }
    adopt
  fi
fi
git -C "$dir" rev-parse HEAD
`;
}

const who = (p: { vm: string; dir: string }) => `${KIND} in ${p.vm} (${p.dir})`;

async function apply(p: Props): Promise<string> {
  const r = await step(who(p), "setting up the verified clone", () => runAdmin(p.admin).run(p.vm, setupScript(p), { user: "user" }));
  if (r.exitCode !== 0) throw new ProviderError(who(p), "setting up the verified clone", undefined, r.stderr.toString().trim() || `exit ${r.exitCode}`);
  const lines = r.stdout.toString().trim().split("\n");
  return lines[lines.length - 1];
}

export async function check(_olds: unknown, news: unknown) {
  return checkWith(props, news, (p) => withoutAdmin(p));
}

/** Idempotent: a create after an interrupted one finds the clone and re-verifies it. */
export async function create(inputs: unknown) {
  const p = parseProps(props, inputs, KIND);
  const head = await apply(p);
  return { id: `${p.vm}:${p.dir}`, outs: { ...withoutAdmin(p), head } };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(props, oldsRaw, KIND);
  const moved = vmReplaced(o, newsRaw);
  if (moved) return moved;
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(props, newsRaw, KIND);
  const replaces = (["vm", "dir", "remote", "branch"] as const).filter((k) => o[k] !== n[k]);
  const changes = replaces.length > 0 || (["signingKey", "authorName", "authorEmail", "vmUuid"] as const).some((k) => o[k] !== n[k]) ||
    JSON.stringify(o.previousKeys) !== JSON.stringify(n.previousKeys) || holdsConnection(oldsRaw);
  return { changes, replaces, deleteBeforeReplace: true };
}

export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(props, oldsRaw, KIND);
  const p = parseProps(props, newsRaw, KIND);
  const same = (["signingKey", "authorName", "authorEmail"] as const).every((k) => o[k] === p[k]);
  if (same && o.head !== undefined) return { outs: { ...withoutAdmin(p), head: o.head } };
  return { outs: { ...withoutAdmin(p), head: await apply(p) } };
}

/** Gone when the VM is gone or holds no clone of the remote there. */
export async function read(id: string, raw: unknown) {
  const p = parseProps(props, raw, KIND);
  const admin = runAdmin(p.admin);
  const script = `if [ -d ${q(p.dir)}/.git ]; then git -C ${q(p.dir)} remote get-url origin; else echo; fi`;
  const got = await inVm(admin, p, () => step(who(p), "reading the clone's remote", () => admin.run(p.vm, script, { user: "user" })));
  if (got === GONE) return { id: "", props: {} };
  if (got.exitCode !== 0) throw new ProviderError(who(p), "reading the clone's remote", undefined, got.stderr.toString().trim() || `exit ${got.exitCode}`);
  if (got.stdout.toString().trim() !== p.remote) return { id: "", props: {} };
  return { id, props: p };
}

/** The working copy may hold unpushed logs: it is never removed by Pulumi. */
export async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
