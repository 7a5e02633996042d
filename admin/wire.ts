/**
 * The qubesd wire protocol (pure: no I/O), used by the client and by qubes-sim.
 *
 * Request, as qubesadmin's `QubesLocal.qubesd_call` and `qubesd-query` send it on the socket:
 *   `<method>+<arg> <source> name <dest>\0<payload>` and then EOF (write side shut).
 * The `+` is always present (an empty argument gives `<method>+ dom0 name <dest>`); qubesd also
 * accepts no `+` at all and the destination form `keyword adminvm` (meaning dom0).
 *
 * Reply (qubes/api/__init__.py `QubesDaemonProtocol`):
 *   `0\0<data>`                                            success
 *   `2\0<exception type>\0<traceback>\0<message>\0(<arg>\0)*`  error; qubesd sends the message
 *       already formatted and no args; qubesadmin applies `format % args` when args are present.
 *   `1\0...`                                               events (not implemented here).
 */

/** One Admin API request. */
export interface WireRequest {
  method: string;
  /** `""` when none. */
  arg: string;
  source: string;
  dest: string;
  payload: Buffer;
}

/** A decoded reply. */
export type WireReply =
  | { kind: "ok"; data: Buffer }
  | { kind: "error"; type: string; traceback: string; format: string; args: string[]; message: string }
  | { kind: "event"; raw: Buffer };

/** Largest request qubesd buffers (its `buffer_size`); longer requests are refused. */
export const QUBESD_MAX_REQUEST = 65536;
/** Longest header we accept before the first `\0`. */
export const MAX_HEADER = 1024;

const NUL = 0;

/** Characters qrexec allows in a service name or argument (sanitize_name in qrexec-daemon). */
const RPC_CHARS = /^[A-Za-z0-9_.+-]*$/;
/** Characters allowed in a destination or source token. */
const DEST_CHARS = /^[A-Za-z0-9_.:@$-]+$/;

/** Encode a request as a client sends it. */
export function encodeRequest(r: { method: string; arg?: string; source?: string; dest: string; payload?: Buffer | string }): Buffer {
  const header = `${r.method}+${r.arg ?? ""} ${r.source ?? "dom0"} name ${r.dest}`;
  if (!isAscii(header)) throw new Error(`request header must be ASCII: ${JSON.stringify(header)}`);
  const payload = r.payload === undefined ? Buffer.alloc(0) : Buffer.isBuffer(r.payload) ? r.payload : Buffer.from(r.payload, "utf8");
  return Buffer.concat([Buffer.from(header + "\0", "ascii"), payload]);
}

/** Why a request could not be decoded (qubesd would log "framing error" and abort). */
export class FramingError extends Error {}

/** Split off and parse the header; throws FramingError on anything qubesd would not accept. */
export function decodeRequestHeader(header: Buffer): Omit<WireRequest, "payload"> {
  if (header.length > MAX_HEADER) throw new FramingError("header too long");
  for (const b of header) if (b < 0x20 || b > 0x7e) throw new FramingError("non-ASCII or control byte in header");
  const text = header.toString("ascii");
  const parts = text.split(" ");
  if (parts.length !== 4) throw new FramingError(`expected '<method>+<arg> <source> name <dest>', got ${JSON.stringify(text)}`);
  const [methArg, source] = parts;
  let [, , destType, dest] = parts;
  if (destType === "keyword" && dest === "adminvm") [destType, dest] = ["name", "dom0"];
  if (destType !== "name") throw new FramingError(`got ${destType} destination type, while only explicit name supported`);
  const plus = methArg.indexOf("+");
  const method = plus < 0 ? methArg : methArg.slice(0, plus);
  const arg = plus < 0 ? "" : methArg.slice(plus + 1);
  if (method === "" || !RPC_CHARS.test(method) || method.includes("+")) throw new FramingError(`invalid method name ${JSON.stringify(method)}`);
  if (!RPC_CHARS.test(arg)) throw new FramingError(`invalid argument ${JSON.stringify(arg)}`);
  if (!DEST_CHARS.test(source) || !DEST_CHARS.test(dest)) throw new FramingError("invalid source or destination");
  return { method, arg, source, dest };
}

/** Decode a complete request (header, NUL, payload). */
export function decodeRequest(buf: Buffer): WireRequest {
  const nul = buf.indexOf(NUL);
  if (nul < 0) throw new FramingError("no NUL after the header");
  return { ...decodeRequestHeader(buf.subarray(0, nul)), payload: buf.subarray(nul + 1) };
}

/** `0\0<data>` */
export function encodeOk(data?: Buffer | string): Buffer {
  const body = data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(data) ? data : Buffer.from(data, "utf8");
  return Buffer.concat([Buffer.from([0x30, 0]), body]);
}

/** `2\0<type>\0<traceback>\0<message>\0(<arg>\0)*` */
export function encodeError(type: string, message: string, args: string[] = [], traceback = ""): Buffer {
  const fields = [type, traceback, message, ...args].map((f) => Buffer.from(f + "\0", "utf8"));
  return Buffer.concat([Buffer.from([0x32, 0]), ...fields]);
}

/** Python's `format % args` for the conversions qubesadmin's messages use (%s %r %d %i %x %%). */
export function pyFormat(format: string, args: readonly string[]): string {
  if (args.length === 0) return format;
  let i = 0;
  return format.replace(/%(?:\(([^)]*)\))?[-#0 +]*\d*(?:\.\d+)?([sdirxXf%])/g, (whole, _key: string | undefined, conv: string) => {
    if (conv === "%") return "%";
    if (i >= args.length) return whole;
    const a = args[i++];
    if (conv === "r") return `'${a}'`;
    if ("dix".includes(conv) && /^-?\d+$/.test(a)) return conv === "x" ? Number(a).toString(16) : a;
    return a;
  });
}

/** Decode a reply as a client receives it; throws on a reply that is none of the three forms. */
export function decodeReply(buf: Buffer): WireReply {
  if (buf.length < 2 || buf[1] !== NUL) {
    if (buf.length === 0) throw new Error("empty reply from qubesd (it closes the connection on a framing or permission error)");
    throw new Error(`invalid qubesd reply: ${JSON.stringify(buf.subarray(0, 64).toString("latin1"))}`);
  }
  if (buf[0] === 0x30) return { kind: "ok", data: buf.subarray(2) };
  if (buf[0] === 0x31) return { kind: "event", raw: buf.subarray(2) };
  if (buf[0] === 0x32) {
    const fields = buf.subarray(2).toString("utf8").split("\0");
    // The last field is what follows the final terminating NUL: empty in a well-formed reply.
    if (fields.length < 4) throw new Error(`truncated qubesd error reply: ${JSON.stringify(buf.toString("latin1").slice(0, 200))}`);
    const [type, traceback, format, ...rest] = fields;
    const args = rest.slice(0, -1);
    return { kind: "error", type, traceback, format, args, message: pyFormat(format, args) };
  }
  throw new Error(`invalid qubesd reply header byte 0x${buf[0].toString(16)}`);
}

/** Escape a property value as admin.vm.property.GetAll does (backslash, then newline). */
export function escapeValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Inverse of escapeValue. */
export function unescapeValue(v: string): string {
  return v.replace(/\\(\\|n)/g, (_m, c: string) => (c === "n" ? "\n" : "\\"));
}

/** True when every character is printable ASCII. */
export function isAscii(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}
