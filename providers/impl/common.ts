// Helpers shared by the provider implementations: input parsing, Qubes error wording, hashing.
import { createHash } from "crypto";
import { z } from "zod";
import { hasQubesCode, type QubesErrorCode, qubesErrorOf } from "../../admin/errors";

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
  throw new ProviderError(kind, "invalid inputs", r.error, r.error.issues.map((i) => `${i.path.join(".") || "(inputs)"}: ${i.message}`).join("; "));
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

/**
 * A provider failure: which resource, which step, and the cause (kept as `cause`, so its type and
 * Qubes' own message survive; `code` is the Admin API error code when the cause is one).
 */
export class ProviderError extends Error {
  readonly code: QubesErrorCode | undefined;
  /** What went wrong, after `<resource>: <step>: `. */
  readonly detail: string;

  constructor(readonly resource: string, readonly step: string, cause?: unknown, detail?: string) {
    const d = detail ?? (cause !== undefined ? describeError(cause) : "failed");
    super(`${resource}: ${step}: ${d}`, { cause });
    this.name = "ProviderError";
    this.detail = d;
    this.code = qubesErrorOf(cause)?.code;
  }

  /** `e` with `suffix` added to its message (same resource and step when `e` is a ProviderError). */
  static amend(e: unknown, resource: string, step: string, suffix: string): ProviderError {
    if (e instanceof ProviderError) return new ProviderError(e.resource, e.step, e, `${e.detail}${suffix}`);
    return new ProviderError(resource, step, e, `${describeError(e)}${suffix}`);
  }
}

/** `QubesVMNotFoundError: No such domain: 'x'` for a QubesError, the message otherwise. */
export function describeError(e: unknown): string {
  if (e instanceof ProviderError) return e.message;
  const q = qubesErrorOf(e);
  if (q && q === e) return q.message.startsWith(q.qubesType) ? q.message : `${q.qubesType}: ${q.message}`;
  return e instanceof Error ? e.message : String(e);
}

/** Runs one step of `resource`; a failure becomes a ProviderError naming both, with the cause kept. */
export async function step<T>(resource: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw new ProviderError(resource, what, e);
  }
}

/** True when `e` is or wraps an Admin API error saying the VM does not exist. */
export const isVmNotFound = (e: unknown): boolean => hasQubesCode(e, "vm-not-found");

/** True when `e` is or wraps an Admin API error saying the policy file does not exist. */
export const isPolicyNotFound = (e: unknown): boolean => hasQubesCode(e, "policy-not-found");

export const sha256 = (s: string | Buffer): string => createHash("sha256").update(s).digest("hex");

/** Single-quotes a string for sh. */
export const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Result of `diff` in the dynamic-provider protocol. */
export interface DiffResult {
  changes: boolean;
  replaces?: string[];
  deleteBeforeReplace?: boolean;
}

/**
 * `admin` as resources recorded it before the connection left the state: accepted in old
 * outputs (and from old programs' inputs), never written again.
 */
export const legacyAdmin = { admin: z.unknown().optional() };

/** `p` without the legacy `admin` field. */
export function withoutAdmin<T extends { admin?: unknown }>(p: T): Omit<T, "admin"> {
  const { admin: _admin, ...rest } = p;
  return rest;
}

/**
 * What `read` keeps of old outputs' `admin`: it stays until an update rewrites the resource, because
 * outputs that hold it also hold the provider code of their time (serialized by the SDK), which
 * `read` and `delete` run and which cannot take the run's config: it falls back to that `admin`.
 */
export function keptAdmin(o: { admin?: unknown }): { admin?: unknown } {
  return o.admin !== undefined ? { admin: o.admin } : {};
}

/** True when outputs still hold the connection: one update rewrites them (no Admin call). */
export function holdsConnection(oldsRaw: unknown): boolean {
  return typeof oldsRaw === "object" && oldsRaw !== null && "admin" in oldsRaw;
}
