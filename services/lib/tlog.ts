/**
 * The transparency log of a logs VM, as the services see it: the entry schema (from
 * contracts/transparencyLog.ts), the proof bundle a keys VM verifies, and thin wrappers around `qbi-tlog`
 * (tools/tlog: Tessera's POSIX log, C2SP tlog-tiles and signed-note checkpoints). The Merkle tree,
 * tiles and signatures are qbi-tlog's; nothing here hashes a tree.
 */
import { z } from "zod";
import { entryIndex } from "../../contracts/transparencyLog";
import { ConfigError } from "./outcome";
import { run } from "./proc";

export { BuildLogEntry, LogEntry, LogPrefixEntry, SignatureRequestEntry, canonicalJson, logPath, parseEntry } from "../../contracts/transparencyLog";
const index = entryIndex;
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
