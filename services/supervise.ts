/**
 * supervise: keeps one long-running program up, for a qube's boot (rc.local) to start it with.
 *
 *   supervise.js --name <name> --log <file> [--max-log-bytes <n>] [--state-dir <dir>] -- <program> [args...]
 *
 * Restarts the program whenever it exits, after a pause that doubles from 1 s up to 60 s while it
 * keeps failing within a minute of its start, and falls back to 1 s once it has run a minute. Its
 * stdout and stderr go to the log file, with a line per start and exit; the log is rotated to
 * `<file>.1` past `--max-log-bytes` (default 10 MiB), so one previous log is kept. One supervisor
 * per name: `<state-dir>/<name>.supervisor.pid` (a second one exits 0), and the program's pid in
 * `<state-dir>/<name>.pid`. SIGTERM/SIGINT stop the program and then the supervisor.
 *
 * Why not a systemd unit: an AppVM's /etc is not persistent and qubes-sim runs no systemd; one
 * supervisor that behaves the same on Qubes and in the sim is the one that is tested.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { z } from "zod";

const Args = z.object({
  name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "a name of letters, digits, '_' and '-'"),
  log: z.string().regex(/^\/[^\0]+$/, "an absolute path"),
  maxLogBytes: z.number().int().min(4096).default(10 * 1024 * 1024),
  stateDir: z.string().regex(/^\/[^\0]+$/, "an absolute path").optional(),
  program: z.array(z.string()).min(1, "a program after --"),
});
type Args = z.infer<typeof Args>;

const FIRST_PAUSE_MS = 1000;
const MAX_PAUSE_MS = 60_000;
/** A run this long counts as healthy: the next failure starts the backoff over. */
const HEALTHY_MS = 60_000;

function parseArgs(argv: string[]): Args {
  const raw: Record<string, unknown> = {};
  const sep = argv.indexOf("--");
  const opts = sep < 0 ? argv : argv.slice(0, sep);
  raw.program = sep < 0 ? [] : argv.slice(sep + 1);
  for (let i = 0; i < opts.length; i += 2) {
    const [k, v] = [opts[i], opts[i + 1]];
    if (v === undefined) throw new Error(`${k}: expects a value`);
    if (k === "--name") raw.name = v;
    else if (k === "--log") raw.log = v;
    else if (k === "--state-dir") raw.stateDir = v;
    else if (k === "--max-log-bytes") raw.maxLogBytes = Number(v);
    else throw new Error(`unknown argument ${k} (expected --name, --log, --max-log-bytes, --state-dir, then -- and the program)`);
  }
  const r = Args.safeParse(raw);
  if (!r.success) throw new Error(r.error.issues.map((i) => `${i.path.join(".") || "(arguments)"}: ${i.message}`).join("; "));
  return r.data;
}

/** Next pause after a run of `ranMs` that followed a pause of `lastPauseMs`. */
export function nextPause(lastPauseMs: number, ranMs: number): number {
  if (ranMs >= HEALTHY_MS || lastPauseMs <= 0) return FIRST_PAUSE_MS;
  return Math.min(lastPauseMs * 2, MAX_PAUSE_MS);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Whether `pid` is a supervisor of `name`. The pid file outlives a reboot of the qube, and after one
 * the same pid may be any other process: its command line says whether it is ours.
 */
function supervises(pid: number, name: string): boolean {
  if (!alive(pid)) return false;
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    const i = argv.indexOf("--name");
    return argv.some((x) => /supervise/.test(x)) && i >= 0 && argv[i + 1] === name;
  } catch {
    return false;
  }
}

/** Claims `<name>.supervisor.pid`; false when a live supervisor of that name holds it. */
function claim(file: string, name: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: "wx", mode: 0o644 });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(fs.readFileSync(file, "utf8").trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && supervises(pid, name)) return false;
      fs.rmSync(file, { force: true });
    }
  }
  return false;
}

function main(): void {
  let a: Args;
  try {
    a = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`supervise: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const stateDir = a.stateDir ?? path.join(process.env.HOME ?? os.homedir(), ".local", "state", "qubes-build-infra");
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.dirname(a.log), { recursive: true });
  const lockFile = path.join(stateDir, `${a.name}.supervisor.pid`);
  const pidFile = path.join(stateDir, `${a.name}.pid`);
  if (!claim(lockFile, a.name)) {
    process.stderr.write(`supervise: ${a.name} is already supervised (${lockFile})\n`);
    process.exit(0);
  }

  const note = (msg: string) => fs.appendFileSync(a.log, `supervise: ${new Date().toISOString()} ${a.name}: ${msg}\n`);
  let child: ChildProcess | undefined;
  let stopping = false;
  let pause = 0;
  let timer: NodeJS.Timeout | undefined;

  const rotate = () => {
    try {
      if (fs.statSync(a.log).size > a.maxLogBytes) fs.renameSync(a.log, `${a.log}.1`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
  };

  const startOnce = () => {
    timer = undefined;
    rotate();
    const fd = fs.openSync(a.log, "a", 0o600);
    const started = Date.now();
    const c = spawn(a.program[0], a.program.slice(1), { stdio: ["ignore", fd, fd] });
    fs.closeSync(fd);
    child = c;
    let ended = false;
    // A program that cannot start gives 'error' and maybe 'close': either ends this run, once.
    const end = (how: string) => {
      if (ended) return;
      ended = true;
      child = undefined;
      const ran = Date.now() - started;
      if (stopping) {
        note(`stopped (${how})`);
        fs.rmSync(pidFile, { force: true });
        fs.rmSync(lockFile, { force: true });
        process.exit(0);
      }
      pause = nextPause(pause, ran);
      note(`${how} after ${Math.round(ran / 1000)} s; restarting in ${pause / 1000} s`);
      timer = setTimeout(startOnce, pause);
    };
    c.on("error", (e) => end(`cannot start ${a.program[0]}: ${e.message}`));
    c.on("close", (code, signal) => end(`exited (${signal ? `signal ${signal}` : `exit ${code}`})`));
    if (c.pid) {
      fs.writeFileSync(pidFile, `${c.pid}\n`);
      note(`started pid ${c.pid}`);
    }
  };

  const stop = () => {
    if (stopping) return;
    stopping = true;
    if (timer) clearTimeout(timer);
    if (child) child.kill("SIGTERM");
    else {
      fs.rmSync(lockFile, { force: true });
      process.exit(0);
    }
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  startOnce();
}

if (require.main === module) main();
