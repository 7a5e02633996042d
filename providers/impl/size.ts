// Volume sizes: "20GiB", "512MiB", "1.5GiB", "30G", or a plain number of bytes.

const UNITS: Record<string, number> = {
  "": 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
};

/**
 * Bytes of a size given as a number of bytes or as text with an optional unit. Like Qubes'
 * qvm-volume, bare K/M/G/T are binary (1024-based); KB/MB/GB/TB are decimal, KiB/MiB/GiB/TiB binary.
 */
export function parseSize(size: number | string): number {
  if (typeof size === "number") {
    if (!Number.isSafeInteger(size) || size <= 0) throw new Error(`invalid size ${size}: a positive whole number of bytes`);
    return size;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(size);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new Error(`invalid size ${JSON.stringify(size)}: expected e.g. 20GiB, 512MiB or a number of bytes`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`invalid size ${JSON.stringify(size)}: out of range`);
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
