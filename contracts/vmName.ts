/** The zod schema of a qube's name (the rule itself: contracts/names.ts, which stays zod-free). */
import { z } from "zod";
import { vmNameProblem } from "./names";

export const vmName = z.string().superRefine((s, ctx) => {
  const p = vmNameProblem(s);
  if (p) ctx.addIssue({ code: "custom", message: p });
});
