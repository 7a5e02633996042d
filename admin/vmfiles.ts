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
 * Writes stdin to `path` atomically with the mode and owner. In qubes-sim (QUBES_SIM_VM set) an
 * owner unknown to the host's passwd is skipped (the sandbox runs as root with the host's /etc).
 */
export function writeFileScript(path: string, mode: number, owner: string): string {
  if (!/^[a-z_][a-z0-9_-]*$/.test(owner)) throw new Error(`invalid owner ${JSON.stringify(owner)}`);
  if (!path.startsWith("/")) throw new Error(`path must be absolute: ${path}`);
  const m = (mode & 0o7777).toString(8).padStart(4, "0");
  return [
    "set -e",
    `p=${shQuote(path)}; o=${shQuote(owner)}`,
    // Directories this write creates belong to the file's owner (a user's file in a new ~/.config/x
    // must not sit in a root-owned directory the user cannot write to).
    'd=$(dirname -- "$p"); created=""; x=$d',
    'while [ ! -e "$x" ]; do created="$x\n$created"; x=$(dirname -- "$x"); done',
    'mkdir -p -- "$d"',
    't=$(mktemp -p "$d" ".qbi-tmp.XXXXXX")',
    "trap 'rm -f -- \"$t\"' EXIT",
    'cat > "$t"',
    `chmod ${m} -- "$t"`,
    'if id -u "$o" >/dev/null 2>&1; then chown "$o:$(id -gn "$o")" -- "$t"; elif [ -z "$QUBES_SIM_VM" ]; then echo "no such user: $o" >&2; exit 1; fi',
    'if [ -n "$created" ] && id -u "$o" >/dev/null 2>&1; then printf "%s" "$created" | while IFS= read -r x; do [ -z "$x" ] || chown "$o:$(id -gn "$o")" -- "$x"; done; fi',
    'sync -- "$t" 2>/dev/null || sync',
    'mv -f -- "$t" "$p"',
    "trap - EXIT",
  ].join("\n");
}

/** Removes the file; no error when absent. */
export function removeFileScript(path: string): string {
  return `rm -f -- ${shQuote(path)}`;
}
