/** Small statistics for `npm run bench`: min/median/max, percentiles, ratios, timing. */

export interface Summary {
  n: number;
  min: number;
  median: number;
  max: number;
}

export interface Distribution extends Summary {
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}

/** Percentile by linear interpolation between closest ranks (`p` in 0..100). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  if (sorted.length === 1) return sorted[0];
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

const sortNum = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);

/** min / median / max of repeated measurements. */
export function summary(xs: number[]): Summary {
  const s = sortNum(xs);
  return { n: s.length, min: s[0] ?? NaN, median: percentile(s, 50), max: s[s.length - 1] ?? NaN };
}

/** A latency distribution: summary plus p50/p90/p99 and mean. */
export function distribution(xs: number[]): Distribution {
  const s = sortNum(xs);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return { ...summary(s), p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), mean };
}

/** Ratio of two medians measured in the same run (the machine is shared: compare only within a run). */
export function ratio(a: Summary | number, b: Summary | number): number {
  const x = typeof a === "number" ? a : a.median;
  const y = typeof b === "number" ? b : b.median;
  return y === 0 ? NaN : x / y;
}

/** Rounds to `digits` significant digits (for tables and JSON). */
export function sig(x: number, digits = 3): number {
  if (!Number.isFinite(x) || x === 0) return x;
  return Number(x.toPrecision(digits));
}

export function roundSummary<T extends Summary>(s: T, digits = 3): T {
  const out = { ...s } as unknown as Record<string, number>;
  for (const k of Object.keys(out)) if (k !== "n") out[k] = sig(out[k], digits);
  return out as unknown as T;
}

/** Seconds since `t0` (from `now()`). */
export function now(): bigint {
  return process.hrtime.bigint();
}
export function secondsSince(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Runs `fn` and returns its result with the wall time in seconds. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const t0 = now();
  const result = await fn();
  return { result, seconds: secondsSince(t0) };
}

/** Formats rows as an aligned text table (first column left, the others right). */
export function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === "number" ? fmt(c) : c)));
  const width = cells[0].map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => (i === 0 ? (c ?? "").padEnd(width[i]) : (c ?? "").padStart(width[i]))).join("  ")).join("\n");
}

/** A number for a table: 3 significant digits, no exponent for ordinary magnitudes. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x) && Math.abs(x) < 1e7) return String(x);
  const a = Math.abs(x);
  if (a >= 1000) return String(Math.round(x));
  return String(sig(x, 3));
}
