// The team's shared state: Pulumi's postgres:// backend (built into our CLI) on a real PostgreSQL
// server started by scripts/postgres.sh, with two operators, each with a database role of their
// own: a small stack's `up` keeps its state in the database, both operators see it, and a second
// `up` of the stack while the first runs is refused by the backend's lock, naming who holds it.
import { ChildProcess, execFile, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import { startPostgres, type StartedPostgres } from "../helpers/postgres";
import { projectRoot, pulumiEnv, tempDir } from "../helpers/pulumi";

jest.setTimeout(300_000);
const run = promisify(execFile);

interface Ran {
  code: number;
  out: string;
}

describe("shared state on PostgreSQL", () => {
  let pg: StartedPostgres;
  const urls: Record<string, string> = {};
  const work = tempDir("team-pg");
  const program = path.join(projectRoot, "test", "team", `.fixture-${process.pid}`);
  const stack = "team";

  const env = (operator: string): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, ...pulumiEnv(work), PULUMI_BACKEND_URL: urls[operator] };
    delete e.PULUMI_CONFIG_PASSPHRASE_FILE;
    return e;
  };
  const pulumi = async (operator: string, ...args: string[]): Promise<Ran> => {
    try {
      // A bounded wait: an `up` that is not refused would wait at the gate.
      const r = await run("pulumi", [...args, "--non-interactive"], { cwd: program, env: env(operator), maxBuffer: 64 << 20, timeout: 120_000 });
      return { code: 0, out: r.stdout + r.stderr };
    } catch (e) {
      const x = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof x.code === "number" ? x.code : 1, out: (x.stdout ?? "") + (x.stderr ?? "") };
    }
  };
  const ok = async (operator: string, ...args: string[]): Promise<string> => {
    const r = await pulumi(operator, ...args);
    if (r.code !== 0) throw new Error(`pulumi ${args.join(" ")} (as ${operator}) failed: ${r.out}`);
    return r.out;
  };
  const locks = async () => pg.query("SELECT key FROM pulumi_state WHERE key LIKE '%/.pulumi/locks/%'");

  beforeAll(async () => {
    pg = await startPostgres();
    urls.alice = await pg.addOperator("alice");
    urls.bob = await pg.addOperator("bob");
    fs.cpSync(path.join(projectRoot, "test", "team", "fixture"), program, { recursive: true });
  });
  afterAll(async () => {
    await pg?.stop();
    for (const d of [program, work]) fs.rmSync(d, { recursive: true, force: true });
  });

  it("will not listen beyond this host without TLS, and then makes nothing", async () => {
    const parent = tempDir("team-remote-pg");
    const dir = path.join(parent, "pg");
    const r = await run("bash", [path.join(projectRoot, "scripts", "postgres.sh"), "start"], { env: { ...process.env, QBI_PG_DIR: dir, QBI_PG_LISTEN: "127.0.0.1,0.0.0.0" } })
      .then(() => ({ code: 0, stderr: "" }), (e: { code: number; stderr: string }) => e);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("postgres.sh: QBI_PG_LISTEN=127.0.0.1,0.0.0.0 reaches beyond this host: set QBI_PG_SSL_CERT and QBI_PG_SSL_KEY "
      + "(the server's TLS certificate and key) so that remote operators connect over TLS\n");
    expect(fs.existsSync(dir)).toBe(false);
    fs.rmSync(parent, { recursive: true, force: true });
  });

  it("keeps a small stack's state in the database, where every operator finds it", async () => {
    expect(urls.alice).toMatch(/^postgres:\/\/alice@\/qbi\?host=.*&passfile=/);
    expect(urls.alice).not.toMatch(/password/i);
    await ok("alice", "stack", "init", stack);
    await ok("alice", "config", "set", "value", "v1", "--stack", stack);
    const up = await ok("alice", "up", "--yes", "--skip-preview", "--stack", stack);
    expect(up).toMatch(/4 created/);
    expect(await ok("alice", "up", "--yes", "--skip-preview", "--stack", stack)).toMatch(/4 unchanged/);

    // The state is rows of the database (no file backend anywhere), owned by the shared group role.
    const keys = await pg.query("SELECT key FROM pulumi_state ORDER BY key");
    expect(keys).toContain("qbi/.pulumi/stacks/team-fixture/team.json");
    const checkpoint = JSON.parse((await pg.query("SELECT data::text FROM pulumi_state WHERE key = 'qbi/.pulumi/stacks/team-fixture/team.json'"))[0]) as { data: string };
    const deployment = JSON.parse(Buffer.from(checkpoint.data, "base64").toString("utf8")) as { checkpoint: { latest: { resources: { urn: string }[] } } };
    expect(deployment.checkpoint.latest.resources.map((r) => r.urn.split("::").pop())).toEqual(expect.arrayContaining(["a", "b", "gate"]));
    expect(fs.readdirSync(work)).toEqual([]);

    // Another operator, logged in with a role of their own, sees the same stack and outputs.
    expect(await ok("bob", "stack", "ls")).toMatch(/^team\s.*\s5\s*$/m); // with the dynamic provider
    expect((await ok("bob", "stack", "output", "gateValue", "--stack", stack)).trim()).toBe("v1-gate");
    expect(await ok("bob", "up", "--yes", "--skip-preview", "--stack", stack)).toMatch(/4 unchanged/);
  });

  it("refuses a second `up` of a stack while another operator's `up` holds its lock, and says who holds it", async () => {
    const hold = path.join(work, "hold");
    await ok("alice", "config", "set", "hold", hold, "--stack", stack);
    // Alice's `up` updates the gate resource, which waits: her CLI holds the stack's lock.
    const first: ChildProcess = spawn("pulumi", ["up", "--yes", "--skip-preview", "--non-interactive", "--stack", stack], {
      cwd: program, env: env("alice"), stdio: ["ignore", "pipe", "pipe"],
    });
    let firstOut = "";
    first.stdout?.on("data", (d: Buffer) => { firstOut += d.toString(); });
    first.stderr?.on("data", (d: Buffer) => { firstOut += d.toString(); });
    const firstDone = new Promise<number>((resolve) => first.on("close", (code) => resolve(code ?? -1)));
    try {
      for (let i = 0; !fs.existsSync(`${hold}.started`); i++) {
        if (i > 1200 || first.exitCode !== null) throw new Error(`the first up did not reach the gate: ${firstOut}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await locks()).toHaveLength(1);

      const second = await pulumi("bob", "up", "--yes", "--skip-preview", "--stack", stack);
      expect(second.code).not.toBe(0);
      expect(second.out).toMatch(/the stack is currently locked by 1 lock\(s\)\. Either wait for the other process\(es\) to end or delete the lock file with `pulumi cancel`\./);
      const who = `${os.userInfo().username}@${os.hostname()} \\(pid ${first.pid}\\)`;
      expect(second.out).toMatch(new RegExp(`postgres://\\*\\*\\*\\*:\\*\\*\\*\\*@/qbi/\\.pulumi/locks/organization/team-fixture/team/[0-9a-f-]+\\.json(\\?\\S*)?: created by ${who}`));
      // The refused run changed nothing: the gate is still the first one's, mid-update.
      expect(fs.readFileSync(`${hold}.started`, "utf8")).not.toBe("");
    } finally {
      fs.writeFileSync(`${hold}.release`, "");
    }
    expect(await firstDone).toBe(0);
    expect(firstOut).toMatch(/1 updated/);
    expect(await locks()).toEqual([]);
    // Once the lock is released, the other operator goes ahead (nothing left to do).
    expect(await ok("bob", "up", "--yes", "--skip-preview", "--stack", stack)).toMatch(/4 unchanged/);
  });
});
