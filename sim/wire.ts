/**
 * The daemon's side of the qubesd wire protocol (pure: no I/O). admin/wire.ts has the formats;
 * this reads one request off a connection's chunks and turns a handler's value or SimError
 * into the reply bytes.
 */
import { decodeRequestHeader, encodeError, encodeOk, MAX_HEADER, QUBESD_MAX_REQUEST, WireRequest } from "../admin/wire";
import { protocolError, SimError } from "./model";

/** Largest request for sim.vm.Run (file contents travel in it). */
export const SIM_MAX_REQUEST = 256 * 1024 * 1024;

/**
 * Collects one request as its chunks arrive. The header is decoded as soon as its NUL arrives, so
 * that sim.vm.Run gets its larger limit and an oversize request is dropped without buffering it.
 */
export class RequestReader {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private header: Omit<WireRequest, "payload"> | undefined;
  private headerLen = -1;
  private error: SimError | undefined;
  private limit = QUBESD_MAX_REQUEST;

  push(d: Buffer): void {
    if (this.error) return;
    this.size += d.length;
    if (this.size > this.limit) {
      this.error = protocolError(`request too long (more than ${this.limit} bytes)`);
      this.chunks.length = 0;
      return;
    }
    this.chunks.push(d);
    if (this.headerLen >= 0) return;
    const all = Buffer.concat(this.chunks);
    const nul = all.indexOf(0);
    if (nul < 0) {
      if (all.length > MAX_HEADER) this.error = protocolError("framing error: header too long");
      return;
    }
    this.headerLen = nul;
    try {
      this.header = decodeRequestHeader(all.subarray(0, nul));
      if (this.header.method === "sim.vm.Run") this.limit = SIM_MAX_REQUEST;
    } catch (e) {
      this.error = protocolError(`framing error: ${(e as Error).message}`);
    }
  }

  /** At the end of the request: the request, or the ProtocolError to answer. */
  end(): WireRequest | SimError {
    if (this.error) return this.error;
    if (this.headerLen < 0 || !this.header) return protocolError(this.size === 0 ? "framing error: empty request" : "framing error: no NUL after the header");
    return { ...this.header, payload: Buffer.concat(this.chunks).subarray(this.headerLen + 1) };
  }
}

/** `0\0<value>` */
export function okReply(value: string | Buffer): Buffer {
  return encodeOk(value);
}

/** `2\0<type>\0\0<message>\0`: qubesd sends the message formatted, no traceback, no args. */
export function exceptionReply(e: SimError): Buffer {
  return encodeError(e.type, e.message);
}
