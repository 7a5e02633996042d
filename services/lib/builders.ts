/**
 * The builders a build VM has and starting their own entry points from TriggerBuild and
 * ProcessGithubCommand: `builders.list`, argv templates (never a shell string), detached under
 * `flock -x <lock>`, output to a log file, and asking a builder which components it has.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { type BuilderLine, BuildersListError, parseBuildersList } from "../../contracts/buildersList";
import type { EntryPoint } from "../../contracts/serviceConfig/triggerBuild";
import { COMPONENT_RE } from "./names";
import { ConfigError, printable } from "./outcome";
import { run } from "./proc";

/** Reads `builders.list` (format: contracts/buildersList.ts); a line not in the format is a ConfigError. */
export function readBuildersList(file: string): BuilderLine[] {
  try {
    return parseBuildersList(fs.readFileSync(file, "utf8"));
  } catch (e) {
    if (e instanceof BuildersListError) throw new ConfigError(`bad builders.list line: ${printable(e.line)}`);
    throw e;
  }
}

export { EntryPoint } from "../../contracts/serviceConfig/triggerBuild";

/** The values every template may use for one builder. */
export function builderValues(b: BuilderLine): Record<string, string> {
  return { dir: b.dir, builderDir: b.builderDir, conf: b.conf, release: b.release };
}

/**
 * Fills an argv template: `{name}` inside an element is replaced by a value; an element that is
 * exactly `{name...}` becomes one element per item of a list. Unknown placeholders are an error.
 */
export function fillArgv(template: string[], values: Record<string, string>, lists: Record<string, string[]> = {}): string[] {
  return template.flatMap((a) => {
    const m = /^\{([A-Za-z0-9_]+)\.\.\.\}$/.exec(a);
    if (m) {
      const l = lists[m[1]];
      if (l === undefined) throw new ConfigError(`unknown list placeholder {${m[1]}...} in command template`);
      return l;
    }
    return [a.replace(/\{([A-Za-z0-9_]+)\}/g, (_x, k: string) => {
      const v = values[k];
      if (v === undefined) throw new ConfigError(`unknown placeholder {${k}} in command template`);
      return v;
    })];
  });
}

/** Fills the values of an environment template. */
export function fillEnv(env: Record<string, string>, values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, fillArgv([v], values)[0]]));
}

/** The repository name a component's git URL gives: basename, no `.git`, no `qubes-` prefix. */
export function repoNameOf(url: string): string {
  return path.basename(url.trim()).replace(/\.git$/, "").replace(/^qubes-/, "");
}

/**
 * The builder's own component list (through `listComponents`), as names, with the repository
 * name of each when `listComponentUrls` is given. Throws when the builder cannot say.
 */
export async function builderComponentList(ep: EntryPoint, values: Record<string, string>, cwd: string): Promise<{ name: string; repo?: string }[]> {
  if (!ep.listComponents) throw new ConfigError("no listComponents for this builder");
  const env = { ...process.env, ...fillEnv(ep.env, values) };
  const names = await run(fillArgv(ep.listComponents, values), { env, cwd, timeoutMs: 120000 });
  if (names.code !== 0) throw new Error(`listing components failed (exit ${names.code}): ${names.stderr.trim().slice(0, 300)}`);
  const list = names.stdout.split(/\s+/).filter((n) => COMPONENT_RE.test(n));
  if (!ep.listComponentUrls) return list.map((name) => ({ name }));
  const urls = await run(fillArgv(ep.listComponentUrls, values), { env, cwd, timeoutMs: 120000 });
  if (urls.code !== 0) throw new Error(`listing component URLs failed (exit ${urls.code}): ${urls.stderr.trim().slice(0, 300)}`);
  const u = urls.stdout.split("\n").map((l) => l.trim()).filter(Boolean);
  return list.map((name, i) => (u.length === list.length ? { name, repo: repoNameOf(u[i]) } : { name }));
}

/**
 * Starts `argv` detached under `flock -x <lock>`, output appended to `logFile`, and returns its
 * pid. The caller does not wait: the builder runs for hours.
 */
export function startUnderLock(o: {
  flock: string; lock: string | null; argv: string[]; env?: Record<string, string>; cwd: string; logFile: string;
  /** A file that exists while the build waits for the lock: removed by the build once it holds it; it gets the waiting pid. */
  waitingMarker?: string;
}): number | null {
  const fd = fs.openSync(o.logFile, "a", 0o600);
  try {
    const inner = o.waitingMarker ? ["/bin/sh", "-c", 'rm -f -- "$0"; exec "$@"', o.waitingMarker, ...o.argv] : o.argv;
    if (o.waitingMarker) fs.writeFileSync(o.waitingMarker, "", { mode: 0o600 });
    const full = o.lock ? [o.flock, "-x", o.lock, ...inner] : inner;
    const child = spawn(full[0], full.slice(1), { detached: true, stdio: ["ignore", fd, fd], cwd: o.cwd, env: { ...process.env, ...o.env } });
    child.on("error", (e) => fs.appendFileSync(o.logFile, `cannot start ${full[0]}: ${e.message}\n`));
    child.unref();
    if (o.waitingMarker && child.pid !== undefined) recordWaiter(o.waitingMarker, child.pid);
    return child.pid ?? null;
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes the waiting pid into the marker, unless the build already took the lock and removed it. */
function recordWaiter(marker: string, pid: number): void {
  let mfd: number;
  try {
    mfd = fs.openSync(marker, "r+");
  } catch {
    return;
  }
  try {
    fs.writeSync(mfd, String(pid));
  } finally {
    fs.closeSync(mfd);
  }
}
