/**
 * `ManagedFile`: a file in a VM (kind `file`: the whole file, written atomically with mode and
 * owner), a symbolic link (kind `symlink`: `content` is the link's target), or one marked block of a
 * file (kind `block`: only the text between
 * `# BEGIN qubes-build-infra <blockId>` and `# END qubes-build-infra <blockId>` is ours; the rest
 * of the file, e.g. /rw/config/rc.local, is left untouched).
 *
 * The content may be a Pulumi secret: outputs hold it (the engine keeps it secret, as its input) and its sha256 (also a
 * secret output). Refresh compares the hash of what is in the VM. Delete removes the file (kind
 * `file`) or only the block.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { fileInputs } from "./impl/managedFile";
import type { ArgsOf } from "./inputs";

/** Inputs of a `ManagedFile` (providers/impl/managedFile.ts `fileInputs`; its content fields are `ContentArgs`). */
export type ManagedFileArgs = ArgsOf<z.input<typeof fileInputs>>;

/** A file, or a managed block of a file, in a VM. */
export class ManagedFile extends pulumi.dynamic.Resource {
  /** sha256 (hex) of the content written (whole file, or the block's inner text). */
  declare readonly sha256: pulumi.Output<string>;

  constructor(name: string, args: ManagedFileArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      diskProvider("providers/impl/managedFile.ts"),
      name,
      { ...args, sha256: undefined },
      { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "sha256"] },
      "qubes",
      "ManagedFile",
    );
  }
}
