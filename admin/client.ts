/**
 * AdminClient: the typed Admin API calls of admin/api.ts over a Transport (admin/transport.ts).
 * Every reply is validated (zod for JSON, strict line parsers otherwise); failures reject with
 * QubesError (admin/errors.ts).
 */
import { vmClass, type CreatableVmClass } from "../contracts/vm";
import { SystemInfoSchema } from "../qrexec/system";
import type { PropertyValue, QubesAdmin, RunResult, SystemInfo, VmListEntry, VolumeInfo, WriteFileOptions } from "./api";
import { QubesError, QubesTransportError } from "./errors";
import { QrexecClientVmTransport, SimTransport, SocketTransport, Transport } from "./transport";
import { NOT_FOUND_EXIT, readFileScript, removeFileScript, writeFileScript } from "./vmfiles";
import { unescapeValue } from "./wire";

/** How to reach the Admin API (the stack's `admin` config). */
export type AdminClientConfig = { transport: "socket"; socket: string } | { transport: "qrexec" } | { transport: "sim"; socket: string };

/** Build the client for a configuration. */
export function createAdminClient(config: AdminClientConfig): AdminClient {
  switch (config.transport) {
    case "socket":
      return new AdminClient(new SocketTransport(config.socket));
    case "sim":
      return new AdminClient(new SimTransport(config.socket));
    case "qrexec":
      return new AdminClient(new QrexecClientVmTransport());
  }
}


/**
 * One line of admin.vm.List: `<name> class=<class> state=<state>`, and since Qubes R4.3
 * ` uuid=<uuid>` after it (qubes-core-admin "Support using UUIDs instead of VM names").
 */
export function parseVmListLine(line: string): VmListEntry | undefined {
  const m = /^(\S+) class=(\S+) state=(\S+)(?: uuid=([0-9a-f-]{36}))?$/.exec(line);
  const k = m ? vmClass.safeParse(m[2]) : undefined;
  if (!m || !k?.success) return undefined;
  return { name: m[1], klass: k.data, state: m[3], ...(m[4] ? { uuid: m[4] } : {}) };
}

/** Parse `default=<True|False> type=<t> <value>`. */
export function parsePropertyValue(text: string): PropertyValue {
  const m = /^default=(True|False) type=(\S+) ([\s\S]*)$/.exec(text);
  if (!m) throw new Error(`malformed property value: ${JSON.stringify(text.slice(0, 100))}`);
  return { isDefault: m[1] === "True", type: m[2], value: m[3] };
}

function lines(data: Buffer): string[] {
  const t = data.toString("utf8");
  if (t === "") return [];
  return t.replace(/\n$/, "").split("\n");
}

/** The Admin API client. */
export class AdminClient implements QubesAdmin {
  constructor(readonly transport: Transport) {}

  /** A raw call (for methods without a typed wrapper). */
  call(method: string, dest: string, arg = "", payload?: Buffer | string): Promise<Buffer> {
    return this.transport.call(method, dest, arg, payload);
  }

  private async text(method: string, dest: string, arg = "", payload?: string): Promise<string> {
    return (await this.transport.call(method, dest, arg, payload)).toString("utf8");
  }

  private bad(method: string, dest: string, what: string): QubesTransportError {
    return new QubesTransportError(`unexpected reply to ${method}: ${what}`, { method, dest });
  }

  async vmList(): Promise<VmListEntry[]> {
    return this.vmListFrom("dom0");
  }

  /** admin.vm.List to a VM: only that VM. */
  async vmListFrom(dest: string): Promise<VmListEntry[]> {
    const out: VmListEntry[] = [];
    for (const line of lines(await this.transport.call("admin.vm.List", dest))) {
      const e = parseVmListLine(line);
      if (!e) throw this.bad("admin.vm.List", dest, line);
      out.push(e);
    }
    return out;
  }

  async vmCreate(klass: CreatableVmClass, name: string, label: string, template?: string): Promise<void> {
    await this.transport.call(`admin.vm.Create.${klass}`, "dom0", template ?? "", `name=${name} label=${label}`);
  }

  async vmRemove(name: string): Promise<void> {
    await this.transport.call("admin.vm.Remove", name);
  }

  async propertyGet(vm: string, prop: string): Promise<PropertyValue> {
    const t = await this.text("admin.vm.property.Get", vm, prop);
    try {
      return parsePropertyValue(t);
    } catch (e) {
      throw this.bad("admin.vm.property.Get", vm, (e as Error).message);
    }
  }

  async propertyGetAll(vm: string): Promise<Record<string, PropertyValue>> {
    const out: Record<string, PropertyValue> = {};
    for (const line of lines(await this.transport.call("admin.vm.property.GetAll", vm))) {
      const sp = line.indexOf(" ");
      if (sp <= 0) throw this.bad("admin.vm.property.GetAll", vm, line);
      try {
        const v = parsePropertyValue(line.slice(sp + 1));
        out[line.slice(0, sp)] = { ...v, value: unescapeValue(v.value) };
      } catch (e) {
        throw this.bad("admin.vm.property.GetAll", vm, (e as Error).message);
      }
    }
    return out;
  }

  async propertySet(vm: string, prop: string, value: string): Promise<void> {
    await this.transport.call("admin.vm.property.Set", vm, prop, value);
  }

  async propertyReset(vm: string, prop: string): Promise<void> {
    await this.transport.call("admin.vm.property.Reset", vm, prop);
  }

  async propertyList(vm: string): Promise<string[]> {
    return lines(await this.transport.call("admin.vm.property.List", vm));
  }

  async featureList(vm: string): Promise<string[]> {
    return lines(await this.transport.call("admin.vm.feature.List", vm));
  }

  async featureGet(vm: string, feature: string): Promise<string> {
    return this.text("admin.vm.feature.Get", vm, feature);
  }

  async featureSet(vm: string, feature: string, value: string): Promise<void> {
    await this.transport.call("admin.vm.feature.Set", vm, feature, value);
  }

  async featureRemove(vm: string, feature: string): Promise<void> {
    await this.transport.call("admin.vm.feature.Remove", vm, feature);
  }

  async tagList(vm: string): Promise<string[]> {
    return lines(await this.transport.call("admin.vm.tag.List", vm));
  }

  async tagSet(vm: string, tag: string): Promise<void> {
    await this.transport.call("admin.vm.tag.Set", vm, tag);
  }

  async tagRemove(vm: string, tag: string): Promise<void> {
    await this.transport.call("admin.vm.tag.Remove", vm, tag);
  }

  async volumeList(vm: string): Promise<string[]> {
    return lines(await this.transport.call("admin.vm.volume.List", vm));
  }

  async volumeInfo(vm: string, volume: string): Promise<VolumeInfo> {
    const out: VolumeInfo = {};
    for (const line of lines(await this.transport.call("admin.vm.volume.Info", vm, volume))) {
      const eq = line.indexOf("=");
      if (eq <= 0) throw this.bad("admin.vm.volume.Info", vm, line);
      out[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return out;
  }

  async volumeResize(vm: string, volume: string, sizeBytes: bigint): Promise<void> {
    await this.transport.call("admin.vm.volume.Resize", vm, volume, sizeBytes.toString());
  }

  async vmStart(vm: string): Promise<void> {
    await this.transport.call("admin.vm.Start", vm);
  }

  async vmShutdown(vm: string): Promise<void> {
    await this.transport.call("admin.vm.Shutdown", vm);
  }

  async vmKill(vm: string): Promise<void> {
    await this.transport.call("admin.vm.Kill", vm);
  }

  async vmCurrentState(vm: string): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const kv of (await this.text("admin.vm.CurrentState", vm)).trim().split(/\s+/)) {
      if (kv === "") continue;
      const eq = kv.indexOf("=");
      if (eq <= 0) throw this.bad("admin.vm.CurrentState", vm, kv);
      out[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    return out;
  }

  async labelList(): Promise<string[]> {
    return lines(await this.transport.call("admin.label.List", "dom0"));
  }

  async systemInfo(): Promise<SystemInfo> {
    const t = await this.text("internal.GetSystemInfo", "dom0");
    let json: unknown;
    try {
      json = JSON.parse(t);
    } catch {
      throw this.bad("internal.GetSystemInfo", "dom0", "not JSON");
    }
    const p = SystemInfoSchema.safeParse(json);
    if (!p.success) throw this.bad("internal.GetSystemInfo", "dom0", p.error.message);
    const domains: SystemInfo["domains"] = {};
    for (const [name, d] of Object.entries(p.data.domains)) {
      domains[name] = {
        name,
        type: d.type,
        tags: d.tags,
        default_dispvm: d.default_dispvm,
        template_for_dispvms: d.template_for_dispvms,
        power_state: d.power_state,
        label: d.label ?? null,
        icon: d.icon ?? null,
        guivm: d.guivm ?? null,
        uuid: d.uuid,
      };
    }
    return { domains };
  }

  /** admin.property.Get (global properties of dom0, e.g. default_netvm). */
  async globalPropertyGet(prop: string): Promise<PropertyValue> {
    return parsePropertyValue(await this.text("admin.property.Get", "dom0", prop));
  }

  /** admin.property.Set. */
  async globalPropertySet(prop: string, value: string): Promise<void> {
    await this.transport.call("admin.property.Set", "dom0", prop, value);
  }

  async policyList(): Promise<string[]> {
    return lines(await this.transport.policyCall("policy.List", "", ""));
  }

  async policyGet(name: string): Promise<{ content: string; token: string }> {
    const t = (await this.transport.policyCall("policy.Get", name, "")).toString("utf8");
    const nl = t.indexOf("\n");
    if (nl < 0 || !/^sha256:[0-9a-f]{64}$/.test(t.slice(0, nl))) throw this.bad("policy.Get", "dom0", "no token line");
    return { token: t.slice(0, nl), content: t.slice(nl + 1) };
  }

  async policyReplace(name: string, content: string, token: string): Promise<void> {
    await this.transport.policyCall("policy.Replace", name, `${token}\n${content}`);
  }

  async policyRemove(name: string, token: string): Promise<void> {
    await this.transport.policyCall("policy.Remove", name, token);
  }

  async run(vm: string, command: string, opts?: { user?: string; input?: Buffer | string }): Promise<RunResult> {
    const input = opts?.input === undefined ? Buffer.alloc(0) : Buffer.isBuffer(opts.input) ? opts.input : Buffer.from(opts.input, "utf8");
    return this.transport.run(vm, opts?.user ?? "user", command, input);
  }

  async readFile(vm: string, path: string): Promise<Buffer | null> {
    const r = await this.transport.run(vm, "root", readFileScript(path), Buffer.alloc(0));
    if (r.exitCode === NOT_FOUND_EXIT) return null;
    if (r.exitCode !== 0) throw runError("readFile", vm, path, r);
    return r.stdout;
  }

  async writeFile(vm: string, path: string, content: Buffer | string, opts: WriteFileOptions): Promise<void> {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(content, "utf8");
    const r = await this.transport.run(vm, "root", writeFileScript(path, opts.mode, opts.owner ?? "root"), data);
    if (r.exitCode !== 0) throw runError("writeFile", vm, path, r);
  }

  async removeFile(vm: string, path: string): Promise<void> {
    const r = await this.transport.run(vm, "root", removeFileScript(path), Buffer.alloc(0));
    if (r.exitCode !== 0) throw runError("removeFile", vm, path, r);
  }
}

function runError(op: string, vm: string, path: string, r: RunResult): QubesError {
  return new QubesError("QubesVMCommandError", `${op} ${path} in ${vm} failed (exit ${r.exitCode}): ${r.stderr.toString("utf8").trim()}`, {
    method: op,
    dest: vm,
  });
}
