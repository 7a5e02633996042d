/**
 * Errors of the Admin API: every failed call rejects with a `QubesError` carrying the Qubes
 * exception class name (`qubesType`), a short `code` to branch on, the formatted message, and the
 * call (method, dest).
 *
 * Branch with `qubesErrorOf`/`hasQubesCode`, not `instanceof`: the provider implementations are
 * bundled one module at a time, so one process may hold several copies of this class. A brand
 * (a registered symbol) recognises them all, also behind `cause` chains of wrapping errors.
 */

/** Short codes for the exception types callers commonly branch on. */
export type QubesErrorCode =
  | "vm-not-found"
  | "value"
  | "property-value"
  | "no-such-property"
  | "vm-in-use"
  | "vm-not-halted"
  | "vm-not-started"
  | "feature-not-found"
  | "tag-not-found"
  | "label-not-found"
  | "storage"
  | "protocol"
  | "permission-denied"
  | "policy-token"
  | "policy-not-found"
  | "policy-syntax"
  | "policy"
  | "command-failed"
  | "transport"
  | "other";

const CODES: Record<string, QubesErrorCode> = {
  QubesVMNotFoundError: "vm-not-found",
  QubesVMInvalidUUIDError: "vm-not-found",
  QubesValueError: "value",
  QubesPropertyValueError: "property-value",
  QubesNoSuchPropertyError: "no-such-property",
  QubesVMInUseError: "vm-in-use",
  QubesVMNotHaltedError: "vm-not-halted",
  QubesVMNotStartedError: "vm-not-started",
  QubesVMNotRunningError: "vm-not-started",
  QubesFeatureNotFoundError: "feature-not-found",
  QubesTagNotFoundError: "tag-not-found",
  QubesLabelNotFoundError: "label-not-found",
  StoragePoolException: "storage",
  ProtocolError: "protocol",
  PermissionDenied: "permission-denied",
  PolicyAdminTokenException: "policy-token",
  PolicyAdminFileNotFoundException: "policy-not-found",
  PolicyAdminSyntaxException: "policy-syntax",
  PolicyAdminException: "policy",
  PolicyAdminProtocolException: "policy",
  PolicyAdminInvalidFileNameException: "policy",
  PolicyAdminInvalidFilePathException: "policy",
  QubesDaemonCommunicationError: "transport",
  QubesVMCommandError: "command-failed",
};

const BRAND = Symbol.for("qubes-build-infra.QubesError");

/** A failed Admin API call. */
export class QubesError extends Error {
  /** The Qubes exception class name, e.g. `QubesVMNotFoundError`. */
  readonly qubesType: string;
  /** Short code derived from qubesType. */
  readonly code: QubesErrorCode;
  /** The method called (`admin.vm.property.Set`), without argument. */
  readonly method: string;
  /** The destination of the call. */
  readonly dest: string;
  /** The argument of the call, if any. */
  readonly arg: string;

  constructor(qubesType: string, message: string, call: { method: string; dest: string; arg?: string }, options?: { cause?: unknown }) {
    super(message, options);
    Object.defineProperty(this, BRAND, { value: true });
    this.name = qubesType;
    this.qubesType = qubesType;
    this.code = CODES[qubesType] ?? "other";
    this.method = call.method;
    this.dest = call.dest;
    this.arg = call.arg ?? "";
  }

  /** Human summary: `<method>+<arg> on <dest>: <Type>: <message>`. */
  describe(): string {
    return `${this.method}${this.arg ? "+" + this.arg : ""} on ${this.dest}: ${this.qubesType}: ${this.message}`;
  }
}

function branded(e: unknown): e is QubesError {
  return typeof e === "object" && e !== null && (e as Record<symbol, unknown>)[BRAND] === true;
}

/** True when `e` is a QubesError (of any copy of this module) of the given exception type(s). */
export function isQubesError(e: unknown, ...types: string[]): e is QubesError {
  return branded(e) && (types.length === 0 || types.includes(e.qubesType));
}

/** The QubesError that `e` is or wraps (following `cause`), if any. */
export function qubesErrorOf(e: unknown): QubesError | undefined {
  for (let cur: unknown = e, depth = 0; cur !== undefined && cur !== null && depth < 20; depth++) {
    if (branded(cur)) return cur;
    cur = typeof cur === "object" ? (cur as { cause?: unknown }).cause : undefined;
  }
  return undefined;
}

/** True when `e` is or wraps a QubesError with one of these codes. */
export function hasQubesCode(e: unknown, ...codes: QubesErrorCode[]): boolean {
  const q = qubesErrorOf(e);
  return q !== undefined && codes.includes(q.code);
}

/** The call could not be made at all (socket missing, qrexec-client-vm failed, bad reply). */
export class QubesTransportError extends QubesError {
  constructor(message: string, call: { method: string; dest: string; arg?: string }, options?: { cause?: unknown }) {
    super("QubesDaemonCommunicationError", message, call, options);
  }
}
