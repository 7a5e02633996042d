/**
 * The pure part of `verify-log`: what must hold between the entries of one transparency log,
 * whatever the files say. Every entry is schema v1 in canonical form; every signature request
 * points only at earlier `log-prefix` or `build-log` entries of the same build VM; a session's
 * prefixes come before its final `build-log` entry. (The published files are checked against the
 * entries by audit/verifyLog.ts.)
 */
import { type BuildLogEntry, type LogPrefixEntry, parseEntry } from "../contracts/transparencyLog";

export interface Problem {
  index: number;
  message: string;
}

export interface EntryCheck {
  problems: Problem[];
  /** Every `build-log` entry, with its index. */
  buildLogs: { index: number; entry: BuildLogEntry }[];
  /** The `log-prefix` entries of each session, by the session's log path. */
  prefixes: Map<string, { index: number; entry: LogPrefixEntry }[]>;
  counts: { "build-log": number; "log-prefix": number; "signature-request": number };
}

/** The session a published log belongs to (an xz-compressed log was streamed as `<path>`). */
export const sessionOf = (publishedPath: string): string => publishedPath.replace(/\.xz$/, "");

export function checkEntries(raw: readonly Buffer[]): EntryCheck {
  const problems: Problem[] = [];
  const parsed = raw.map((b, index) => {
    try {
      return parseEntry(b);
    } catch (e) {
      problems.push({ index, message: (e as Error).message });
      return null;
    }
  });
  const out: EntryCheck = { problems, buildLogs: [], prefixes: new Map(), counts: { "build-log": 0, "log-prefix": 0, "signature-request": 0 } };
  const finalOf = new Map<string, number>();
  parsed.forEach((e, index) => {
    if (!e) return;
    out.counts[e.kind]++;
    if (e.kind === "build-log") {
      out.buildLogs.push({ index, entry: e });
      if (!finalOf.has(sessionOf(e.path))) finalOf.set(sessionOf(e.path), index);
    } else if (e.kind === "log-prefix") {
      const list = out.prefixes.get(e.path) ?? [];
      list.push({ index, entry: e });
      out.prefixes.set(e.path, list);
      if (!e.path.startsWith(`${e.vm}/`)) problems.push({ index, message: `log-prefix of ${e.vm} names a log of another VM (${e.path})` });
    } else {
      for (const l of e.logs) {
        const target = l < index ? parsed[l] : undefined;
        if (l >= index) problems.push({ index, message: `signature request points at entry ${l}, which is not earlier` });
        else if (!target) problems.push({ index, message: `signature request points at entry ${l}, which is unreadable` });
        else if (target.kind === "signature-request") problems.push({ index, message: `signature request points at entry ${l}, another signature request` });
        else if (target.vm !== e.vm) problems.push({ index, message: `signature request of ${e.vm} points at entry ${l}, a log of ${target.vm}` });
      }
    }
  });
  for (const [session, list] of out.prefixes) {
    const fin = finalOf.get(session);
    for (const p of list) {
      if (fin !== undefined && fin < p.index) problems.push({ index: p.index, message: `prefix of ${session} logged after the session's final log (entry ${fin})` });
    }
  }
  return out;
}
