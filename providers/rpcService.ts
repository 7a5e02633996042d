/**
 * `RpcService`: a qrexec service program installed in a VM at
 * `/usr/local/etc/qubes-rpc/<service>` (atomic write, owner root, mode 0755 by default).
 * The program is inline text or a project file by reference (`projectFile`, providers/projectFile.ts).
 * The outputs record the sha256 of what was installed; refresh compares the file's hash, so a
 * program changed in the VM shows as drift and the next `up` puts it back.
 */
import * as pulumi from "@pulumi/pulumi";
import { diskProvider } from "./dynamic";
import type { ContentArgs } from "./projectFile";

/** Inputs of an `RpcService`. */
export interface RpcServiceArgs extends ContentArgs {
  /** The VM the service runs in. Changing it replaces the resource. */
  vm: pulumi.Input<string>;
  /** For a VM the site does not create: the stack config key naming it, e.g. `{ vm: "qubes-build-infra:netvm" }` (the VM must exist). */
  configKeys?: pulumi.Input<Record<string, string>>;
  /** The uuid of the VM (its QubesVm's `uuid` output): the resource is replaced with the VM, and gone with it. */
  vmUuid?: pulumi.Input<string>;
  /** Service name, optionally with a specific argument: `qubesbuilder.BuildLog`, `local.ConnectSSH+github.com`. */
  service: pulumi.Input<string>;
  /** File mode (default 0o755). */
  mode?: pulumi.Input<number>;
}

/** A qrexec service program in a VM. */
export class RpcService extends pulumi.dynamic.Resource {
  /** Where the program is installed in the VM. */
  declare readonly path: pulumi.Output<string>;
  /** sha256 (hex) of the installed program. */
  declare readonly sha256: pulumi.Output<string>;

  constructor(name: string, args: RpcServiceArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/rpcService.ts"), name, { mode: 0o755, ...args, path: undefined, sha256: undefined }, opts, "qubes", "RpcService");
  }
}
