/**
 * builder-cleanup (build VMs, run weekly by the user timer `qbi-builder-cleanup.timer`): deletes
 * the builders' GitHub logs and ISO pre-releases older than the configured age. Only regular files
 * directly in the configured directories are considered (no recursion, symbolic links are left
 * alone), so a mistake in a name cannot reach outside them. Prints one line per deleted file and
 * a summary on stderr. Config: `/usr/local/etc/qubes-build-infra/builder-cleanup.json`.
 */
import * as fs from "fs";
import * as path from "path";
import { BuilderCleanupConfig } from "../contracts/serviceConfig/builderCleanup";
import { loadConfig } from "./lib/config";
import { log } from "./lib/log";
import { runMain } from "./lib/main";

const SERVICE = "builder-cleanup";
const DAY_MS = 24 * 3600 * 1000;

export { BuilderCleanupConfig };

/** Regular files directly in `dir` whose name passes `match`, last modified before `before`. */
export function expired(dir: string, before: number, match: (name: string) => boolean): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  return names
    .filter(match)
    .map((n) => path.join(dir, n))
    .filter((f) => {
      const st = fs.lstatSync(f);
      return st.isFile() && st.mtimeMs < before;
    })
    .sort();
}

export function cleanup(cfg: BuilderCleanupConfig, now = Date.now()): string[] {
  const gone: string[] = [];
  const remove = (files: string[]) => {
    for (const f of files) {
      fs.rmSync(f, { force: true });
      gone.push(f);
    }
  };
  for (const d of cfg.logDirs) remove(expired(d, now - cfg.logRetentionDays * DAY_MS, () => true));
  for (const d of cfg.isoDirs) remove(expired(d, now - cfg.isoRetentionDays * DAY_MS, (n) => /pre.*\.iso$/.test(n)));
  return gone;
}

async function main(): Promise<number> {
  const cfg = loadConfig(SERVICE, BuilderCleanupConfig);
  const gone = cleanup(cfg);
  for (const f of gone) process.stdout.write(`deleted ${f}\n`);
  log(SERVICE, `${gone.length} file(s) deleted`);
  return 0;
}

if (require.main === module) runMain(SERVICE, main);
