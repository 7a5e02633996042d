/**
 * `TransparencyLogKey`: the note signing key of a logs VM's transparency log (Ed25519, C2SP
 * signed-note), made inside the logs VM by `qbi-tlog keygen` on first `up`; its private half
 * never leaves the VM. The output `verifier` (`<origin>+<key hash>+<base64>`) is what keys VMs
 * check every checkpoint against and what outsiders audit the log with (a stack output).
 * Deleting the resource never deletes the key: a new key would start a new log.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { inputs } from "./impl/tlogKey";
import type { ArgsOf } from "./inputs";

/** Inputs of a `TransparencyLogKey` (providers/impl/tlogKey.ts `inputs`). */
export type TransparencyLogKeyArgs = ArgsOf<z.input<typeof inputs>>;

/** The note signing key of a transparency log, in its logs VM. */
export class TransparencyLogKey extends pulumi.dynamic.Resource {
  /** The note verifier key. */
  declare readonly verifier: pulumi.Output<string>;
  declare readonly privateKey: pulumi.Output<string>;

  constructor(name: string, args: TransparencyLogKeyArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/tlogKey.ts"), name, { ...args, verifier: undefined }, opts, "qubes", "TransparencyLogKey");
  }
}
