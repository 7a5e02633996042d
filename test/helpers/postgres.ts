/**
 * Test helper: a throwaway PostgreSQL cluster (the Debian package) through scripts/postgres.sh,
 * in a fresh temp dir, listening on a Unix socket only; as root the server runs as the
 * `postgres` system user. Stopped and removed by `stop()`.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import { projectRoot } from "./pulumi";

const run = promisify(execFile);

export interface StartedPostgres {
  dir: string;
  /** The backend URL of the administrator role, or of an operator made by `addOperator`. */
  url(role?: string): Promise<string>;
  addOperator(name: string): Promise<string>;
  /** One SQL statement's rows, tab-separated. */
  query(sql: string): Promise<string[]>;
  stop(): Promise<void>;
}

/** `durable`: fsync on, as a team's server runs (the bench); tests skip it. */
export async function startPostgres(opts: { durable?: boolean } = {}): Promise<StartedPostgres> {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-pg-"));
  // The server's user must be able to reach its directory.
  fs.chmodSync(parent, 0o711);
  const dir = path.join(parent, "pg");
  const env = { ...process.env, QBI_PG_DIR: dir, ...(opts.durable ? {} : { QBI_PG_THROWAWAY: "1" }) };
  const script = path.join(projectRoot, "scripts", "postgres.sh");
  const pg = async (...args: string[]): Promise<string> => (await run("bash", [script, ...args], { env })).stdout;
  await pg("start");
  return {
    dir,
    url: async (role) => (await pg("url", ...(role ? [role] : []))).trim(),
    addOperator: async (name) => {
      await pg("add-operator", name);
      return (await pg("url", name)).trim();
    },
    query: async (sql) => (await pg("psql", "-At", "-F", "\t", "-c", sql)).split("\n").filter((l) => l !== ""),
    stop: async () => {
      await pg("stop").catch(() => undefined);
      fs.rmSync(parent, { recursive: true, force: true });
    },
  };
}
