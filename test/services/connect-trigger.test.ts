/**
 * local.ConnectSSH (relay to configured hosts only) and qubesbuilder.TriggerBuild (component
 * lookup, per-builder lock, background start).
 */
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { waitingFor } from "../../services/trigger-build";
import { buildDist, collect, runJs, start, tempDir, waitFor, writeJson } from "./helpers";

let dist: string;
let root: string;

beforeAll(async () => {
  dist = await buildDist();
  root = tempDir("ct");
});

describe("local.ConnectSSH", () => {
  let server: net.Server;
  let port: number;
  let config: string;
  beforeAll(async () => {
    server = net.createServer((s) => {
      s.write("SSH-2.0-fake\r\n");
      s.pipe(s);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as net.AddressInfo).port;
    config = writeJson(path.join(root, "connect-ssh.json"), {
      hosts: { "yum.example.org": { address: "127.0.0.1", port }, "closed.example.org": { address: "127.0.0.1", port: 1 } },
      connectTimeoutMs: 3000,
    });
  });
  afterAll(() => server.close());

  const env = (arg: string) => ({ QBI_CONFIG: config, QREXEC_SERVICE_ARGUMENT: arg, QREXEC_REMOTE_DOMAIN: "build-a" });

  test("relays stdin/stdout to a configured host", async () => {
    const child = start(path.join(dist, "connect-ssh.js"), { env: env("yum.example.org") });
    const done = collect(child);
    child.stdin?.write("ping\n");
    await new Promise((r) => setTimeout(r, 200));
    child.stdin?.end("pong\n");
    const r = await done;
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("SSH-2.0-fake\r\nping\npong\n");
  });

  test.each([
    ["unconfigured host", "evil.example.org", /not a configured upload host/],
    ["option injection", "-oProxyCommand=sh", /not a host name/],
    ["port", "yum.example.org:2222", /not a host name/],
    ["user@host", "root@yum.example.org", /not a host name/],
    ["shell metacharacters", "yum.example.org;id", /not a host name/],
    ["empty", "", /not a host name/],
    ["case variant is not an exact match", "YUM.example.org", /not a configured upload host/],
    ["prototype key", "constructor", /not a configured upload host/],
    ["leading dot", ".yum.example.org", /not a host name/],
  ])("refuses: %s", async (_name, arg, message) => {
    const r = await runJs(path.join(dist, "connect-ssh.js"), { env: env(arg), input: "x" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe("");
  });

  test("a connection failure exits non-zero with a message", async () => {
    const r = await runJs(path.join(dist, "connect-ssh.js"), { env: env("closed.example.org"), input: "x" });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/ECONNREFUSED/);
  });
});

describe("qubesbuilder.TriggerBuild", () => {
  function newBuildVm() {
    const dir = tempDir("tb");
    const b1 = path.join(dir, "builder-r4.2");
    const art = path.join(dir, "artifacts-r4.3");
    fs.mkdirSync(b1);
    fs.mkdirSync(art);
    writeJson(path.join(b1, "qbi-components.json"), { components: ["core-admin", "linux-utils"] });
    writeJson(path.join(art, "qbi-components.json"), { components: ["core-admin"] });
    const list = path.join(dir, "builders.list");
    fs.writeFileSync(list, `r4.2=${b1}\n# comment\nr4.3=${path.join(dir, "qubes-builderv2")}=${art}/builder.yml\n`);
    const out = path.join(dir, "out");
    fs.mkdirSync(path.join(dir, "qubes-builderv2"));
    const command = ["/bin/sh", "-c", 'echo "start $1 $2 $3" >> "$4"; sleep 0.3; echo "end $1 $2" >> "$4"', "sh", "{component}", "{release}", "{conf}", out];
    const config = writeJson(path.join(dir, "trigger-build.json"), {
      buildersList: list,
      entryPoints: { v1: { command, lock: "{dir}/builder.lock" }, v2: { command, lock: "{builderDir}/builder.lock" } },
      logDir: path.join(dir, "logs"),
    });
    const run = (arg: string) => runJs(path.join(dist, "trigger-build.js"), { env: { QBI_CONFIG: config, HOME: dir, QREXEC_SERVICE_ARGUMENT: arg, QREXEC_REMOTE_DOMAIN: "sys-net" } });
    return { dir, out, run, b1, art };
  }

  test("starts the build in every builder that has the component, in the background, under the builder lock", async () => {
    const vm = newBuildVm();
    const t0 = Date.now();
    const r = await vm.run("core-admin");
    expect(r.code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2000);
    const lines = await waitFor(() => {
      const t = fs.existsSync(vm.out) ? fs.readFileSync(vm.out, "utf8").trim().split("\n") : [];
      return t.length === 4 ? t : null;
    });
    expect(lines.sort()).toEqual(["end core-admin 4.2", "end core-admin 4.3", "start core-admin 4.2 ", `start core-admin 4.3 ${vm.art}/builder.yml`].sort());
    expect(fs.existsSync(path.join(vm.b1, "builder.lock"))).toBe(true);
    // v2 builders share the qubes-builderv2 lock, as upstream's dispatch takes it.
    expect(fs.existsSync(path.join(vm.dir, "qubes-builderv2", "builder.lock"))).toBe(true);
    const journal = fs.readFileSync(path.join(vm.dir, "logs", "trigger-build.jsonl"), "utf8");
    expect(journal.trim().split("\n")).toHaveLength(2);
  });

  const outLines = (vm: { out: string }) => (fs.existsSync(vm.out) ? fs.readFileSync(vm.out, "utf8").trim().split("\n") : []);

  test("a trigger while the builder builds runs after it, one after the other (flock)", async () => {
    const vm = newBuildVm();
    await vm.run("linux-utils");
    await waitFor(() => (outLines(vm).length >= 1 ? true : null));
    await vm.run("linux-utils");
    const lines = await waitFor(() => (outLines(vm).length === 4 ? outLines(vm) : null));
    expect(lines).toEqual(["start linux-utils 4.2 ", "end linux-utils 4.2", "start linux-utils 4.2 ", "end linux-utils 4.2"]);
  });

  test("a flood of triggers while the builder is busy: a waiting component is not queued twice, and at most maxWaitingPerBuilder wait", async () => {
    const vm = newBuildVm();
    const cfgFile = path.join(vm.dir, "trigger-build.json");
    writeJson(cfgFile, { ...JSON.parse(fs.readFileSync(cfgFile, "utf8")), maxWaitingPerBuilder: 1 });
    // Someone else holds the r4.2 builder's lock (a long build).
    const lock = path.join(vm.b1, "builder.lock");
    const holder = spawn("flock", ["-x", lock, "sleep", "30"], { stdio: "ignore", detached: true });
    try {
      await waitFor(() => (fs.existsSync(lock) ? true : null));
      for (let i = 0; i < 5; i++) expect((await vm.run("linux-utils")).code).toBe(0);
      const r = await vm.run("core-admin");
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/1 builds already wait for its lock \(maxWaitingPerBuilder\); core-admin dropped/);
      const journal = fs.readFileSync(path.join(vm.dir, "logs", "trigger-build.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      const forB1 = journal.filter((j) => j.dir === vm.b1);
      expect(forB1.filter((j) => j.pid !== undefined)).toHaveLength(1);
      expect(forB1.filter((j) => j.skipped === "already waiting for this builder's lock")).toHaveLength(4);
      expect(forB1.filter((j) => String(j.skipped).startsWith("1 builds already wait"))).toHaveLength(1);
      // The v2 builder (its own lock) still got core-admin.
      expect(journal.filter((j) => j.dir !== vm.b1 && j.pid !== undefined)).toHaveLength(1);
    } finally {
      // flock and its sleep (which holds the lock too).
      process.kill(-holder.pid!, "SIGKILL");
    }
    // Once the lock is free the one waiting build runs, and its marker is gone: the next trigger queues again.
    await waitFor(() => (outLines(vm).filter((l) => l.startsWith("end linux-utils")).length === 1 ? true : null));
    expect(fs.readdirSync(path.join(vm.dir, "logs", "waiting"))).toEqual([]);
  });

  test("a waiting marker of a build that is gone (killed, or the VM rebooted) does not hold the queue", async () => {
    const vm = newBuildVm();
    const waiting = path.join(vm.dir, "logs", "waiting");
    fs.mkdirSync(waiting, { recursive: true });
    const lock = path.join(vm.b1, "builder.lock");
    const { prefix } = waitingFor(waiting, lock);
    const dead = spawnSync("true").pid;
    fs.writeFileSync(path.join(waiting, `${prefix}linux-utils.1-1`), String(dead));
    expect((await vm.run("linux-utils")).code).toBe(0);
    const lines = await waitFor(() => (outLines(vm).length === 2 ? outLines(vm) : null));
    expect(lines).toEqual(["start linux-utils 4.2 ", "end linux-utils 4.2"]);
  });

  test("an unknown component is a clean no-op", async () => {
    const vm = newBuildVm();
    const r = await vm.run("no-such-component");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/nothing to do/);
    await new Promise((res) => setTimeout(res, 300));
    expect(fs.existsSync(vm.out)).toBe(false);
  });

  test.each([
    ["empty", ""],
    ["leading dash", "-rf"],
    ["dot", "core.admin"],
    ["traversal", "../etc"],
    ["plus", "a+b"],
    ["too long", "a".repeat(65)],
    ["binary", "\x1b[31m"],
  ])("refuses a bad component name: %s", async (_name, arg) => {
    const vm = newBuildVm();
    const r = await vm.run(arg);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad component name/);
  });

  test("a malformed builders.list is a configuration error", async () => {
    const vm = newBuildVm();
    fs.writeFileSync(path.join(vm.dir, "builders.list"), "r4.2=relative/dir\n");
    const r = await vm.run("core-admin");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad builders.list line/);
  });

  test("a missing flock program is a configuration error, not a silent success", async () => {
    const vm = newBuildVm();
    const cfgFile = path.join(vm.dir, "trigger-build.json");
    writeJson(cfgFile, { ...JSON.parse(fs.readFileSync(cfgFile, "utf8")), flockProgram: "no-such-flock" });
    const r = await vm.run("core-admin");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no-such-flock not found/);
  });

  describe("a builder without a site component list: every component of its own configuration", () => {
    function withOwnList(v2: Record<string, unknown>) {
      const vm = newBuildVm();
      fs.rmSync(path.join(vm.art, "qbi-components.json"));
      const cfgFile = path.join(vm.dir, "trigger-build.json");
      const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8"));
      cfg.entryPoints.v2 = { ...cfg.entryPoints.v2, env: { PYTHONPATH: "{builderDir}" }, ...v2 };
      writeJson(cfgFile, cfg);
      return vm;
    }
    const lines = (vm: { out: string }, n: number) => waitFor(() => {
      const t = fs.existsSync(vm.out) ? fs.readFileSync(vm.out, "utf8").trim().split("\n") : [];
      return t.length === n ? t : null;
    });

    test("asks the builder (by component or repository name) and starts it with the builder's name of it", async () => {
      const vm = withOwnList({
        listComponents: ["/bin/sh", "-c", 'test "$PYTHONPATH" = "$1" && echo "core-admin input-proxy"', "sh", "{builderDir}"],
        listComponentUrls: ["/bin/sh", "-c", "printf 'https://github.com/QubesOS/qubes-core-admin\\nhttps://github.com/QubesOS/qubes-app-linux-input-proxy.git\\n'"],
      });
      expect((await vm.run("app-linux-input-proxy")).code).toBe(0);
      expect(await lines(vm, 2)).toEqual([`start input-proxy 4.3 ${vm.art}/builder.yml`, "end input-proxy 4.3"]);
      // linux-utils: only the v1 builder lists it (site list); the v2 builder's configuration has no such component.
      fs.rmSync(vm.out);
      expect((await vm.run("linux-utils")).code).toBe(0);
      expect(await lines(vm, 2)).toEqual(["start linux-utils 4.2 ", "end linux-utils 4.2"]);
    });

    test("a builder that cannot say is skipped, and the journal says why", async () => {
      const vm = withOwnList({ listComponents: ["/bin/sh", "-c", "echo broken config >&2; exit 3"] });
      const r = await vm.run("core-admin");
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/cannot tell its components \(listing components failed \(exit 3\): broken config\); skipped/);
      expect(await lines(vm, 2)).toEqual(["start core-admin 4.2 ", "end core-admin 4.2"]);
    });

    test("without a way to list them, the builder is started and decides itself (an empty list is not 'no component')", async () => {
      const vm = withOwnList({});
      expect((await vm.run("anything-at-all")).code).toBe(0);
      expect(await lines(vm, 2)).toEqual([`start anything-at-all 4.3 ${vm.art}/builder.yml`, "end anything-at-all 4.3"]);
    });
  });
});
