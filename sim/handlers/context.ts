/**
 * What the Admin API handlers share: the table's entry shape and qubesd's argument checks. A
 * handler returns the reply's data and throws a SimError for an exception reply (sim/wire.ts
 * encodes both); it never builds wire bytes.
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

export type Handler = (req: WireRequest) => string;

/**
 * What a method changes: nothing; the state (run on a copy, saved before the reply, dropped on an
 * error); or the dom0 policy directory (written by the handler itself, outside the state).
 */
export type Effect = "read" | "state" | "policy";

export interface HandlerEntry {
  fn: Handler;
  effect: Effect;
}
export type HandlerTable = Record<string, HandlerEntry>;

export const read = (fn: Handler): HandlerEntry => ({ fn, effect: "read" });
export const write = (fn: Handler): HandlerEntry => ({ fn, effect: "state" });

/** One name per line, as qubesd lists. */
export const lines = (xs: string[]): string => xs.map((x) => x + "\n").join("");

export function destVm(s: State, req: WireRequest): Vm {
  return m.findVm(s, req.dest);
}

/** The destination, which must not be dom0. */
export function destQube(s: State, req: WireRequest): Vm {
  const vm = destVm(s, req);
  if (vm.klass === "AdminVM") throw protocolError("expected destination to not be AdminVM");
  return vm;
}

export function toDom0(s: State, req: WireRequest): void {
  const vm = destVm(s, req);
  if (vm.klass !== "AdminVM") throw protocolError("expected destination to be AdminVM");
}

export function noArg(req: WireRequest): void {
  if (req.arg) throw protocolError("unexpected argument");
}
export function wantArg(req: WireRequest): void {
  if (!req.arg) throw protocolError("expected an argument");
}
export function noPayload(req: WireRequest): void {
  if (req.payload.length) throw protocolError("unexpected payload");
}

export function asciiPayload(req: WireRequest): string {
  const t = req.payload.toString("latin1");
  if (!/^[\x20-\x7e]*$/.test(t)) throw protocolError("payload must be printable ASCII");
  return t;
}
