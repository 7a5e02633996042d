/**
 * How a provider reaches the Qubes Admin API: the dom0 qubesd socket, qrexec-client-vm from a
 * management qube, or qubes-sim's socket.
 *
 * The connection is never a resource input and never stored in the state: every provider method
 * (read and delete included) takes it from the stack configuration of the run, which the engine
 * hands to dynamic providers (`configure`), or from `QBI_ADMIN`. So a stack moved to another
 * socket, or run by another operator, reaches the Qubes machine of the current configuration.
 */
import * as path from "path";
import { z } from "zod";

/** The stack config key holding the connection (the engine passes it to providers namespaced). */
export const ADMIN_CONFIG_KEY = "qubes-build-infra:admin";
/** The environment variable that points any stack elsewhere (JSON of an `AdminConnection`). */
export const ADMIN_ENV = "QBI_ADMIN";

/** zod schema of `AdminConnection` (the stack config's `qubes-build-infra:admin`). */
export const adminConnection = z.discriminatedUnion("transport", [
  z.strictObject({ transport: z.literal("sim"), socket: z.string().min(1) }),
  z.strictObject({ transport: z.literal("socket"), socket: z.string().min(1).default("/var/run/qubesd.sock") }),
  z.strictObject({ transport: z.literal("qrexec") }),
]);
export type AdminConnection = z.output<typeof adminConnection>;

/** Where a connection came from, for messages. */
export type ConnectionSource = typeof ADMIN_ENV | typeof ADMIN_CONFIG_KEY;

/**
 * The connection of a run: `QBI_ADMIN` when set, else the stack config's value (JSON text as the
 * engine passes it, or an object). A relative socket is relative to `baseDir` (the project).
 * Undefined when neither is given; an error naming the source when one is malformed.
 */
export function resolveAdminConnection(
  configValue: unknown,
  env: Record<string, string | undefined>,
  baseDir: string,
): { conn: AdminConnection; source: ConnectionSource } | undefined {
  const fromEnv = env[ADMIN_ENV];
  const [raw, source]: [unknown, ConnectionSource] = fromEnv ? [fromEnv, ADMIN_ENV] : [configValue, ADMIN_CONFIG_KEY];
  if (raw === undefined || raw === "") return undefined;
  let value = raw;
  if (typeof raw === "string") {
    try {
      value = JSON.parse(raw);
    } catch {
      throw new Error(`${source} is not JSON: expected e.g. {"transport":"sim","socket":".qubes-sim/qubesd.sock"}`);
    }
  }
  const r = adminConnection.safeParse(value);
  if (!r.success) {
    throw new Error(`${source}: ${r.error.issues.map((i) => `${i.path.join(".") || "(value)"}: ${i.message}`).join("; ")}`);
  }
  const conn = r.data;
  if (conn.transport !== "qrexec" && !path.isAbsolute(conn.socket)) return { conn: { ...conn, socket: path.resolve(baseDir, conn.socket) }, source };
  return { conn, source };
}
