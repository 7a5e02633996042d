/**
 * What a qube is, as every folder sees it: its class (Qubes' own class names) and the role it plays
 * in the site, recorded on it as a tag. Pure: zod only.
 */
import { z } from "zod";

/** A qube's class, as qubesd names it (`admin.vm.List`, `admin.vm.Create.<class>`, `internal.GetSystemInfo`). */
export const vmClass = z.enum(["AppVM", "TemplateVM", "StandaloneVM", "DispVM", "AdminVM"]);
export type VmClass = z.infer<typeof vmClass>;

/**
 * The classes `admin.vm.Create.<class>` makes: every class but the AdminVM, which is dom0 and
 * exists once. What a `QubesVm` may be and what the sim creates.
 */
export const creatableVmClass = vmClass.exclude(["AdminVM"]);
export type CreatableVmClass = z.infer<typeof creatableVmClass>;

/**
 * The role a VM plays in the site; the site records it on the VM as the tag `roleTag(role)`, from
 * which the policy pack reads it back.
 * - `build`: build-E, runs the builder; `keys` / `win-keys`: keys-E / win-keys-E, hold the signing keys;
 * - `logs`: the logs VM of one or more environments;
 * - `builder-dvm` / `windows-dvm`: the dispvm templates of builderv2's (Windows) executor, shared by the envs;
 * - `env-dvm`: a v1 environment's own dispvm template, whose disposables build its templates.
 */
export const role = z.enum(["build", "keys", "win-keys", "logs", "builder-dvm", "windows-dvm", "env-dvm"]);
export type Role = z.infer<typeof role>;

const ROLE_TAG_PREFIX = "qbi-role-";
/** The tag that records a VM's role: `qbi-role-<role>`. */
export const roleTag = (r: Role): string => `${ROLE_TAG_PREFIX}${r}`;

/** The role a tag records, or undefined when it is not a role tag of a known role. */
export function roleOfTag(tag: string): Role | undefined {
  if (!tag.startsWith(ROLE_TAG_PREFIX)) return undefined;
  const r = role.safeParse(tag.slice(ROLE_TAG_PREFIX.length));
  return r.success ? r.data : undefined;
}
