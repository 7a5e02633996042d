/**
 * Test fixtures with real gpg and git: maintainer keys (good, expired, revoked), repositories with
 * signed or unsigned tags and commits, served as bare repositories (file:// URLs).
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

/** A GnuPG home holding test keys, with helpers to make and export them. */
export class TestKeyring {
  constructor(readonly home: string) {
    fs.mkdirSync(home, { recursive: true, mode: 0o700 });
  }

  gpg(args: string[], input?: string, faked?: string): string {
    const pre = faked ? ["--faked-system-time", faked] : [];
    return execFileSync("gpg", ["--homedir", this.home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "", ...pre, ...args],
      { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  }

  /** A new ed25519 signing key; `expire` like "1d" (with `faked`, a time in the past: an expired key). */
  key(uid: string, opts: { expire?: string; faked?: string } = {}): string {
    this.gpg(["--quick-gen-key", uid, "ed25519", "sign", opts.expire ?? "never"], undefined, opts.faked);
    return /fpr:::::::::([0-9A-F]{40}):/.exec(this.gpg(["--with-colons", "--list-secret-keys", uid]))![1];
  }

  /** Revokes a key in this keyring (its exported public key then carries the revocation). */
  revoke(fpr: string): void {
    const rev = path.join(this.home, "openpgp-revocs.d", `${fpr}.rev`);
    const text = fs.readFileSync(rev, "utf8").replace(/^:-----BEGIN/m, "-----BEGIN");
    this.gpg(["--import"], text);
  }

  /** Stops this home's gpg-agent (tests call it before removing the directory). */
  close(): void {
    execFileSync("gpgconf", ["--homedir", this.home, "--kill", "all"], { stdio: "ignore" });
  }

  exportPublic(...fprs: string[]): string {
    return this.gpg(["--armor", "--export", ...fprs]);
  }
}

/** A working repository and its bare copy (the "remote"). */
export class TestRepo {
  readonly work: string;
  readonly bare: string;
  constructor(root: string, name: string, readonly keys: TestKeyring) {
    this.work = path.join(root, `${name}-work`);
    this.bare = path.join(root, `${name}.git`);
    fs.mkdirSync(this.work, { recursive: true });
    this.git("init", "-q", "-b", "main");
    this.git("config", "user.name", "Test");
    this.git("config", "user.email", "test@example.org");
    this.git("config", "gpg.program", "gpg");
    execFileSync("git", ["init", "-q", "--bare", "-b", "main", this.bare]);
  }

  get url(): string {
    return `file://${this.bare}`;
  }

  git(...args: string[]): string {
    return execFileSync("git", ["-C", this.work, ...args], { env: { ...process.env, GNUPGHOME: this.keys.home }, stdio: ["pipe", "pipe", "pipe"] }).toString().trim();
  }

  /** Commits the files (path → text); `signWith` signs the commit. Returns the commit id. */
  commit(files: Record<string, string>, message: string, signWith?: string): string {
    for (const [f, t] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(this.work, f)), { recursive: true });
      fs.writeFileSync(path.join(this.work, f), t);
    }
    this.git("add", "-A");
    this.git("commit", "-q", ...(signWith ? [`-S${signWith}`] : []), "-m", message);
    return this.git("rev-parse", "HEAD");
  }

  /** A tag at `commit`: signed by `signWith`, else an unsigned annotated tag (or lightweight). */
  tag(name: string, commit: string, signWith?: string, opts: { lightweight?: boolean; faked?: string } = {}): void {
    if (opts.faked) {
      // git tag -s with an old clock: a wrapper gpg.program passes --faked-system-time.
      const wrapper = path.join(this.keys.home, "gpg-faked");
      fs.writeFileSync(wrapper, `#!/bin/sh\nexec gpg --faked-system-time ${opts.faked} "$@"\n`, { mode: 0o755 });
      this.git("-c", `gpg.program=${wrapper}`, "tag", "-f", "-s", "-u", signWith!, "-m", name, name, commit);
      return;
    }
    if (opts.lightweight) this.git("tag", "-f", name, commit);
    else if (signWith) this.git("tag", "-f", "-s", "-u", signWith, "-m", name, name, commit);
    else this.git("tag", "-f", "-a", "-m", name, name, commit);
  }

  /** Publishes branches and tags to the bare repository. */
  push(): void {
    this.git("push", "-q", "--force", "--tags", this.bare, "main");
  }
}
