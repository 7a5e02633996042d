/**
 * The list of what a VmFiles manages in its VM (a path, or `path#blockId`, a line), kept in the VM
 * itself at MANIFEST. Sites written before VmFiles had one ManagedFile or RpcService per file; when
 * one `up` moves them into a VmFiles, the engine creates the VmFiles first and deletes the old
 * resources at the end. Those deletes consult the manifest and leave what a VmFiles took over.
 */
import type { QubesAdmin } from "../../admin/api";
import { ProviderError, shq, step } from "./common";

export const MANIFEST = "/usr/local/lib/qubes-build-infra/managed-files.list";

/** True when a VmFiles in `vm` manages `key` (a path, or `path#blockId`). Throws ProviderError when the VM cannot be read. */
export async function claimedByVmFiles(admin: QubesAdmin, who: string, vm: string, key: string): Promise<boolean> {
  const r = await step(`${who} ${vm}:${key}`, "reading the VM's list of managed files", () =>
    admin.run(vm, `[ -e ${shq(MANIFEST)} ] || exit 44; cat -- ${shq(MANIFEST)}`, { user: "root" }));
  if (r.exitCode === 44) return false;
  if (r.exitCode !== 0) throw new ProviderError(`${who} ${vm}:${key}`, "reading the VM's list of managed files", new Error(r.stderr.toString().trim() || `exit ${r.exitCode}`));
  return r.stdout.toString().split("\n").includes(key);
}
