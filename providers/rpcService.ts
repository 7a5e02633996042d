/**
 * `RpcService`: a qrexec service program installed in a VM at
 * `/usr/local/etc/qubes-rpc/<service>` (atomic write, owner root, mode 0755 by default).
 * The program is inline text or a project file by reference (`projectFile`, providers/projectFile.ts).
 * The outputs record the sha256 of what was installed; refresh compares the file's hash, so a
 * program changed in the VM shows as drift and the next `up` puts it back.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { rpcInputs } from "./impl/rpcService";
import type { ArgsOf } from "./inputs";

/** Inputs of an `RpcService` (providers/impl/rpcService.ts `rpcInputs`; its content fields are `ContentArgs`). */
export type RpcServiceArgs = ArgsOf<z.input<typeof rpcInputs>>;

/** A qrexec service program in a VM. */
export class RpcService extends pulumi.dynamic.Resource {
  /** Where the program is installed in the VM. */
  declare readonly path: pulumi.Output<string>;
  /** sha256 (hex) of the installed program. */
  declare readonly sha256: pulumi.Output<string>;

  constructor(name: string, args: RpcServiceArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/rpcService.ts"), name, { ...args, path: undefined, sha256: undefined }, opts, "qubes", "RpcService");
  }
}
