/**
 * Files a service keeps across calls: atomic rewrites and fsynced journal lines (a crash leaves
 * the old or the new state, never half of one), pid lock files, and bounded reads of stdin.
 */
import * as fs from "fs";

/** Writes a file atomically (temp file in the same directory, fsync, rename). */
export function writeFileAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  const fd = fs.openSync(tmp, "w", mode);
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** Appends one JSON line (O_APPEND, fsync): the services' append-only journals. */
export function appendJsonLine(file: string, record: Record<string, unknown>): void {
  const fd = fs.openSync(file, "a", 0o600);
  try {
    fs.writeSync(fd, `${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** True while a process with that pid exists (EPERM: it exists, owned by someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * An O_EXCL lock file holding the owner's pid. A lock whose pid is gone is stale and is taken
 * over (rename-free: unlink then retry the exclusive create). Waits up to `timeoutMs`.
 * Returns the release function.
 */
export async function acquireLock(file: string, timeoutMs = 600000): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  for (;;) {
    try {
      const fd = fs.openSync(file, "wx", 0o600);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      return () => {
        try {
          if (fs.readFileSync(file, "utf8").trim() === String(process.pid)) fs.unlinkSync(file);
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    let owner = NaN;
    try {
      owner = parseInt(fs.readFileSync(file, "utf8").trim(), 10);
    } catch {
      continue; // vanished between create and read: retry at once
    }
    if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
      try {
        fs.unlinkSync(file);
      } catch {
        /* someone else took it over */
      }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${file} (held by pid ${owner})`);
    await sleep(delay);
    delay = Math.min(delay * 2, 500);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Reads all of stdin up to `max` bytes; `overflow` tells whether more was sent. */
export async function readStdinLimited(max: number): Promise<{ data: Buffer; overflow: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let overflow = false;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    if (size + chunk.length > max) {
      chunks.push(chunk.subarray(0, max - size));
      size = max;
      overflow = true;
      break;
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return { data: Buffer.concat(chunks), overflow };
}
