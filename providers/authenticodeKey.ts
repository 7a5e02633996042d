/**
 * `AuthenticodeKey`: the Windows code-signing key of a Windows keys VM (RSA-4096, self-signed
 * certificate, in `/home/user/win-sign/keys/<name>.key|.crt` where builderv2's WinSign services
 * look), made inside that VM on first `up`. Build VMs can only use existing keys (the site's
 * policy has no CreateKey/DeleteKey), so key creation is the site's job. The certificate is the
 * output; the private key never leaves the VM, and deleting the resource never deletes it.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { inputs } from "./impl/authenticodeKey";
import type { ArgsOf } from "./inputs";

/** Inputs of an `AuthenticodeKey` (providers/impl/authenticodeKey.ts `inputs`). */
export type AuthenticodeKeyArgs = ArgsOf<z.input<typeof inputs>>;

/** A Windows code-signing key in a Windows keys VM. */
export class AuthenticodeKey extends pulumi.dynamic.Resource {
  /** The PEM certificate. */
  declare readonly certificate: pulumi.Output<string>;

  constructor(name: string, args: AuthenticodeKeyArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/authenticodeKey.ts"), name, { ...args, certificate: undefined }, opts, "qubes", "AuthenticodeKey");
  }
}
