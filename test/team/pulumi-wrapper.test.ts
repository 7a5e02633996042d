// `pulumi` as the project runs it (scripts/env.sh puts bin/pulumi first on PATH): each stack gets
// its own passphrase and never the public one of the `local` stack; the file backend stays the
// default until an operator logs in elsewhere (e.g. the team's PostgreSQL).
import { execFile } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { promisify } from "util";
import { projectRoot, tempDir } from "../helpers/pulumi";

jest.setTimeout(300_000);
const run = promisify(execFile);

interface Ran {
  code: number;
  out: string;
}

describe("bin/pulumi", () => {
  const project = tempDir("wrapper-project");
  const home = tempDir("wrapper-home");
  const backend = tempDir("wrapper-backend");
  const machine = `machine${process.pid}`;
  const ownFile = path.join(projectRoot, "stacks", `${machine}.passphrase`);

  /** `. scripts/env.sh && pulumi ARGS` in the test project, with no passphrase or backend set by the caller. */
  const pulumi = async (args: string[], extra: Record<string, string> = {}): Promise<Ran> => {
    const env: NodeJS.ProcessEnv = { ...process.env, PULUMI_HOME: home, ...extra };
    for (const k of ["PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_BACKEND_URL"]) if (!(k in extra)) delete env[k];
    try {
      const r = await run("bash", ["-c", `. "${projectRoot}/scripts/env.sh" && pulumi "$@"`, "pulumi", ...args, "--non-interactive"],
        { cwd: project, env, maxBuffer: 16 << 20 });
      return { code: 0, out: r.stdout + r.stderr };
    } catch (e) {
      const x = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof x.code === "number" ? x.code : 1, out: (x.stdout ?? "") + (x.stderr ?? "") };
    }
  };
  const inBackend = { PULUMI_BACKEND_URL: `file://${backend}` };

  beforeAll(() => {
    fs.writeFileSync(path.join(project, "Pulumi.yaml"), "name: wrapper-test\nruntime: nodejs\n");
    // The local stack's settings as committed (its secret was encrypted with the public passphrase).
    fs.copyFileSync(path.join(projectRoot, "Pulumi.local.yaml"), path.join(project, "Pulumi.local.yaml"));
  });
  afterAll(() => {
    for (const d of [project, home, backend]) fs.rmSync(d, { recursive: true, force: true });
    fs.rmSync(ownFile, { force: true });
  });

  it("opens the local stack's secrets with the public passphrase, and refuses it to any other stack", async () => {
    expect((await pulumi(["stack", "init", "local"], inBackend)).code).toBe(0);
    const secret = await pulumi(["config", "get", "qubes-build-infra:webhookSecret", "--stack", "local"], inBackend);
    expect(secret).toEqual({ code: 0, out: "local-only-webhook-secret-0123456789\n" });

    // A new stack, and one whose settings were made with the local passphrase (like
    // Pulumi.prod.yaml's demo secrets): neither borrows it.
    fs.copyFileSync(path.join(projectRoot, "Pulumi.local.yaml"), path.join(project, `Pulumi.${machine}-copy.yaml`));
    for (const args of [["stack", "init", machine], ["stack", "select", "--create", machine], ["preview", "--stack", `${machine}-copy`],
      ["up", "--yes", "-s", `${machine}-copy`], ["config", "--show-secrets", "--stack", `${machine}-copy`]]) {
      const r = await pulumi(args, inBackend);
      const stack = args.includes(machine) ? machine : `${machine}-copy`;
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.out).toContain(`pulumi: the stack '${stack}' keeps its secrets with a passphrase, and none is given for it.`);
      expect(r.out).toContain("The passphrase in stacks/local.passphrase is public and serves only the 'local' stack (qubes-sim).");
      expect(r.out).toContain("export PULUMI_CONFIG_PASSPHRASE_FILE=<file holding it>");
      expect(r.out).toContain(`put it in stacks/${stack}.passphrase (mode 600; git ignores it)`);
      expect(r.out).toContain(`pulumi stack change-secrets-provider --stack ${stack} 'hashivault://<key>'`);
    }
    const ls = await pulumi(["stack", "ls"], inBackend);
    expect(ls.out).not.toContain(machine);
  });

  it("gives a stack its own passphrase, from the environment or a private stacks/<stack>.passphrase", async () => {
    const file = path.join(home, "machine.passphrase");
    fs.writeFileSync(file, "machine-only passphrase\n", { mode: 0o600 });
    expect((await pulumi(["stack", "init", machine], { ...inBackend, PULUMI_CONFIG_PASSPHRASE_FILE: file })).code).toBe(0);
    expect((await pulumi(["config", "set", "--secret", "token", "s3cret", "--stack", machine], { ...inBackend, PULUMI_CONFIG_PASSPHRASE_FILE: file })).code).toBe(0);

    // Its own file in stacks/, but readable by others: refused.
    fs.writeFileSync(ownFile, "machine-only passphrase\n", { mode: 0o644 });
    fs.chmodSync(ownFile, 0o644);
    const loose = await pulumi(["preview", "--stack", machine], inBackend);
    expect(loose.code).toBe(2);
    expect(loose.out).toContain(`pulumi: ${ownFile} is readable by other users: chmod 600 ${ownFile}`);
    fs.chmodSync(ownFile, 0o600);
    expect(await pulumi(["config", "get", "token", "--stack", machine], inBackend)).toEqual({ code: 0, out: "s3cret\n" });

    // The local stack's passphrase, given on purpose, is not that stack's.
    const wrong = await pulumi(["config", "get", "token", "--stack", machine], { ...inBackend, PULUMI_CONFIG_PASSPHRASE_FILE: path.join(projectRoot, "stacks", "local.passphrase") });
    expect(wrong.code).not.toBe(0);
    expect(wrong.out).toMatch(/incorrect passphrase/);
    // The state files are there, and no metadata file beside any of them.
    const files = (dir: string): string[] => fs.readdirSync(dir, { withFileTypes: true })
      .flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : [e.name]));
    expect(files(backend)).toContain(`${machine}.json`);
    expect(files(backend).filter((f) => f.endsWith(".attrs"))).toEqual([]);
  });

  it("uses the file backend in .pulumi-state/ until an operator logs in elsewhere, and again after logout", async () => {
    const url = async () => /Backend URL: (\S+)/.exec((await pulumi(["whoami", "--verbose"])).out)?.[1];
    expect(await url()).toBe(`file://${projectRoot}/.pulumi-state?metadata=skip`);
    // An explicit PULUMI_BACKEND_URL wins; a file backend never writes metadata files beside the state.
    expect(/Backend URL: (\S+)/.exec((await pulumi(["whoami", "--verbose"], inBackend)).out)?.[1]).toBe(`file://${backend}?metadata=skip`);
    expect(/Backend URL: (\S+)/.exec((await pulumi(["whoami", "--verbose"], { PULUMI_BACKEND_URL: `file://${backend}?metadata=skip` })).out)?.[1]).toBe(`file://${backend}?metadata=skip`);
    // `pulumi login` (here another directory; the team's is postgres://) is remembered in PULUMI_HOME.
    const elsewhere = path.join(home, "team-state");
    fs.mkdirSync(elsewhere);
    expect((await pulumi(["login", `file://${elsewhere}`])).code).toBe(0);
    expect(await url()).toBe(`file://${elsewhere}`);
    expect((await pulumi(["logout"])).code).toBe(0);
    expect(await url()).toBe(`file://${projectRoot}/.pulumi-state?metadata=skip`);
  });
});
