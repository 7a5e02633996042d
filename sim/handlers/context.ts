/**
 * What the Admin API handlers share: the table's entry shape and the checks qubesd makes before a
 * method's own code runs. A handler returns the reply's data and throws a SimError for an exception
 * reply (sim/wire.ts encodes both); it never builds wire bytes.
 *
 * qubesd's order (qubes-core-admin, qubes/api/__init__.py): building the API object looks up the
 * source, then the destination (a bad name: QubesValueError, a bad `uuid:`: QubesVMInvalidUUIDError,
 * no such qube: QubesVMNotFoundError), then the method (ProtocolError "no such method"); running it
 * checks the payload, then the argument, then whether the destination must (not) be dom0, each
 * against the method's declared signature; only then does the method's body run. The daemon
 * (sim/server.ts) makes these checks for every method from the entry's `sig`, so a handler starts
 * where the upstream method body starts.
 */
import type { WireRequest } from "../../admin/wire";
import * as m from "../model";
import { protocolError } from "../model";
import type { PolicyDir } from "../policy";
import type { State, StateDir, Vm } from "../state";

/** What the handlers read and change. `state` is the current one: a copy while a mutation runs. */
export interface HandlerContext {
  readonly state: State;
  readonly dir: StateDir;
  readonly policy: PolicyDir;
}

/** A method's body: the request and its destination, already looked up in the state it runs on. */
export type Handler = (req: WireRequest, dest: Vm) => string;

/**
 * What a method changes: nothing; the state (run on a copy, saved before the reply, dropped on an
 * error); or the dom0 policy directory (written by the handler itself, outside the state).
 */
export type Effect = "read" | "state" | "policy";

/**
 * A method's declared signature, as qubesd's method decorator declares it: true = required,
 * false = refused, null = not checked (the body checks it, or it does not matter).
 */
export interface Signature {
  readonly arg: boolean | null;
  readonly payload: boolean | null;
  /** true: the destination must be dom0; false: it must not be. */
  readonly adminVm: boolean | null;
}

export interface HandlerEntry {
  fn: Handler;
  effect: Effect;
  sig: Signature;
}
export type HandlerTable = Record<string, HandlerEntry>;

export const sig = (arg: boolean | null, payload: boolean | null, adminVm: boolean | null): Signature => ({ arg, payload, adminVm });
/** The most common signatures. */
export const NO_INPUT = sig(false, false, null);
export const ARG_ONLY = sig(true, false, null);
export const DOM0_NO_INPUT = sig(false, false, true);
export const DOM0_ARG_ONLY = sig(true, false, true);
/** Nothing checked before the body (methods that are not qubesd's check their own input). */
export const UNCHECKED = sig(null, null, null);

export const read = (s: Signature, fn: Handler): HandlerEntry => ({ fn, effect: "read", sig: s });
export const write = (s: Signature, fn: Handler): HandlerEntry => ({ fn, effect: "state", sig: s });

/** One name per line, as qubesd lists. */
export const lines = (xs: string[]): string => xs.map((x) => x + "\n").join("");

/** The request's two ends, in qubesd's order: the source, then the destination. */
export function resolveEnds(s: State, req: WireRequest): Vm {
  m.findVm(s, req.source);
  return m.findVm(s, req.dest);
}

/** The payload, the argument, then the destination's class, against the method's signature. */
export function checkSignature(sg: Signature, req: WireRequest, dest: Vm): void {
  if (sg.payload === true && req.payload.length === 0) throw protocolError("expected payload");
  if (sg.payload === false && req.payload.length > 0) throw protocolError("unexpected payload");
  if (sg.arg === true && !req.arg) throw protocolError("expected an argument");
  if (sg.arg === false && req.arg) throw protocolError("unexpected argument");
  if (sg.adminVm === true && dest.klass !== "AdminVM") throw protocolError("expected destination to be AdminVM");
  if (sg.adminVm === false && dest.klass === "AdminVM") throw protocolError("expected destination to not be AdminVM");
}
