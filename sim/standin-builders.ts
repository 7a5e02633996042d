/**
 * The stand-in builder repositories of qubes-sim's stand-in GitHub (sim/standin/README.md): each
 * directory of sim/standin/ becomes `<github dir>/<name>.git` with one commit made with fixed
 * names and dates (so its id, the pin of the local stack, is the same on every machine) and a
 * release tag signed by the test maintainer key. Idempotent: a repository whose tag already points
 * at the expected commit is left alone.
 *
 * Run by `bin/qubes-sim standin-builders` (scripts/sim.sh does at `make up`) and by the tests.
 * Uses git and gpg; the test key's secret half only ever sits in a temporary GnuPG home here.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

/** The stand-in repositories, by name (their directories under sim/standin/). */
export const STANDIN_REPOS = ["qubes-builderv2", "qubes-builderv2-github", "qubes-builder", "qubes-builder-github", "qubes-release-configs"] as const;
export type StandinName = (typeof STANDIN_REPOS)[number];
/** The signed release tag of each. */
export const STANDIN_TAG = "v1";
/** Where VMs see the stand-in GitHub. */
export const STANDIN_URL_BASE = "file:///srv/qubes-sim-github";

const SOURCES = path.join(__dirname, "standin");
export const MAINTAINER_KEY_FILE = path.join(SOURCES, "test-maintainer.sec.asc");

/** Fixed identity and time of the stand-in commits (the commit id depends on them). */
const COMMIT_ENV = {
  GIT_AUTHOR_NAME: "qubes-sim stand-in", GIT_AUTHOR_EMAIL: "standin@qubes-sim.invalid", GIT_AUTHOR_DATE: "2026-01-01T00:00:00+0000",
  GIT_COMMITTER_NAME: "qubes-sim stand-in", GIT_COMMITTER_EMAIL: "standin@qubes-sim.invalid", GIT_COMMITTER_DATE: "2026-01-01T00:00:00+0000",
};

export interface StandinRepo {
  name: StandinName;
  /** Bare repository on the host. */
  bare: string;
  /** The URL inside VMs. */
  url: string;
  commit: string;
  tag: string;
}

/** The test maintainer key's secret key imported into a fresh GnuPG home (removed by `done`). */
export function maintainerKeyring(): { home: string; fingerprint: string; publicKey: string; done: () => void } {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-standin-gnupg-"));
  const gpg = (args: string[], input?: string) =>
    execFileSync("gpg", ["--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "", ...args],
      { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  gpg(["--import"], fs.readFileSync(MAINTAINER_KEY_FILE, "utf8"));
  const fingerprint = /fpr:::::::::([0-9A-F]{40}):/.exec(gpg(["--with-colons", "--list-secret-keys"]))![1];
  const publicKey = gpg(["--armor", "--export", fingerprint]);
  const done = () => {
    execFileSync("gpgconf", ["--homedir", home, "--kill", "all"], { stdio: "ignore" });
    fs.rmSync(home, { recursive: true, force: true });
  };
  return { home, fingerprint, publicKey, done };
}

/** Copies a stand-in's sources (no Python caches, which running them locally would leave). */
const copySources = (name: StandinName, to: string) =>
  fs.cpSync(path.join(SOURCES, name), to, { recursive: true, filter: (src) => !/(^|\/)(__pycache__|.*\.pyc)$/.test(src) });

const git = (cwd: string, args: string[], env: Record<string, string> = {}) =>
  execFileSync("git", ["-C", cwd, ...args], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] }).toString().trim();

/** The commit a tag of a bare repository points at, or null. */
function taggedCommit(bare: string, tag: string): string | null {
  try {
    return git(bare, ["rev-parse", "--verify", "-q", `refs/tags/${tag}^{commit}`]);
  } catch {
    return null;
  }
}

/**
 * Makes (or adds to) a stand-in repository: commits `files` (or, without a parent, the stand-in
 * sources) with the fixed identity and time, tags it signed by the test maintainer key, and
 * pushes both to `<githubDir>/<name>.git`. Returns the commit.
 */
export function publishStandin(githubDir: string, name: StandinName, opts: { files?: Record<string, string>; tag?: string; signed?: boolean } = {}): string {
  const bare = path.join(githubDir, `${name}.git`);
  const tag = opts.tag ?? STANDIN_TAG;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `qbi-standin-${name}-`));
  const key = maintainerKeyring();
  try {
    if (!fs.existsSync(path.join(bare, "HEAD"))) {
      fs.mkdirSync(bare, { recursive: true });
      git(bare, ["init", "-q", "--bare", "-b", "main"]);
    }
    git(work, ["init", "-q", "-b", "main"]);
    const parent = opts.files ? git(bare, ["rev-parse", "--verify", "-q", "refs/heads/main"]) : "";
    if (parent) {
      git(work, ["fetch", "-q", bare, "main"]);
      git(work, ["reset", "-q", "--hard", "FETCH_HEAD"]);
    } else {
      copySources(name, work);
    }
    for (const [f, text] of Object.entries(opts.files ?? {})) {
      fs.mkdirSync(path.dirname(path.join(work, f)), { recursive: true });
      fs.writeFileSync(path.join(work, f), text);
    }
    git(work, ["add", "-A"]);
    const message = parent ? `stand-in change (${tag})` : `stand-in ${name} for qubes-sim`;
    git(work, ["-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", message], COMMIT_ENV);
    const commit = git(work, ["rev-parse", "HEAD"]);
    const signed = opts.signed ?? true;
    const how = signed ? ["-s", "-u", key.fingerprint] : ["-a"];
    git(work, ["-c", "gpg.program=gpg", "tag", "-f", ...how, "-m", `${name} ${tag}`, tag, commit], { GNUPGHOME: key.home });
    git(work, ["push", "-q", "--force", bare, "main", `refs/tags/${tag}`]);
    return commit;
  } finally {
    key.done();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Every stand-in repository in `githubDir`, created when missing or not at the current sources. */
export function createStandinGithub(githubDir: string): Record<StandinName, StandinRepo> {
  fs.mkdirSync(githubDir, { recursive: true });
  const out = {} as Record<StandinName, StandinRepo>;
  for (const name of STANDIN_REPOS) {
    const bare = path.join(githubDir, `${name}.git`);
    const expected = expectedCommit(name);
    let commit = taggedCommit(bare, STANDIN_TAG);
    if (commit !== expected) {
      // A stale stand-in (older sources) is replaced, not added to: the pin is the fresh commit.
      fs.rmSync(bare, { recursive: true, force: true });
      commit = publishStandin(githubDir, name);
    }
    out[name] = { name, bare, url: `${STANDIN_URL_BASE}/${name}.git`, commit: commit!, tag: STANDIN_TAG };
  }
  return out;
}

/** The commit id the current stand-in sources of a repository give (no signing, nothing written). */
export function expectedCommit(name: StandinName): string {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `qbi-standin-${name}-`));
  try {
    git(work, ["init", "-q", "-b", "main"]);
    copySources(name, work);
    git(work, ["add", "-A"]);
    git(work, ["-c", "commit.gpgsign=false", "commit", "-q", "-m", `stand-in ${name} for qubes-sim`], COMMIT_ENV);
    return git(work, ["rev-parse", "HEAD"]);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
