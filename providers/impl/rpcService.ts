// Implementation of RpcService (see providers/rpcService.ts).
import { z } from "zod";
import { runAdmin } from "./admin";
import { DiffResult, hasUnknown, holdsConnection, legacyAdmin, parseProps, sha256, withoutAdmin } from "./common";
import { readText, removeWhole, writeWhole } from "./files";
import { claimedByVmFiles } from "./manifest";
import { checkPlaced, externalVms, GONE, inVm, vmIdentity, vmReplaced } from "./inVm";
import { contentFields, loadContent, oneContent, wantedSha256 } from "./source";

const KIND = "RpcService";
export const RPC_DIR = "/usr/local/etc/qubes-rpc";

const rpcBase = z.object({
  ...legacyAdmin,
  /** The VM the service runs in. Changing it replaces the resource. */
  vm: z.string().min(1),
  ...vmIdentity,
  ...externalVms,
  /** Service name, optionally with a specific argument: `qubesbuilder.BuildLog`, `local.ConnectSSH+github.com`. */
  service: z.string().regex(/^[A-Za-z0-9._-]+(\+[A-Za-z0-9._-]*)?$/, "a qrexec service name, optionally with +argument (letters, digits, '.', '_', '-')"),
  // content: the service program.
  ...contentFields,
  /** File mode (default 0o755). */
  mode: z.number().int().min(0).max(0o7777).default(0o755),
});
export const rpcInputs = rpcBase.superRefine(oneContent);
type RpcInputs = z.infer<typeof rpcInputs>;

const rpcOutputs = rpcBase.safeExtend({ path: z.string(), sha256: z.string() });

const pathOf = (service: string) => `${RPC_DIR}/${service}`;
const spec = (p: RpcInputs) => ({ vm: p.vm, path: pathOf(p.service), mode: p.mode, owner: "root" });
const who = (service: string) => `${KIND} ${service} in`;

export async function check(_olds: unknown, news: unknown) {
  return checkPlaced(rpcInputs, news);
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(rpcOutputs, oldsRaw, KIND);
  const moved = vmReplaced(o, newsRaw);
  if (moved) return moved;
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(rpcInputs, newsRaw, KIND);
  const replaces = (["vm", "service"] as const).filter((k) => o[k] !== n[k]);
  if (replaces.length > 0) return { changes: true, replaces, deleteBeforeReplace: true };
  return { changes: o.sha256 !== wantedSha256(n) || o.mode !== n.mode || o.vmUuid !== n.vmUuid || holdsConnection(oldsRaw) };
}

async function install(p: RpcInputs) {
  const text = loadContent(`${who(p.service)} ${p.vm}`, p);
  await writeWhole(runAdmin(p.admin), who(p.service), spec(p), text);
  // The program text is not kept in the outputs (inline, it is in the inputs); its hash is.
  const { content: _content, ...rest } = withoutAdmin(p);
  return { ...rest, path: pathOf(p.service), sha256: sha256(text) };
}

/** Installing is an atomic write: a create after an interrupted one just writes again. */
export async function create(inputs: unknown) {
  const p = parseProps(rpcInputs, inputs, KIND);
  return { id: `${p.vm}:${pathOf(p.service)}`, outs: await install(p) };
}

/** Writes only when the program or its mode must change. */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(rpcOutputs, oldsRaw, KIND);
  const n = parseProps(rpcInputs, newsRaw, KIND);
  if (o.sha256 === wantedSha256(n) && o.mode === n.mode) {
    const { content: _content, ...rest } = withoutAdmin(n);
    return { outs: { ...rest, path: pathOf(n.service), sha256: o.sha256 } };
  }
  return { outs: await install(n) };
}

export async function read(id: string, raw: unknown) {
  const o = parseProps(rpcOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  const text = await inVm(admin, o, () => readText(admin, who(o.service), { vm: o.vm, path: pathOf(o.service) }));
  if (text === null || text === GONE) return { id: "", props: {} };
  const { content: _ignored, ...rest } = o;
  // Inputs are reported only for inline content: a referenced program stays a reference.
  if (o.contentFile !== undefined) return { id, props: { ...rest, sha256: sha256(text) } };
  const real = { vm: o.vm, ...(o.vmUuid !== undefined ? { vmUuid: o.vmUuid } : {}), service: o.service, mode: o.mode, content: text };
  return { id, props: { ...rest, sha256: sha256(text) }, inputs: real };
}

async function delete_(_id: string, raw: unknown): Promise<void> {
  const o = parseProps(rpcOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  await inVm(admin, o, async () => {
    // Taken over by the VM's VmFiles (the move from one resource per file): it stays.
    if (await claimedByVmFiles(admin, KIND, o.vm, pathOf(o.service))) return;
    await removeWhole(admin, KIND, { vm: o.vm, path: pathOf(o.service) });
  });
}
export { delete_ as delete };
