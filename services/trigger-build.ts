/**
 * qubesbuilder.TriggerBuild (build VM): the service argument names a component; every builder of
 * builders.list that lists it (in `<builder dir>/qbi-components.json`) runs its build command in
 * the background under `flock -x <builder dir>/builder.lock`. See services/README.md.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { COMPONENT_RE, EXIT, Refusal, appendJsonLine, fillTemplate, homeDir, loadConfig, log, printable, qrexecEnv, readBuildersList, requireProgram, runMain } from "./lib/common";

const SERVICE = "qubesbuilder.TriggerBuild";

export const TriggerBuildConfig = z
  .object({
    buildersList: z.string().startsWith("/").optional(),
    /** argv template; placeholders {dir} {builderDir} {conf} {release} {component}. */
    command: z.array(z.string().min(1)).min(1).default(["{dir}/build", "{component}"]),
    logDir: z.string().startsWith("/").optional(),
    flockProgram: z.string().default("flock"),
  })
  .strict();

const Components = z.object({ components: z.array(z.string().regex(COMPONENT_RE)) });

export function builderComponents(dir: string): string[] | null {
  try {
    const r = Components.safeParse(JSON.parse(fs.readFileSync(path.join(dir, "qbi-components.json"), "utf8")));
    return r.success ? r.data.components : null;
  } catch {
    return null;
  }
}

async function main(): Promise<number> {
  const component = qrexecEnv().argument;
  if (!COMPONENT_RE.test(component)) throw new Refusal(`bad component name: ${printable(component)}`);
  const cfg = loadConfig("trigger-build", TriggerBuildConfig);
  const home = homeDir();
  const list = cfg.buildersList ?? path.join(home, ".config/qubes-builder-github/builders.list");
  const logDir = cfg.logDir ?? path.join(home, "builder-github-logs");
  fs.mkdirSync(logDir, { recursive: true, mode: 0o700 });
  const journal = path.join(logDir, "trigger-build.jsonl");
  const builders = readBuildersList(list);
  const flock = requireProgram(cfg.flockProgram);
  let started = 0;
  for (const b of builders) {
    const comps = builderComponents(b.dir);
    if (!comps) {
      log(SERVICE, `${b.dir}: no readable qbi-components.json, skipped`);
      continue;
    }
    if (!comps.includes(component)) continue;
    const argv = fillTemplate(cfg.command, { dir: b.dir, builderDir: b.builderDir, conf: b.conf, release: b.release, component });
    const logFile = path.join(logDir, `${Math.floor(Date.now() / 1000)}-${process.pid}-${component}-${b.release}.log`);
    const fd = fs.openSync(logFile, "a", 0o600);
    const child = spawn(flock, ["-x", path.join(b.dir, "builder.lock"), ...argv], {
      detached: true,
      stdio: ["ignore", fd, fd],
      cwd: b.dir,
    });
    child.on("error", (e) => log(SERVICE, `cannot start ${argv[0]}: ${e.message}`));
    child.unref();
    fs.closeSync(fd);
    appendJsonLine(journal, { component, release: b.release, dir: b.dir, pid: child.pid ?? null, log: logFile });
    log(SERVICE, `started build of ${component} for r${b.release} in ${b.dir} (log ${logFile})`);
    started++;
  }
  if (started === 0) {
    appendJsonLine(journal, { component, started: 0, note: "no builder has this component" });
    log(SERVICE, `no builder has component ${component}; nothing to do`);
  }
  return EXIT.OK;
}

if (require.main === module) runMain(SERVICE, main);
