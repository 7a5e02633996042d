/**
 * The frame of a service program: how an outcome becomes an exit code, a stderr line and, for
 * callers behind qrexec (which relays only stdout), a reason line.
 */
import { log } from "./log";
import { ConfigError, EXIT, Refusal, REASON_PREFIX, printable } from "./outcome";

/** Writes the reason line on stdout (then exits once it is flushed). */
export function reasonOnStdout(service: string, what: string, code: number): void {
  process.stdout.write(`${REASON_PREFIX}${service}: ${printable(what, 600)}\n`, () => process.exit(code));
}

/**
 * Runs a service main: maps Refusal → exit 1, ConfigError → exit 2, anything else → exit 3,
 * with one line on stderr (and, with `reasonOnStdout`, one `qbi-reason:` line on stdout).
 */
export function runMain(service: string, main: () => Promise<number>, opts: { reasonOnStdout?: boolean } = {}): void {
  const end = (what: string, code: number) => {
    log(service, what);
    if (opts.reasonOnStdout) reasonOnStdout(service, what, code);
    else process.exit(code);
  };
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof Refusal) end(`refused: ${e.message}`, EXIT.REFUSED);
      else if (e instanceof ConfigError) end(`configuration error: ${e.message}`, EXIT.CONFIG);
      else end(`failed: ${e instanceof Error ? e.message : String(e)}`, EXIT.FAILED);
    },
  );
}
