/**
 * What must differ between the Qubes machines of one fleet, checked on their stack configs before
 * anything runs. Pure.
 *
 * - The Admin endpoint: two stacks on one dom0 would each take the other's VMs and policy file.
 * - Where the logs go. Machines that publish to the same repository and branch share its tree:
 *   their logs VMs need distinct names (each publishes its transparency log under
 *   `tlog/<logs VM>/`), their build VMs too (build logs are filed under `<build VM>/`), and they
 *   must sign with one logs key (a logs VM refuses a branch head that another key signed).
 * - Transparency-log origins (`<logs.tlogOrigin or repository>/<logs VM>`): a checkpoint names its
 *   log by origin, so two logs with one origin cannot be told apart by verifiers and witnesses.
 * - Signing keys: a key pinned (`envs.*.signingKey`) on two machines would live in two keys VMs.
 */
import { tlogOrigin, type SiteConfig } from "../site/config";

export interface Machine {
  stack: string;
  config: SiteConfig;
}

function adminEndpoint(cfg: SiteConfig): string {
  const a = cfg.admin;
  if (a.transport === "qrexec") return "this management qube's own dom0 (transport qrexec)";
  return `${a.transport === "sim" ? "qubes-sim" : "qubesd"} socket ${a.socket}`;
}

/**
 * The repository and branch, with the spellings of one repository made equal: ssh and https URLs
 * of a host and path (`git@github.com:QubesOS/build-logs.git`, `https://github.com/QubesOS/build-logs`)
 * are one repository.
 */
function logsDestination(cfg: SiteConfig): string {
  const url = cfg.logs.repo.trim().replace(/\/+$/, "").replace(/\.git$/, "");
  const local = /^(?:file:\/\/)?(\/.*)$/.exec(url);
  const remote = /^(?:[a-z+]+:\/\/)?(?:[^@/]+@)?([^:/]+)(?::\d+)?[:/]\/*(.+)$/.exec(url);
  const repo = local ? local[1] : remote ? `${remote[1].toLowerCase()}/${remote[2]}` : url;
  return `${repo} branch ${cfg.logs.branch}`;
}

const logsVms = (cfg: SiteConfig): string[] => [...new Set(Object.values(cfg.envs).map((e) => e.logs))].sort();
const buildVms = (cfg: SiteConfig): string[] => Object.keys(cfg.envs).map((e) => `build-${e}`).sort();

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const i of items) {
    const k = key(i);
    m.set(k, [...(m.get(k) ?? []), i]);
  }
  return m;
}

const both = (ms: Machine[]): string => ms.map((m) => m.stack).join(" and ");

/** Every identity two machines of the fleet would share, as messages naming stacks, keys and the fix. */
export function identityProblems(machines: Machine[]): string[] {
  const problems: string[] = [];

  for (const [endpoint, ms] of groupBy(machines, (m) => adminEndpoint(m.config))) {
    if (ms.length > 1) {
      problems.push(`${both(ms)} both manage the Qubes machine at ${endpoint} (qubes-build-infra:admin): one stack per machine, `
        + "or each would take the other's VMs and policy file");
    }
  }

  for (const [dest, ms] of groupBy(machines, (m) => logsDestination(m.config))) {
    if (ms.length < 2) continue;
    const fix = "or give each machine its own logs.branch (and logs.tlogOrigin)";
    for (const [what, names, why] of [
      ["logs VM", logsVms, (n: string) => `both would publish their transparency logs as tlog/${n}/`],
      ["build VM", buildVms, (n: string) => `both would file build logs under ${n}/`],
    ] as const) {
      for (const [name, holders] of groupBy(ms.flatMap((m) => names(m.config).map((n) => ({ n, m }))), (x) => x.n)) {
        if (holders.length < 2) continue;
        problems.push(`${both(holders.map((h) => h.m))} publish to ${dest} and both have a ${what} named ${name}: ${why(name)}. `
          + `Name the ${what}s of each machine apart (qubes-build-infra:envs), ${fix}`);
      }
    }
    const keys = new Set(ms.map((m) => m.config.logs.keyFingerprint ?? ""));
    if (keys.size > 1 || keys.has("")) {
      problems.push(`${both(ms)} publish to ${dest}, whose commits must all be signed by one logs key (a logs VM refuses a head `
        + "another key signed): set the same logs.keyFingerprint on each (that key imported into each logs VM), " + fix);
    }
  }

  const origins = machines.flatMap((m) => logsVms(m.config).map((vm) => ({ origin: tlogOrigin(m.config, vm), vm, m })));
  for (const [origin, hs] of groupBy(origins, (o) => o.origin)) {
    if (new Set(hs.map((h) => h.m.stack)).size < 2) continue;
    problems.push(`${hs.map((h) => `${h.m.stack} (logs VM ${h.vm})`).join(" and ")} would sign transparency logs with one origin, `
      + `${origin}, which verifiers could not tell apart: set logs.tlogOrigin per machine (e.g. <repository>/<machine>) or name the logs VMs apart`);
  }

  const pinned = machines.flatMap((m) => Object.entries(m.config.envs)
    .filter(([, e]) => e.signingKey).map(([env, e]) => ({ key: e.signingKey!, where: `envs.${env}.signingKey of ${m.stack}`, stack: m.stack })));
  for (const [key, hs] of groupBy(pinned, (p) => p.key)) {
    if (new Set(hs.map((h) => h.stack)).size < 2) continue;
    problems.push(`${hs.map((h) => h.where).join(" and ")} pin one signing key, ${key}, which would then live in the keys VMs of `
      + "several machines: let each machine's keys VMs make their own (leave signingKey out), or build that environment on one machine");
  }
  return problems;
}
