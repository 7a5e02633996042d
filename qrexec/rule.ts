/**
 * The shape of one qrexec policy rule as data (zod): what the site plans, what `QrexecPolicy` takes
 * and what the policy pack reads back. The parser's `Rule` (qrexec/types.ts) is this plus where the
 * rule was read (file, line).
 */
import { z } from "zod";

/** A policy action. */
export const action = z.enum(["allow", "deny", "ask"]);

/** Action parameters of a rule; only the keys valid for its action are ever set. */
export const ruleParams = z.object({
  /** Redirect target (`target=`), allow and ask. */
  target: z.string().optional(),
  /** Preselected target in the ask dialog (`default_target=`), ask only. */
  default_target: z.string().optional(),
  /** User to run the service as (`user=`), allow and ask. */
  user: z.string().optional(),
  /** `notify=yes|no`, any action. */
  notify: z.boolean().optional(),
  /** `autostart=yes|no`, allow and ask. */
  autostart: z.boolean().optional(),
});

/** One policy rule: `service argument source target action [params]` (params absent: none). */
export const policyRule = z.object({
  /** Service name, or `*`. */
  service: z.string(),
  /** `*` or `+` followed by the argument (possibly empty). */
  argument: z.string(),
  /** Source token. */
  source: z.string(),
  /** Target token. */
  target: z.string(),
  /** The action. */
  action,
  /** Action parameters. */
  params: ruleParams.default({}),
});
/** A rule as data (params always present once parsed). */
export type PolicyRule = z.infer<typeof policyRule>;
