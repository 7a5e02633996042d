/**
 * File operations inside a VM as POSIX shell, so every transport (qvm-run, qubes.VMShell,
 * qubes-sim) shares one implementation. Writes are atomic: temp file in the same directory,
 * content from stdin, chmod/chown, fsync (`sync FILE`), rename over the target.
 */
import { shQuote } from "./transport";

/** Exit status of the read script when the file does not exist. */
export const NOT_FOUND_EXIT = 44;

/** Prints the file; exits NOT_FOUND_EXIT when absent. */
export function readFileScript(path: string): string {
  return `p=${shQuote(path)}; if [ ! -e "$p" ] && [ ! -L "$p" ]; then exit ${NOT_FOUND_EXIT}; fi; exec cat -- "$p"`;
}

/**
 * Writes stdin to `path` atomically with the mode and owner; directories it creates for a file of
 * another owner than root belong to that owner. An owner unknown to the VM is an error, except in
 * qubes-sim (QUBES_SIM_VM set), whose VMs know `root` and `user` only.
 */
export function writeFileScript(path: string, mode: number, owner: string): string {
  if (!/^[a-z_][a-z0-9_-]*$/.test(owner)) throw new Error(`invalid owner ${JSON.stringify(owner)}`);
  if (!path.startsWith("/")) throw new Error(`path must be absolute: ${path}`);
  const m = (mode & 0o7777).toString(8).padStart(4, "0");
  return [
    "set -e",
    `p=${shQuote(path)}; o=${shQuote(owner)}`,
    'd=$(dirname -- "$p")',
    // Directories created for a user's file are the user's (root's `mkdir -p` would leave the
    // user unable to write next to its own file, e.g. a builder directory in /home/user).
    'if [ ! -d "$d" ]; then n=$d; while [ ! -e "$n" ]; do m=$n; n=$(dirname -- "$n"); done; mkdir -p -- "$d"',
    '  if [ "$o" != root ] && id -u "$o" >/dev/null 2>&1; then chown -R "$o:$(id -gn "$o")" -- "$m"; fi',
    "fi",
    't=$(mktemp -p "$d" ".qbi-tmp.XXXXXX")',
    "trap 'rm -f -- \"$t\"' EXIT",
    'cat > "$t"',
    `chmod ${m} -- "$t"`,
    'if id -u "$o" >/dev/null 2>&1; then chown "$o:$(id -gn "$o")" -- "$t"; elif [ -z "$QUBES_SIM_VM" ]; then echo "no such user: $o" >&2; exit 1; fi',
    'sync -- "$t" 2>/dev/null || sync',
    'mv -f -- "$t" "$p"',
    "trap - EXIT",
  ].join("\n");
}

/** Removes the file; no error when absent. */
export function removeFileScript(path: string): string {
  return `rm -f -- ${shQuote(path)}`;
}
