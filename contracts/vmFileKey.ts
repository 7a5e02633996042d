/**
 * How a file the site manages in a VM is named: its absolute path, or `path#blockId` for one marked
 * block of a file shared with others. The keys of a VmFiles' `files`, the lines of the VM's list of
 * managed files, and what the policy pack reads as a file's path all follow this one rule.
 */

/** A key: an absolute path without `#`, not ending in `/`, optionally `#` and a block id. */
const FILE_KEY = /^(\/[^\0#]*[^/#])(?:#([^\0]+))?$/;

/** The key of a whole file (or link) at `path`, or of block `blockId` of it. */
export function vmFileKey(path: string, blockId?: string): string {
  return blockId === undefined ? path : `${path}#${blockId}`;
}

/** The path and block id a key names, or undefined when it is no key. */
export function parseVmFileKey(key: string): { path: string; blockId?: string } | undefined {
  const m = FILE_KEY.exec(key);
  if (!m) return undefined;
  return m[2] === undefined ? { path: m[1] } : { path: m[1], blockId: m[2] };
}
