/**
 * The entries of a logs VM's transparency log (schema version 1) and their one canonical
 * encoding: written by the logs VM's services, checked by keys VMs before they sign, audited by
 * `qubes-build-infra verify-log`. Pure: no I/O.
 */
import { z } from "zod";

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, "a sha256 in lower-case hex");
const vm = z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]{0,30}$/, "a qube name");
/** A log path in the logs repository: `<build VM>/…/log_…`, no `.`/`..` segments. */
export const logPath = z
  .string()
  .max(512)
  .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+){1,8}$/, "a relative log path")
  .refine((p) => p.split("/").every((s) => s !== "." && s !== ".."), "no . or .. segments");
const time = z.iso.datetime();
export const entryIndex = z.number().int().nonnegative();

/**
 * Entry kinds, version 1. Every entry is one line of canonical JSON (keys sorted, no spaces).
 * - `build-log`: a published build log: the stored file (`sha256`/`size`, possibly xz) and its
 *   uncompressed content (`contentSha256`/`contentSize`), and the commit that added it.
 * - `log-prefix`: the content of a still-open log session at the moment a signature was asked
 *   for; the session's final `build-log` entry (same `path`) must extend it.
 * - `signature-request`: the sha256 and size of the exact bytes a build VM wants signed, with
 *   which key (`default`: the keys VM's default key; `win:<name>`: a Windows signing key), the
 *   keys VM that may sign them, and the entries of the logs it points at (earlier `log-prefix`
 *   or `build-log` entries of the same build VM).
 */
export const BuildLogEntry = z.strictObject({
  v: z.literal(1),
  kind: z.literal("build-log"),
  time,
  vm,
  env: z.string().min(1).max(64),
  path: logPath,
  sha256: hex64,
  size: z.number().int().nonnegative(),
  contentSha256: hex64,
  contentSize: z.number().int().nonnegative(),
  commit: z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, "a git commit id"),
  /** Why the stream ended early, or that it was cut at the size limit (absent: a normal close). */
  ended: z.string().max(200).optional(),
});
export const LogPrefixEntry = z.strictObject({
  v: z.literal(1),
  kind: z.literal("log-prefix"),
  time,
  vm,
  env: z.string().min(1).max(64),
  path: logPath,
  contentSha256: hex64,
  contentSize: z.number().int().nonnegative(),
});
export const SignatureRequestEntry = z.strictObject({
  v: z.literal(1),
  kind: z.literal("signature-request"),
  time,
  vm,
  env: z.string().min(1).max(64),
  /** The keys VM that may sign these bytes (keys-ENV, or win-keys-ENV for Windows signing). */
  signer: vm,
  key: z.string().regex(/^([0-9A-F]{40}|default|win:[A-Za-z0-9_]{1,64})$/, "a fingerprint, default or win:<key name>"),
  sha256: hex64,
  size: z.number().int().nonnegative(),
  logs: z.array(entryIndex).min(1).max(64),
});
export const LogEntry = z.discriminatedUnion("kind", [BuildLogEntry, LogPrefixEntry, SignatureRequestEntry]);
export type BuildLogEntry = z.infer<typeof BuildLogEntry>;
export type LogPrefixEntry = z.infer<typeof LogPrefixEntry>;
export type SignatureRequestEntry = z.infer<typeof SignatureRequestEntry>;
export type LogEntry = z.infer<typeof LogEntry>;

/** Canonical JSON: object keys sorted, no whitespace (the bytes that are logged and hashed). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Parses logged entry bytes; the bytes must be the entry's canonical encoding. */
export function parseEntry(bytes: Buffer | string): LogEntry {
  const text = typeof bytes === "string" ? bytes : bytes.toString("utf8");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error("entry is not JSON");
  }
  const r = LogEntry.safeParse(raw);
  if (!r.success) throw new Error(`entry does not match schema v1: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  if (canonicalJson(r.data) !== text) throw new Error("entry is not in canonical form");
  return r.data;
}
