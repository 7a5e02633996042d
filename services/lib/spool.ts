/**
 * Spooling of data to be signed: the bytes are written to a private file while their sha256 is
 * computed, so that what is checked against the log is exactly what is then signed (never a
 * second read of a stream that could differ).
 */
import { createHash, randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Refusal } from "./outcome";

export interface Spooled {
  file: string;
  sha256: string;
  size: number;
  /** Removes the spool file. */
  remove(): void;
}

/**
 * Writes `first` then the rest of `input` into a new file in `dir` (mode 0600), hashing it.
 * More than `maxBytes` in all is refused (the file is removed).
 */
export async function spool(dir: string, input: NodeJS.ReadableStream, maxBytes: number, first: Buffer = Buffer.alloc(0)): Promise<Spooled> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `spool-${process.pid}-${randomBytes(6).toString("hex")}`);
  const fd = fs.openSync(file, "wx", 0o600);
  const hash = createHash("sha256");
  let size = 0;
  const remove = () => fs.rmSync(file, { force: true });
  try {
    const put = (b: Buffer) => {
      size += b.length;
      if (size > maxBytes) throw new Refusal(`input larger than ${maxBytes} bytes`);
      hash.update(b);
      let off = 0;
      while (off < b.length) off += fs.writeSync(fd, b, off);
    };
    if (first.length) put(first);
    for await (const chunk of input as AsyncIterable<Buffer | string>) put(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    remove();
    throw e;
  }
  fs.closeSync(fd);
  return { file, sha256: hash.digest("hex"), size, remove };
}

/** sha256 and size of a file, streamed. */
export async function hashFile(file: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of fs.createReadStream(file) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest("hex"), size };
}
