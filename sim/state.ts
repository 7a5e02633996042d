/**
 * qubes-sim's durable state: one JSON document (`<state>/qubes.json`, the sim's qubes.xml),
 * validated with zod when read back, written atomically (temp + fsync + rename + fsync of the
 * directory) before any reply acknowledges a change.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";

import { vmClass } from "../contracts/vm";

/** A property value as stored: str/int/bool, a VM name, a label name, or null (none). */
export type Value = string | number | boolean | null;
const ValueSchema = z.union([z.string(), z.number(), z.boolean(), z.null()]);

const VolumeSchema = z.object({ size: z.string().regex(/^\d+$/), usage: z.string().regex(/^\d+$/) });
export type Volume = z.infer<typeof VolumeSchema>;

const VmSchema = z.object({
  name: z.string(),
  klass: vmClass,
  qid: z.number().int().nonnegative(),
  uuid: z.string(),
  /** Explicitly set properties (absent = default). */
  props: z.record(z.string(), ValueSchema),
  features: z.record(z.string(), z.string()),
  tags: z.array(z.string()),
  volumes: z.record(z.string(), VolumeSchema),
  power: z.string(),
});
export type Vm = z.infer<typeof VmSchema>;

export const StateSchema = z.object({
  version: z.literal(1),
  vms: z.record(z.string(), VmSchema),
  /** Explicitly set global properties (admin.property.*). */
  global: z.record(z.string(), ValueSchema),
});
export type State = z.infer<typeof StateSchema>;

export const GiB = 1024n * 1024n * 1024n;

/** Write a file durably and atomically: temp in the same directory, fsync, rename, fsync dir. */
export function atomicWrite(file: string, data: Buffer | string, mode = 0o644): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`);
  const fd = fs.openSync(tmp, "w", mode);
  try {
    fs.writeSync(fd, typeof data === "string" ? Buffer.from(data, "utf8") : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dir);
}

/** fsync a directory (makes a rename or unlink in it durable). */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The state directory layout. */
export class StateDir {
  constructor(readonly root: string) {}
  get file(): string {
    return path.join(this.root, "qubes.json");
  }
  get policyDir(): string {
    return path.join(this.root, "dom0", "etc", "qubes", "policy.d");
  }
  vmDir(name: string): string {
    return path.join(this.root, "vms", name);
  }
  /** Per-VM runtime directory bound at /run/qubes-sim (reserved for the qrexec broker's sockets). */
  runDir(name: string): string {
    return path.join(this.root, "run", name);
  }

  /** Read the state back (zod-validated); undefined when none was saved yet. */
  load(): State | undefined {
    let text: string;
    try {
      text = fs.readFileSync(this.file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
    const p = StateSchema.safeParse(JSON.parse(text));
    if (!p.success) throw new Error(`${this.file}: invalid state: ${p.error.message}`);
    return p.data;
  }

  save(state: State): void {
    fs.mkdirSync(this.root, { recursive: true });
    atomicWrite(this.file, JSON.stringify(state));
  }

  /** Create the private storage of a VM (/rw with home and usrlocal, as Qubes binds them). */
  ensureVmDirs(name: string): void {
    const rw = path.join(this.vmDir(name), "rw");
    for (const d of [path.join(rw, "home", "user"), path.join(rw, "usrlocal"), path.join(rw, "config"), this.runDir(name)]) {
      fs.mkdirSync(d, { recursive: true });
    }
  }
}
