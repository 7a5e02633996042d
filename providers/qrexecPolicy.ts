/**
 * `QrexecPolicy`: one dom0 policy file (`/etc/qubes/policy.d/<name>.policy`) holding exactly the
 * given rules, rendered by the qrexec module.
 *
 * Writes go through the policy admin API with its token: an update presents the token recorded at
 * the last apply (or refresh), so a file edited by someone else in the meantime is never silently
 * overwritten; the error says to run `pulumi refresh`, which reads the file back (its rules become
 * the recorded inputs, so the next preview shows, rule by rule, what `up` would put back).
 * `ruleDiff` summarises the rule-level change in the preview and records it in the outputs.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { policyInputs } from "./impl/qrexecPolicy";
import type { ArgsOf } from "./inputs";

/** A qrexec rule as written by the site (qrexec/rule.ts). */
export type { PolicyRule } from "../qrexec";

/** Inputs of a `QrexecPolicy` (providers/impl/qrexecPolicy.ts `policyInputs`), but `ruleDiff`, which check computes. */
export type QrexecPolicyArgs = ArgsOf<Omit<z.input<typeof policyInputs>, "ruleDiff">>;

/** A dom0 qrexec policy file. */
export class QrexecPolicy extends pulumi.dynamic.Resource {
  /** The rendered file as written (or as found by refresh). */
  declare readonly content: pulumi.Output<string>;
  /** The policy admin token of `content`. */
  declare readonly token: pulumi.Output<string>;
  /** Rule-level summary of the last change (`+ rule` / `- rule` lines). */
  declare readonly ruleDiff: pulumi.Output<string>;

  constructor(name: string, args: QrexecPolicyArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/qrexecPolicy.ts"), name, { ...args, content: undefined, token: undefined, ruleDiff: undefined }, opts, "qubes", "QrexecPolicy");
  }
}
