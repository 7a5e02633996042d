/**
 * `VmFiles`: everything the site places in one VM as files, in one resource: whole files (written
 * atomically with mode and owner), symbolic links, marked blocks of files shared with others
 * (e.g. /rw/config/rc.local: only the text between `# BEGIN qubes-build-infra <id>` and
 * `# END qubes-build-infra <id>` is ours) and qrexec service programs (/usr/local/etc/qubes-rpc).
 *
 * One resource per VM rather than one per file: a no-op `up` pays the engine's per-resource round
 * trips once per VM, and refresh reads every entry of a VM in one command. Entries are keyed by
 * path, so a preview names the entry that changes (`files["/path"].content`), and an update
 * writes or removes exactly the entries that differ from what the outputs record. Content may be
 * a Pulumi secret (the engine keeps it secret in the outputs, entry by entry), or a project file by
 * reference (`projectFile`: only its hash goes through the engine).
 *
 * The VM keeps the list of managed entries (providers/impl/manifest.ts), so that a site moving
 * from one ManagedFile or RpcService per file to VmFiles does not lose the files it took over.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { vmFilesInputs } from "./impl/vmFiles";
import type { ArgsOf, Inputs } from "./inputs";

type Schema = z.input<typeof vmFilesInputs>;
/** One file, link or block of a `VmFiles`. */
export type FileEntryArgs = Inputs<NonNullable<Schema["files"]>[string]>;
/** One qrexec service program of a `VmFiles`. */
export type ServiceEntryArgs = Inputs<NonNullable<Schema["services"]>[string]>;

/**
 * Inputs of a `VmFiles` (providers/impl/vmFiles.ts `vmFilesInputs`). `files`: by key, an absolute
 * path (kind `file`, the default, or `symlink`: `content` is the link's target) or `path#blockId`
 * (kind `block`); each entry's mode defaults to 0o644 and its owner to `root`. `services`: by
 * service name, the program (mode 0o755 by default). Both default to none.
 */
export type VmFilesArgs = Omit<ArgsOf<Schema>, "files" | "services"> & {
  files?: Record<string, FileEntryArgs>;
  services?: Record<string, ServiceEntryArgs>;
};

/** Every file, link, block and qrexec service the site places in one VM. */
export class VmFiles extends pulumi.dynamic.Resource {
  constructor(name: string, args: VmFilesArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/vmFiles.ts"), name, args, opts, "qubes", "VmFiles");
  }
}
