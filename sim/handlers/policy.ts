/**
 * What qrexec needs from dom0: the policy admin services (sim/policy.ts over the policy directory)
 * and internal.GetSystemInfo, the VMs as the policy engine sees them.
 */
import * as m from "../model";
import type { State } from "../state";
import { DOM0_NO_INPUT, HandlerContext, HandlerEntry, HandlerTable, read, UNCHECKED } from "./context";

export function systemInfo(s: State): { domains: Record<string, Record<string, unknown>> } {
  const domains: Record<string, Record<string, unknown>> = {};
  for (const vm of Object.values(s.vms)) {
    const dd = m.get(vm, "default_dispvm", s);
    const guivm = vm.klass === "AdminVM" ? null : m.get(vm, "guivm", s);
    domains[vm.name] = {
      name: vm.name,
      tags: [...vm.tags],
      type: vm.klass,
      template_for_dispvms: m.get(vm, "template_for_dispvms", s) === true,
      default_dispvm: typeof dd === "string" ? dd : null,
      icon: m.get(vm, "icon", s),
      label: m.get(vm, "label", s) ?? null,
      guivm: typeof guivm === "string" ? guivm : null,
      power_state: vm.power,
      uuid: vm.uuid,
    };
  }
  return { domains };
}

export function policyHandlers(ctx: HandlerContext): HandlerTable {
  // The policy services check their own arguments (qubes-core-qrexec's, not qubesd's).
  const policy = (effect: HandlerEntry["effect"]): HandlerEntry => ({ fn: (r) => ctx.policy.handle(r.method, r.arg, r.payload), effect, sig: UNCHECKED });
  return {
    "internal.GetSystemInfo": read(DOM0_NO_INPUT, () => JSON.stringify(systemInfo(ctx.state))),
    "policy.List": policy("read"),
    "policy.Get": policy("read"),
    "policy.Replace": policy("policy"),
    "policy.Remove": policy("policy"),
  };
}
