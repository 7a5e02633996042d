/**
 * A qubes-sim VM: a bubblewrap sandbox in its own user and network namespaces.
 *
 *   /usr /etc (and /bin /lib /lib64 /sbin, as symlinks on merged-/usr hosts)  host, read-only
 *   /etc/passwd /etc/group /etc/hosts /etc/hostname   the VM's own (with `user`, uid 1000), read-only
 *   /rw          <state>/vms/<vm>/rw             read-write (the VM's private volume)
 *   /home        <state>/vms/<vm>/rw/home        read-write (as Qubes binds /rw/home)
 *   /usr/local   <state>/vms/<vm>/rw/usrlocal    read-write (as Qubes binds /rw/usrlocal)
 *   /tmp (1777) /run (0755)  fresh tmpfs;  /proc /dev   fresh
 *   /run/qubes-sim  <state>/run/<vm>             the VM's own qrexec socket, nothing else
 *   /srv/qubes-sim-github  <state>/github        VMs with network: read-only; the repositories the
 *                                                VM may push to are bound read-write on top
 *   /opt/qubes-sim/bin      tools ($QUBES_SIM_TOOLS_BIN, default <project>/.tools/bin, resolved) and
 *                           the sim's guest programs (sim/guest), read-only, first on PATH
 *   /opt/qubes-sim/libexec  qubes-sim-exec (sim/exec), read-only
 *
 * Isolation (see sim/README.md): ids 0..65534 of the VM's user namespace are host ids
 * idBase..idBase+65534 (root of the VM is no host root); the network namespace is the one the sim
 * built for the VM (sim/network.ts); pid, uts, ipc, cgroup and mount namespaces are the sandbox's.
 * Every VM process goes through `qubes-sim-exec run|enter`: `user` (1000) with no capabilities, or
 * `root` with a few capabilities that count only over the VM's own ids; no_new_privs; a seccomp
 * filter against the known escapes. `isolation: false` (QUBES_SIM_ISOLATION=off, only for the
 * escape suite's proof that it can fail) runs VMs as host root with every capability instead.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";

/** Where a VM lives on the host and how it is isolated. */
export interface VmSandbox {
  vm: string;
  /** <state>/vms/<vm> */
  vmDir: string;
  /** <state>/run/<vm>: the VM's qrexec socket. */
  runDir: string;
  /** Directory holding the VM's passwd, group, hosts and hostname. */
  etcDir: string;
  /** Host id of the VM's uid 0; the VM's `user` is idBase + 1000. */
  idBase: number;
  /** The VM's network namespace (a path under /run/netns). */
  netns: string;
  toolsBin: string;
  /** Extra binds (the stand-in GitHub). */
  binds: { src: string; dst: string; rw: boolean }[];
  isolation: boolean;
}

/** A VM user: `root` or `user`, as in a Qubes VM. */
export type VmUser = "root" | "user";

/** The sim's own programs for VMs (qrexec-client-vm, runuser), bound into /opt/qubes-sim/bin. */
export const GUEST_BIN = path.join(__dirname, "guest");
export const GITHUB_MOUNT = "/srv/qubes-sim-github";
export const EXEC_IN_VM = "/opt/qubes-sim/libexec/qubes-sim-exec";
export const USER_UID = 1000;

/** The privileged helper, built by scripts/setup.sh. */
export function execHelper(): string {
  const p = process.env.QUBES_SIM_EXEC ?? path.join(__dirname, "..", ".tools", "libexec", "qubes-sim-exec");
  if (!fs.existsSync(p)) throw new Error(`qubes-sim: ${p} is missing: run make setup (it builds sim/exec/qubes-sim-exec.c with libseccomp)`);
  return p;
}

export interface SandboxResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

const MAX_OUTPUT = 64 * 1024 * 1024;

/**
 * The VM's own /etc/passwd, /etc/group (the host's, with `user`), /etc/hosts, /etc/hostname and
 * /etc/gitconfig. The stand-in GitHub's repositories belong to nobody in the VM; git's ownership
 * check guards a user against repositories of other local users, which the server side of a
 * remote is not: they are listed as safe (`gitRepos`, paths in the VM). A repository a VM may
 * push to is also owned by that VM's user (receive-pack of a file:// push ignores this file).
 */
export function writeVmEtc(sb: VmSandbox, hosts: Record<string, string>, gitRepos: string[] = []): void {
  fs.mkdirSync(sb.etcDir, { recursive: true });
  const keep = (file: string, id: number) =>
    fs
      .readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("user:") && l.split(":")[2] !== String(id))
      .join("\n");
  const write = (name: string, text: string) => {
    const f = path.join(sb.etcDir, name);
    if (!fs.existsSync(f) || fs.readFileSync(f, "utf8") !== text) fs.writeFileSync(f, text, { mode: 0o644 });
  };
  write("passwd", `${keep("/etc/passwd", USER_UID)}\nuser:x:${USER_UID}:${USER_UID}:user:/home/user:/bin/bash\n`);
  write("group", `${keep("/etc/group", USER_UID)}\nuser:x:${USER_UID}:\n`);
  write("hostname", `${sb.vm}\n`);
  const hostGit = fs.existsSync("/etc/gitconfig") ? fs.readFileSync("/etc/gitconfig", "utf8") : "";
  write("gitconfig", `${hostGit}${hostGit && !hostGit.endsWith("\n") ? "\n" : ""}[safe]\n${gitRepos.map((r) => `\tdirectory = ${r}\n`).join("")}`);
  write("hosts", ["127.0.0.1\tlocalhost", `127.0.1.1\t${sb.vm}`, ...Object.entries(hosts).map(([n, a]) => `${a}\t${n}`), ""].join("\n"));
}

/** bwrap's arguments for the VM's boot sandbox, up to (not including) the command. */
export function bwrapArgs(sb: VmSandbox): string[] {
  const a: string[] = ["--info-fd", "3", "--die-with-parent", "--unshare-pid", "--unshare-uts", "--unshare-ipc", "--unshare-cgroup-try", "--hostname", sb.vm];
  a.push("--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc");
  for (const f of ["passwd", "group", "hosts", "hostname", "gitconfig"]) a.push("--ro-bind", path.join(sb.etcDir, f), `/etc/${f}`);
  for (const d of ["/bin", "/sbin", "/lib", "/lib64", "/lib32"]) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(d);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) a.push("--symlink", fs.readlinkSync(d), d);
    else a.push("--ro-bind", d, d);
  }
  const rw = path.join(sb.vmDir, "rw");
  a.push("--bind", rw, "/rw", "--bind", path.join(rw, "home"), "/home", "--bind", path.join(rw, "usrlocal"), "/usr/local");
  a.push("--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp", "--perms", "0755", "--tmpfs", "/run");
  a.push("--dir", "/run/qubes-sim", "--bind", sb.runDir, "/run/qubes-sim", "--dir", "/srv");
  for (const b of sb.binds) a.push(b.rw ? "--bind" : "--ro-bind", b.src, b.dst);
  a.push("--dir", "/opt/qubes-sim/bin");
  const guest = fs.existsSync(GUEST_BIN) ? fs.readdirSync(GUEST_BIN) : [];
  for (const e of guest) a.push("--ro-bind", path.join(GUEST_BIN, e), `/opt/qubes-sim/bin/${e}`);
  // Each entry is bound resolved: the tools are often symlinks pointing outside their directory.
  if (fs.existsSync(sb.toolsBin)) {
    for (const e of fs.readdirSync(sb.toolsBin)) {
      if (guest.includes(e)) continue;
      let real: string;
      try {
        real = fs.realpathSync(path.join(sb.toolsBin, e));
      } catch {
        continue;
      }
      a.push("--ro-bind", real, `/opt/qubes-sim/bin/${e}`);
    }
  }
  if (sb.isolation) a.push("--ro-bind", execHelper(), EXEC_IN_VM);
  a.push("--clearenv");
  for (const [k, v] of Object.entries(vmEnv(sb.vm, "root"))) a.push("--setenv", k, v);
  a.push("--chdir", "/");
  return a;
}

/** The environment of a process in the VM. */
export function vmEnv(vm: string, user: VmUser, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: "/opt/qubes-sim/bin:/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin",
    HOME: user === "root" ? "/root" : "/home/user",
    USER: user,
    LOGNAME: user,
    QUBES_SIM_VM: vm,
    LANG: "C.UTF-8",
    ...extra,
  };
}

/**
 * Boot a VM: its first process runs `argv` as root of the VM; bwrap writes
 * `{"child-pid": N}` (host pid of the sandbox's first process) on fd 3.
 */
export function spawnBoot(sb: VmSandbox, argv: string[]): ChildProcess {
  const stdio: ("pipe" | "ignore")[] = ["pipe", "pipe", "pipe", "pipe"];
  const bw = bwrapArgs(sb);
  if (!sb.isolation) return spawn("nsenter", [`--net=${sb.netns}`, "--", "bwrap", ...bw, "--", ...argv], { stdio });
  const inner = [EXEC_IN_VM, "run", "--user", "root", "--cwd", "/", "--", ...argv];
  return spawn(execHelper(), ["boot", "--idbase", String(sb.idBase), "--netns", sb.netns, "--", "bwrap", ...bw, "--", ...inner], { stdio });
}

/**
 * Start a process inside a running VM (the namespaces of its first process, host pid `pid`), as
 * `user` or `root` of the VM. What it leaves in the background lives on until the VM halts.
 */
export function spawnInVm(sb: VmSandbox, pid: number, user: VmUser, argv: string[], env: Record<string, string> = {}): ChildProcess {
  const cwd = user === "root" ? "/" : "/home/user";
  const e = vmEnv(sb.vm, user, env);
  const stdio: "pipe"[] = ["pipe", "pipe", "pipe"];
  if (!sb.isolation) {
    const sh = ["/bin/sh", "-c", `cd ${cwd} 2>/dev/null; exec "$@"`, "sh", ...argv];
    return spawn("nsenter", ["-t", String(pid), "-m", "-u", "-i", "-n", "-p", "--", "/usr/bin/env", "-i", ...Object.entries(e).map(([k, v]) => `${k}=${v}`), ...sh], { stdio });
  }
  return spawn(execHelper(), ["enter", "--pid", String(pid), "--user", user, "--cwd", cwd, "--", ...argv], { stdio, env: e });
}

/** Run a command in a running VM and collect its output. */
export function runInVm(sb: VmSandbox, pid: number, user: VmUser, command: string, stdin: Buffer): Promise<SandboxResult> {
  return new Promise((resolve, reject) => {
    const child = spawnInVm(sb, pid, user, ["/bin/sh", "-c", command]);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    const collect = (arr: Buffer[]) => (d: Buffer) => {
      size += d.length;
      if (size > MAX_OUTPUT) {
        child.kill("SIGKILL");
        return;
      }
      arr.push(d);
    };
    child.stdout?.on("data", collect(out));
    child.stderr?.on("data", collect(err));
    child.on("error", reject);
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(stdin);
    child.on("close", (code, signal) => {
      resolve({ exitCode: code ?? 128 + (signal ? 9 : 0), stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
    });
  });
}

/**
 * Give the VM's private storage to the VM's ids: /rw and what is in it to the VM's root, /home/user
 * to its `user`. Done when the storage is not the VM's yet (new VM, or an id base that changed).
 */
export function ownVmStorage(vmDir: string, idBase: number): void {
  const rw = path.join(vmDir, "rw");
  const st = fs.statSync(rw);
  if (st.uid === idBase && st.gid === idBase) return;
  const home = path.join(rw, "home", "user");
  // Children first: /rw itself is owned last, so an interrupted walk is done again.
  const walk = (p: string, id: number) => {
    if (fs.lstatSync(p).isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e), path.join(p, e) === home ? idBase + USER_UID : id);
    fs.lchownSync(p, id, id);
  };
  walk(rw, idBase);
}

/** Give a whole tree to one host id (children first, the top last). */
export function chownTree(top: string, id: number): void {
  const walk = (p: string) => {
    if (fs.lstatSync(p).isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
    fs.lchownSync(p, id, id);
  };
  walk(top);
}
