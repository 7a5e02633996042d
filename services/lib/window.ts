/**
 * The signing window shared by qubesbuilder.LogReceived (opens it) and the qubes.Gpg gate
 * (checks it) in a keys VM: `<state dir>/windows/<build VM>.json`.
 */
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { homeDir, stateDir, writeFileAtomic } from "./common";

export const SigningWindow = z.object({
  vm: z.string(),
  openedAt: z.number(),
  expiresAt: z.number(),
  commit: z.string(),
  path: z.string(),
  signatures: z.number().int().nonnegative(),
});
export type SigningWindow = z.infer<typeof SigningWindow>;

/** `$QBI_STATE_DIR` or `~/.local/state/qubes-build-infra/signing`, with `windows/` inside. */
export function signingStateDir(): string {
  const dir = stateDir(path.join(homeDir(), ".local/state/qubes-build-infra/signing"));
  fs.mkdirSync(path.join(dir, "windows"), { recursive: true, mode: 0o700 });
  return dir;
}

export function windowFile(dir: string, vm: string): string {
  return path.join(dir, "windows", `${vm}.json`);
}

export function readWindow(dir: string, vm: string): SigningWindow | null {
  try {
    const r = SigningWindow.safeParse(JSON.parse(fs.readFileSync(windowFile(dir, vm), "utf8")));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

export function writeWindow(dir: string, w: SigningWindow): void {
  writeFileAtomic(windowFile(dir, w.vm), JSON.stringify(w));
}
