/**
 * A file of the project that a resource installs in a VM, passed by reference: its path and the
 * sha256 of the text the program read. Large programs (the bundled services, ~0.8 MB each) then
 * never travel through the engine or sit in the state; only their hash does, so a no-op preview
 * costs the same whatever their size. The provider reads the file when it writes it and refuses
 * to write if the text is no longer the one previewed.
 */
import * as fs from "fs";
import * as path from "path";
import type { z } from "zod";
import { sha256 } from "./impl/common";
import type { contentInputs } from "./impl/source";
import type { Inputs } from "./inputs";

/** The `contentFile`/`contentSha256` inputs of `RpcService` and `ManagedFile` (providers/impl/source.ts `contentInputs`). */
export type ProjectFileRef = Required<Pick<z.input<typeof contentInputs>, "contentFile" | "contentSha256">>;

/** The text of a file resource (providers/impl/source.ts `contentInputs`): inline `content`, or a project file by reference (`projectFile`). */
export type ContentArgs = Inputs<z.input<typeof contentInputs>>;

/**
 * References `file` (absolute, or relative to the working directory) and hashes it now. Inside the
 * project the reference is kept relative, so the state does not depend on where it is checked out.
 */
export function projectFile(file: string): ProjectFileRef {
  const abs = path.resolve(file);
  let text: Buffer;
  try {
    text = fs.readFileSync(abs);
  } catch (e) {
    throw new Error(`${abs} is missing or unreadable (${(e as NodeJS.ErrnoException).code ?? String(e)}): run scripts/setup.sh (it bundles services/)`);
  }
  const rel = path.relative(process.cwd(), abs);
  return {
    contentFile: rel.startsWith("..") || path.isAbsolute(rel) ? abs : rel,
    contentSha256: sha256(text),
  };
}
