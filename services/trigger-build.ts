/**
 * qubesbuilder.TriggerBuild (build VM): the service argument names a component (or its
 * repository); every builder of builders.list that has it starts its own entry point in the
 * background under its lock: v1 `<builder>/scripts/auto-build <component>`, v2
 * `github-command.py action build-component <qubes-builderv2> <builder.yml> <component>`. A builder
 * has a component when the site listed it (`<builder dir>/qbi-components.json`) or, without such a
 * list, when the builder's own configuration has it (its `listComponents`). See services/README.md.
 *
 * A sender that triggers faster than a builder builds must not pile up processes: a component
 * already waiting for a builder's lock is not started again there (the waiting build fetches the
 * newest sources when it starts), and at most `maxWaitingPerBuilder` builds wait for one lock.
 */
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { TriggerBuildConfig } from "../contracts/serviceConfig/triggerBuild";
import { builderComponentList, builderValues, type EntryPoint, fillArgv, fillEnv, readBuildersList, startUnderLock } from "./lib/builders";
import { homeDir, loadConfig } from "./lib/config";
import { appendJsonLine, pidAlive } from "./lib/files";
import { log } from "./lib/log";
import { runMain } from "./lib/main";
import { COMPONENT_RE } from "./lib/names";
import { EXIT, printable, Refusal } from "./lib/outcome";
import { qrexecEnv, requireProgram } from "./lib/proc";

const SERVICE = "qubesbuilder.TriggerBuild";

/** The upstream entry points, where the formula put them; the site writes its own. */
export const DEFAULT_ENTRY_POINTS = {
  v1: {
    command: ["{dir}/scripts/auto-build", "{component}"], lock: "{dir}/builder.lock", env: {},
    listComponents: ["make", "-s", "-C", "{dir}", "get-var", "GET_VAR=COMPONENTS"],
  },
  v2: {
    command: ["/home/user/qubes-builderv2-github/github-command.py", "action", "--no-signer-github-command-check", "build-component",
      "{builderDir}", "{conf}", "{component}"],
    lock: "{builderDir}/builder.lock",
    env: { PYTHONPATH: "{builderDir}" },
  },
} satisfies Record<string, EntryPoint>;

export { TriggerBuildConfig };

const Components = z.object({ components: z.array(z.string().regex(COMPONENT_RE)) });

/** The site's component list of a builder, or null when it gave none (then: the builder's own). */
export function builderComponents(dir: string): string[] | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, "qbi-components.json"), "utf8");
  } catch {
    return null;
  }
  const r = Components.safeParse(JSON.parse(text));
  if (!r.success) throw new Error(`${dir}/qbi-components.json is not {"components": [...]}`);
  return r.data.components.length ? r.data.components : null;
}

/** A marker without a pid is a trigger between writing it and starting: stale after this long. */
const UNSTARTED_STALE_MS = 60_000;

/**
 * The components waiting for `lock` (from their markers in `dir`); markers of builds that are gone
 * (a killed process, a rebooted VM) are removed.
 */
export function waitingFor(dir: string, lock: string, now = Date.now()): { prefix: string; components: string[] } {
  const prefix = `${createHash("sha256").update(lock).digest("hex").slice(0, 16)}.`;
  const components: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.startsWith(prefix));
  } catch {
    return { prefix, components };
  }
  for (const n of names) {
    const file = path.join(dir, n);
    let text: string;
    let mtime: number;
    try {
      text = fs.readFileSync(file, "utf8").trim();
      mtime = fs.statSync(file).mtimeMs;
    } catch {
      continue;
    }
    const pid = /^\d+$/.test(text) ? Number(text) : null;
    const alive = pid !== null ? pidAlive(pid) : now - mtime < UNSTARTED_STALE_MS;
    if (!alive) {
      fs.rmSync(file, { force: true });
      continue;
    }
    components.push(n.slice(prefix.length).split(".")[0]);
  }
  return { prefix, components };
}

async function main(): Promise<number> {
  const asked = qrexecEnv().argument;
  if (!COMPONENT_RE.test(asked)) throw new Refusal(`bad component name: ${printable(asked)}`);
  const cfg = loadConfig("trigger-build", TriggerBuildConfig);
  const home = homeDir();
  const list = cfg.buildersList ?? path.join(home, ".config/qubes-builder-github/builders.list");
  const logDir = cfg.logDir ?? path.join(home, "builder-github-logs");
  fs.mkdirSync(logDir, { recursive: true, mode: 0o700 });
  const journal = path.join(logDir, "trigger-build.jsonl");
  const builders = readBuildersList(list);
  const flock = requireProgram(cfg.flockProgram);
  const waitingDir = path.join(logDir, "waiting");
  fs.mkdirSync(waitingDir, { recursive: true, mode: 0o700 });
  let started = 0;
  let held = 0;
  for (const b of builders) {
    const ep: EntryPoint = (b.version === 2 ? cfg.entryPoints.v2 : cfg.entryPoints.v1) ?? DEFAULT_ENTRY_POINTS[b.version === 2 ? "v2" : "v1"];
    const values = builderValues(b);
    // Which component of this builder the argument means: by name, or by its repository's name.
    let component: string | null;
    let how: string;
    try {
      const listed = builderComponents(b.dir);
      if (listed) {
        component = listed.includes(asked) ? asked : null;
        how = "the site's component list";
      } else if (ep.listComponents) {
        const have = await builderComponentList(ep, values, fs.existsSync(b.dir) ? b.dir : home);
        component = (have.find((c) => c.name === asked) ?? have.find((c) => c.repo === asked))?.name ?? null;
        how = "the builder's configuration";
      } else {
        component = asked;
        how = "the builder (it checks its configuration itself)";
      }
    } catch (e) {
      appendJsonLine(journal, { component: asked, release: b.release, dir: b.dir, skipped: `cannot tell its components: ${(e as Error).message}` });
      log(SERVICE, `${b.dir}: cannot tell its components (${printable((e as Error).message, 200)}); skipped`);
      continue;
    }
    if (!component) continue;
    const all = { ...values, component };
    const argv = fillArgv(ep.command, all);
    const logFile = path.join(logDir, `${Math.floor(Date.now() / 1000)}-${process.pid}-${component}-${b.release}.log`);
    const lock = fillArgv([ep.lock], all)[0];
    const waiting = waitingFor(waitingDir, lock);
    if (waiting.components.includes(component)) {
      appendJsonLine(journal, { component, asked, release: b.release, dir: b.dir, skipped: "already waiting for this builder's lock" });
      log(SERVICE, `${component} already waits for ${b.dir}'s lock: not started twice`);
      held++;
      continue;
    }
    if (waiting.components.length >= cfg.maxWaitingPerBuilder) {
      appendJsonLine(journal, { component, asked, release: b.release, dir: b.dir, skipped: `${waiting.components.length} builds already wait for this builder's lock` });
      log(SERVICE, `${b.dir}: ${waiting.components.length} builds already wait for its lock (maxWaitingPerBuilder); ${component} dropped`);
      held++;
      continue;
    }
    const marker = path.join(waitingDir, `${waiting.prefix}${component}.${process.pid}-${Date.now()}`);
    const pid = startUnderLock({ flock, lock, argv, env: fillEnv(ep.env, all), cwd: fs.existsSync(b.dir) ? b.dir : home, logFile, waitingMarker: marker });
    appendJsonLine(journal, { component, asked, release: b.release, dir: b.dir, matchedBy: how, argv, lock, pid, log: logFile });
    log(SERVICE, `started ${argv[0]} for ${component} (r${b.release}, ${b.dir}; log ${logFile})`);
    started++;
  }
  if (started === 0 && held === 0) {
    appendJsonLine(journal, { component: asked, started: 0, note: "no builder has this component" });
    log(SERVICE, `no builder has component ${asked}; nothing to do`);
  }
  return EXIT.OK;
}

if (require.main === module) runMain(SERVICE, main);
