/**
 * The pure part of `verify-log`: what must hold between the entries of one transparency log,
 * whatever the files say. Every entry is schema v1 in canonical form; every signature request
 * points only at earlier `log-prefix` or `build-log` entries of the same build VM; a session's
 * prefixes come before its final `build-log` entry. (The published files are checked against the
 * entries by audit/verifyLog.ts.)
 */
import { isAscii } from "buffer";
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

const LINE_START = Buffer.from('{"index":');
const ENTRY_KEY = Buffer.from(',"entry":"');
const LINE_END = Buffer.from('"}');

/** Whether `buf` holds `want` at `at` (without a Buffer object per comparison). */
function bytesAt(buf: Buffer, at: number, want: Buffer): boolean {
  if (at < 0 || at + want.length > buf.length) return false;
  for (let i = 0; i < want.length; i++) if (buf[at + i] !== want[i]) return false;
  return true;
}

const B64 = new Int8Array(256).fill(-1);
for (let i = 0; i < 64; i++) B64["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".charCodeAt(i)] = i;

/**
 * Decodes padded standard base64 `src[from, to)` into `dst` at `at`; the number of bytes, or -1
 * if it is not base64. (Buffer's own decoder needs a string per entry and skips bad characters.)
 */
function base64Into(src: Buffer, from: number, to: number, dst: Buffer, at: number): number {
  if ((to - from) % 4 !== 0) return -1;
  let o = at;
  for (let i = from; i < to; i += 4) {
    const a = B64[src[i]];
    const b = B64[src[i + 1]];
    const c = B64[src[i + 2]];
    const d = B64[src[i + 3]];
    if ((a | b | c | d) >= 0) {
      dst[o++] = (a << 2) | (b >> 4);
      dst[o++] = ((b & 15) << 4) | (c >> 2);
      dst[o++] = ((c & 3) << 6) | d;
      continue;
    }
    // Padding, only in the last quad: "xx==" or "xxx=".
    if (i + 4 !== to || (a | b) < 0 || src[i + 3] !== 0x3d) return -1;
    dst[o++] = (a << 2) | (b >> 4);
    if (c >= 0) dst[o++] = ((b & 15) << 4) | (c >> 2);
    else if (src[i + 2] !== 0x3d) return -1;
  }
  return o - at;
}

/**
 * The entries of a `qbi-tlog verify --entries-out` file: one line `{"index":i,"entry":"<base64>"}`
 * per entry, i = 0, 1, 2, ... Decoded in place (the file's buffer is overwritten); when every
 * entry is ASCII (what the services write) they come back as text, which is then also their UTF-8
 * decoding, else as bytes. Throws on a line that is not of that form or out of order.
 */
export function entriesOut(file: Buffer): (Buffer | string)[] {
  // Decoded in place: a line's bytes are written behind the point where it is read.
  const decoded = file;
  const ends: number[] = [];
  let end = 0;
  const bad = (index: number) => new Error(`--entries-out line ${index + 1}: not {"index":${index},"entry":"<base64>"}`);
  for (let pos = 0, index = 0; pos < file.length; index++) {
    const nl = file.indexOf(0x0a, pos);
    if (nl < 0 || !bytesAt(file, pos, LINE_START)) throw bad(index);
    let i = pos + LINE_START.length;
    let n = 0;
    const digits = i;
    for (; i < nl && file[i] >= 0x30 && file[i] <= 0x39 && i - digits < 16; i++) n = n * 10 + file[i] - 0x30;
    if (i === digits || n !== index || !bytesAt(file, i, ENTRY_KEY) || !bytesAt(file, nl - LINE_END.length, LINE_END)) throw bad(index);
    const from = i + ENTRY_KEY.length;
    const to = nl - LINE_END.length;
    const n64 = base64Into(file, from, to, decoded, end);
    if (n64 < 0) throw bad(index);
    end += n64;
    ends.push(end);
    pos = nl + 1;
  }
  const all = decoded.subarray(0, end);
  const out: (Buffer | string)[] = new Array<Buffer | string>(ends.length);
  if (isAscii(all)) {
    const text = all.toString("latin1");
    for (let i = 0, from = 0; i < ends.length; from = ends[i], i++) out[i] = text.slice(from, ends[i]);
  } else {
    for (let i = 0, from = 0; i < ends.length; from = ends[i], i++) out[i] = all.subarray(from, ends[i]);
  }
  return out;
}

/** What a signature request needs to know of an earlier entry (requests themselves are not kept). */
const UNREADABLE = 0;
const LOG = 1;
const REQUEST = 2;

export function checkEntries(raw: readonly (Buffer | string)[]): EntryCheck {
  // One pass; the problems come out as before: unreadable entries, then links, then prefix order.
  const unreadable: Problem[] = [];
  const links: Problem[] = [];
  const out: EntryCheck = { problems: [], buildLogs: [], prefixes: new Map(), counts: { "build-log": 0, "log-prefix": 0, "signature-request": 0 } };
  const finalOf = new Map<string, number>();
  const seen = new Uint8Array(raw.length);
  const vmOf: string[] = new Array<string>(raw.length);
  for (let index = 0; index < raw.length; index++) {
    let e;
    try {
      e = parseEntry(raw[index]);
    } catch (err) {
      unreadable.push({ index, message: (err as Error).message });
      continue;
    }
    out.counts[e.kind]++;
    if (e.kind === "build-log") {
      seen[index] = LOG;
      vmOf[index] = e.vm;
      out.buildLogs.push({ index, entry: e });
      if (!finalOf.has(sessionOf(e.path))) finalOf.set(sessionOf(e.path), index);
    } else if (e.kind === "log-prefix") {
      seen[index] = LOG;
      vmOf[index] = e.vm;
      const list = out.prefixes.get(e.path);
      if (list) list.push({ index, entry: e });
      else out.prefixes.set(e.path, [{ index, entry: e }]);
      if (!e.path.startsWith(`${e.vm}/`)) links.push({ index, message: `log-prefix of ${e.vm} names a log of another VM (${e.path})` });
    } else {
      seen[index] = REQUEST;
      for (const l of e.logs) {
        if (l >= index) links.push({ index, message: `signature request points at entry ${l}, which is not earlier` });
        else if (seen[l] === UNREADABLE) links.push({ index, message: `signature request points at entry ${l}, which is unreadable` });
        else if (seen[l] === REQUEST) links.push({ index, message: `signature request points at entry ${l}, another signature request` });
        else if (vmOf[l] !== e.vm) links.push({ index, message: `signature request of ${e.vm} points at entry ${l}, a log of ${vmOf[l]}` });
      }
    }
  }
  const problems = unreadable.concat(links);
  out.problems = problems;
  for (const [session, list] of out.prefixes) {
    const fin = finalOf.get(session);
    for (const p of list) {
      if (fin !== undefined && fin < p.index) problems.push({ index: p.index, message: `prefix of ${session} logged after the session's final log (entry ${fin})` });
    }
  }
  return out;
}
