/**
 * The site stack the site tests run: the program at the project root (index.ts) with the fixed
 * config of test/site/fixtures/site.yaml (never the user's Pulumi.local.yaml), pointed at a test's
 * own qubes-sim. The stack's file (Pulumi.<stack>.yaml at the project root) is the caller's to remove.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type { ConfigMap, Stack } from "@pulumi/pulumi/automation";
import { parse } from "yaml";
import { createStandinGithub } from "../../sim/standin-builders";
import { openStack, projectRoot } from "../helpers/pulumi";
import type { StartedSim } from "../helpers/sim";

export const NS = "qubes-build-infra";
/** The test site's config (namespaced keys), as in the fixture file. */
export const SITE_CONFIG = (parse(fs.readFileSync(path.join(__dirname, "fixtures", "site.yaml"), "utf8")) as { config: Record<string, unknown> }).config;
export const SITE_ENVS = SITE_CONFIG[`${NS}:envs`] as Record<string, Record<string, unknown>>;
const WEBHOOK_SECRET = "site-test-webhook-secret-0123456789";
const GITHUB_API_TOKEN = "site-test-token";

/** The config map of the test site on `sim`, with `patch` (namespaced keys) over it. */
export function siteConfig(sim: StartedSim, patch: Record<string, unknown> = {}): ConfigMap {
  const all: ConfigMap = {};
  for (const [k, v] of Object.entries({ ...SITE_CONFIG, [`${NS}:protectKeys`]: false, ...patch })) {
    all[k] = { value: typeof v === "string" ? v : JSON.stringify(v) };
  }
  all[`${NS}:admin`] = { value: JSON.stringify({ transport: "sim", socket: sim.socket }) };
  all[`${NS}:webhookSecret`] = { value: WEBHOOK_SECRET, secret: true };
  all[`${NS}:githubApiToken`] = { value: GITHUB_API_TOKEN, secret: true };
  return all;
}

/** The stand-in GitHub of `sim`: its builder repositories, which the site checks out. */
export function githubDir(sim: StartedSim): string {
  const dir = path.join(sim.stateDir, "github");
  createStandinGithub(dir);
  return dir;
}

/** The stand-in GitHub's bare logs repository (the daemon creates it; made here if not yet). */
export function githubLogs(sim: StartedSim): string {
  const repo = path.join(sim.stateDir, "github", "build-logs.git");
  if (!fs.existsSync(path.join(repo, "HEAD"))) {
    fs.mkdirSync(path.dirname(repo), { recursive: true });
    execFileSync("git", ["init", "-q", "--bare", "-b", "main", repo]);
  }
  return repo;
}

/** Opens the site stack `name` on its own backend, configured for `sim`. */
export async function siteStack(name: string, backend: string, sim: StartedSim, patch: Record<string, unknown> = {}): Promise<Stack> {
  githubLogs(sim);
  githubDir(sim);
  const stack = await openStack(projectRoot, name, backend);
  await stack.setAllConfig(siteConfig(sim, patch));
  return stack;
}

/** The path of the stack's config file, which the caller removes when done. */
export const stackFile = (name: string): string => path.join(projectRoot, `Pulumi.${name}.yaml`);
