// A small in-memory QubesAdmin for unit tests of single providers (integration tests use qubes-sim).
import { createHash, randomUUID } from "crypto";
import type { PropertyValue, QubesAdmin, RunResult, SystemInfo, VmClass, VmListEntry, VolumeInfo, WriteFileOptions } from "../../admin/api";
import { QubesError } from "../../admin/errors";

/** The Admin client's own error type, as the real client throws it. */
const fail = (qubesType: string, message: string, method = "fake") => new QubesError(qubesType, message, { method, dest: "fake" });

interface FakeVm {
  uuid: string;
  klass: VmClass;
  props: Record<string, PropertyValue>;
  features: Map<string, string>;
  tags: Set<string>;
  privateSize: bigint;
  files: Map<string, { content: Buffer; mode: number; owner: string }>;
  running: boolean;
}

const DEFAULTS: Record<string, PropertyValue> = {
  netvm: { isDefault: true, type: "vm", value: "sys-firewall" },
  provides_network: { isDefault: true, type: "bool", value: "False" },
  default_dispvm: { isDefault: true, type: "vm", value: "default-dvm" },
  template_for_dispvms: { isDefault: true, type: "bool", value: "False" },
  memory: { isDefault: true, type: "int", value: "400" },
  maxmem: { isDefault: true, type: "int", value: "4000" },
  vcpus: { isDefault: true, type: "int", value: "2" },
};

export class FakeAdmin implements QubesAdmin {
  readonly vms = new Map<string, FakeVm>();
  readonly policies = new Map<string, string>();
  readonly calls: string[] = [];
  /** Commands `run` reports as missing for `command -v`. */
  missingCommands = new Set<string>();
  /** Method names that fail once with the given Qubes error type. */
  failNext = new Map<string, string>();
  /** Results the next `run` calls return instead of the built-in behaviour, first in first out. */
  runResults: RunResult[] = [];
  /** When set, systemInfo is refused as a management qube's policy may refuse it. */
  refuseSystemInfo = false;

  constructor(templates: string[] = ["fedora-43-xfce"]) {
    this.addVm("dom0", "AdminVM");
    for (const t of templates) this.addVm(t, "TemplateVM");
  }

  addVm(name: string, klass: VmClass, template?: string): FakeVm {
    const uuid = randomUUID();
    const props: Record<string, PropertyValue> = {
      ...structuredClone(DEFAULTS), label: { isDefault: false, type: "label", value: "black" }, uuid: { isDefault: false, type: "str", value: uuid },
    };
    if (template) props.template = { isDefault: false, type: "vm", value: template };
    const vm: FakeVm = { uuid, klass, props, features: new Map(), tags: new Set(["created-by-dom0"]), privateSize: 2n * 1024n ** 3n, files: new Map(), running: false };
    this.vms.set(name, vm);
    return vm;
  }

  private log(call: string) {
    this.calls.push(call);
    const m = call.split(" ")[0];
    const t = this.failNext.get(m);
    if (t) {
      this.failNext.delete(m);
      throw fail(t, `${m} refused`, m);
    }
  }

  private vm(name: string): FakeVm {
    const v = this.vms.get(name);
    if (!v) throw fail("QubesVMNotFoundError", `No such domain: '${name}'`);
    return v;
  }

  async vmList(): Promise<VmListEntry[]> {
    this.log("vmList");
    return [...this.vms].map(([name, v]) => ({ name, klass: v.klass, state: v.running ? "Running" : "Halted" }));
  }
  async vmCreate(klass: VmClass, name: string, label: string, template?: string): Promise<void> {
    this.log(`vmCreate ${name}`);
    if (this.vms.has(name)) throw fail("QubesValueError", `VM ${name} already exists`);
    const v = this.addVm(name, klass, template);
    v.props.label = { isDefault: false, type: "label", value: label };
  }
  async vmRemove(name: string): Promise<void> {
    this.log(`vmRemove ${name}`);
    const v = this.vm(name);
    if (v.running) throw fail("QubesVMInUseError", `Domain is in use: '${name}'`);
    this.vms.delete(name);
  }
  async propertyGet(vm: string, prop: string): Promise<PropertyValue> {
    this.log(`propertyGet ${vm} ${prop}`);
    return this.vm(vm).props[prop];
  }
  async propertyGetAll(vm: string): Promise<Record<string, PropertyValue>> {
    this.log(`propertyGetAll ${vm}`);
    return structuredClone(this.vm(vm).props);
  }
  async propertySet(vm: string, prop: string, value: string): Promise<void> {
    this.log(`propertySet ${vm} ${prop} ${value}`);
    const v = this.vm(vm);
    if (prop === "netvm" && value !== "" && !this.vms.has(value)) throw fail("QubesVMNotFoundError", `No such domain: '${value}'`);
    v.props[prop] = { isDefault: false, type: v.props[prop]?.type ?? "str", value };
  }
  async propertyReset(vm: string, prop: string): Promise<void> {
    this.log(`propertyReset ${vm} ${prop}`);
    const d = DEFAULTS[prop];
    if (d) this.vm(vm).props[prop] = { ...d };
  }
  async propertyList(vm: string): Promise<string[]> {
    this.log(`propertyList ${vm}`);
    return Object.keys(this.vm(vm).props);
  }
  async featureList(vm: string): Promise<string[]> {
    this.log(`featureList ${vm}`);
    return [...this.vm(vm).features.keys()];
  }
  async featureGet(vm: string, f: string): Promise<string> {
    this.log(`featureGet ${vm} ${f}`);
    const v = this.vm(vm).features.get(f);
    if (v === undefined) throw fail("QubesFeatureNotFoundError", f);
    return v;
  }
  async featureSet(vm: string, f: string, value: string): Promise<void> {
    this.log(`featureSet ${vm} ${f}`);
    this.vm(vm).features.set(f, value);
  }
  async featureRemove(vm: string, f: string): Promise<void> {
    this.log(`featureRemove ${vm} ${f}`);
    this.vm(vm).features.delete(f);
  }
  async tagList(vm: string): Promise<string[]> {
    this.log(`tagList ${vm}`);
    return [...this.vm(vm).tags];
  }
  async tagSet(vm: string, tag: string): Promise<void> {
    this.log(`tagSet ${vm} ${tag}`);
    this.vm(vm).tags.add(tag);
  }
  async tagRemove(vm: string, tag: string): Promise<void> {
    this.log(`tagRemove ${vm} ${tag}`);
    this.vm(vm).tags.delete(tag);
  }
  async volumeList(vm: string): Promise<string[]> {
    this.log(`volumeList ${vm}`);
    return ["root", "private", "volatile", "kernel"];
  }
  async volumeInfo(vm: string, volume: string): Promise<VolumeInfo> {
    this.log(`volumeInfo ${vm} ${volume}`);
    return { size: String(this.vm(vm).privateSize), pool: "default" };
  }
  async volumeResize(vm: string, _volume: string, size: bigint): Promise<void> {
    this.log(`volumeResize ${vm} ${size}`);
    const v = this.vm(vm);
    if (size < v.privateSize) throw fail("StoragePoolException", "shrinking is not supported");
    v.privateSize = size;
  }
  async vmStart(vm: string): Promise<void> {
    this.log(`vmStart ${vm}`);
    this.vm(vm).running = true;
  }
  async vmShutdown(vm: string): Promise<void> {
    this.log(`vmShutdown ${vm}`);
    this.vm(vm).running = false;
  }
  async vmKill(vm: string): Promise<void> {
    this.vm(vm).running = false;
  }
  async vmCurrentState(vm: string): Promise<Record<string, string>> {
    return { power_state: this.vm(vm).running ? "Running" : "Halted" };
  }
  async labelList(): Promise<string[]> {
    return ["red", "orange", "yellow", "green", "gray", "blue", "purple", "black"];
  }
  async systemInfo(): Promise<SystemInfo> {
    this.log("systemInfo");
    if (this.refuseSystemInfo) throw fail("PermissionDenied", "", "internal.GetSystemInfo");
    const domains: SystemInfo["domains"] = {};
    for (const [name, v] of this.vms) {
      domains[name] = {
        name, type: v.klass, tags: [...v.tags], default_dispvm: null, template_for_dispvms: false,
        power_state: v.running ? "Running" : "Halted", label: v.props.label.value, icon: null, guivm: null, uuid: v.uuid,
      };
    }
    return { domains };
  }
  private token(name: string): string {
    const c = this.policies.get(name);
    return c === undefined ? "new" : createHash("sha256").update(c).digest("hex");
  }
  async policyList(): Promise<string[]> {
    this.log("policyList");
    return [...this.policies.keys()];
  }
  async policyGet(name: string): Promise<{ content: string; token: string }> {
    this.log(`policyGet ${name}`);
    const c = this.policies.get(name);
    if (c === undefined) throw fail("PolicyAdminFileNotFoundException", `no policy file ${name}`);
    return { content: c, token: this.token(name) };
  }
  async policyReplace(name: string, content: string, token: string): Promise<void> {
    this.log(`policyReplace ${name}`);
    if (token !== "any" && token !== this.token(name)) throw fail("PolicyAdminTokenException", "token mismatch");
    this.policies.set(name, content);
  }
  async policyRemove(name: string, token: string): Promise<void> {
    this.log(`policyRemove ${name}`);
    if (!this.policies.has(name)) throw fail("PolicyAdminFileNotFoundException", `no policy file ${name}`);
    if (token !== "any" && token !== this.token(name)) throw fail("PolicyAdminTokenException", "token mismatch");
    this.policies.delete(name);
  }
  async run(vm: string, command: string): Promise<RunResult> {
    this.log(`run ${vm}`);
    // qvm-run starts a halted VM.
    this.vm(vm).running = true;
    const queued = this.runResults.shift();
    if (queued) return queued;
    const m = /^for c in (.*); do command -v/.exec(command);
    if (m) {
      const cmds = [...m[1].matchAll(/'([^']*)'/g)].map((x) => x[1]);
      const out = cmds.filter((c) => this.missingCommands.has(c)).map((c) => `${c}\n`).join("");
      return { exitCode: 0, stdout: Buffer.from(out), stderr: Buffer.alloc(0) };
    }
    return { exitCode: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
  }
  async readFile(vm: string, path: string): Promise<Buffer | null> {
    this.log(`readFile ${vm} ${path}`);
    return this.vm(vm).files.get(path)?.content ?? null;
  }
  async writeFile(vm: string, path: string, content: Buffer | string, opts: WriteFileOptions): Promise<void> {
    this.log(`writeFile ${vm} ${path}`);
    this.vm(vm).files.set(path, { content: Buffer.from(content), mode: opts.mode, owner: opts.owner ?? "root" });
  }
  async removeFile(vm: string, path: string): Promise<void> {
    this.log(`removeFile ${vm} ${path}`);
    this.vm(vm).files.delete(path);
  }
  text(vm: string, path: string): string | undefined {
    return this.vms.get(vm)?.files.get(path)?.content.toString();
  }
}
