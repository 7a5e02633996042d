// Implementation of BuilderCheckout (see providers/builderCheckout.ts).
import { z } from "zod";
import { FINGERPRINT_RE, fingerprint } from "../../contracts/fingerprint";
import { commitId } from "../../contracts/gitCommit";
import { runAdmin } from "./admin";
import { DiffResult, hasUnknown, holdsConnection, legacyAdmin, parseProps, ProviderError, sha256, shq, step, withoutAdmin } from "./common";
import { checkPlaced, GONE, inVm, vmIdentity, vmReplaced } from "./inVm";

const KIND = "BuilderCheckout";

export const checkoutInputs = z.object({
  ...legacyAdmin,
  /** The VM. Changing it replaces the resource. */
  vm: z.string().min(1),
  ...vmIdentity,
  /** Absolute directory of the working copy. Changing it replaces the resource. */
  dir: z.string().regex(/^\/[A-Za-z0-9._/-]+$/, "an absolute path (letters, digits, ._/-)")
    .refine((s) => !s.split("/").includes("..") && !s.endsWith("/"), "no '..', no trailing '/'"),
  /** Git URL to fetch from. */
  url: z.string().min(1).refine((s) => !s.startsWith("-") && !/[\s\0]/.test(s), "a git URL (no leading '-', no white space)"),
  /** The pinned commit (40 or 64 hex). */
  commit: commitId,
  /** A signed tag that must point at `commit`; absent: the commit itself must be signed. */
  tag: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9._/-]*$/, "a tag name").refine((s) => !s.includes(".."), "a tag name").optional(),
  /** Primary fingerprints allowed to sign. */
  maintainers: z.array(fingerprint).min(1, "at least one maintainer fingerprint"),
  /** Armored public keys (at least those of the maintainers). */
  keys: z.string(),
  /** Also fetch and check out the submodules the verified commit pins (default false). */
  submodules: z.boolean().default(false),
  /** Who owns the checkout (default `user`). */
  user: z.string().regex(/^[a-z_][a-z0-9_-]*$/).default("user"),
  /** Where this checkout belongs, for messages: `env debian, builder /home/user/artifacts-r4.3, ...`. */
  label: z.string().min(1),
});
export type CheckoutInputs = z.infer<typeof checkoutInputs>;
const checkoutOutputs = checkoutInputs.safeExtend({
  checkedOut: z.string(),
  clean: z.boolean(),
  verifiedBy: z.string(),
  keysSha256: z.string(),
});
type CheckoutOutputs = z.infer<typeof checkoutOutputs>;

/** An error that names where the checkout belongs and says the previous checkout was kept. */
const who = (p: CheckoutInputs) => `${KIND} (${p.label}) ${p.vm}:${p.dir}`;

function refused(p: CheckoutInputs, reason: string, previous: string | null): ProviderError {
  const kept = previous ? `; the previous checkout (${previous}) is left in place` : "; nothing was checked out";
  return new ProviderError(`${KIND} (${p.label}) ${p.vm}:${p.dir}`, "checking out the pin", undefined, `${reason}${kept}`);
}

// Every git call: no hooks, no fsmonitor, verified transfers, no submodule recursion, no prompts.
const GIT = "git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c transfer.fsckObjects=true -c fetch.recurseSubmodules=false -c submodule.recurse=false";
const VERIFY_REF = "refs/qbi/verify/pin";

/**
 * Phase 1, as the owner in the VM (armored keys on stdin): fetch the tag or commit into a
 * quarantine ref of the existing working copy, or of a fresh staging repository next to it, and
 * report the signature status from a fresh GnuPG home. Checks out nothing. Exit codes: 10 remote
 * unreachable, 11 pin or tag missing, 12 keys unusable, 13 the directory is not a checkout.
 */
export function fetchScript(p: CheckoutInputs): string {
  const ref = p.tag ? `refs/tags/${p.tag}` : p.commit;
  const verify = p.tag ? `verify-tag --raw ${VERIFY_REF}` : `verify-commit --raw ${VERIFY_REF}`;
  return `set -u
export GIT_TERMINAL_PROMPT=0 LC_ALL=C
dir=${shq(p.dir)}; url=${shq(p.url)}
gh=$(mktemp -d /tmp/qbi-verify-gnupg.XXXXXX) || exit 3
trap 'rm -rf "$gh"' EXIT
chmod 700 "$gh"
if ! gpg --homedir "$gh" --batch --quiet --import 2>"$gh/import.err"; then
  echo "the maintainer keys cannot be imported: $(head -c 300 "$gh/import.err")" >&2; exit 12
fi
if [ -e "$dir/.git" ]; then
  repo=$dir
  echo "@@REPO existing"
elif [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  echo "$dir exists and is not a git checkout" >&2; exit 13
else
  parent=$(dirname "$dir"); mkdir -p "$parent" || exit 3
  repo=$(mktemp -d "$parent/.qbi-checkout.XXXXXX") || exit 3
  ${GIT} init -q --template= "$repo" >/dev/null || exit 3
  echo "@@REPO staging $repo"
fi
if ! ${GIT} ls-remote -- "$url" HEAD >/dev/null 2>"$gh/ls.err"; then
  echo "cannot reach $url: $(tr '\\n' ' ' < "$gh/ls.err" | head -c 300)" >&2; exit 10
fi
if ! ${GIT} -C "$repo" fetch -q --no-tags --no-write-fetch-head -- "$url" ${shq(`+${ref}:${VERIFY_REF}`)} 2>"$gh/fetch.err"; then
  echo "$url has no ${p.tag ? `tag ${p.tag}` : `commit ${p.commit}`}: $(tr '\\n' ' ' < "$gh/fetch.err" | head -c 300)" >&2; exit 11
fi
echo "@@TYPE $(${GIT} -C "$repo" cat-file -t ${VERIFY_REF})"
${p.tag ? `echo "@@TAGHEADER"; ${GIT} -C "$repo" cat-file tag ${VERIFY_REF} | sed -n '1,/^$/p' | grep -E '^(object|type|tag) '` : "true"}
echo "@@TARGET $(${GIT} -C "$repo" rev-parse --verify -q '${VERIFY_REF}^{commit}')"
GNUPGHOME="$gh" ${GIT} -C "$repo" -c gpg.program=gpg -c gpg.format=openpgp ${verify} >/dev/null 2>"$gh/verify.out"
echo "@@VERIFY-EXIT $?"
echo "@@STATUS"
grep -a '^\\[GNUPG:\\] ' "$gh/verify.out" || true
exit 0
`;
}

/** What phase 1 reported. */
export interface FetchReport {
  repo: { existing: true } | { existing: false; staging: string };
  type: string;
  tagHeader: Record<string, string>;
  target: string;
  status: string[];
  verifyExit: number;
}

export function parseFetchReport(stdout: string): FetchReport {
  const lines = stdout.split("\n");
  const report: FetchReport = { repo: { existing: true }, type: "", tagHeader: {}, target: "", status: [], verifyExit: -1 };
  let section = "";
  for (const line of lines) {
    if (line.startsWith("@@REPO ")) {
      const [, kind, staging] = line.split(" ");
      report.repo = kind === "staging" ? { existing: false, staging } : { existing: true };
    } else if (line.startsWith("@@TYPE ")) report.type = line.slice(7).trim();
    else if (line === "@@TAGHEADER") section = "tag";
    else if (line.startsWith("@@TARGET")) report.target = line.slice(8).trim();
    else if (line === "@@STATUS") section = "status";
    else if (line.startsWith("@@VERIFY-EXIT ")) report.verifyExit = Number(line.slice(14).trim());
    else if (section === "tag" && /^(object|type|tag) /.test(line)) {
      const i = line.indexOf(" ");
      report.tagHeader[line.slice(0, i)] = line.slice(i + 1);
    } else if (section === "status" && line.startsWith("[GNUPG:] ")) report.status.push(line);
  }
  return report;
}

/** Status keywords that refuse whatever else was said. */
const FATAL = ["BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY", "KEYREVOKED", "KEYEXPIRED", "SIGEXPIRED"];

/**
 * Decides whether the fetched object may be checked out: the signed object is the configured tag
 * (or the pinned commit), points at the pin, carries exactly one good and valid signature, whose
 * primary key is an allowed maintainer, and nothing refusing was reported. Returns the signer's
 * primary fingerprint; throws the reason otherwise.
 */
export function judge(p: Pick<CheckoutInputs, "commit" | "tag" | "maintainers">, r: FetchReport): string {
  const what = p.tag ? `tag ${p.tag}` : `commit ${p.commit}`;
  if (p.tag) {
    if (r.type !== "tag") throw new Error(`${p.tag} is a lightweight tag (a ${r.type || "missing"} object), not a signed tag`);
    if (r.tagHeader.tag !== p.tag) {
      throw new Error(`the tag object under ${p.tag} names itself ${JSON.stringify(r.tagHeader.tag ?? "")}: a signed tag moved to another name`);
    }
    if (r.tagHeader.type !== "commit") throw new Error(`tag ${p.tag} points at a ${r.tagHeader.type}, not a commit`);
    if (r.target !== p.commit) throw new Error(`tag ${p.tag} points at ${r.target || "nothing"}, not at the pinned commit ${p.commit}`);
  } else if (r.type !== "commit" || r.target !== p.commit) {
    throw new Error(`commit ${p.commit} was not fetched`);
  }
  const kw = (l: string) => l.split(" ")[1];
  const fatal = [...new Set(r.status.map(kw).filter((k) => FATAL.includes(k)))];
  const reasons: Record<string, string> = {
    NO_PUBKEY: "signed by a key that is not in the maintainer keys", ERRSIG: "its signature cannot be checked",
    BADSIG: "its signature is bad", EXPKEYSIG: "signed by an expired key", KEYEXPIRED: "signed by an expired key",
    REVKEYSIG: "signed by a revoked key", KEYREVOKED: "signed by a revoked key", EXPSIG: "its signature expired", SIGEXPIRED: "its signature expired",
  };
  // gpg reports a missing key as ERRSIG and NO_PUBKEY: the second says why.
  const said = fatal.filter((k) => !(k === "ERRSIG" && fatal.includes("NO_PUBKEY"))).map((k) => reasons[k]);
  if (fatal.length) throw new Error(`${what}: ${[...new Set(said)].join("; ")} (${fatal.join(", ")})`);
  const good = r.status.filter((l) => kw(l) === "GOODSIG");
  const valid = r.status.filter((l) => kw(l) === "VALIDSIG");
  if (good.length === 0 && valid.length === 0) throw new Error(`${what} is not signed`);
  if (good.length !== 1 || valid.length !== 1) {
    throw new Error(`${what} must carry exactly one good signature (found ${good.length} good, ${valid.length} valid)`);
  }
  const f = valid[0].split(" ");
  const primary = (f[11] ?? "").toUpperCase();
  if (!FINGERPRINT_RE.test(primary)) throw new Error(`${what}: the signer's primary fingerprint is not a v4 fingerprint`);
  if (!p.maintainers.includes(primary)) throw new Error(`${what} is signed by ${primary}, which is not an allowed maintainer (${p.maintainers.join(", ")})`);
  if (r.verifyExit !== 0) throw new Error(`${what}: git refused the signature (exit ${r.verifyExit})`);
  return primary;
}

/**
 * Phase 2, only after `judge` accepted: check the pinned commit out (in place in an existing
 * working copy, discarding changes to tracked files and keeping untracked ones; or in the staging
 * repository, then moved into place), then the submodules the verified tree pins.
 */
export function checkoutScript(p: CheckoutInputs, r: FetchReport): string {
  const staging = r.repo.existing ? "" : r.repo.staging;
  return `set -eu
export GIT_TERMINAL_PROMPT=0 LC_ALL=C
dir=${shq(p.dir)}; url=${shq(p.url)}; staging=${shq(staging)}
repo=\${staging:-$dir}
fail() { [ -z "$staging" ] || rm -rf -- "$staging"; echo "$1" >&2; exit 5; }
${GIT} -C "$repo" config remote.origin.url "$url" || fail "cannot record the remote"
${GIT} -C "$repo" config core.hooksPath /dev/null
prev=$(${GIT} -C "$repo" rev-parse --verify -q HEAD || true)
${GIT} -C "$repo" checkout -q --force --detach ${p.commit} || fail "checkout of ${p.commit} failed"
${GIT} -C "$repo" update-ref -d ${VERIFY_REF} || true
${p.submodules ? `if ! ${GIT} -C "$repo" -c protocol.file.allow=always submodule update --init --recursive --checkout -q; then
  # In place: back to the previous commit, so that nothing half-updated is left behind.
  [ -n "$staging" ] || [ -z "$prev" ] || {
    ${GIT} -C "$repo" checkout -q --force --detach "$prev"; ${GIT} -C "$repo" submodule update -q --recursive --checkout || true
  }
  fail "the submodules pinned by ${p.commit} cannot be fetched"
fi` : "true"}
if [ -n "$staging" ]; then
  if [ -d "$dir" ]; then rmdir -- "$dir" || fail "$dir appeared meanwhile"; fi
  mv -T -- "$staging" "$dir" || fail "cannot move the checkout into place"
fi
${GIT} -C "$dir" rev-parse HEAD
`;
}

/** What is checked out now: commit and cleanliness, or null when there is no checkout. */
async function inspect(p: CheckoutInputs): Promise<{ commit: string; clean: boolean } | null> {
  const r = await step(who(p), "reading the checkout", () => runAdmin(p.admin).run(p.vm, `[ -e ${shq(p.dir)}/.git ] || exit 44
c=$(${GIT} -C ${shq(p.dir)} rev-parse --verify -q HEAD) || exit 44
changed=$(${GIT} -C ${shq(p.dir)} status --porcelain --untracked-files=no --ignore-submodules=none)
if [ -z "$changed" ]; then echo "$c clean"; else echo "$c dirty"; fi`, { user: p.user }));
  if (r.exitCode === 44) return null;
  if (r.exitCode !== 0) {
    throw new ProviderError(who(p), "reading the checkout", undefined, `git failed (exit ${r.exitCode}): ${r.stderr.toString().trim() || "no message"}`);
  }
  const [commit, state] = r.stdout.toString().trim().split(" ");
  return { commit, clean: state === "clean" };
}

async function apply(p: CheckoutInputs): Promise<CheckoutOutputs> {
  const admin = runAdmin(p.admin);
  const before = await inspect(p);
  const previous = before ? `commit ${before.commit}` : null;
  const f = await step(who(p), "fetching the pin", () => admin.run(p.vm, fetchScript(p), { user: p.user, input: p.keys }));
  const report = parseFetchReport(f.stdout.toString());
  const cleanup = async () => {
    const repo = report.repo;
    if (!repo.existing) await step(who(p), "removing the staging clone", () => admin.run(p.vm, `rm -rf -- ${shq(repo.staging)}`, { user: p.user }));
  };
  if (f.exitCode !== 0) {
    await cleanup();
    throw refused(p, f.stderr.toString().trim() || `fetch failed (exit ${f.exitCode})`, previous);
  }
  let signer: string;
  try {
    signer = judge(p, report);
  } catch (e) {
    await cleanup();
    throw refused(p, (e as Error).message, previous);
  }
  const c = await step(who(p), "checking out the pin", () => admin.run(p.vm, checkoutScript(p, report), { user: p.user }));
  if (c.exitCode !== 0) throw refused(p, c.stderr.toString().trim() || `checkout failed (exit ${c.exitCode})`, previous);
  const now = await inspect(p);
  if (!now || now.commit !== p.commit) throw refused(p, `after checkout HEAD is ${now?.commit ?? "missing"}, not ${p.commit}`, null);
  return { ...withoutAdmin(p), checkedOut: now.commit, clean: now.clean, verifiedBy: signer, keysSha256: sha256(p.keys) };
}

export async function check(_olds: unknown, news: unknown) {
  return checkPlaced(checkoutInputs, news);
}

export async function create(inputs: unknown) {
  const p = parseProps(checkoutInputs, inputs, KIND);
  return { id: `${p.vm}:${p.dir}`, outs: await apply(p) };
}

/** Checks out again only when the pin, the keys or what is in the VM changed; bookkeeping costs no call. */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(checkoutOutputs, oldsRaw, KIND);
  const n = parseProps(checkoutInputs, newsRaw, KIND);
  if (!checkoutChanged(o, n)) {
    return { outs: { ...withoutAdmin(n), checkedOut: o.checkedOut, clean: o.clean, verifiedBy: o.verifiedBy, keysSha256: o.keysSha256 } };
  }
  return { outs: await apply(n) };
}

function checkoutChanged(o: CheckoutOutputs, n: CheckoutInputs): boolean {
  return o.url !== n.url || o.commit !== n.commit || o.tag !== n.tag || o.submodules !== n.submodules || o.user !== n.user
    || o.maintainers.join(",") !== n.maintainers.join(",") || o.keysSha256 !== sha256(n.keys)
    // What refresh found in the VM: another commit, or modified tracked files.
    || o.checkedOut !== n.commit || !o.clean;
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(checkoutOutputs, oldsRaw, KIND);
  const moved = vmReplaced(o, newsRaw);
  if (moved) return moved;
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(checkoutInputs, newsRaw, KIND);
  const replaces = (["vm", "dir"] as const).filter((k) => o[k] !== n[k]);
  if (replaces.length) return { changes: true, replaces };
  return { changes: checkoutChanged(o, n) || o.label !== n.label || o.vmUuid !== n.vmUuid || holdsConnection(oldsRaw) };
}

/** The checkout as it is now: its commit and cleanliness; gone when the directory is no checkout. */
export async function read(id: string, raw: unknown) {
  const o = parseProps(checkoutOutputs, raw, KIND);
  const now = await inVm(runAdmin(o.admin), o, () => inspect(o));
  if (now === GONE || !now) return { id: "", props: {} };
  return { id, props: { ...o, checkedOut: now.commit, clean: now.clean } };
}

/** The working copy may hold builds and nested checkouts: it is never removed by Pulumi. */
async function delete_(): Promise<void> {
  return;
}
export { delete_ as delete };
