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
import { diskProvider } from "./dynamic";
import type { ContentArgs } from "./projectFile";

/** Inputs of a `ManagedFile`. */
export interface ManagedFileArgs extends ContentArgs {
  /** The VM holding the file. Changing it replaces the resource. */
  vm: pulumi.Input<string>;
  /** For a VM the site does not create: the stack config key naming it, e.g. `{ vm: "qubes-build-infra:netvm" }` (the VM must exist). */
  configKeys?: pulumi.Input<Record<string, string>>;
  /** The uuid of the VM (its QubesVm's `uuid` output): the resource is replaced with the VM, and gone with it. */
  vmUuid?: pulumi.Input<string>;
  /** Absolute path in the VM. Changing it replaces the resource. */
  path: pulumi.Input<string>;
  // content: the whole file (kind `file`) or the block's text (kind `block`, inline only).
  /** File mode (default 0o644); for a block, the mode of the whole file. */
  mode?: pulumi.Input<number>;
  /** Owner (`root` by default, or `user`). */
  owner?: pulumi.Input<string>;
  /** `file` (default): the whole file; `block`: one marked block of it. */
  kind?: pulumi.Input<"file" | "block" | "symlink">;
  /** Name of the block in its markers (kind `block`; default `main`). */
  blockId?: pulumi.Input<string>;
}

/** A file, or a managed block of a file, in a VM. */
export class ManagedFile extends pulumi.dynamic.Resource {
  /** sha256 (hex) of the content written (whole file, or the block's inner text). */
  declare readonly sha256: pulumi.Output<string>;

  constructor(name: string, args: ManagedFileArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      diskProvider("providers/impl/managedFile.ts"),
      name,
      { mode: 0o644, owner: "root", kind: "file", blockId: "main", ...args, sha256: undefined },
      { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "sha256"] },
      "qubes",
      "ManagedFile",
    );
  }
}
