/**
 * The stand-in GitHub: bare repositories in `<state>/github`, bound at /srv/qubes-sim-github in VMs
 * with network, and `<state>/github-access.json`, who may push to which. Who may write is decided by
 * the mount (read-write only in the VMs the access file names), not by the files' modes.
 * The stand-in builder repositories in it are made by sim/standin-builders.ts.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { chownTree, GITHUB_MOUNT, USER_UID, VmSandbox } from "./sandbox";
import { atomicWrite, Vm } from "./state";

const GithubAccess = z.record(
  z.string().regex(/^[A-Za-z0-9_.-]+\.git$/),
  z.object({ writers: z.array(z.string().regex(/^(@tag:)?[A-Za-z0-9_.-]+$/)) }).strict(),
);
type GithubAccess = z.infer<typeof GithubAccess>;
/** By default only the logs VMs (the site tags them) hold the logs repository's deploy key. */
export const DEFAULT_GITHUB_ACCESS: GithubAccess = { "build-logs.git": { writers: ["@tag:qbi-role-logs"] } };

export class StandinGithub {
  constructor(
    private readonly stateRoot: string,
    private readonly log: (msg: string) => void,
  ) {}

  /** `<state>/github`: the repositories. */
  get dir(): string {
    return path.join(this.stateRoot, "github");
  }

  /** `<state>/github-access.json`: which VMs may push to which repository. */
  get accessFile(): string {
    return path.join(this.stateRoot, "github-access.json");
  }

  /**
   * Creates the bare `build-logs.git` (branch main) and the access file (DEFAULT_GITHUB_ACCESS)
   * when missing. Repositories are group/world-writable files: the mount decides who writes.
   */
  ensure(): void {
    if (!fs.existsSync(this.accessFile)) atomicWrite(this.accessFile, JSON.stringify(DEFAULT_GITHUB_ACCESS, null, 2) + "\n");
    this.access();
    const repo = path.join(this.dir, "build-logs.git");
    if (fs.existsSync(path.join(repo, "HEAD"))) return;
    fs.mkdirSync(repo, { recursive: true });
    execFileSync("git", ["init", "-q", "--bare", "--shared=0666", "-b", "main", repo], { stdio: ["ignore", "ignore", "pipe"] });
  }

  private access(): GithubAccess {
    const f = this.accessFile;
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(f, "utf8"));
    } catch (e) {
      throw new Error(`${f}: ${(e as Error).message}`);
    }
    const p = GithubAccess.safeParse(raw);
    if (!p.success) {
      const issues = p.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
      throw new Error(`${f}: expected {"<repo>.git": {"writers": ["<vm>" | "@tag:<tag>", ...]}}: ${issues}`);
    }
    return p.data;
  }

  /** The repositories, as paths in a VM. */
  repos(): string[] {
    return fs.existsSync(this.dir) ? fs.readdirSync(this.dir).filter((r) => r.endsWith(".git")).sort().map((r) => `${GITHUB_MOUNT}/${r}`) : [];
  }

  /** Repositories a VM may push to; none while the access file is invalid (fails closed). */
  writable(vm: Vm): string[] {
    let access: GithubAccess;
    try {
      access = this.access();
    } catch (e) {
      this.log(`${(e as Error).message}: every repository is read-only`);
      return [];
    }
    const match = (w: string) => (w.startsWith("@tag:") ? vm.tags.includes(w.slice(5)) : w === vm.name);
    return Object.entries(access)
      .filter(([repo, a]) => a.writers.some(match) && fs.existsSync(path.join(this.dir, repo)))
      .map(([repo]) => repo);
  }

  /** The binds of a VM with network: everything read-only, its writable repositories read-write. */
  binds(vm: Vm, idBase: number): VmSandbox["binds"] {
    if (!fs.existsSync(this.dir)) return [];
    const binds: VmSandbox["binds"] = [{ src: this.dir, dst: GITHUB_MOUNT, rw: false }];
    for (const repo of this.writable(vm)) {
      const src = path.join(this.dir, repo);
      binds.push({ src, dst: `${GITHUB_MOUNT}/${repo}`, rw: true });
      // git refuses a repository its user does not own (a file:// push runs receive-pack in it,
      // and programs may ignore /etc/gitconfig's safe.directory): the writer's user owns it.
      const uid = idBase + USER_UID;
      if (fs.statSync(src).uid !== uid) chownTree(src, uid);
    }
    return binds;
  }
}
