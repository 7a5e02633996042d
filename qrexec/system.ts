/**
 * What qubesd's `internal.GetSystemInfo` answers, as one zod schema: the policy evaluator reads it,
 * the Admin client validates the reply with it, the qrexec CLI reads it from a file. Fields as
 * qubes-core-admin's qubes/api/internal.py (`get_system_info`) sends them; the ones older releases
 * do not send are optional, and fields not listed here are kept.
 */
import { z } from "zod";

/** One domain. */
export const DomainInfoSchema = z.looseObject({
  /** Domain class: AppVM, TemplateVM, StandaloneVM, DispVM, AdminVM, ... */
  type: z.string(),
  /** Tags of the domain. */
  tags: z.array(z.string()),
  /** Name of the default disposable template, or null. */
  default_dispvm: z.string().nullable(),
  /** Whether disposables may be started from this domain. */
  template_for_dispvms: z.boolean(),
  /** Halted, Running, Paused, ... */
  power_state: z.string(),
  /** Domain UUID (dom0: all zeroes). */
  uuid: z.string(),
  /** The label (qubesd sends the label's colour; qubes-sim its name). */
  label: z.string().nullable().optional(),
  /** The label's icon name. */
  icon: z.string().nullable().optional(),
  /** GUI domain name, or null. */
  guivm: z.string().nullable().optional(),
  /** Domain name (same as the key; qubes-sim sends it, qubesd does not). */
  name: z.string().optional(),
  /** The value of the domain's `internal` feature, or null: internal domains are never offered in ask dialogs. */
  internal: z.union([z.string(), z.boolean()]).nullable().optional(),
});
export type DomainInfo = z.infer<typeof DomainInfoSchema>;

/** The whole answer: domains by name. */
export const SystemInfoSchema = z.object({ domains: z.record(z.string(), DomainInfoSchema) });
export type SystemInfo = z.infer<typeof SystemInfoSchema>;

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
  return { ok: true, value: r.data };
}
