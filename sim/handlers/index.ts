/** The Admin API methods qubes-sim serves, by name (sim.vm.Run aside: it is asynchronous). */
import { HandlerContext, HandlerEntry, HandlerTable, write } from "./context";
import { createVm, CREATE_PREFIX, lifecycleHandlers } from "./lifecycle";
import { policyHandlers } from "./policy";
import { propertyHandlers } from "./properties";
import { SimCounters, simHandlers } from "./sim";
import { volumeHandlers } from "./volumes";

export class HandlerSet {
  private readonly table: HandlerTable;
  private readonly create: HandlerEntry;

  constructor(ctx: HandlerContext, counters: SimCounters) {
    this.table = { ...lifecycleHandlers(ctx), ...propertyHandlers(ctx), ...volumeHandlers(ctx), ...policyHandlers(ctx), ...simHandlers(counters) };
    this.create = write((r) => createVm(ctx, r));
  }

  /** The method's handler; admin.vm.Create.<anything> goes to create, which checks the class. */
  lookup(method: string): HandlerEntry | undefined {
    if (Object.prototype.hasOwnProperty.call(this.table, method)) return this.table[method];
    return method.startsWith(CREATE_PREFIX) ? this.create : undefined;
  }
}
