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
import { diskProvider } from "./dynamic";

/** Inputs of an `SshKey`. */
export interface SshKeyArgs {
  /** The VM holding the key. Changing it replaces the resource. */
  vm: pulumi.Input<string>;
  /** The uuid of the VM (its QubesVm's `uuid` output): the resource is replaced with the VM, and gone with it. */
  vmUuid?: pulumi.Input<string>;
  /** The private key's path (e.g. `/home/user/.ssh/id_ed25519`); the public key is `<path>.pub`. */
  path: pulumi.Input<string>;
  /** The key's comment, e.g. `logs deploy key (qubes-build-infra)`. */
  comment: pulumi.Input<string>;
  /** Bump to rotate. */
  generation?: pulumi.Input<number>;
  /** Owner (default `user`). */
  user?: pulumi.Input<string>;
}

/** An ssh key pair in a VM. */
export class SshKey extends pulumi.dynamic.Resource {
  /** The public key line (`ssh-ed25519 AAAA... comment`). */
  declare readonly publicKey: pulumi.Output<string>;
  /** Its SHA256 fingerprint, as ssh prints it. */
  declare readonly fingerprint: pulumi.Output<string>;

  constructor(name: string, args: SshKeyArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/sshKey.ts"), name,
      { generation: 1, user: "user", ...args, publicKey: undefined, fingerprint: undefined }, opts, "qubes", "SshKey");
  }
}
