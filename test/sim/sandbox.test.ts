/** run / readFile / writeFile / removeFile in the bubblewrap sandbox of qubes-sim. */
import * as fs from "fs";
import * as path from "path";
import { startSim, StartedSim } from "../helpers/sim";

let sim: StartedSim;
beforeAll(async () => {
  sim = await startSim();
  await sim.client.vmCreate("AppVM", "box", "red", "debian-13");
  await sim.client.propertySet("box", "netvm", "");
});
afterAll(async () => {
  await sim?.stop();
});

describe("VM sandbox", () => {
  it("runs commands with the VM's environment and starts the VM", async () => {
    const r = await sim.client.run("box", 'echo "$USER $HOME $(hostname)"; echo err >&2; cat; exit 3', { input: "in\n" });
    expect(r.exitCode).toBe(3);
    expect(r.stdout.toString()).toBe("user /home/user box\nin\n");
    expect(r.stderr.toString()).toBe("err\n");
    expect((await sim.client.vmCurrentState("box")).power_state).toBe("Running");
    const root = await sim.client.run("box", 'echo "$USER"', { user: "root" });
    expect(root.stdout.toString()).toBe("root\n");
  });

  it("puts the tools dir on PATH (node available)", async () => {
    const r = await sim.client.run("box", "command -v node && node -e 'console.log(1+1)'");
    expect(r.stdout.toString()).toBe("/opt/qubes-sim/bin/node\n2\n");
  });

  it("host is read-only, /rw /home /usr/local persist in the VM's private storage", async () => {
    const r = await sim.client.run("box", "touch /usr/x 2>/dev/null && echo writable || echo ro; echo hi > /home/user/f; echo L > /usr/local/l 2>/dev/null || echo no-usrlocal; ls /rw");
    expect(r.stdout.toString()).toBe("ro\nno-usrlocal\nconfig\nhome\nusrlocal\n");
    const asRoot = await sim.client.run("box", "echo L > /usr/local/l; touch /usr/y 2>/dev/null && echo writable || echo ro", { user: "root" });
    expect(asRoot.stdout.toString()).toBe("ro\n");
    const priv = path.join(sim.stateDir, "vms", "box", "rw");
    expect(fs.readFileSync(path.join(priv, "home", "user", "f"), "utf8")).toBe("hi\n");
    expect(fs.readFileSync(path.join(priv, "usrlocal", "l"), "utf8")).toBe("L\n");
    // The VM's root and user are host ids of the VM's own range, never the host's root.
    const rootId = fs.statSync(path.join(priv, "usrlocal", "l")).uid;
    expect(rootId).toBeGreaterThanOrEqual(2 ** 31);
    expect(fs.statSync(path.join(priv, "home", "user", "f")).uid).toBe(rootId + 1000);
    const ids = await sim.client.run("box", "id -un; id -u; stat -c %U /home/user/f; runuser -u user -- id -un", { user: "root" });
    expect(ids.stdout.toString()).toBe("root\n0\nuser\nuser\n");
    const t = await sim.client.run("box", "ls -A /tmp | wc -l; test -d /run/qubes-sim && echo run");
    expect(t.stdout.toString()).toBe("0\nrun\n");
  });

  it("has no network when netvm is none", async () => {
    const r = await sim.client.run("box", "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '");
    expect(r.stdout.toString().trim().split("\n")).toEqual(["lo"]);
  });

  it("reads, writes atomically with mode, and removes files", async () => {
    const c = sim.client;
    expect(await c.readFile("box", "/usr/local/etc/qubes-build-infra/a.json")).toBeNull();
    const bin = Buffer.from([0, 1, 2, 255, 10, 39, 34]);
    await c.writeFile("box", "/usr/local/etc/qubes-build-infra/a.json", bin, { mode: 0o600, owner: "user" });
    expect(await c.readFile("box", "/usr/local/etc/qubes-build-infra/a.json")).toEqual(bin);
    const st = await c.run("box", "stat -c %a /usr/local/etc/qubes-build-infra/a.json; ls -A /usr/local/etc/qubes-build-infra");
    expect(st.stdout.toString()).toBe("600\na.json\n");
    await c.writeFile("box", "/home/user/it's here.txt", "x".repeat(200000), { mode: 0o644 });
    expect((await c.readFile("box", "/home/user/it's here.txt"))?.length).toBe(200000);
    await c.removeFile("box", "/home/user/it's here.txt");
    await c.removeFile("box", "/home/user/it's here.txt");
    expect(await c.readFile("box", "/home/user/it's here.txt")).toBeNull();
    await expect(c.readFile("box", "/home")).rejects.toThrow(/readFile/);
  });

  it("refuses to run in dom0 or an unknown VM", async () => {
    await expect(sim.client.run("dom0", "true")).rejects.toMatchObject({ qubesType: "ProtocolError" });
    await expect(sim.client.run("nope", "true")).rejects.toMatchObject({ qubesType: "QubesVMNotFoundError" });
  });
});
