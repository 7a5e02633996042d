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
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { keyInputs } from "./impl/signingKey";
import type { ArgsOf } from "./inputs";

/** Inputs of a `SigningKey` (providers/impl/signingKey.ts `keyInputs`). */
export type SigningKeyArgs = ArgsOf<z.input<typeof keyInputs>>;

/** An OpenPGP signing key in a VM. */
export class SigningKey extends pulumi.dynamic.Resource {
  /** The key's 40-hex fingerprint. */
  declare readonly fingerprint: pulumi.Output<string>;
  /** The armored public key. */
  declare readonly publicKey: pulumi.Output<string>;

  constructor(name: string, args: SigningKeyArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/signingKey.ts"), name, { ...args, fingerprint: undefined, publicKey: undefined }, opts, "qubes", "SigningKey");
  }
}
