/**
 * Commands inside a simulated VM: a bubblewrap sandbox.
 *
 *   /usr /etc (and /bin /lib /lib64 /sbin, as symlinks on merged-/usr hosts)  host, read-only
 *   /rw          <state>/vms/<vm>/rw             read-write (the VM's private volume)
 *   /home        <state>/vms/<vm>/rw/home        read-write (as Qubes binds /rw/home)
 *   /usr/local   <state>/vms/<vm>/rw/usrlocal    read-write (as Qubes binds /rw/usrlocal)
 *   /tmp /run    fresh tmpfs;  /proc /dev        fresh
 *   /run/qubes-sim  <state>/run/<vm>             the VM's qrexec socket (served by the sim's broker)
 *   /srv/qubes-sim-github  <state>/github        read-write, VMs with network only (stand-in GitHub)
 *   /opt/qubes-sim/bin  entries of $QUBES_SIM_TOOLS_BIN (default <project>/.tools/bin), symlinks
 *                       resolved, read-only, first on PATH; plus the sim's guest programs
 *                       (sim/guest: qrexec-client-vm, runuser), which win over a tool of the same name
 * Namespaces: pid, uts (hostname = VM name), ipc, and net unless the VM has a netvm.
 * Runs as root (the sim runs as root) with USER set; HOME=/home/user; QUBES_SIM_VM=<vm>.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";

export interface SandboxSpec {
  vm: string;
  user: string;
  command: string;
  stdin: Buffer;
  /** <state>/vms/<vm> */
  vmDir: string;
  /** <state>/run/<vm> */
  runDir: string;
  network: boolean;
  toolsBin: string;
  /** Host directory bound read-write at /srv/qubes-sim-github when the VM has network. */
  githubDir?: string;
  /** Bind the stand-in GitHub read-only (the VM holds no credentials to push). */
  githubReadOnly?: boolean;
  /** Extra environment (e.g. the qrexec variables of a service call). */
  env?: Record<string, string>;
  /** argv to run instead of `/bin/sh -c command`. */
  argv?: string[];
  /** Have bwrap write `{"child-pid": N}` (host pid of the sandbox's first process) on fd 3. */
  infoFd?: boolean;
}

/** The sim's own programs for VMs (qrexec-client-vm, runuser), bound into /opt/qubes-sim/bin. */
export const GUEST_BIN = path.join(__dirname, "guest");
export const GITHUB_MOUNT = "/srv/qubes-sim-github";

export interface SandboxResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

const MAX_OUTPUT = 64 * 1024 * 1024;

/** The bwrap argument vector for a spec. */
export function bwrapArgs(spec: SandboxSpec): string[] {
  const a: string[] = [...(spec.infoFd ? ["--info-fd", "3"] : []), "--die-with-parent", "--unshare-pid", "--unshare-uts", "--unshare-ipc", "--hostname", spec.vm];
  if (!spec.network) a.push("--unshare-net");
  a.push("--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc");
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
  const rw = path.join(spec.vmDir, "rw");
  a.push("--bind", rw, "/rw", "--bind", path.join(rw, "home"), "/home", "--bind", path.join(rw, "usrlocal"), "/usr/local");
  a.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run", "--dir", "/run/qubes-sim", "--bind", spec.runDir, "/run/qubes-sim");
  if (spec.network && spec.githubDir && fs.existsSync(spec.githubDir)) a.push(spec.githubReadOnly ? "--ro-bind" : "--bind", spec.githubDir, GITHUB_MOUNT);
  a.push("--dir", "/opt/qubes-sim/bin");
  const guest = fs.existsSync(GUEST_BIN) ? fs.readdirSync(GUEST_BIN) : [];
  for (const e of guest) a.push("--ro-bind", path.join(GUEST_BIN, e), `/opt/qubes-sim/bin/${e}`);
  // Each entry is bound resolved: the tools are often symlinks pointing outside their directory.
  if (fs.existsSync(spec.toolsBin)) {
    for (const e of fs.readdirSync(spec.toolsBin)) {
      if (guest.includes(e)) continue;
      let real: string;
      try {
        real = fs.realpathSync(path.join(spec.toolsBin, e));
      } catch {
        continue;
      }
      a.push("--ro-bind", real, `/opt/qubes-sim/bin/${e}`);
    }
  }
  a.push("--clearenv");
  for (const [k, v] of Object.entries(sandboxEnv(spec))) a.push("--setenv", k, v);
  a.push("--chdir", spec.user === "root" ? "/" : "/home/user");
  if (spec.argv) a.push("--", ...spec.argv);
  else a.push("/bin/sh", "-c", spec.command);
  return a;
}

/** The environment of a process in the VM. */
export function sandboxEnv(spec: SandboxSpec): Record<string, string> {
  return {
    PATH: "/opt/qubes-sim/bin:/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin",
    HOME: "/home/user",
    USER: spec.user,
    LOGNAME: spec.user,
    QUBES_SIM_VM: spec.vm,
    LANG: "C.UTF-8",
    ...(spec.env ?? {}),
  };
}

/** Start a process in the sandbox with piped stdio (the caller streams and waits). */
export function spawnInSandbox(spec: SandboxSpec): ChildProcess {
  return spawn("bwrap", bwrapArgs(spec), { stdio: spec.infoFd ? ["pipe", "pipe", "pipe", "pipe"] : ["pipe", "pipe", "pipe"] });
}

/**
 * Start a process inside a running VM: in the namespaces (mount, uts, ipc, pid, net) of the VM's
 * boot sandbox, whose first process has host pid `pid`. What it leaves in the background lives
 * on until the VM halts, as in a real VM.
 */
export function spawnInVm(pid: number, spec: SandboxSpec): ChildProcess {
  const env = Object.entries(sandboxEnv(spec)).map(([k, v]) => `${k}=${v}`);
  const dir = spec.user === "root" ? "/" : "/home/user";
  const argv = spec.argv ?? ["/bin/sh", "-c", spec.command];
  return spawn("nsenter", ["-t", String(pid), "-m", "-u", "-i", "-n", "-p", "--", "/usr/bin/env", "-i", ...env, "/bin/sh", "-c", `cd ${dir} 2>/dev/null; exec "$@"`, "sh", ...argv], {
    stdio: ["pipe", "pipe", "pipe"],
  });
}

/** Run a command in the sandbox and collect its output. */
export function runInSandbox(spec: SandboxSpec): Promise<SandboxResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("bwrap", bwrapArgs(spec), { stdio: ["pipe", "pipe", "pipe"] });
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
    child.stdout.on("data", collect(out));
    child.stderr.on("data", collect(err));
    child.on("error", reject);
    child.stdin.on("error", () => undefined);
    child.stdin.end(spec.stdin);
    child.on("close", (code, signal) => {
      resolve({ exitCode: code ?? 128 + (signal ? 9 : 0), stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
    });
  });
}
