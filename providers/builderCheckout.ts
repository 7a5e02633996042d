/**
 * `BuilderCheckout`: a repository of builder code (or a builder's config repository) checked out
 * in a directory of a VM at a pinned commit, **verified before checkout**.
 *
 * The formula's `safe-checkout-sha` checked out whatever commit it was given and trusted it; the
 * self-updates that followed were verified against a keyring that grew with the repository. Here:
 * the objects are fetched without a checkout into a quarantine ref, a fresh temporary GnuPG home
 * holds only the configured maintainer keys, the signed tag (or, without a tag, the signed commit)
 * must carry exactly one good signature whose primary key is one of the allowed maintainers, and
 * the tag must point at the pinned commit. Any expired, revoked, bad, unknown or missing signature
 * refuses, and so does a pin or tag the remote does not have. Nothing from the repository runs
 * before that: no hooks (none are installed, `core.hooksPath=/dev/null` on every call), no
 * submodules (fetched after verification, at the commits the verified tree pins). A failure leaves
 * the previous checkout as it was.
 *
 * `read` reports the commit checked out and whether tracked files were modified (drift found by
 * refresh); a pin change is an update of this checkout only. Deleting the resource leaves the
 * directory alone: it may hold builds and nested checkouts.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { checkoutInputs } from "./impl/builderCheckout";
import type { ArgsOf } from "./inputs";

/** Inputs of a `BuilderCheckout` (providers/impl/builderCheckout.ts `checkoutInputs`). */
export type BuilderCheckoutArgs = ArgsOf<z.input<typeof checkoutInputs>>;

/** A verified checkout of a repository in a VM. */
export class BuilderCheckout extends pulumi.dynamic.Resource {
  /** The commit checked out (after refresh: what is there now). */
  declare readonly checkedOut: pulumi.Output<string>;
  /** False when tracked files differ from the commit (after refresh). */
  declare readonly clean: pulumi.Output<boolean>;
  /** Primary fingerprint of the key whose signature was verified. */
  declare readonly verifiedBy: pulumi.Output<string>;

  constructor(name: string, args: BuilderCheckoutArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/builderCheckout.ts"), name,
      { ...args, checkedOut: undefined, clean: undefined, verifiedBy: undefined }, opts, "qubes", "BuilderCheckout");
  }
}
