/**
 * `SigningKey`: an OpenPGP signing key that lives in a VM (a keys VM or the logs VM).
 *
 * The formula never created keys. This resource makes sure the key is there: it adopts the
 * key named by `expectFingerprint` (and fails if it is missing: a production key is imported by
 * hand, never silently replaced), or, with `generate`, creates an ed25519 key on first `up`. Its
 * outputs are the fingerprint and the public key, which the rest of the site consumes. Deleting
 * the resource never deletes the key.
 */
import * as pulumi from "@pulumi/pulumi";
import { diskProvider } from "./dynamic";

/** Inputs of a `SigningKey`. */
export interface SigningKeyArgs {
  /** The VM holding the key. */
  vm: pulumi.Input<string>;
  /** The uuid of the VM (its QubesVm's `uuid` output): the resource is replaced with the VM, and gone with it. */
  vmUuid?: pulumi.Input<string>;
  /** User id for a generated key, e.g. `Qubes OS build signing key (fedora)`. */
  uid: pulumi.Input<string>;
  /** The fingerprint that must be present (production); absent: generate one if none. */
  expectFingerprint?: pulumi.Input<string | undefined>;
  /** GnuPG home in the VM (default `/home/user/.gnupg`). */
  gnupgHome?: pulumi.Input<string>;
}

/** An OpenPGP signing key in a VM. */
export class SigningKey extends pulumi.dynamic.Resource {
  /** The key's 40-hex fingerprint. */
  declare readonly fingerprint: pulumi.Output<string>;
  /** The armored public key. */
  declare readonly publicKey: pulumi.Output<string>;

  constructor(name: string, args: SigningKeyArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/signingKey.ts"), name, { gnupgHome: "/home/user/.gnupg", ...args, fingerprint: undefined, publicKey: undefined }, opts, "qubes", "SigningKey");
  }
}
