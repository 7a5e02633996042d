/**
 * Errors of the Admin API: every failed call rejects with a `QubesError` carrying the Qubes
 * exception class name (`qubesType`), the formatted message, and the call (method, dest).
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
};

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

  constructor(qubesType: string, message: string, call: { method: string; dest: string; arg?: string }) {
    super(message);
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

/** True when `e` is a QubesError of the given exception type(s). */
export function isQubesError(e: unknown, ...types: string[]): e is QubesError {
  return e instanceof QubesError && (types.length === 0 || types.includes(e.qubesType));
}

/** The call could not be made at all (socket missing, qrexec-client-vm failed, bad reply). */
export class QubesTransportError extends QubesError {
  constructor(message: string, call: { method: string; dest: string; arg?: string }) {
    super("QubesDaemonCommunicationError", message, call);
  }
}
