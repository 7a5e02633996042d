/**
 * `SshKey`: an ssh key pair generated in a VM, whose private half never leaves it. The logs VM's
 * deploy key (push to the logs repository) and each build VM's upload key are these. The public
 * key is an output (a stack output), so the operator registers it on GitHub or the upload hosts.
 *
 * A key already at `path` is adopted. Rotation is a config change: a new `generation` replaces the
 * key in place (the old private key is deleted) and shows in `pulumi preview` as an update whose
 * public key changes. Refresh reads the public key back: a key deleted in the VM is generated anew
 * by the next `up`. Deleting the resource never deletes the key.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { keyInputs } from "./impl/sshKey";
import type { ArgsOf } from "./inputs";

/** Inputs of an `SshKey` (providers/impl/sshKey.ts `keyInputs`). */
export type SshKeyArgs = ArgsOf<z.input<typeof keyInputs>>;

/** An ssh key pair in a VM. */
export class SshKey extends pulumi.dynamic.Resource {
  /** The public key line (`ssh-ed25519 AAAA... comment`). */
  declare readonly publicKey: pulumi.Output<string>;
  /** Its SHA256 fingerprint, as ssh prints it. */
  declare readonly fingerprint: pulumi.Output<string>;

  constructor(name: string, args: SshKeyArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/sshKey.ts"), name,
      { ...args, publicKey: undefined, fingerprint: undefined }, opts, "qubes", "SshKey");
  }
}
