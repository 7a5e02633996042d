// The net VM's webhook receiver as the site installs it (the rc.local block, supervise.js,
// webhooks.js and their configuration), in a real qubes-sim sys-net: started at boot, back after
// it is killed, and back after sys-net restarts.
import * as fs from "fs";
import * as path from "path";
import { buildServices } from "../../services/build";
import { PATHS, WEBHOOKS_STATE, webhooksBoot } from "../../site/components";
import { tempDir } from "../helpers/pulumi";
import { startSim, type StartedSim } from "../helpers/sim";

jest.setTimeout(240_000);

const NET = "sys-net";
const PORT = 18600 + (process.pid % 300);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the webhook receiver in sys-net", () => {
  let sim: StartedSim;

  const sh = async (command: string): Promise<{ code: number; out: string }> => {
    const r = await sim.client.run(NET, command, { user: "root" });
    return { code: r.exitCode, out: r.stdout.toString().trim() };
  };
  /** The receiver's pid when it answers GET /api/status on its loopback port, else undefined. */
  const answering = async (): Promise<number | undefined> => {
    const probe = `node -e "require('http').get('http://127.0.0.1:${PORT}/api/status', (r) => process.exit(r.statusCode === 200 ? 0 : 1))` +
      `.on('error', () => process.exit(1))" && cat ${WEBHOOKS_STATE}/webhooks.pid`;
    const r = await sh(probe);
    return r.code === 0 && /^\d+$/.test(r.out) ? Number(r.out) : undefined;
  };
  const receiverUp = async (what: string, not?: number): Promise<number> => {
    for (const end = Date.now() + 60_000; ; await sleep(300)) {
      const pid = await answering();
      if (pid !== undefined && pid !== not) return pid;
      if (Date.now() > end) {
        const log = await sh(`tail -n 20 ${WEBHOOKS_STATE}/webhooks.log; tail -n 5 /rw/config/../../console.log 2>/dev/null`);
        throw new Error(`the receiver did not come up ${what}:\n${log.out}`);
      }
    }
  };

  beforeAll(async () => {
    sim = await startSim();
    const dist = tempDir("webhooks-boot-dist");
    await buildServices(dist);
    const put = (file: string, content: string | Buffer, mode: number, owner = "root") => sim.client.writeFile(NET, file, content, { mode, owner });
    await put(`${PATHS.lib}/webhooks.js`, fs.readFileSync(path.join(dist, "webhooks.js")), 0o755);
    await put(`${PATHS.lib}/supervise.js`, fs.readFileSync(path.join(dist, "supervise.js")), 0o755);
    await put(`${PATHS.config}/webhooks.json`, JSON.stringify({ listen: { host: "127.0.0.1", port: PORT }, buildVmsFile: PATHS.buildVmsList }), 0o644);
    await put(`${PATHS.secrets}/webhooks`, "webhooks-boot-test-secret-0123456789", 0o600, "user");
    await put(PATHS.buildVmsList, "build-a\n", 0o644, "user");
    await put("/rw/config/rc.local", `#!/bin/sh\n${webhooksBoot()}`, 0o755);
    fs.rmSync(dist, { recursive: true, force: true });
  });
  afterAll(async () => {
    await sim?.stop();
  });

  it("starts at boot, comes back after it is killed, and after sys-net restarts", async () => {
    // rc.local runs at boot: restart sys-net (it was running before the files were written).
    await sim.client.vmKill(NET);
    await sim.client.vmStart(NET);
    const first = await receiverUp("at boot");

    await sh(`kill -9 ${first}`);
    const second = await receiverUp("after it was killed", first);
    const log = (await sh(`cat ${WEBHOOKS_STATE}/webhooks.log`)).out;
    expect(log).toMatch(/webhooks: exited \(signal SIGKILL\) after \d+ s; restarting in 1 s/);
    expect(log).toContain(`webhooks: started pid ${second}`);

    await sim.client.vmKill(NET);
    expect(await sim.client.vmCurrentState(NET)).toMatchObject({ power_state: "Halted" });
    await sim.client.vmStart(NET);
    await receiverUp("after sys-net restarted");
    // The log survives the restart (private volume): both boots are in it.
    expect((await sh(`grep -c 'webhooks: started pid' ${WEBHOOKS_STATE}/webhooks.log`)).out).toBe("3");
  });
});
