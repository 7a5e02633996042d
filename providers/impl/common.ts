// Helpers shared by the provider implementations: input parsing, Qubes error wording, hashing.
import { createHash } from "crypto";
import { z } from "zod";

/** The value Pulumi puts in place of an input that is not known yet (during preview). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** True when `v` holds an unknown (preview-time) value anywhere. */
export function hasUnknown(v: unknown): boolean {
  if (v === UNKNOWN) return true;
  if (Array.isArray(v)) return v.some(hasUnknown);
  if (typeof v === "object" && v !== null) return Object.values(v).some(hasUnknown);
  return false;
}

function valueAt(v: unknown, path: readonly PropertyKey[]): unknown {
  let cur = v;
  for (const k of path) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

/** Parses provider inputs or outputs; the error names the resource kind and every bad field. */
export function parseProps<S extends z.ZodType>(schema: S, raw: unknown, kind: string): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  throw new Error(`${kind}: invalid inputs: ${r.error.issues.map((i) => `${i.path.join(".") || "(inputs)"}: ${i.message}`).join("; ")}`);
}

/** A check failure as the dynamic-provider protocol wants it. */
export interface CheckFailure {
  property: string;
  reason: string;
}

/** The result of a dynamic provider's `check`. */
export interface CheckResult {
  inputs: Record<string, unknown>;
  failures?: CheckFailure[];
}

/**
 * `check` for a schema: failures for invalid inputs (ignoring fields not known yet at preview),
 * otherwise `normalize` of the parsed inputs (or the inputs as given when some are unknown).
 */
export function checkWith<S extends z.ZodType>(
  schema: S,
  news: unknown,
  normalize: (p: z.infer<S>) => Record<string, unknown> = (p) => p as Record<string, unknown>,
): CheckResult {
  const raw = (news ?? {}) as Record<string, unknown>;
  const r = schema.safeParse(raw);
  if (r.success) return { inputs: normalize(r.data) };
  const failures = r.error.issues
    .filter((i) => !hasUnknown(valueAt(raw, i.path.slice(0, 1))))
    .map((i) => ({ property: String(i.path[0] ?? ""), reason: `${i.path.join(".") || "(inputs)"}: ${i.message}` }));
  return failures.length > 0 ? { inputs: raw, failures } : { inputs: raw };
}

/** The Qubes exception name of an Admin API error (`QubesError.qubesType`), if any. */
export function qubesType(e: unknown): string | undefined {
  if (typeof e === "object" && e !== null && "qubesType" in e) {
    const t = (e as { qubesType?: unknown }).qubesType;
    if (typeof t === "string" && t !== "") return t;
  }
  return undefined;
}

/** `QubesVMNotFoundError: no such domain` style text of any error. */
export function describeError(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const t = qubesType(e);
  return t && !msg.startsWith(t) ? `${t}: ${msg}` : msg;
}

/** Runs one Admin call; a failure becomes an Error naming the resource and what was being done. */
export async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const err = new Error(`${what}: ${describeError(e)}`);
    (err as { qubesType?: string }).qubesType = qubesType(e);
    throw err;
  }
}

/** True for "this object does not exist" errors of the Admin API. */
export function isNotFound(e: unknown): boolean {
  const t = qubesType(e) ?? "";
  return /NotFound|NoSuch|DoesNotExist/i.test(t) || /^QubesVMNotFoundError$/.test(t);
}

export const sha256 = (s: string | Buffer): string => createHash("sha256").update(s).digest("hex");

/** Single-quotes a string for sh. */
export const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Result of `diff` in the dynamic-provider protocol. */
export interface DiffResult {
  changes: boolean;
  replaces?: string[];
  deleteBeforeReplace?: boolean;
}
