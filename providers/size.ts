/**
 * Volume sizes, one meaning everywhere (stack config and providers): binary units. `20GiB` and
 * `20G` are both 20 × 1024³ bytes; a plain number is bytes. `GB`/`MB`/... are refused rather than
 * guessed (decimal for some tools, binary for others). Sizes are whole bytes, more than 0 and at
 * most MAX_SIZE_BYTES.
 */
import { z } from "zod";

const BINARY: Record<string, number> = {
  "": 1, b: 1,
  k: 1024, kib: 1024,
  m: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tib: 1024 ** 4,
};
const AMBIGUOUS = new Set(["kb", "mb", "gb", "tb"]);

/** The largest size accepted: 64 TiB (far above any disk of a build machine, far below overflow). */
export const MAX_SIZE_BYTES = 64 * 1024 ** 4;

/** Bytes of a size given as a number of bytes or as text like `20GiB`; throws a message saying what is expected. */
export function parseSize(size: number | string): number {
  const shown = typeof size === "number" ? String(size) : JSON.stringify(size);
  let bytes: number;
  if (typeof size === "number") {
    bytes = size;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(size);
    if (!m) throw new Error(`invalid size ${shown}: expected a number of bytes or a number with a binary unit, e.g. 20GiB or 512MiB`);
    const unit = m[2].toLowerCase();
    if (AMBIGUOUS.has(unit)) {
      throw new Error(`invalid size ${shown}: ${m[2]} is ambiguous (decimal or binary); write ${m[1]}${m[2][0].toUpperCase()}iB for ${m[1]} × 1024^${"kmgt".indexOf(unit[0]) + 1} bytes, or the number of bytes`);
    }
    const f = BINARY[unit];
    if (f === undefined) throw new Error(`invalid size ${shown}: unknown unit ${JSON.stringify(m[2])}; use B, KiB, MiB, GiB or TiB`);
    bytes = Number(m[1]) * f;
  }
  if (!Number.isFinite(bytes) || bytes > MAX_SIZE_BYTES) throw new Error(`invalid size ${shown}: more than ${formatSize(MAX_SIZE_BYTES)}, the largest volume size accepted`);
  if (!Number.isInteger(bytes)) throw new Error(`invalid size ${shown}: not a whole number of bytes`);
  if (bytes <= 0) throw new Error(`invalid size ${shown}: must be more than 0 bytes`);
  return bytes;
}

/** `21474836480` → `20 GiB (21474836480 bytes)`. */
export function formatSize(bytes: number): string {
  for (const [u, f] of [["TiB", 1024 ** 4], ["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= f) {
      const v = bytes / f;
      return `${Number.isInteger(v) ? v : v.toFixed(2)} ${u} (${bytes} bytes)`;
    }
  }
  return `${bytes} bytes`;
}

/** A size in a zod schema (stack config, provider inputs): bytes after parsing, parseSize's message on error. */
export const sizeSchema = z.union([z.number(), z.string()]).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
    return z.NEVER;
  }
});
