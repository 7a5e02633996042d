// Implementation of VmFiles (see providers/vmFiles.ts).
import { z } from "zod";
import { parseVmFileKey } from "../../contracts/vmFileKey";
import type { QubesAdmin } from "../../admin/api";
import { runAdmin } from "./admin";
import { blockMarkers, findBlock, normalizeInner } from "./blocks";
import { DiffResult, hasUnknown, parseProps, ProviderError, sha256, shq, step } from "./common";
import { dropBlock, removeSymlink, removeWhole, writeBlock, writeSymlink, writeWhole } from "./files";
import { MANIFEST } from "./manifest";
import { checkPlaced, externalVms, GONE, inVm, vmIdentity, vmReplaced } from "./inVm";
import { RPC_DIR } from "./rpcService";
import { contentFields, contentProblem, loadContent, wantedSha256 } from "./source";

const KIND = "VmFiles";



const owner = z.string().regex(/^[a-z_][a-z0-9_-]*$/, "a user name");
const mode = (dflt: number) => z.number().int().min(0).max(0o7777).default(dflt);

const fileEntry = z.object({
  // content: the whole file (kind `file`), the block's text (kind `block`, inline only) or the link's target (kind `symlink`).
  ...contentFields,
  /** File mode (default 0o644); for a block, the mode of the whole file. */
  mode: mode(0o644),
  /** Owner (default `root`). */
  owner: owner.default("root"),
  /** `file` (default): the whole file; `block`: the marked block named after `#` in the key; `symlink`: a link to `content`. */
  kind: z.enum(["file", "block", "symlink"]).default("file"),
});
const serviceEntry = z.object({
  // content: the service program.
  ...contentFields,
  /** File mode (default 0o755). */
  mode: mode(0o755),
});
type FileEntry = z.infer<typeof fileEntry>;
type ServiceEntry = z.infer<typeof serviceEntry>;

const base = z.object({
  /** The VM holding the files. Changing it replaces the resource. */
  vm: z.string().min(1),
  ...vmIdentity,
  ...externalVms,
  /**
   * The files, by key: an absolute path (kind `file` or `symlink`), or `path#blockId` for a marked
   * block of a file shared with others (kind `block`). Default: none.
   */
  files: z.record(z.string(), fileEntry).default({}),
  /** qrexec service programs, by service name (`name` or `name+argument`), installed in /usr/local/etc/qubes-rpc. Default: none. */
  services: z.record(z.string(), serviceEntry).default({}),
});

const SERVICE_NAME = /^[A-Za-z0-9._-]+(\+[A-Za-z0-9._-]*)?$/;

export const vmFilesInputs = base.superRefine((p, ctx) => {
  for (const [key, f] of Object.entries(p.files)) {
    const at = (field: string) => ["files", key, field];
    const k = parseVmFileKey(key);
    if (!k) {
      ctx.addIssue({ code: "custom", path: ["files", key], message: "a key is an absolute file path, or path#blockId for a block" });
      continue;
    }
    if ((k.blockId !== undefined) !== (f.kind === "block")) {
      ctx.addIssue({ code: "custom", path: at("kind"), message: f.kind === "block" ? "a block's key is path#blockId" : `a ${f.kind}'s key is its path, without #` });
    }
    if (k.blockId !== undefined) {
      try {
        blockMarkers(k.blockId);
      } catch {
        ctx.addIssue({ code: "custom", path: ["files", key], message: "a block id: letters, digits and ._:@/- only" });
      }
    }
    const bad = contentProblem(f);
    if (bad) ctx.addIssue({ code: "custom", path: at(bad.field), message: bad.message });
    if (f.kind !== "file" && f.contentFile !== undefined) ctx.addIssue({ code: "custom", path: at("contentFile"), message: `a ${f.kind} takes inline content only` });
    if (f.kind === "symlink" && !/^\/[A-Za-z0-9._/-]+$/.test(f.content ?? "")) ctx.addIssue({ code: "custom", path: at("content"), message: "a symlink's target: an absolute path" });
  }
  for (const [name, s] of Object.entries(p.services)) {
    if (!SERVICE_NAME.test(name)) {
      ctx.addIssue({ code: "custom", path: ["services", name], message: "a qrexec service name, optionally with +argument (letters, digits, '.', '_', '-')" });
    }
    const bad = contentProblem(s);
    if (bad) ctx.addIssue({ code: "custom", path: ["services", name, bad.field], message: bad.message });
  }
});
type Inputs = z.infer<typeof vmFilesInputs>;

/**
 * Outputs: each entry as applied with the sha256 of what was written (a block: its inner text),
 * which refresh compares. Inline file content is kept (the engine keeps a secret one secret, so
 * the policy pack can see the webhook secret is one); service programs are kept by reference only.
 */
const fileOut = fileEntry.safeExtend({ sha256: z.string() });
const serviceOut = serviceEntry.safeExtend({ sha256: z.string() });
const outputs = base.safeExtend({
  files: z.record(z.string(), fileOut).default({}),
  services: z.record(z.string(), serviceOut).default({}),
});
type Outputs = z.infer<typeof outputs>;
type FileOut = z.infer<typeof fileOut>;
type ServiceOut = z.infer<typeof serviceOut>;

const pathOf = (key: string) => parseVmFileKey(key)?.path ?? key;
const blockOf = (key: string) => parseVmFileKey(key)?.blockId ?? "main";
const servicePath = (name: string) => `${RPC_DIR}/${name}`;
const where = (vm: string, key: string) => `${KIND} ${vm}:${key}`;

/** The hash of what an entry manages: the whole file, a link's target, or a block's inner text as written. */
const fileDigest = (f: FileEntry) => (f.kind === "block" ? sha256(normalizeInner(f.content ?? "")) : wantedSha256(f));

/** What the manifest lists: every key, a service as its path. */
const manifestOf = (p: { files: Record<string, unknown>; services: Record<string, unknown> }) =>
  [...Object.keys(p.files), ...Object.keys(p.services).map(servicePath)].sort();

/** Regular files and blocks first, by key, then links (a link's target may be one of the files). */
function writeOrder(files: Record<string, FileEntry>): string[] {
  return Object.keys(files).sort((a, b) => {
    const la = files[a].kind === "symlink" ? 1 : 0;
    const lb = files[b].kind === "symlink" ? 1 : 0;
    return la - lb || (a < b ? -1 : a > b ? 1 : 0);
  });
}

function sameFile(o: FileOut | undefined, n: FileEntry): boolean {
  return o !== undefined && o.kind === n.kind && o.sha256 === fileDigest(n) && o.mode === n.mode && o.owner === n.owner &&
    (o.content !== undefined) === (n.content !== undefined);
}
const sameService = (o: ServiceOut | undefined, n: ServiceEntry) => o !== undefined && o.sha256 === wantedSha256(n) && o.mode === n.mode;

/** The keys whose entries differ between the recorded outputs and the inputs (added, changed or removed). */
export function changedKeys(o: Pick<Outputs, "files" | "services">, n: Pick<Inputs, "files" | "services">): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(o.files), ...Object.keys(n.files)])) {
    if (!(k in n.files) || !sameFile(o.files[k], n.files[k])) out.push(k);
  }
  for (const s of new Set([...Object.keys(o.services), ...Object.keys(n.services)])) {
    if (!(s in n.services) || !sameService(o.services[s], n.services[s])) out.push(servicePath(s));
  }
  return out;
}

export async function check(_olds: unknown, news: unknown) {
  return checkPlaced(vmFilesInputs, news);
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(outputs, oldsRaw, KIND);
  const moved = vmReplaced(o, newsRaw);
  if (moved) return moved;
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(vmFilesInputs, newsRaw, KIND);
  if (o.vm !== n.vm) return { changes: true, replaces: ["vm"], deleteBeforeReplace: true };
  return { changes: o.vmUuid !== n.vmUuid || changedKeys(o, n).length > 0 };
}

async function writeFileEntry(admin: QubesAdmin, vm: string, key: string, f: FileEntry): Promise<FileOut> {
  const path = pathOf(key);
  const spec = { vm, path, mode: f.mode, owner: f.owner };
  if (f.kind === "symlink") {
    await writeSymlink(admin, KIND, spec, f.content ?? "");
    return { ...f, sha256: fileDigest(f) };
  }
  if (f.kind === "block") {
    await writeBlock(admin, KIND, spec, blockOf(key), f.content ?? "");
    return { ...f, sha256: fileDigest(f) };
  }
  const text = loadContent(where(vm, key), f);
  await writeWhole(admin, KIND, spec, text);
  return { ...f, sha256: sha256(text) };
}

async function writeServiceEntry(admin: QubesAdmin, vm: string, name: string, s: ServiceEntry): Promise<ServiceOut> {
  const text = loadContent(where(vm, servicePath(name)), s);
  await writeWhole(admin, KIND, { vm, path: servicePath(name), mode: s.mode, owner: "root" }, text);
  const { content: _content, ...rest } = s;
  return { ...rest, sha256: sha256(text) };
}

async function removeFileEntry(admin: QubesAdmin, vm: string, key: string, f: FileOut): Promise<void> {
  const path = pathOf(key);
  if (f.kind === "block") await dropBlock(admin, KIND, { vm, path, mode: f.mode, owner: f.owner }, blockOf(key));
  else if (f.kind === "symlink") await removeSymlink(admin, KIND, { vm, path });
  else await removeWhole(admin, KIND, { vm, path });
}

async function writeManifest(admin: QubesAdmin, vm: string, keys: string[]): Promise<void> {
  await writeWhole(admin, KIND, { vm, path: MANIFEST, mode: 0o644, owner: "root" }, keys.map((k) => `${k}\n`).join(""));
}

/**
 * Brings the VM from what `olds` records to `n`: removes entries no longer wanted, writes the
 * changed ones (services, then files in `writeOrder`), then the manifest when the keys changed.
 * A failure stops there; the recorded outputs are still the old ones, so the next `up` retries.
 */
async function converge(o: Pick<Outputs, "files" | "services">, n: Inputs, manifestKnown: boolean): Promise<Outputs> {
  const admin = runAdmin();
  for (const [k, f] of Object.entries(o.files)) if (!(k in n.files)) await removeFileEntry(admin, n.vm, k, f);
  for (const s of Object.keys(o.services)) if (!(s in n.services)) await removeWhole(admin, KIND, { vm: n.vm, path: servicePath(s) });
  const services: Record<string, ServiceOut> = {};
  for (const [name, s] of Object.entries(n.services)) {
    const old = o.services[name];
    services[name] = sameService(old, s) ? { ...(({ content: _c, ...r }) => r)(s), sha256: old!.sha256 } : await writeServiceEntry(admin, n.vm, name, s);
  }
  const files: Record<string, FileOut> = {};
  for (const key of writeOrder(n.files)) {
    const f = n.files[key];
    const old = o.files[key];
    files[key] = sameFile(old, f) ? { ...f, sha256: old!.sha256 } : await writeFileEntry(admin, n.vm, key, f);
  }
  const keys = manifestOf(n);
  if (!manifestKnown || keys.join("\n") !== manifestOf(o).join("\n")) await writeManifest(admin, n.vm, keys);
  return { vm: n.vm, ...(n.vmUuid !== undefined ? { vmUuid: n.vmUuid } : {}), ...(n.configKeys ? { configKeys: n.configKeys } : {}), files, services };
}

/** Every write is idempotent (whole files atomically, one marked block, a link): a create after an interrupted one writes again. */
export async function create(inputs: unknown) {
  const p = parseProps(vmFilesInputs, inputs, KIND);
  return { id: `${p.vm}:files`, outs: await converge({ files: {}, services: {} }, p, false) };
}

/** Writes and removes only the entries that differ from what the outputs record; nothing else is touched. */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(outputs, oldsRaw, KIND);
  const n = parseProps(vmFilesInputs, newsRaw, KIND);
  return { outs: await converge(o, n, true) };
}

/** One line per entry from the script of `read`. */
const READ_LINE = /^(\d+) (absent|file ([0-9a-f]{64}) ([0-7]+)|link ([A-Za-z0-9+/=]*)|text ([0-7]+) ([A-Za-z0-9+/=]*))$/;

/**
 * One command in the VM reporting every entry: a file's sha256 and mode, a link's target, the whole
 * text of a file holding a block (its block is found here). Paths are quoted, never interpreted.
 */
export function readScript(entries: { path: string; how: "file" | "link" | "text" }[]): string {
  const lines = entries.map((e, i) => {
    const p = shq(e.path);
    if (e.how === "link") return `if [ -L ${p} ]; then printf '${i} link %s\\n' "$(readlink -- ${p} | base64 -w0)"; else echo '${i} absent'; fi`;
    const exists = `{ [ -e ${p} ] || [ -L ${p} ]; }`;
    if (e.how === "text") return `if ${exists}; then printf '${i} text %s %s\\n' "$(stat -L -c %a -- ${p})" "$(base64 -w0 < ${p})"; else echo '${i} absent'; fi`;
    return `if ${exists}; then printf '${i} file %s %s\\n' "$(sha256sum < ${p} | cut -c1-64)" "$(stat -L -c %a -- ${p})"; else echo '${i} absent'; fi`;
  });
  return ["set -e", ...lines].join("\n");
}

interface Seen { absent: boolean; sha256?: string; mode?: number; text?: Buffer }

async function observe(admin: QubesAdmin, vm: string, entries: { path: string; how: "file" | "link" | "text" }[]): Promise<Seen[]> {
  if (entries.length === 0) return [];
  const r = await step(`${KIND} ${vm}`, "reading", () => admin.run(vm, readScript(entries), { user: "root" }));
  if (r.exitCode !== 0) throw new ProviderError(`${KIND} ${vm}`, "reading", new Error(r.stderr.toString().trim() || `exit ${r.exitCode}`));
  const seen: (Seen | undefined)[] = entries.map(() => undefined);
  for (const line of r.stdout.toString().split("\n")) {
    if (line === "") continue;
    const m = READ_LINE.exec(line);
    const i = m ? Number(m[1]) : -1;
    if (!m || i >= entries.length || seen[i] !== undefined) throw new ProviderError(`${KIND} ${vm}`, "reading", new Error(`unexpected line from the VM: ${JSON.stringify(line.slice(0, 120))}`));
    if (m[2] === "absent") seen[i] = { absent: true };
    else if (m[3] !== undefined) seen[i] = { absent: false, sha256: m[3], mode: parseInt(m[4], 8) };
    else if (m[5] !== undefined) seen[i] = { absent: false, sha256: sha256(Buffer.from(m[5], "base64").toString("utf8").replace(/\n$/, "")) };
    else seen[i] = { absent: false, mode: parseInt(m[6], 8), text: Buffer.from(m[7], "base64") };
  }
  const missing = seen.findIndex((s) => s === undefined);
  if (missing >= 0) throw new ProviderError(`${KIND} ${vm}`, "reading", new Error(`no report for ${entries[missing].path}`));
  return seen as Seen[];
}

/**
 * What is in the VM now, in one command: each entry's hash (the content itself is not returned: it
 * may be secret) and mode. A changed entry is drift, a missing one is dropped from the outputs:
 * the next `up` writes exactly those. A VM that is gone takes the resource with it.
 */
export async function read(id: string, raw: unknown) {
  const o = parseProps(outputs, raw, KIND);
  const admin = runAdmin();
  const fileKeys = Object.keys(o.files);
  const serviceNames = Object.keys(o.services);
  const entries = [
    ...fileKeys.map((k) => ({ path: pathOf(k), how: (o.files[k].kind === "symlink" ? "link" : o.files[k].kind === "block" ? "text" : "file") as "file" | "link" | "text" })),
    ...serviceNames.map((s) => ({ path: servicePath(s), how: "file" as const })),
  ];
  const seen = await inVm(admin, o, () => observe(admin, o.vm, entries));
  if (seen === GONE) return { id: "", props: {} };
  const files: Record<string, FileOut> = {};
  fileKeys.forEach((k, i) => {
    const s = seen[i];
    const f = o.files[k];
    if (s.absent) return;
    if (f.kind === "block") {
      let inner: string | null;
      try {
        inner = findBlock(s.text!.toString("utf8"), blockOf(k), `${o.vm}:${pathOf(k)}`)?.inner ?? null;
      } catch (e) {
        throw new ProviderError(where(o.vm, k), "reading", e);
      }
      if (inner !== null) files[k] = { ...f, sha256: sha256(inner), mode: s.mode ?? f.mode };
      return;
    }
    files[k] = { ...f, sha256: s.sha256!, mode: f.kind === "symlink" ? f.mode : s.mode ?? f.mode };
  });
  const services: Record<string, ServiceOut> = {};
  serviceNames.forEach((name, j) => {
    const s = seen[fileKeys.length + j];
    if (!s.absent) services[name] = { ...o.services[name], sha256: s.sha256!, mode: s.mode ?? o.services[name].mode };
  });
  return { id, props: { ...o, files, services } };
}

/** Removes every entry (whole files, links, only the blocks) and the manifest; nothing when the VM is gone. */
async function delete_(_id: string, raw: unknown): Promise<void> {
  const o = parseProps(outputs, raw, KIND);
  const admin = runAdmin();
  await inVm(admin, o, async () => {
    for (const [k, f] of Object.entries(o.files)) await removeFileEntry(admin, o.vm, k, f);
    for (const s of Object.keys(o.services)) await removeWhole(admin, KIND, { vm: o.vm, path: servicePath(s) });
    await removeWhole(admin, KIND, { vm: o.vm, path: MANIFEST });
  });
}
export { delete_ as delete };
