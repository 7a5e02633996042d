/**
 * A file of the project that a resource installs in a VM, passed by reference: its path and the
 * sha256 of the text the program read. Large programs (the bundled services, ~0.8 MB each) then
 * never travel through the engine or sit in the state; only their hash does, so a no-op preview
 * costs the same whatever their size. The provider reads the file when it writes it and refuses
 * to write if the text is no longer the one previewed.
 */
import * as fs from "fs";
import * as path from "path";
import type * as pulumi from "@pulumi/pulumi";
import { sha256 } from "./impl/common";

/** The `contentFile`/`contentSha256` inputs of `RpcService` and `ManagedFile`. */
export interface ProjectFileRef {
  /** Path relative to the project directory (the engine's working directory), or absolute. */
  contentFile: string;
  /** sha256 (hex) of the file's text when the program read it. */
  contentSha256: string;
}

/** The text of a file resource: inline `content`, or a project file by reference (`projectFile`). */
export interface ContentArgs {
  /** The text inline (may be a Pulumi secret). */
  content?: pulumi.Input<string>;
  /** Instead of `content`: a project file (see `projectFile`); only its hash goes through the engine. */
  contentFile?: pulumi.Input<string>;
  /** sha256 of `contentFile`'s text as the program read it; the provider refuses any other text. */
  contentSha256?: pulumi.Input<string>;
}

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
