// One Admin client per connection for the life of the dynamic-provider process.
import type { QubesAdmin } from "../../admin/api";
import type { AdminConnection } from "../connection";

export { adminConnection } from "../connection";

const clients = new Map<string, QubesAdmin>();
let override: ((conn: AdminConnection) => QubesAdmin) | undefined;

/** The Admin client for a connection (created once, reused by every call of the process). */
export function adminFor(conn: AdminConnection): QubesAdmin {
  if (override) return override(conn);
  const key = JSON.stringify(conn);
  let c = clients.get(key);
  if (!c) {
    // Loaded lazily: the module is only needed where a provider really runs.
    const { createAdminClient } = require("../../admin/client") as typeof import("../../admin/client");
    c = createAdminClient(conn);
    clients.set(key, c);
  }
  return c;
}

/** Unit tests only: make every provider call use `fn`'s client (undefined restores the real one). */
export function setAdminForTests(fn: ((conn: AdminConnection) => QubesAdmin) | undefined): void {
  override = fn;
}
