/**
 * Runs the real Pulumi CLI (built into .tools/bin by scripts/setup.sh) through the Automation API,
 * offline, with a throwaway file backend per test.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation";

export const projectRoot = path.resolve(__dirname, "../..");
export const toolsBin = path.join(projectRoot, ".tools", "bin");

/** The environment every Pulumi invocation of the tests runs with (mirrors scripts/env.sh). */
export function pulumiEnv(backendDir: string): Record<string, string> {
  return {
    PATH: `${toolsBin}:${path.join(projectRoot, "node_modules", ".bin")}:${process.env.PATH ?? ""}`,
    PULUMI_HOME: path.join(projectRoot, ".tools", "pulumi-home"),
    // As bin/pulumi does: no metadata files beside the state (a kill while one is rewritten wedges the stack).
    PULUMI_BACKEND_URL: `file://${backendDir}?metadata=skip`,
    PULUMI_CONFIG_PASSPHRASE: "test-only",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
  };
}

/** A fresh temporary directory, removed by the caller. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `qbi-${prefix}-`));
}

/** Creates (or selects) a stack of the program in `workDir` with its own backend directory. */
export async function openStack(workDir: string, stackName: string, backendDir: string): Promise<Stack> {
  const envVars = pulumiEnv(backendDir);
  // The CLI resolves plugins through PATH: make the tools folder win for this process too.
  process.env.PATH = envVars.PATH;
  return LocalWorkspace.createOrSelectStack({ stackName, workDir }, { envVars });
}
