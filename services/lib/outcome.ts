/**
 * How a service ends and says why, without zod (so that the build VM's small client stays small):
 * exit codes, the two refusal classes, printable rendering of untrusted text, and the reason line
 * a refusing service prints on stdout.
 */

/** Exit codes shared by all services (see services/README.md). */
export const EXIT = { OK: 0, REFUSED: 1, CONFIG: 2, FAILED: 3 } as const;

export class Refusal extends Error {}
export class ConfigError extends Error {}

/** Printable ASCII rendering of untrusted text for messages (never echoes control bytes). */
export function printable(s: string, max = 80): string {
  const t = s.replace(/[^\x20-\x7e]/g, "?");
  return t.length > max ? `${t.slice(0, max)}...` : t;
}

/**
 * The first stdout line of a service that refused or failed, for callers that must say why:
 * qrexec relays a service's stdout to the caller, not its stderr.
 */
export const REASON_PREFIX = "qbi-reason: ";

/** The reason line in a service's stdout, if any. */
export function reasonIn(stdout: string | Buffer): string | undefined {
  const text = (typeof stdout === "string" ? stdout : stdout.subarray(0, 4096).toString("latin1"));
  const line = text.split("\n").find((l) => l.startsWith(REASON_PREFIX));
  return line?.slice(REASON_PREFIX.length);
}
