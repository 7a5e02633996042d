/** The Admin API methods qubes-sim serves, by name (sim.vm.Run aside: it is asynchronous). */
import { HandlerContext, HandlerEntry, HandlerTable, write } from "./context";
import { CREATE_CLASSES, CREATE_PREFIX, CREATE_SIGNATURE, createVm, lifecycleHandlers } from "./lifecycle";
import { policyHandlers } from "./policy";
import { propertyHandlers } from "./properties";
import { SimCounters, simHandlers } from "./sim";
import { volumeHandlers } from "./volumes";

export class HandlerSet {
  private readonly table: HandlerTable;
  private readonly create: HandlerEntry;

  constructor(ctx: HandlerContext, counters: SimCounters) {
    this.table = { ...lifecycleHandlers(ctx), ...propertyHandlers(ctx), ...volumeHandlers(ctx), ...policyHandlers(ctx), ...simHandlers(counters) };
    this.create = write(CREATE_SIGNATURE, (r) => createVm(ctx, r));
  }

  /** The method's handler; admin.vm.Create.<class> exists for the classes the sim models. */
  lookup(method: string): HandlerEntry | undefined {
    if (Object.prototype.hasOwnProperty.call(this.table, method)) return this.table[method];
    return method.startsWith(CREATE_PREFIX) && CREATE_CLASSES.includes(method.slice(CREATE_PREFIX.length)) ? this.create : undefined;
  }
}
