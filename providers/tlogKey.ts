/**
 * `TransparencyLogKey`: the note signing key of a logs VM's transparency log (Ed25519, C2SP
 * signed-note), made inside the logs VM by `qbi-tlog keygen` on first `up`; its private half
 * never leaves the VM. The output `verifier` (`<origin>+<key hash>+<base64>`) is what keys VMs
 * check every checkpoint against and what outsiders audit the log with (a stack output).
 * Deleting the resource never deletes the key: a new key would start a new log.
 */
import * as pulumi from "@pulumi/pulumi";
import { diskProvider } from "./dynamic";

/** Inputs of a `TransparencyLogKey`. */
export interface TransparencyLogKeyArgs {
  /** The uuid of the VM (its QubesVm's `uuid` output): the resource is replaced with the VM, and gone with it. */
  vmUuid?: pulumi.Input<string>;
  /** The logs VM. */
  vm: pulumi.Input<string>;
  /** The log's origin (the first line of its checkpoints), e.g. `github.com/QubesOS/build-logs/logs`. */
  origin: pulumi.Input<string>;
  /** The qbi-tlog program in the VM. */
  program: pulumi.Input<string>;
  /** Where the private key lives in the VM (default `/home/user/.config/qubes-build-infra/tlog.key`). */
  privateKey?: pulumi.Input<string>;
}

/** The note signing key of a transparency log, in its logs VM. */
export class TransparencyLogKey extends pulumi.dynamic.Resource {
  /** The note verifier key. */
  declare readonly verifier: pulumi.Output<string>;
  declare readonly privateKey: pulumi.Output<string>;

  constructor(name: string, args: TransparencyLogKeyArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/tlogKey.ts"), name, { privateKey: "/home/user/.config/qubes-build-infra/tlog.key", ...args, verifier: undefined }, opts, "qubes", "TransparencyLogKey");
  }
}
