// The supervisor the net VM's boot starts the webhook receiver with: restarts on exit with backoff,
// one supervisor per name, logs kept (one rotation), clean stop on SIGTERM.
import * as fs from "fs";
import * as path from "path";
import { nextPause } from "../../services/supervise";
import { buildDist, runJs as run, start, tempDir } from "./helpers";

jest.setTimeout(60_000);

let dist: string;
beforeAll(async () => {
  dist = await buildDist();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, fn: () => T | undefined, ms = 15_000): Promise<T> {
  for (const end = Date.now() + ms; ; await sleep(50)) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
  }
}
const pidIn = (file: string): number | undefined => {
  try {
    const n = Number(fs.readFileSync(file, "utf8").trim());
    return n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
};
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("supervise", () => {
  it("backs off 1, 2, 4 ... 60 s while the program keeps failing, and starts over after a healthy minute", () => {
    let p = 0;
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) seen.push((p = nextPause(p, 100)));
    expect(seen).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
    expect(nextPause(60000, 61_000)).toBe(1000);
  });

  it("restarts the program after it is killed, keeps its output and the reason in the log, and stops with it on SIGTERM", async () => {
    const dir = tempDir("supervise");
    const log = path.join(dir, "logs", "prog.log");
    const program = path.join(dir, "prog.sh");
    fs.writeFileSync(program, "#!/bin/sh\necho \"prog up $$\"\nexec sleep 300\n", { mode: 0o755 });
    const sup = start(path.join(dist, "supervise.js"), { args: ["--name", "prog", "--log", log, "--state-dir", dir, "--", program] });
    const pidFile = path.join(dir, "prog.pid");
    const first = await until("the first start", () => pidIn(pidFile));
    await until("its output in the log", () => (fs.existsSync(log) && fs.readFileSync(log, "utf8").includes(`prog up ${first}`) ? true : undefined));

    // A second supervisor of the same name leaves it alone.
    const second = await run(path.join(dist, "supervise.js"), { args: ["--name", "prog", "--log", log, "--state-dir", dir, "--", program] });
    expect(second.code).toBe(0);
    expect(second.stderr).toContain("prog is already supervised");

    process.kill(first, "SIGKILL");
    const again = await until("a restart", () => {
      const p = pidIn(pidFile);
      return p !== undefined && p !== first && alive(p) ? p : undefined;
    });
    const text = fs.readFileSync(log, "utf8");
    expect(text).toMatch(/prog: exited \(signal SIGKILL\) after \d+ s; restarting in 1 s/);
    expect(text).toMatch(new RegExp(`prog: started pid ${again}`));

    const closed = new Promise<number | null>((r) => sup.on("close", (code) => r(code)));
    sup.kill("SIGTERM");
    expect(await closed).toBe(0);
    await until("the program stopped", () => (alive(again) ? undefined : true));
    expect(fs.existsSync(pidFile)).toBe(false);
    expect(fs.readFileSync(log, "utf8")).toMatch(/prog: stopped \(exited \(signal SIGTERM\)\)/);
  });

  it("takes over a pid file left by a reboot, whatever process has that pid now", async () => {
    const dir = tempDir("supervise-stale");
    // This test's own pid: alive, but not a supervisor of `stale`.
    fs.writeFileSync(path.join(dir, "stale.supervisor.pid"), `${process.pid}\n`);
    const log = path.join(dir, "stale.log");
    const sup = start(path.join(dist, "supervise.js"), { args: ["--name", "stale", "--log", log, "--state-dir", dir, "--", "/bin/sleep", "300"] });
    const child = await until("the start", () => pidIn(path.join(dir, "stale.pid")));
    expect(pidIn(path.join(dir, "stale.supervisor.pid"))).toBe(sup.pid);
    const closed = new Promise<number | null>((r) => sup.on("close", (code) => r(code)));
    sup.kill("SIGTERM");
    expect(await closed).toBe(0);
    expect(alive(child)).toBe(false);
  });

  it("rotates the log past its size, keeping one previous log", async () => {
    const dir = tempDir("supervise-rotate");
    const log = path.join(dir, "big.log");
    fs.writeFileSync(log, "x".repeat(5000));
    const sup = start(path.join(dist, "supervise.js"), { args: ["--name", "big", "--log", log, "--max-log-bytes", "4096", "--state-dir", dir, "--", "/bin/true"] });
    await until("a restart after the first exit", () => ((fs.readFileSync(log, "utf8").match(/started pid/g) ?? []).length >= 2 ? true : undefined));
    expect(fs.readFileSync(`${log}.1`, "utf8")).toBe("x".repeat(5000));
    const closed = new Promise<number | null>((r) => sup.on("close", (code) => r(code)));
    sup.kill("SIGTERM");
    expect(await closed).toBe(0);
  });

  it.each([
    [["--log", "/tmp/x.log", "--", "/bin/true"], /name: /],
    [["--name", "a b", "--log", "/tmp/x.log", "--", "/bin/true"], /name: a name of letters/],
    [["--name", "a", "--log", "relative.log", "--", "/bin/true"], /log: an absolute path/],
    [["--name", "a", "--log", "/tmp/x.log"], /program: a program after --/],
    [["--name", "a", "--log", "/tmp/x.log", "--restart", "always", "--", "/bin/true"], /unknown argument --restart/],
  ])("refuses %j naming the argument (exit 2)", async (args, message) => {
    const r = await run(path.join(dist, "supervise.js"), { args });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});
