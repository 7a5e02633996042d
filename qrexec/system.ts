/** Validation of `internal.GetSystemInfo` JSON (zod), for callers that read it from outside. */
import { z } from "zod";
import { SystemInfo } from "./types";

/** Schema of one domain; unknown extra fields are kept. */
export const DomainInfoSchema = z.looseObject({
  type: z.string(),
  tags: z.array(z.string()),
  default_dispvm: z.string().nullable(),
  template_for_dispvms: z.boolean(),
  power_state: z.string(),
  label: z.string().optional(),
  icon: z.string().optional(),
  guivm: z.string().nullable().optional(),
  uuid: z.string(),
  name: z.string().optional(),
  internal: z.boolean().optional(),
});

/** Schema of the whole system info. */
export const SystemInfoSchema = z.object({ domains: z.record(z.string(), DomainInfoSchema) });

/** Parse system info JSON text; returns the value or an error message, never throws. */
export function parseSystemInfo(text: string): { ok: true; value: SystemInfo } | { ok: false; message: string } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { ok: false, message: `system info is not JSON: ${String(e)}` };
  }
  const r = SystemInfoSchema.safeParse(data);
  if (!r.success) return { ok: false, message: `invalid system info: ${r.error.message}` };
  return { ok: true, value: r.data as SystemInfo };
}
