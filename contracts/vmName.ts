/** The zod schema of a qube's name (the rule itself: contracts/names.ts, which stays zod-free). */
import { z } from "zod";
import { vmNameProblem } from "./names";

export const vmName = z.string().superRefine((s, ctx) => {
  const p = vmNameProblem(s);
  if (p) ctx.addIssue({ code: "custom", message: p });
});

/**
 * A qube a service deals with (the zod form of services/lib/names.ts isDomUName): Qubes' rule, and
 * never dom0, which no service takes as its caller, a build VM, a client or a keys VM.
 */
export const domUVmName = vmName.refine((s) => s !== "dom0", "dom0 is never a qube a service deals with");
