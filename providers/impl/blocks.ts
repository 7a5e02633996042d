/**
 * Managed blocks inside text files: the text between `# BEGIN qubes-build-infra <id>` and
 * `# END qubes-build-infra <id>` belongs to us, everything else in the file is left exactly as it
 * was. Pure functions, shared by ManagedFile (kind `block`) and SshProxyConfig.
 */

/** The marker lines of a block. */
export function blockMarkers(id: string): { begin: string; end: string } {
  if (!/^[A-Za-z0-9._:@/-]+$/.test(id)) throw new Error(`invalid block id ${JSON.stringify(id)}: letters, digits and ._:@/- only`);
  return { begin: `# BEGIN qubes-build-infra ${id}`, end: `# END qubes-build-infra ${id}` };
}

/** Where a block is in a file: line indexes of its markers and its inner text. */
export interface FoundBlock {
  beginLine: number;
  endLine: number;
  /** The lines between the markers, each ending in `\n` (`""` for an empty block). */
  inner: string;
}

function splitKeep(text: string): string[] {
  if (text === "") return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/**
 * Finds the block `id` in `text`; `null` when absent. A BEGIN without its END, an END without its
 * BEGIN, or the block twice is an error (the file was damaged by hand: we do not guess).
 */
export function findBlock(text: string, id: string, file = "file"): FoundBlock | null {
  const { begin, end } = blockMarkers(id);
  const lines = splitKeep(text);
  const begins = lines.flatMap((l, i) => (l.trimEnd() === begin ? [i] : []));
  const ends = lines.flatMap((l, i) => (l.trimEnd() === end ? [i] : []));
  if (begins.length === 0 && ends.length === 0) return null;
  if (begins.length !== 1 || ends.length !== 1 || ends[0] < begins[0]) {
    throw new Error(`${file}: the markers of block ${JSON.stringify(id)} are damaged (${begins.length} BEGIN, ${ends.length} END): fix them by hand`);
  }
  const inner = lines.slice(begins[0] + 1, ends[0]);
  return { beginLine: begins[0], endLine: ends[0], inner: inner.map((l) => `${l}\n`).join("") };
}

/** The block's inner text as it will be written: every line ends in `\n`. */
export function normalizeInner(inner: string): string {
  return inner === "" || inner.endsWith("\n") ? inner : `${inner}\n`;
}

/**
 * `text` with block `id` holding `inner`: replaced in place when present, else added at the end
 * (or at the start with `position: "start"`, e.g. ssh_config where the first match wins).
 */
export function upsertBlock(text: string, id: string, inner: string, opts: { position?: "start" | "end"; file?: string } = {}): string {
  const { begin, end } = blockMarkers(id);
  const body = normalizeInner(inner);
  if (body.split("\n").some((l) => l.trimEnd() === begin || l.trimEnd() === end)) {
    throw new Error(`the content of block ${JSON.stringify(id)} must not contain its own markers`);
  }
  const block = `${begin}\n${body}${end}\n`;
  const found = findBlock(text, id, opts.file);
  const lines = splitKeep(text);
  if (found) {
    const before = lines.slice(0, found.beginLine).map((l) => `${l}\n`).join("");
    const afterLines = lines.slice(found.endLine + 1);
    const after = afterLines.map((l) => `${l}\n`).join("");
    // Keep a missing final newline of the original file as it was.
    const after2 = afterLines.length > 0 && !text.endsWith("\n") ? after.slice(0, -1) : after;
    return before + block + after2;
  }
  if (text === "") return block;
  if (opts.position === "start") return `${block}${text}`;
  return `${text.endsWith("\n") ? text : `${text}\n`}${block}`;
}

/** `text` without block `id` (markers included); unchanged when absent. */
export function removeBlock(text: string, id: string, file?: string): string {
  const found = findBlock(text, id, file);
  if (!found) return text;
  const lines = splitKeep(text);
  const kept = [...lines.slice(0, found.beginLine), ...lines.slice(found.endLine + 1)];
  if (kept.length === 0) return "";
  const out = kept.map((l) => `${l}\n`).join("");
  return found.endLine === lines.length - 1 || text.endsWith("\n") ? out : out.slice(0, -1);
}
