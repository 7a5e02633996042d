/**
 * `AuthenticodeKey`: the Windows code-signing key of a Windows keys VM (RSA-4096, self-signed
 * certificate, in `/home/user/win-sign/keys/<name>.key|.crt` where builderv2's WinSign services
 * look), made inside that VM on first `up`. Build VMs can only use existing keys (the site's
 * policy has no CreateKey/DeleteKey), so key creation is the site's job. The certificate is the
 * output; the private key never leaves the VM, and deleting the resource never deletes it.
 */
import * as pulumi from "@pulumi/pulumi";
import { diskProvider } from "./dynamic";

/** Inputs of an `AuthenticodeKey`. */
export interface AuthenticodeKeyArgs {
  /** The uuid of the VM (its QubesVm's `uuid` output): the resource is replaced with the VM, and gone with it. */
  vmUuid?: pulumi.Input<string>;
  /** The Windows keys VM. */
  vm: pulumi.Input<string>;
  /** The key name as builderv2 sends it (`__` for a space), e.g. `Qubes__Windows__Tools`. */
  name: pulumi.Input<string>;
  /** Validity of a generated certificate in days (default 3650, as upstream). */
  days?: pulumi.Input<number>;
}

/** A Windows code-signing key in a Windows keys VM. */
export class AuthenticodeKey extends pulumi.dynamic.Resource {
  /** The PEM certificate. */
  declare readonly certificate: pulumi.Output<string>;

  constructor(name: string, args: AuthenticodeKeyArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/authenticodeKey.ts"), name, { days: 3650, ...args, certificate: undefined }, opts, "qubes", "AuthenticodeKey");
  }
}
