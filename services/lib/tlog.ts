/**
 * The transparency log of a logs VM, as the services see it: the entry schema (versioned, one
 * canonical encoding), the proof bundle a keys VM verifies, and thin wrappers around `qbi-tlog`
 * (tools/tlog: Tessera's POSIX log, C2SP tlog-tiles and signed-note checkpoints). The Merkle tree,
 * tiles and signatures are qbi-tlog's; nothing here hashes a tree.
 */
import { z } from "zod";
import { ConfigError, run } from "./common";

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, "a sha256 in lower-case hex");
const vm = z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]{0,30}$/, "a qube name");
/** A log path in the logs repository: `<build VM>/…/log_…`, no `.`/`..` segments. */
export const logPath = z
  .string()
  .max(512)
  .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+){1,8}$/, "a relative log path")
  .refine((p) => p.split("/").every((s) => s !== "." && s !== ".."), "no . or .. segments");
const time = z.iso.datetime();
const index = z.number().int().nonnegative();

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
  logs: z.array(index).min(1).max(64),
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

const b64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, "base64");

/**
 * What a keys VM is given to accept one entry (`qbi-tlog witness` input): the log's latest
 * checkpoint, the entry and its inclusion proof, and a consistency proof from the checkpoint
 * size the keys VM accepted last (`from`).
 */
export const ProofBundle = z.strictObject({
  checkpoint: z.string().min(1).max(8192),
  index,
  entry: b64.max(200000),
  inclusion: z.array(b64.max(64)).max(64),
  from: index,
  consistency: z.array(b64.max(64)).max(128),
});
export type ProofBundle = z.infer<typeof ProofBundle>;

/** `qbi-tlog append` output. */
const AppendResult = z.object({ indices: z.array(index), size: index, root: b64, checkpoint: z.string() });
export type AppendResult = z.infer<typeof AppendResult>;
/** `qbi-tlog prove` output. */
const ProveResult = z.object({
  checkpoint: z.string(),
  size: index,
  root: b64,
  inclusion: z.record(z.string(), z.array(b64)).default({}),
  entries: z.record(z.string(), b64).default({}),
  from: index.optional(),
  consistency: z.array(b64).optional(),
});
export type ProveResult = z.infer<typeof ProveResult>;
/** `qbi-tlog witness` output (success or refusal). */
export const WitnessResult = z.union([
  z.object({ ok: z.literal(true), size: index, root: b64, index, origin: z.string(), cosignature: z.string().optional() }),
  z.object({ ok: z.literal(false), reason: z.string(), message: z.string(), have: index.default(0) }),
]);
export type WitnessResult = z.infer<typeof WitnessResult>;

/** The size line of a checkpoint note (origin, size, root hash, then signatures). */
export function checkpointSize(text: string): number {
  const lines = text.split("\n");
  if (lines.length < 3 || !/^[0-9]{1,19}$/.test(lines[1])) throw new Error("malformed checkpoint");
  return Number(lines[1]);
}

function jsonOut<T>(schema: z.ZodType<T>, what: string, stdout: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch {
    throw new Error(`${what}: no JSON result (${stdout.trim().slice(0, 200)})`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new Error(`${what}: unexpected result shape: ${r.error.issues[0]?.message ?? "?"}`);
  return r.data;
}

/** The qbi-tlog program (an absolute path in VMs, or found on PATH). */
export class TlogTool {
  constructor(private readonly program: string) {}

  /** Appends entries (one line each) and waits for a checkpoint covering them. */
  async append(dir: string, privateKeyFile: string, entries: string[]): Promise<AppendResult> {
    for (const e of entries) if (e.includes("\n") || e.length === 0) throw new Error("an entry must be one non-empty line");
    const r = await run([this.program, "append", "--dir", dir, "--private", privateKeyFile], {
      input: entries.map((e) => `${e}\n`).join(""),
      timeoutMs: 120000,
    }).catch((e: NodeJS.ErrnoException) => {
      throw e.code === "ENOENT" ? new ConfigError(`${this.program} not found`) : e;
    });
    if (r.code !== 0) throw new Error(`qbi-tlog append failed (${r.code}): ${r.stderr.trim().slice(0, 300)}`);
    const out = jsonOut(AppendResult, "qbi-tlog append", r.stdout);
    if (out.indices.length !== entries.length) throw new Error(`qbi-tlog append returned ${out.indices.length} indices for ${entries.length} entries`);
    return out;
  }

  /** Proofs against the log's published checkpoint. */
  async prove(dir: string, indices: number[], from?: number): Promise<ProveResult> {
    const args = [this.program, "prove", "--dir", dir, ...indices.flatMap((i) => ["--index", String(i)])];
    if (from !== undefined) args.push("--from", String(from));
    const r = await run(args, { timeoutMs: 60000 });
    if (r.code !== 0) throw new Error(`qbi-tlog prove failed (${r.code}): ${r.stderr.trim().slice(0, 300)}`);
    return jsonOut(ProveResult, "qbi-tlog prove", r.stdout);
  }

  /** A keys VM's check of a bundle against its stored checkpoint (stored anew on success). */
  async witness(stateFile: string, verifierKey: string, bundle: ProofBundle): Promise<WitnessResult> {
    const r = await run([this.program, "witness", "--state", stateFile, "--verifier", verifierKey], { input: JSON.stringify(bundle), timeoutMs: 60000 });
    if (r.code !== 0 && r.code !== 1) throw new Error(`qbi-tlog witness failed (${r.code}): ${r.stderr.trim().slice(0, 300)}`);
    return jsonOut(WitnessResult, "qbi-tlog witness", r.stdout);
  }

  /** Turns a `prove` result for one index into the bundle a keys VM takes. */
  static bundle(p: ProveResult, i: number): ProofBundle {
    const inclusion = p.inclusion[String(i)];
    const entry = p.entries[String(i)];
    if (!inclusion || entry === undefined) throw new Error(`no proof for entry ${i}`);
    return { checkpoint: p.checkpoint, index: i, entry, inclusion, from: p.from ?? 0, consistency: p.consistency ?? [] };
  }
}
