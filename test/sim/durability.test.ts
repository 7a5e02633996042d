/** kill -9 during a burst of acknowledged writes, restart: every acknowledged write is there. Many clients at once. */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { createAdminClient } from "../../admin/client";
import { startSim } from "../helpers/sim";

describe("qubes-sim durability and concurrency", () => {
  it("loses nothing acknowledged across kill -9", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qubes-sim-crash-"));
    const sim = await startSim({ dir });
    const acked: string[] = [];
    let stop = false;
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const name = `c${w}-${i}`;
        try {
          await sim.client.vmCreate("AppVM", name, "red", "debian-13");
          await sim.client.featureSet(name, "n", String(i));
          acked.push(name);
        } catch {
          return;
        }
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    await new Promise((r) => setTimeout(r, 1500));
    sim.child.kill("SIGKILL");
    stop = true;
    await Promise.all(writers);
    await sim.stop();
    expect(acked.length).toBeGreaterThan(5);
    const again = await startSim({ dir });
    try {
      const names = new Set((await again.client.vmList()).map((v) => v.name));
      for (const n of acked) {
        expect(names.has(n)).toBe(true);
        expect(await again.client.featureGet(n, "n")).toBe(n.split("-")[1]);
      }
    } finally {
      await again.stop();
    }
  });

  it("serves many clients at once consistently", async () => {
    const sim = await startSim();
    try {
      const N = 20;
      const clients = Array.from({ length: N }, () => createAdminClient({ transport: "sim", socket: sim.socket }));
      await Promise.all(
        clients.map(async (c, i) => {
          await c.vmCreate("AppVM", `p${i}`, "blue", "fedora-43-minimal");
          await c.propertySet(`p${i}`, "memory", String(500 + i));
          await c.tagSet("sys-net", `t${i}`);
        }),
      );
      // Racing creates of one name: exactly one wins.
      const results = await Promise.allSettled(clients.map((c) => c.vmCreate("AppVM", "same", "red")));
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const vms = await sim.client.vmList();
      expect(vms.filter((v) => /^p\d+$/.test(v.name))).toHaveLength(N);
      for (let i = 0; i < N; i++) expect((await sim.client.propertyGet(`p${i}`, "memory")).value).toBe(String(500 + i));
      expect((await sim.client.tagList("sys-net")).filter((t) => /^t\d+$/.test(t))).toHaveLength(N);
      const qids = await Promise.all(vms.map(async (v) => (await sim.client.propertyGet(v.name, "qid")).value));
      expect(new Set(qids).size).toBe(vms.length);
    } finally {
      await sim.stop();
    }
  });
});
