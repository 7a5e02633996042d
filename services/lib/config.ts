/**
 * Where a service finds its configuration, secrets and state, with env overrides so that tests and
 * the simulator can run the same bundle outside a VM. A config that does not parse is a ConfigError.
 */
import * as fs from "fs";
import { z } from "zod";
import { serviceConfigPath, serviceSecretPath } from "../../contracts/vmPaths";
import { ConfigError } from "./outcome";

/** Path of the service's config: `$QBI_CONFIG` or `/usr/local/etc/qubes-build-infra/<name>.json`. */
export function configPath(name: string): string {
  return process.env.QBI_CONFIG || serviceConfigPath(name);
}

/** Loads and validates the JSON config; throws ConfigError with a readable message. */
export function loadConfig<T extends z.ZodTypeAny>(name: string, schema: T): z.infer<T> {
  const file = configPath(name);
  let raw: string;
  try {
    raw = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read config ${file}: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch (e) {
    throw new ConfigError(`config ${file} is not JSON: ${(e as Error).message}`);
  }
  const r = schema.safeParse(data);
  if (!r.success) {
    throw new ConfigError(`config ${file} is invalid: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  return r.data;
}

/** Path of a secret: `$QBI_SECRET_FILE` or `/usr/local/etc/qubes-build-infra/secrets/<name>`. */
export function secretPath(name: string): string {
  return process.env.QBI_SECRET_FILE || serviceSecretPath(name);
}

/** State directory: `$QBI_STATE_DIR` or the given default; created 0700. */
export function stateDir(defaultDir: string): string {
  const dir = process.env.QBI_STATE_DIR || defaultDir;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export function homeDir(): string {
  return process.env.HOME || "/home/user";
}
