// File operations inside a VM shared by RpcService, ManagedFile and SshProxyConfig.
import type { QubesAdmin } from "../../admin/api";
import { findBlock, normalizeInner, removeBlock, upsertBlock } from "./blocks";
import { ProviderError, shq, step } from "./common";

export interface FileSpec {
  vm: string;
  path: string;
  mode: number;
  owner: string;
}

const where = (who: string, f: { vm: string; path: string }) => `${who} ${f.vm}:${f.path}`;
const octal = (mode: number) => `0${mode.toString(8)}`;

/** The file's text, or null when it does not exist. */
export async function readText(admin: QubesAdmin, who: string, f: { vm: string; path: string }): Promise<string | null> {
  const b = await step(where(who, f), "reading", () => admin.readFile(f.vm, f.path));
  return b === null ? null : b.toString("utf8");
}

/** The file's bytes, or null when it does not exist. */
export async function readBytes(admin: QubesAdmin, who: string, f: { vm: string; path: string }): Promise<Buffer | null> {
  return step(where(who, f), "reading", () => admin.readFile(f.vm, f.path));
}

/** Writes the whole file (atomic, with mode and owner). */
export async function writeWhole(admin: QubesAdmin, who: string, f: FileSpec, content: string | Buffer): Promise<void> {
  await step(where(who, f), `writing (mode ${octal(f.mode)}, owner ${f.owner})`, () => admin.writeFile(f.vm, f.path, content, { mode: f.mode, owner: f.owner }));
}

/** Removes the whole file (no error when absent). */
export async function removeWhole(admin: QubesAdmin, who: string, f: { vm: string; path: string }): Promise<void> {
  await step(where(who, f), "removing", () => admin.removeFile(f.vm, f.path));
}

function blockIn(who: string, f: { vm: string; path: string }, text: string, id: string) {
  try {
    return findBlock(text, id, `${f.vm}:${f.path}`);
  } catch (e) {
    throw new ProviderError(where(who, f), `reading block ${id}`, e);
  }
}

/** Puts `inner` into block `id` of the file (created when missing); text outside the block is kept. */
export async function writeBlock(admin: QubesAdmin, who: string, f: FileSpec, id: string, inner: string, position: "start" | "end" = "end"): Promise<void> {
  const text = (await readText(admin, who, f)) ?? "";
  blockIn(who, f, text, id);
  await writeWhole(admin, who, f, upsertBlock(text, id, inner, { position, file: `${f.vm}:${f.path}` }));
}

/** The inner text of block `id`, or null when the file or the block is absent. */
export async function readBlock(admin: QubesAdmin, who: string, f: { vm: string; path: string }, id: string): Promise<string | null> {
  const text = await readText(admin, who, f);
  if (text === null) return null;
  return blockIn(who, f, text, id)?.inner ?? null;
}

/** Removes block `id` from the file, keeping the rest; nothing when the file or block is absent. */
export async function dropBlock(admin: QubesAdmin, who: string, f: FileSpec, id: string): Promise<void> {
  const text = await readText(admin, who, f);
  if (text === null) return;
  blockIn(who, f, text, id);
  const after = removeBlock(text, id, `${f.vm}:${f.path}`);
  if (after !== text) await writeWhole(admin, who, f, after);
}

/** Makes `f.path` a symbolic link to `target`, replacing a file or link of that name (a directory there is refused: ln -T). */
export async function writeSymlink(admin: QubesAdmin, who: string, f: { vm: string; path: string }, target: string): Promise<void> {
  const r = await step(where(who, f), "linking", () => admin.run(f.vm,
    `set -e; mkdir -p -- "$(dirname -- ${shq(f.path)})"; ln -sfnT -- ${shq(target)} ${shq(f.path)}`, { user: "root" }));
  if (r.exitCode !== 0) throw new ProviderError(where(who, f), "linking", new Error(r.stderr.toString().trim() || `exit ${r.exitCode}`));
}

/** Removes `f.path` if it is a symbolic link (anything else of that name is left alone). */
export async function removeSymlink(admin: QubesAdmin, who: string, f: { vm: string; path: string }): Promise<void> {
  await step(where(who, f), "removing", () => admin.run(f.vm, `[ ! -L ${shq(f.path)} ] || rm -f -- ${shq(f.path)}`, { user: "root" }));
}

export { normalizeInner };
