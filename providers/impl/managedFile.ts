// Implementation of ManagedFile (see providers/managedFile.ts).
import { z } from "zod";
import { runAdmin } from "./admin";
import { blockMarkers, normalizeInner } from "./blocks";
import { DiffResult, hasUnknown, holdsConnection, legacyAdmin, parseProps, ProviderError, sha256, shq, step, withoutAdmin } from "./common";
import { dropBlock, readBlock, readBytes, removeSymlink, removeWhole, writeBlock, writeSymlink, writeWhole } from "./files";
import { checkPlaced, externalVms, GONE, inVm, vmIdentity, vmReplaced } from "./inVm";
import type { QubesAdmin } from "../../admin/api";
import { vmFileKey } from "../../contracts/vmFileKey";
import { claimedByVmFiles } from "./manifest";
import { contentFields, loadContent, oneContent, wantedSha256 } from "./source";

const KIND = "ManagedFile";

const fileBase = z.object({
  ...legacyAdmin,
  /** The VM holding the file. Changing it replaces the resource. */
  vm: z.string().min(1),
  ...vmIdentity,
  ...externalVms,
  /** Absolute path in the VM. Changing it replaces the resource. */
  path: z.string().regex(/^\/[^\0]*[^/]$/, "an absolute file path"),
  // content: the whole file (kind `file`), the block's text (kind `block`, inline only) or the link's target (kind `symlink`).
  ...contentFields,
  /** File mode (default 0o644); for a block, the mode of the whole file. */
  mode: z.number().int().min(0).max(0o7777).default(0o644),
  /** Owner (default `root`, or `user`). */
  owner: z.string().regex(/^[a-z_][a-z0-9_-]*$/, "a user name").default("root"),
  /** `file` (default): the whole file; `block`: one marked block of it; `symlink`: a symbolic link to `content`. */
  kind: z.enum(["file", "block", "symlink"]).default("file"),
  /** Name of the block in its markers (kind `block`; default `main`). */
  blockId: z.string().default("main").refine((s) => {
    try {
      blockMarkers(s);
      return true;
    } catch {
      return false;
    }
  }, "letters, digits and ._:@/- only"),
});
export const fileInputs = fileBase.superRefine((p, ctx) => {
  oneContent(p, ctx);
  if (p.kind !== "file" && p.contentFile !== undefined) {
    ctx.addIssue({ code: "custom", path: ["contentFile"], message: `a ${p.kind} takes inline content only` });
  }
  if (p.kind === "symlink" && !/^\/[A-Za-z0-9._/-]+$/.test(p.content ?? "")) {
    ctx.addIssue({ code: "custom", path: ["content"], message: "a symlink's target: an absolute path" });
  }
});
type FileInputs = z.infer<typeof fileInputs>;

/**
 * Outputs hold inline content as applied (the engine keeps a secret input's output secret, so the
 * policy pack can see that the webhook secret is one), a referenced file's reference, and the
 * hash, which refresh compares.
 */
const fileOutputs = fileBase.safeExtend({ sha256: z.string() });
type FileOutputs = z.infer<typeof fileOutputs>;

const who = (p: { kind: string; blockId: string }) =>
  (p.kind === "block" ? `${KIND} (block ${p.blockId})` : p.kind === "symlink" ? `${KIND} (symlink)` : KIND);

/** A symlink's target, or null when `path` is no symlink. */
async function readLink(admin: QubesAdmin, p: { vm: string; path: string }): Promise<string | null> {
  const r = await step(`${KIND} (symlink) ${p.vm}:${p.path}`, "reading", () =>
    admin.run(p.vm, `[ -L ${shq(p.path)} ] || exit 44; readlink -- ${shq(p.path)}`, { user: "root" }));
  if (r.exitCode === 44) return null;
  if (r.exitCode !== 0) throw new ProviderError(`${KIND} (symlink) ${p.vm}:${p.path}`, "reading", new Error(r.stderr.toString().trim() || `exit ${r.exitCode}`));
  return r.stdout.toString().replace(/\n$/, "");
}
/** The hash of what is managed: the whole file, or the block's inner text as written. */
const digest = (p: FileInputs) => (p.kind === "block" ? sha256(normalizeInner(p.content ?? "")) : wantedSha256(p));

export async function check(_olds: unknown, news: unknown) {
  return checkPlaced(fileInputs, news);
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(fileOutputs, oldsRaw, KIND);
  const moved = vmReplaced(o, newsRaw);
  if (moved) return moved;
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(fileInputs, newsRaw, KIND);
  const replaces = (["vm", "path", "kind", "blockId"] as const).filter((k) => o[k] !== n[k]);
  if (replaces.length > 0) return { changes: true, replaces, deleteBeforeReplace: true };
  // Outputs that do not record the content the way the inputs give it (inline text recorded, a
  // reference not holding the text) are brought in line once, by an update.
  const unrecorded = (n.content !== undefined) !== (o.content !== undefined);
  return { changes: unrecorded || o.sha256 !== digest(n) || o.mode !== n.mode || o.owner !== n.owner || o.vmUuid !== n.vmUuid || holdsConnection(oldsRaw) };
}

async function apply(p: FileInputs): Promise<FileOutputs> {
  const admin = runAdmin(p.admin);
  const q = withoutAdmin(p);
  if (p.kind === "symlink") {
    await writeSymlink(admin, who(p), p, p.content ?? "");
    return { ...q, sha256: digest(p) };
  }
  if (p.kind === "block") {
    await writeBlock(admin, who(p), p, p.blockId, p.content ?? "");
    return { ...q, sha256: digest(p) };
  }
  const text = loadContent(`${who(p)} ${p.vm}:${p.path}`, p);
  await writeWhole(admin, who(p), p, text);
  return { ...q, sha256: sha256(text) };
}

/** Writing is idempotent (whole file atomically, or one marked block): a create after an interrupted one just writes again. */
export async function create(inputs: unknown) {
  const p = parseProps(fileInputs, inputs, KIND);
  return { id: p.kind === "block" ? `${p.vm}:${p.path}#${p.blockId}` : `${p.vm}:${p.path}`, outs: await apply(p) };
}

/** Writes only when what is in the VM must change; bookkeeping changes (vmUuid, old outputs) cost no Admin call. */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(fileOutputs, oldsRaw, KIND);
  const n = parseProps(fileInputs, newsRaw, KIND);
  const same = o.sha256 === digest(n) && o.mode === n.mode && o.owner === n.owner && (o.content !== undefined) === (n.content !== undefined);
  if (same) return { outs: { ...withoutAdmin(n), sha256: o.sha256 } };
  return { outs: await apply(n) };
}

/**
 * The hash of what is in the VM now (the content itself is not returned: it may be secret). A
 * changed hash is drift: the next `up` writes the content again. A missing file (or block), or a
 * VM that is gone, means the resource is gone, and the next `up` creates it.
 */
export async function read(id: string, raw: unknown) {
  const o = parseProps(fileOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  const now = await inVm(admin, o, () =>
    (o.kind === "symlink" ? readLink(admin, o) : o.kind === "block" ? readBlock(admin, who(o), o, o.blockId) : readBytes(admin, who(o), o)) as Promise<string | Buffer | null>);
  if (now === null || now === GONE) return { id: "", props: {} };
  return { id, props: { ...o, sha256: sha256(now) } };
}

async function delete_(_id: string, raw: unknown): Promise<void> {
  const o = parseProps(fileOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  await inVm(admin, o, async () => {
    // Taken over by the VM's VmFiles (the move from one resource per file): it stays.
    if (await claimedByVmFiles(admin, who(o), o.vm, vmFileKey(o.path, o.kind === "block" ? o.blockId : undefined))) return;
    if (o.kind === "block") await dropBlock(admin, who(o), o, o.blockId);
    else if (o.kind === "symlink") {
      await removeSymlink(admin, who(o), o);
    } else await removeWhole(admin, who(o), o);
  });
}
export { delete_ as delete };
