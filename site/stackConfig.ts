/**
 * Reads the `qubes-build-infra:*` stack configuration into the raw object that site/config.ts
 * validates. Objects arrive from the engine as JSON text, plain strings as themselves; secrets are
 * read separately as Pulumi secrets and never enter the plain object.
 */
import { resolveAdminConnection } from "../providers/connection";

/** Config keys that hold secrets (read with `requireSecret`, kept out of the validated object). */
export const SECRET_KEYS = ["webhookSecret", "webhookTlsKey", "githubApiToken", "openqaKey", "openqaSecret"] as const;

/** The namespaced config map (`pulumi.runtime.allConfig()`) as a plain object, secrets left out. */
export function rawSiteConfig(
  all: Record<string, string>,
  namespace: string,
  projectDir: string,
  env: Record<string, string | undefined> = {},
): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const [key, text] of Object.entries(all)) {
    if (!key.startsWith(`${namespace}:`)) continue;
    const name = key.slice(namespace.length + 1);
    if ((SECRET_KEYS as readonly string[]).includes(name)) continue;
    let value: unknown = text;
    if (/^[[{]|^(true|false|null|-?\d+(\.\d+)?)$/.test(text.trim())) {
      try {
        value = JSON.parse(text);
      } catch {
        value = text;
      }
    }
    raw[name] = value;
  }
  // QBI_ADMIN (JSON) points any stack elsewhere, e.g. `pulumi preview --stack prod` at qubes-sim; a
  // relative socket is relative to the project, wherever pulumi is run from. The providers resolve
  // the connection of each run the same way (providers/connection.ts).
  const admin = resolveAdminConnection(raw.admin, env, projectDir);
  if (admin) raw.admin = admin.conn;
  return raw;
}
