/**
 * What a keys VM may sign: entries of the logs VM's transparency log that this keys VM verified
 * itself (checkpoint signature, consistency with the last checkpoint it accepted, inclusion) and
 * that name it as signer. Each entry allows one signature of exactly the logged bytes with the
 * logged key, until it expires. Shared by qubesbuilder.LogReceived (records entries), the
 * qubes.Gpg gate and the WinSign services (consume them). Layout, under the signing state dir:
 *
 *   witness/checkpoint        the last accepted checkpoint (`qbi-tlog witness --state`)
 *   witness/checkpoint.alarm  written by qbi-tlog on a fork or rewind: nothing is signed any more
 *   entries/<index>.json      one accepted entry (`usedAt` once consumed)
 *   gate.jsonl                every decision, with the digest and the entry it used
 */
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { homeDir, stateDir } from "./config";
import { acquireLock, writeFileAtomic } from "./files";
import { Refusal } from "./outcome";
import type { SignatureRequestEntry } from "./tlog";

export const AcceptedEntry = z.object({
  index: z.number().int().nonnegative(),
  origin: z.string(),
  vm: z.string(),
  key: z.string(),
  sha256: z.string(),
  size: z.number().int().nonnegative(),
  acceptedAt: z.number(),
  expiresAt: z.number(),
  usedAt: z.number().optional(),
});
export type AcceptedEntry = z.infer<typeof AcceptedEntry>;

/** `$QBI_STATE_DIR` or `~/.local/state/qubes-build-infra/signing`, with its sub-directories. */
export function signingStateDir(): string {
  const dir = stateDir(path.join(homeDir(), ".local/state/qubes-build-infra/signing"));
  for (const d of ["entries", "witness", "spool"]) fs.mkdirSync(path.join(dir, d), { recursive: true, mode: 0o700 });
  return dir;
}

export const witnessStateFile = (dir: string): string => path.join(dir, "witness", "checkpoint");
export const alarmFile = (dir: string): string => `${witnessStateFile(dir)}.alarm`;

/** Refuses while the witness has seen a fork or rewind of the log (an operator must look). */
export function refuseOnAlarm(dir: string): void {
  let text: string;
  try {
    text = fs.readFileSync(alarmFile(dir), "utf8");
  } catch {
    return;
  }
  let reason = "see the alarm file";
  try {
    const a = JSON.parse(text) as { reason?: unknown };
    if (typeof a.reason === "string") reason = a.reason;
  } catch {
    /* keep the generic reason */
  }
  throw new Refusal(`the logs VM's transparency log was seen to ${reason === "rewind" ? "rewind" : `fail (${reason})`}: `
    + `nothing is signed until an operator has looked at ${alarmFile(dir)}`);
}

const entryFile = (dir: string, index: number) => path.join(dir, "entries", `${index}.json`);

/** Records a verified entry; an entry seen before keeps its state (a used entry stays used). */
export function recordEntry(dir: string, origin: string, index: number, e: SignatureRequestEntry, ttlSeconds: number, now = Date.now()): AcceptedEntry {
  const file = entryFile(dir, index);
  try {
    const old = AcceptedEntry.parse(JSON.parse(fs.readFileSync(file, "utf8")));
    if (old.origin === origin) return old;
  } catch {
    /* new entry */
  }
  const a: AcceptedEntry = { index, origin, vm: e.vm, key: e.key, sha256: e.sha256, size: e.size, acceptedAt: now, expiresAt: now + ttlSeconds * 1000 };
  writeFileAtomic(file, JSON.stringify(a));
  return a;
}

/** What a signature request must match. */
export interface Wanted {
  vm: string;
  key: string;
  sha256: string;
  size: number;
}

/**
 * Finds an unused, unexpired entry for exactly these bytes and key and marks it used (under a
 * lock, written durably before anything is signed). Throws a Refusal saying why there is none.
 */
export async function consumeEntry(dir: string, w: Wanted, now = () => Date.now()): Promise<AcceptedEntry> {
  const release = await acquireLock(path.join(dir, "entries.lock"), 30000);
  try {
    const t = now();
    let expired = 0;
    let used = 0;
    let otherKey = 0;
    for (const name of fs.readdirSync(path.join(dir, "entries")).filter((n) => /^[0-9]+\.json$/.test(n))) {
      let a: AcceptedEntry;
      try {
        a = AcceptedEntry.parse(JSON.parse(fs.readFileSync(path.join(dir, "entries", name), "utf8")));
      } catch {
        continue;
      }
      if (a.vm !== w.vm || a.sha256 !== w.sha256 || a.size !== w.size) continue;
      if (a.key !== w.key) {
        otherKey++;
        continue;
      }
      if (a.usedAt !== undefined) {
        used++;
        continue;
      }
      if (t >= a.expiresAt) {
        expired++;
        continue;
      }
      const done: AcceptedEntry = { ...a, usedAt: t };
      writeFileAtomic(entryFile(dir, a.index), JSON.stringify(done));
      return done;
    }
    if (used > 0) throw new Refusal(`the logged entry for these bytes (sha256 ${w.sha256}) was already used for a signature; log them again`);
    if (expired > 0) throw new Refusal(`the logged entry for these bytes (sha256 ${w.sha256}) expired before the data was complete`);
    if (otherKey > 0) throw new Refusal(`these bytes (sha256 ${w.sha256}) were logged for another key than ${w.key}`);
    throw new Refusal(`no logged signature request of ${w.vm} for these bytes (sha256 ${w.sha256}, ${w.size} bytes, key ${w.key})`);
  } finally {
    release();
  }
}

/**
 * `consumeEntry`, waiting up to `waitMs` for the entry to arrive: the build VM's client asks the
 * logs VM and the keys VM at the same time, and the logs VM's hand-over may land after the data.
 * Throws the last refusal when the time is up.
 */
export async function awaitEntry(dir: string, w: Wanted, waitMs: number): Promise<AcceptedEntry> {
  const deadline = Date.now() + waitMs;
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    try {
      return await consumeEntry(dir, w);
    } catch (e) {
      if (!(e instanceof Refusal) || Date.now() + delay > deadline) throw e;
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** Removes entries that can no longer be used and are older than `keepSeconds` (bounded dir). */
export function pruneEntries(dir: string, keepSeconds = 7 * 86400, now = Date.now()): void {
  for (const name of fs.readdirSync(path.join(dir, "entries")).filter((n) => n.endsWith(".json"))) {
    const file = path.join(dir, "entries", name);
    try {
      const a = AcceptedEntry.parse(JSON.parse(fs.readFileSync(file, "utf8")));
      if (now - a.acceptedAt > keepSeconds * 1000 && (a.usedAt !== undefined || now >= a.expiresAt)) fs.rmSync(file, { force: true });
    } catch {
      /* leave what we cannot read for an operator */
    }
  }
}
