/**
 * The entries of a logs VM's transparency log (schema version 1) and their one canonical
 * encoding: written by the logs VM's services, checked by keys VMs before they sign, audited by
 * `qubes-build-infra verify-log`. Pure: no I/O.
 */
import { isUtf8 } from "buffer";
import { z } from "zod";
import { COMMIT_ID_RE } from "./gitCommit";
import { isVmName } from "./names";

// The patterns and bounds are named once: the schemas below and the quick acceptance test
// (plainlyValid) use the same ones.
const HEX64 = /^[0-9a-f]{64}$/;
const LOG_PATH = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+){1,8}$/;
const LOG_PATH_MAX = 512;
const COMMIT = COMMIT_ID_RE;
/** Who signs: a key fingerprint, `default` (the keys VM's configured key) or `win:<key name>`. */
export const SIGNER_KEY_RE = /^([0-9A-F]{40}|default|win:[A-Za-z0-9_]{1,64})$/;
const KEY = SIGNER_KEY_RE;
const ENV_MAX = 64;
const ENDED_MAX = 200;
const LOGS_MAX = 64;
/** No segment is `.` or `..` (a pattern rather than a split: no array per path). */
const noDotSegments = (p: string) => !/(?:^|\/)\.\.?(?:\/|$)/.test(p);

const hex64 = z.string().regex(HEX64, "a sha256 in lower-case hex");
const vm = z.string().refine(isVmName, "a qube name");
/** A log path in the logs repository: `<build VM>/…/log_…`, no `.`/`..` segments. */
export const logPath = z.string().max(LOG_PATH_MAX).regex(LOG_PATH, "a relative log path").refine(noDotSegments, "no . or .. segments");
const time = z.iso.datetime();
/** The pattern zod checks a time against (none: the quick test leaves every entry to zod). */
const TIME: RegExp | undefined = time._zod.def.pattern;
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
  env: z.string().min(1).max(ENV_MAX),
  path: logPath,
  sha256: hex64,
  size: z.number().int().nonnegative(),
  contentSha256: hex64,
  contentSize: z.number().int().nonnegative(),
  commit: z.string().regex(COMMIT, "a git commit id"),
  /** Why the stream ended early, or that it was cut at the size limit (absent: a normal close). */
  ended: z.string().max(ENDED_MAX).optional(),
});
export const LogPrefixEntry = z.strictObject({
  v: z.literal(1),
  kind: z.literal("log-prefix"),
  time,
  vm,
  env: z.string().min(1).max(ENV_MAX),
  path: logPath,
  contentSha256: hex64,
  contentSize: z.number().int().nonnegative(),
});
export const SignatureRequestEntry = z.strictObject({
  v: z.literal(1),
  kind: z.literal("signature-request"),
  time,
  vm,
  env: z.string().min(1).max(ENV_MAX),
  /** The keys VM that may sign these bytes (keys-ENV, or win-keys-ENV for Windows signing). */
  signer: vm,
  key: z.string().regex(KEY, "a fingerprint, default or win:<key name>"),
  sha256: hex64,
  size: z.number().int().nonnegative(),
  logs: z.array(entryIndex).min(1).max(LOGS_MAX),
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

/**
 * Whether `text` is the canonical JSON of `parsed`, its own `JSON.parse` result. Cheaper than
 * re-serialising with canonicalJson: when every object's keys come in sorted order, canonicalJson
 * and JSON.stringify produce the same string, so the text is canonical if it is that string.
 * When the keys are out of order (or an index-like key made V8 reorder them) the text may still
 * be canonical; canonicalJson decides then.
 */
export function isCanonicalJson(text: string, parsed: unknown): boolean {
  if (keysSorted(parsed) && JSON.stringify(parsed) === text) return true;
  return canonicalJson(parsed) === text;
}

function keysSorted(value: unknown): boolean {
  if (Array.isArray(value)) return value.every(keysSorted);
  if (value === null || typeof value !== "object") return true;
  const o = value as Record<string, unknown>;
  // for-in rather than Object.keys: no array per object. It would also list inherited keys,
  // which only makes this say "unsorted" and leave the answer to canonicalJson.
  let last: string | undefined;
  for (const k in o) {
    if ((last !== undefined && !(last < k)) || !keysSorted(o[k])) return false;
    last = k;
  }
  return true;
}

const isIndex = (x: unknown): boolean => Number.isSafeInteger(x) && (x as number) >= 0;
const matches = (x: unknown, re: RegExp): boolean => typeof x === "string" && re.test(x);
const isQube = (x: unknown): boolean => typeof x === "string" && isVmName(x);
const isLogPath = (x: unknown): boolean => typeof x === "string" && x.length <= LOG_PATH_MAX && LOG_PATH.test(x) && noDotSegments(x);
const KEYS: Record<LogEntry["kind"], ReadonlySet<string>> = {
  "build-log": new Set(Object.keys(BuildLogEntry.shape)),
  "log-prefix": new Set(Object.keys(LogPrefixEntry.shape)),
  "signature-request": new Set(Object.keys(SignatureRequestEntry.shape)),
};

/**
 * A quick test that accepts only entries LogEntry accepts (checking each field with the
 * schema's own patterns and bounds, integers as zod's safe integers); whatever it does not accept
 * goes to zod, which decides and words the refusal. It saves zod's cost on the common case.
 */
function plainlyValid(raw: unknown): raw is LogEntry {
  if (TIME === undefined || typeof raw !== "object" || raw === null || Array.isArray(raw)) return false;
  const e = raw as Record<string, unknown>;
  if (e.v !== 1 || !matches(e.time, TIME) || !isQube(e.vm) || typeof e.env !== "string" || e.env.length < 1 || e.env.length > ENV_MAX) return false;
  let absent = 0; // optional fields the entry leaves out
  switch (e.kind) {
    case "build-log": {
      const ended = Object.hasOwn(e, "ended");
      if (ended && !(typeof e.ended === "string" && e.ended.length <= ENDED_MAX)) return false;
      if (!isLogPath(e.path) || !matches(e.sha256, HEX64) || !isIndex(e.size) || !matches(e.contentSha256, HEX64) || !isIndex(e.contentSize)) return false;
      if (!matches(e.commit, COMMIT)) return false;
      if (!ended) absent = 1;
      break;
    }
    case "log-prefix":
      if (!isLogPath(e.path) || !matches(e.contentSha256, HEX64) || !isIndex(e.contentSize)) return false;
      break;
    case "signature-request":
      if (!isQube(e.signer) || !matches(e.key, KEY) || !matches(e.sha256, HEX64) || !isIndex(e.size)) return false;
      if (!Array.isArray(e.logs) || e.logs.length < 1 || e.logs.length > LOGS_MAX || !e.logs.every(isIndex)) return false;
      break;
    default:
      return false;
  }
  // Exactly the kind's fields, each checked above: every key is one of them, and all are there.
  // (for-in also lists inherited keys; any such key only sends the entry to zod.)
  const allowed = KEYS[e.kind];
  let n = 0;
  for (const k in e) {
    if (!allowed.has(k)) return false;
    n++;
  }
  return n === allowed.size - absent;
}

/**
 * Parses logged entry bytes; the bytes must be the entry's canonical encoding: UTF-8 (bytes that
 * are not would decode to the same text as other bytes) of its canonical JSON.
 */
export function parseEntry(bytes: Buffer | string): LogEntry {
  const text = typeof bytes === "string" ? bytes : bytes.toString("utf8");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error("entry is not JSON");
  }
  let entry: LogEntry;
  if (plainlyValid(raw)) entry = raw;
  else {
    const r = LogEntry.safeParse(raw);
    if (!r.success) throw new Error(`entry does not match schema v1: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    entry = r.data;
  }
  // The schema neither adds, drops nor transforms a value, so the entry as parsed and as validated
  // have the same canonical form; the parsed one keeps the text's key order, which the check needs.
  if ((typeof bytes !== "string" && !isUtf8(bytes)) || !isCanonicalJson(text, raw)) throw new Error("entry is not in canonical form");
  return entry;
}
