/**
 * The build VMs' housekeeping timers as systemd user units in the VM's home (persistent in an
 * AppVM), enabled by a symlink in `timers.target.wants/`: builder-cleanup (our program) and the
 * builder-github's own upload-release-status. Pure: the site writes what this returns as
 * ManagedFiles, so a refresh finds a unit edited or removed in the VM.
 */
import { BUILDER_PATHS } from "./builders";
import type { EnvConfig, SiteConfig } from "./config";

export const USER_UNITS = "/home/user/.config/systemd/user";
export const CLEANUP_PROGRAM = "/usr/local/lib/qubes-build-infra/builder-cleanup.js";
export const BUILDER_GITHUB_LOGS = "/home/user/builder-github-logs";

/** One file of the timers: a unit (content) or the symlink that enables a timer (target). */
export type TimerFile = { path: string; content: string; kind: "file" } | { path: string; target: string; kind: "symlink" };

const service = (description: string, exec: string, env: Record<string, string> = {}) => [
  "# qubes-build-infra (generated; do not edit)",
  "[Unit]",
  `Description=${description}`,
  "",
  "[Service]",
  "Type=oneshot",
  ...Object.entries(env).map(([k, v]) => `Environment=${k}=${v}`),
  `ExecStart=${exec}`,
  "",
].join("\n");

const timer = (description: string, onCalendar: string) => [
  "# qubes-build-infra (generated; do not edit)",
  "[Unit]",
  `Description=${description}`,
  "",
  "[Timer]",
  `OnCalendar=${onCalendar}`,
  // A run missed while the VM was off happens at its next start.
  "Persistent=true",
  "RandomizedDelaySec=1h",
  "",
  "[Install]",
  "WantedBy=timers.target",
  "",
].join("\n");

function unitPair(name: string, description: string, exec: string, onCalendar: string, env: Record<string, string> = {}): TimerFile[] {
  return [
    { path: `${USER_UNITS}/${name}.service`, content: service(description, exec, env), kind: "file" },
    { path: `${USER_UNITS}/${name}.timer`, content: timer(description, onCalendar), kind: "file" },
    { path: `${USER_UNITS}/timers.target.wants/${name}.timer`, target: `${USER_UNITS}/${name}.timer`, kind: "symlink" },
  ];
}

/** The script that uploads the release status: builderv2-github's, or the last v1 builder's builder-github's. */
export function releaseStatusScript(e: EnvConfig): string {
  if (e.builderv2) return `${BUILDER_PATHS.v2Github}/utils/upload-release-status`;
  return `${e.builders[e.builders.length - 1].dir}/qubes-src/builder-github/upload-release-status`;
}

/** builder-cleanup's configuration (services/builder-cleanup.ts). */
export function cleanupConfig(cfg: SiteConfig, e: EnvConfig) {
  const c = cfg.timers.builderCleanup;
  return {
    logDirs: [BUILDER_GITHUB_LOGS], logRetentionDays: c.logRetentionDays,
    isoDirs: e.builders.map((b) => `${b.dir}/iso`), isoRetentionDays: c.isoRetentionDays,
  };
}

/** The timer files of one environment's build VM (none for a timer that is disabled). */
export function timerFiles(cfg: SiteConfig, e: EnvConfig): TimerFile[] {
  const out: TimerFile[] = [];
  const c = cfg.timers.builderCleanup;
  if (c.enabled) out.push(...unitPair("qbi-builder-cleanup", "qubes-build-infra: delete old builder-github logs and ISO pre-releases", CLEANUP_PROGRAM, c.onCalendar));
  const r = cfg.timers.releaseStatus;
  const host = r.host ?? Object.keys(cfg.uploadHosts)[0];
  if (r.enabled && host !== undefined) {
    out.push(...unitPair("qbi-upload-release-status", `qubes-build-infra: upload the release status to ${host}`, releaseStatusScript(e), r.onCalendar, { HOST: host }));
  }
  return out;
}
