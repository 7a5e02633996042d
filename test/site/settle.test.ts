// `qubes-build-infra settle` on a file backend that a killed run left with a half-written metadata
// file: without settle every command on the stack fails; after it the state reads again, whole.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { projectRoot, tempDir, toolsBin } from "../helpers/pulumi";

const CLI = path.join(projectRoot, "bin", "qubes-build-infra");

describe("settle", () => {
  const backend = tempDir("settle-backend");
  const stack = `settle${process.pid}`;
  const settingsFile = path.join(projectRoot, `Pulumi.${stack}.yaml`);
  // A backend URL of the operator's own, without metadata=skip: the metadata files are written.
  const env = { ...process.env, PATH: `${path.join(projectRoot, "bin")}:${toolsBin}:${process.env.PATH ?? ""}`, PULUMI_HOME: path.join(projectRoot, ".tools", "pulumi-home"),
    PULUMI_BACKEND_URL: `file://${backend}`, PULUMI_CONFIG_PASSPHRASE: "test-only", PULUMI_SKIP_UPDATE_CHECK: "true" };
  const run = (file: string, args: string[]): { code: number; out: string } => {
    const r = spawnSync(file, args, { cwd: projectRoot, env, encoding: "utf8" });
    return { code: r.status ?? 1, out: `${r.stdout}${r.stderr}` };
  };
  const realPulumi = path.join(toolsBin, "pulumi");

  afterAll(() => {
    fs.rmSync(backend, { recursive: true, force: true });
    fs.rmSync(settingsFile, { force: true });
  });

  it("removes a metadata file a killed run left empty, and nothing else; the stack reads again", () => {
    expect(run(realPulumi, ["stack", "init", stack, "--non-interactive"]).code).toBe(0);
    const stateFile = path.join(backend, ".pulumi", "stacks", "qubes-build-infra", `${stack}.json`);
    const before = fs.readFileSync(stateFile, "utf8");
    expect(fs.existsSync(`${stateFile}.attrs`)).toBe(true);
    fs.writeFileSync(`${stateFile}.attrs`, "");
    const wedged = run(realPulumi, ["stack", "export", "--stack", stack]);
    expect(wedged.code).not.toBe(0);
    expect(wedged.out).toContain("failed to load checkpoint: EOF");

    const settled = run(CLI, ["settle", "--stack", stack]);
    expect(settled.code).toBe(0);
    expect(settled.out).toContain(`removed ${stateFile}.attrs: a metadata file a killed run left half-written`);
    expect(fs.existsSync(`${stateFile}.attrs`)).toBe(false);
    expect(fs.readFileSync(stateFile, "utf8")).toBe(before);
    expect(JSON.parse(run(realPulumi, ["stack", "export", "--stack", stack]).out)).toHaveProperty("deployment");
    // Nothing left to settle the second time.
    expect(run(CLI, ["settle", "--stack", stack]).out).toContain(`stack ${stack}: nothing to settle`);
  });
});
