// Implementation of RpcService (see providers/rpcService.ts).
import { z } from "zod";
import { adminConnection, adminFor } from "./admin";
import { checkWith, DiffResult, hasUnknown, parseProps, sha256, step } from "./common";
import { readText, writeWhole } from "./files";
import { contentFields, loadContent, oneContent, wantedSha256 } from "./source";

const KIND = "RpcService";
export const RPC_DIR = "/usr/local/etc/qubes-rpc";

const rpcBase = z.object({
  admin: adminConnection,
  vm: z.string().min(1),
  service: z.string().regex(/^[A-Za-z0-9._-]+(\+[A-Za-z0-9._-]*)?$/, "a qrexec service name, optionally with +argument (letters, digits, '.', '_', '-')"),
  ...contentFields,
  mode: z.number().int().min(0).max(0o7777).default(0o755),
});
export const rpcInputs = rpcBase.superRefine(oneContent);
type RpcInputs = z.infer<typeof rpcInputs>;

const rpcOutputs = rpcBase.safeExtend({ path: z.string(), sha256: z.string() });

const pathOf = (service: string) => `${RPC_DIR}/${service}`;
const spec = (p: RpcInputs) => ({ vm: p.vm, path: pathOf(p.service), mode: p.mode, owner: "root" });

export async function check(_olds: unknown, news: unknown) {
  return checkWith(rpcInputs, news);
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(rpcOutputs, oldsRaw, KIND);
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(rpcInputs, newsRaw, KIND);
  const replaces = (["vm", "service"] as const).filter((k) => o[k] !== n[k]);
  if (replaces.length > 0) return { changes: true, replaces, deleteBeforeReplace: true };
  return { changes: o.sha256 !== wantedSha256(n) || o.mode !== n.mode };
}

async function install(p: RpcInputs) {
  const who = `${KIND} ${p.service} in`;
  const text = loadContent(`${who} ${p.vm}`, p);
  await writeWhole(adminFor(p.admin), who, spec(p), text);
  // The program text is not kept in the outputs (inline, it is in the inputs); its hash is.
  const { content: _content, ...rest } = p;
  return { ...rest, path: pathOf(p.service), sha256: sha256(text) };
}

export async function create(inputs: unknown) {
  const p = parseProps(rpcInputs, inputs, KIND);
  return { id: `${p.vm}:${pathOf(p.service)}`, outs: await install(p) };
}

export async function update(_id: string, _olds: unknown, newsRaw: unknown) {
  return { outs: await install(parseProps(rpcInputs, newsRaw, KIND)) };
}

export async function read(id: string, raw: unknown) {
  const o = parseProps(rpcOutputs, raw, KIND);
  const text = await readText(adminFor(o.admin), `${KIND} ${o.service} in`, { vm: o.vm, path: pathOf(o.service) });
  if (text === null) return { id: "", props: {} };
  const { content: _ignored, ...rest } = o;
  // Inputs are reported only for inline content: a referenced program stays a reference.
  if (o.contentFile !== undefined) return { id, props: { ...rest, sha256: sha256(text) } };
  const real = { admin: o.admin, vm: o.vm, service: o.service, mode: o.mode, content: text };
  return { id, props: { ...rest, sha256: sha256(text) }, inputs: real };
}

async function delete_(_id: string, raw: unknown): Promise<void> {
  const o = parseProps(rpcOutputs, raw, KIND);
  const admin = adminFor(o.admin);
  await step(`${KIND} ${o.vm}:${pathOf(o.service)}: removing`, () => admin.removeFile(o.vm, pathOf(o.service)));
}
export { delete_ as delete };
