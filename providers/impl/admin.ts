/**
 * The Admin connection of the current run, shared by every provider kind of the process.
 *
 * The engine hands dynamic providers the whole stack configuration (`configure`, called once per
 * provider kind and process): `qubes-build-infra:admin` is read from it, `QBI_ADMIN` (the CLI's
 * environment, which the provider process inherits) wins over it. The state never holds the
 * connection: resources written before this rule kept it in their outputs (`admin`), and only an
 * unconfigured process (the provider code serialized into such old state, which has no
 * `configure`) still falls back to that stored value until the next `up` rewrites the resource.
 *
 * Each implementation module is bundled on its own, so the run's state lives on `globalThis`,
 * where all kinds of one provider process find the same client and the same caches.
 */
import type { QubesAdmin } from "../../admin/api";
import { ADMIN_CONFIG_KEY, ADMIN_ENV, type AdminConnection, resolveAdminConnection } from "../connection";

/** What the engine passes to `configure`: the stack config by namespaced key. */
export interface RunConfig {
  get(key: string): string | undefined;
}

interface RunState {
  conn?: AdminConnection;
  source?: string;
  client?: QubesAdmin;
  /** Per-process caches of dom0's view (see dom0.ts), dropped when the connection changes. */
  caches: Map<string, unknown>;
  testClient?: (conn: AdminConnection) => QubesAdmin;
}

function state(): RunState {
  const g = globalThis as { __qbiRun?: RunState };
  return (g.__qbiRun ??= { caches: new Map() });
}

/** `configure` of every provider kind: the connection of this run's stack configuration. */
export async function configure(req: { config: RunConfig }): Promise<void> {
  const found = resolveAdminConnection(req.config.get(ADMIN_CONFIG_KEY), process.env, process.cwd());
  const s = state();
  if (found && JSON.stringify(found.conn) !== JSON.stringify(s.conn)) {
    s.conn = found.conn;
    s.source = found.source;
    s.client = undefined;
    s.caches.clear();
  }
}

/**
 * The connection of this run: configured, else `QBI_ADMIN`, else (old state only, see above) the
 * `admin` stored in the resource's outputs.
 */
export function runConnection(legacy?: unknown): AdminConnection {
  const s = state();
  if (s.conn) return s.conn;
  const fromEnv = resolveAdminConnection(undefined, process.env, process.cwd());
  if (fromEnv) {
    s.conn = fromEnv.conn;
    s.source = fromEnv.source;
    return s.conn;
  }
  const stored = resolveAdminConnection(legacy, {}, process.cwd());
  if (stored) return stored.conn;
  throw new Error(`no Admin API connection for this run: set ${ADMIN_CONFIG_KEY} in the stack configuration or ${ADMIN_ENV}`);
}

/**
 * The Admin client of this run. `legacy` is the `admin` a resource's outputs held before the
 * connection left the state; it is used only when the process was never configured.
 */
export function runAdmin(legacy?: unknown): QubesAdmin {
  const s = state();
  const conn = runConnection(legacy);
  if (s.testClient) return s.testClient(conn);
  // Loaded lazily: the module is only needed where a provider really runs.
  const { createAdminClient } = require("../../admin/client") as typeof import("../../admin/client");
  if (conn !== s.conn) return createAdminClient(conn);
  return (s.client ??= createAdminClient(conn));
}

/** A per-process cache slot (dom0's view of this run), dropped when the connection changes. */
export function runCache<T>(key: string, make: () => T): T {
  const c = state().caches;
  if (!c.has(key)) c.set(key, make());
  return c.get(key) as T;
}

/** Drops a cache slot (with `prefix`, every slot whose key starts with `key:` too), or all of them. */
export function dropRunCache(key?: string, prefix = false): void {
  const c = state().caches;
  if (key === undefined) return c.clear();
  c.delete(key);
  if (prefix) for (const k of [...c.keys()]) if (k.startsWith(`${key}:`)) c.delete(k);
}

/** Unit tests only: every provider call uses `fn`'s client (undefined restores the real one). */
export function setAdminForTests(fn: ((conn: AdminConnection) => QubesAdmin) | undefined): void {
  const s = state();
  s.testClient = fn;
  s.caches.clear();
}

/** Unit tests only: the connection `configure` would have set (undefined forgets it). */
export function setRunConnectionForTests(conn: AdminConnection | undefined): void {
  const s = state();
  s.conn = conn;
  s.client = undefined;
  s.caches.clear();
}
