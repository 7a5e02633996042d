/** The services' stderr: one line per message, and opt-in timings (QBI_TRACE=1). */

/** Writes `<service>: <msg>` to stderr. */
export function log(service: string, msg: string): void {
  process.stderr.write(`${service}: ${msg}\n`);
}

/** With QBI_TRACE=1, one stderr line per timed step (where a signature's round trip goes). */
export function trace(label: string, since: number): void {
  if (process.env.QBI_TRACE === "1") process.stderr.write(`trace: ${label}: ${Date.now() - since} ms\n`);
}
