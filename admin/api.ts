/**
 * The typed surface of the Qubes Admin API that this project uses.
 *
 * `AdminClient` (admin/client.ts) implements it over a `Transport`; providers depend only on this
 * interface, so unit tests of a single provider may pass a fake, while every integration test uses
 * the real client against qubes-sim over its socket.
 */

import type { CreatableVmClass, VmClass } from "../contracts/vm";
import type { DomainInfo } from "../qrexec/system";

export type { CreatableVmClass, VmClass };

/** One entry of `admin.vm.List`: `<name> class=<class> state=<state>` (R4.3: ` uuid=<uuid>` too). */
export interface VmListEntry {
  name: string;
  klass: VmClass;
  state: string;
  /** Given by Qubes R4.3 and later. */
  uuid?: string;
}

/** A property as `admin.vm.property.Get` reports it: `default=<True|False> type=<t> <value>`. */
export interface PropertyValue {
  isDefault: boolean;
  /** Qubes' type name: `str`, `int`, `bool`, `vm`, `label`, ... */
  type: string;
  /** The raw value text (`""` for an unset vm-typed property, i.e. none). */
  value: string;
}

/** `admin.vm.volume.Info` as key/value pairs (`size`, `usage`, `pool`, `vid`, ...). */
export type VolumeInfo = Record<string, string>;

/**
 * `internal.GetSystemInfo` as the client returns it: the reply validated by its one schema
 * (qrexec/system.ts), each domain with its name and every optional field present (null when absent).
 */
export type SystemInfoDomain = Pick<DomainInfo, "type" | "tags" | "default_dispvm" | "template_for_dispvms" | "power_state" | "uuid"> & {
  name: string;
  label: string | null;
  icon: string | null;
  guivm: string | null;
};
export interface SystemInfo {
  domains: Record<string, SystemInfoDomain>;
}

/** Result of a command run inside a VM (what qvm-run / qubes.VMShell gives back). */
export interface RunResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** Options for a file written inside a VM: atomic replace with mode and owner. */
export interface WriteFileOptions {
  /** e.g. 0o644 */
  mode: number;
  /** `user` or `root`; default `root` */
  owner?: string;
}

/**
 * The Admin API calls the providers need, plus running commands and writing files inside a VM.
 * Every method rejects with `QubesError` (admin/errors.ts) carrying the Qubes exception name.
 */
export interface QubesAdmin {
  vmList(): Promise<VmListEntry[]>;
  vmCreate(klass: CreatableVmClass, name: string, label: string, template?: string): Promise<void>;
  vmRemove(name: string): Promise<void>;

  propertyGet(vm: string, prop: string): Promise<PropertyValue>;
  propertyGetAll(vm: string): Promise<Record<string, PropertyValue>>;
  propertySet(vm: string, prop: string, value: string): Promise<void>;
  propertyReset(vm: string, prop: string): Promise<void>;
  propertyList(vm: string): Promise<string[]>;

  featureList(vm: string): Promise<string[]>;
  featureGet(vm: string, feature: string): Promise<string>;
  featureSet(vm: string, feature: string, value: string): Promise<void>;
  featureRemove(vm: string, feature: string): Promise<void>;

  tagList(vm: string): Promise<string[]>;
  tagSet(vm: string, tag: string): Promise<void>;
  tagRemove(vm: string, tag: string): Promise<void>;

  volumeList(vm: string): Promise<string[]>;
  volumeInfo(vm: string, volume: string): Promise<VolumeInfo>;
  volumeResize(vm: string, volume: string, sizeBytes: bigint): Promise<void>;

  vmStart(vm: string): Promise<void>;
  vmShutdown(vm: string): Promise<void>;
  vmKill(vm: string): Promise<void>;
  vmCurrentState(vm: string): Promise<Record<string, string>>;

  labelList(): Promise<string[]>;
  systemInfo(): Promise<SystemInfo>;

  /** qubes-core-qrexec policy admin: names of files in the dom0 policy directory (no `.policy`). */
  policyList(): Promise<string[]>;
  /** Content and token (hash of the current content) of one policy file. */
  policyGet(name: string): Promise<{ content: string; token: string }>;
  /** Replace with optimistic concurrency: token `new` creates, `any` forces, else must match. */
  policyReplace(name: string, content: string, token: string): Promise<void>;
  policyRemove(name: string, token: string): Promise<void>;

  /** Run a shell command in a VM as `user` (default `user`), like `qvm-run -p`. */
  run(vm: string, command: string, opts?: { user?: string; input?: Buffer | string }): Promise<RunResult>;
  /** Read a file in a VM; `null` when it does not exist. */
  readFile(vm: string, path: string): Promise<Buffer | null>;
  /** Write a file in a VM atomically (temp file + rename) with mode and owner. */
  writeFile(vm: string, path: string, content: Buffer | string, opts: WriteFileOptions): Promise<void>;
  /** Remove a file in a VM; no error when absent. */
  removeFile(vm: string, path: string): Promise<void>;
}
