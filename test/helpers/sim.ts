/**
 * Test helper: a real qubes-sim daemon (bin/qubes-sim serve) on a fresh temp dir, and an
 * AdminClient connected to it.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { AdminClient, createAdminClient } from "../../admin/client";

export interface StartedSim {
  socket: string;
  stateDir: string;
  client: AdminClient;
  /** The daemon process (tests may kill -9 it). */
  child: ChildProcess;
  stop(): Promise<void>;
}

const ROOT = path.resolve(__dirname, "..", "..");

/**
 * Spawn the daemon on `dir` (a new temp dir by default) and wait until it answers; `socket` puts
 * its socket elsewhere (e.g. the same machine, moved to another path).
 */
export async function startSim(opts: { dir?: string; socket?: string } = {}): Promise<StartedSim> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "qubes-sim-"));
  const socket = opts.socket ?? path.join(dir, "qubesd.sock");
  const stateDir = path.join(dir, "state");
  const child = spawn(path.join(ROOT, "bin", "qubes-sim"), ["serve", "--socket", socket, "--state", stateDir], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    if (stderr.length < 8000) stderr += d.toString();
  });
  const closed = new Promise<void>((r) => child.on("close", () => r()));
  const client = createAdminClient({ transport: "sim", socket });
  const deadline = Date.now() + 60000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`qubes-sim exited: ${stderr}`);
    if (fs.existsSync(socket)) {
      try {
        await client.vmList();
        break;
      } catch {
        /* not yet */
      }
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`qubes-sim did not come up: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    socket,
    stateDir,
    client,
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 10000);
      await closed;
      clearTimeout(t);
    },
  };
}
