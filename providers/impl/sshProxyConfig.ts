// Implementation of SshProxyConfig (see providers/sshProxyConfig.ts).
import { z } from "zod";
import { vmName } from "../../contracts/vmName";
import { runAdmin } from "./admin";
import { normalizeInner } from "./blocks";
import { DiffResult, hasUnknown, holdsConnection, legacyAdmin, parseProps, ProviderError, sha256, step, withoutAdmin } from "./common";
import { dropBlock, readBlock, writeBlock } from "./files";
import { checkPlaced, externalVms, GONE, inVm, vmIdentity, vmReplaced } from "./inVm";

const KIND = "SshProxyConfig";
export const SSH_DIR = "/home/user/.ssh";
export const CONFIG = `${SSH_DIR}/config`;
export const KNOWN_HOSTS = `${SSH_DIR}/known_hosts`;
export const BLOCK_ID = "ssh-proxy";

const hostName = z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/, "a host name");
/** One upload host. */
export const proxyHost = z.object({
  /** The name used with ssh (`Host`), and the qrexec argument of ConnectSSH unless `hostName` is set. */
  host: hostName,
  /** Remote user (`User`). */
  user: z.string().regex(/^[a-z_][a-z0-9_-]*$/, "a Unix user name"),
  /** `HostName`, when different from `host`. */
  hostName: hostName.optional(),
  /** The host's pinned keys, as in known_hosts. */
  hostKeys: z.array(z.object({
    /** e.g. `ssh-ed25519` */
    type: z.string().regex(/^[a-z0-9@.-]+$/, "a key type such as ssh-ed25519"),
    /** The base64 key. */
    key: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, "the base64 key as in known_hosts"),
  })).min(1, "pin at least one host key"),
});
export type ProxyHost = z.infer<typeof proxyHost>;

export const proxyInputs = z.object({
  ...legacyAdmin,
  /** The build VM. Changing it replaces the resource. */
  vm: vmName,
  ...vmIdentity,
  ...externalVms,
  /** The qube running `local.ConnectSSH` (e.g. `sys-net`). */
  netvm: vmName,
  /** The upload hosts. */
  hosts: z.array(proxyHost).min(1).superRefine((hs, ctx) => {
    const seen = new Set<string>();
    for (const h of hs) {
      if (seen.has(h.host)) ctx.addIssue({ code: "custom", message: `host ${h.host} is listed twice` });
      seen.add(h.host);
    }
  }),
});
type ProxyInputs = z.infer<typeof proxyInputs>;

const proxyOutputs = proxyInputs.safeExtend({ configSha256: z.string(), knownHostsSha256: z.string() });

/**
 * The `~/.ssh/config` block: one `Host` block per upload host, relayed by `local.ConnectSSH` in
 * the net VM. No `Host *`: other destinations keep the VM's own network (Tor); no `UseRoaming`.
 */
export function renderSshConfig(netvm: string, hosts: readonly ProxyHost[]): string {
  return hosts.map((h) => [
    `Host ${h.host}`,
    `    HostName ${h.hostName ?? h.host}`,
    `    User ${h.user}`,
    `    ProxyCommand /usr/bin/qrexec-client-vm ${netvm} local.ConnectSSH+%h`,
    "    ControlMaster auto",
    "    ControlPath ~/.ssh/ctl-%r@%h:%p",
    "    ControlPersist 60s",
    "",
  ].join("\n")).join("");
}

/** The `~/.ssh/known_hosts` block: the pinned keys of each host (under its alias and its HostName). */
export function renderKnownHosts(hosts: readonly ProxyHost[]): string {
  return hosts.flatMap((h) => {
    const names = h.hostName && h.hostName !== h.host ? `${h.host},${h.hostName}` : h.host;
    return h.hostKeys.map((k) => `${names} ${k.type} ${k.key}\n`);
  }).join("");
}

const files = (p: { vm: string }) => ({
  config: { vm: p.vm, path: CONFIG, mode: 0o600, owner: "user" },
  known: { vm: p.vm, path: KNOWN_HOSTS, mode: 0o644, owner: "user" },
});
const who = `${KIND}`;

function hashes(p: ProxyInputs) {
  return { configSha256: sha256(renderSshConfig(p.netvm, p.hosts)), knownHostsSha256: sha256(renderKnownHosts(p.hosts)) };
}

export async function check(_olds: unknown, news: unknown) {
  return checkPlaced(proxyInputs, news);
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(proxyOutputs, oldsRaw, KIND);
  const moved = vmReplaced(o, newsRaw);
  if (moved) return moved;
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(proxyInputs, newsRaw, KIND);
  if (o.vm !== n.vm) return { changes: true, replaces: ["vm"], deleteBeforeReplace: true };
  const h = hashes(n);
  return { changes: h.configSha256 !== o.configSha256 || h.knownHostsSha256 !== o.knownHostsSha256 || o.vmUuid !== n.vmUuid || holdsConnection(oldsRaw) };
}

async function apply(p: ProxyInputs) {
  const admin = runAdmin(p.admin);
  const r = await step(`${KIND} ${p.vm}`, `preparing ${SSH_DIR}`, () => admin.run(p.vm, `mkdir -p ${SSH_DIR} && chmod 700 ${SSH_DIR}`, { user: "user" }));
  if (r.exitCode !== 0) throw new ProviderError(`${KIND} ${p.vm}`, `preparing ${SSH_DIR}`, undefined, r.stderr.toString().trim() || `exit ${r.exitCode}`);
  const f = files(p);
  // ssh uses the first value it finds for each option: our hosts go before anything else.
  await writeBlock(admin, who, f.config, BLOCK_ID, renderSshConfig(p.netvm, p.hosts), "start");
  await writeBlock(admin, who, f.known, BLOCK_ID, renderKnownHosts(p.hosts));
  return { ...withoutAdmin(p), ...hashes(p) };
}

/** Writing the two blocks is idempotent: a create after an interrupted one just writes again. */
export async function create(inputs: unknown) {
  const p = parseProps(proxyInputs, inputs, KIND);
  return { id: `${p.vm}:${CONFIG}`, outs: await apply(p) };
}

/** Writes only when a block must change. */
export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(proxyOutputs, oldsRaw, KIND);
  const n = parseProps(proxyInputs, newsRaw, KIND);
  const h = hashes(n);
  if (h.configSha256 === o.configSha256 && h.knownHostsSha256 === o.knownHostsSha256) return { outs: { ...withoutAdmin(n), ...h } };
  return { outs: await apply(n) };
}

/** Hashes of our two blocks as they are now (`absent` when a block is missing). */
export async function read(id: string, raw: unknown) {
  const o = parseProps(proxyOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  const f = files(o);
  const now = await inVm(admin, o, async () => [await readBlock(admin, who, f.config, BLOCK_ID), await readBlock(admin, who, f.known, BLOCK_ID)] as const);
  if (now === GONE) return { id: "", props: {} };
  const [config, known] = now;
  if (config === null && known === null) return { id: "", props: {} };
  return {
    id,
    props: {
      ...o,
      configSha256: config === null ? "absent" : sha256(normalizeInner(config)),
      knownHostsSha256: known === null ? "absent" : sha256(normalizeInner(known)),
    },
  };
}

async function delete_(_id: string, raw: unknown): Promise<void> {
  const o = parseProps(proxyOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  const f = files(o);
  await inVm(admin, o, async () => {
    await dropBlock(admin, who, f.config, BLOCK_ID);
    await dropBlock(admin, who, f.known, BLOCK_ID);
  });
}
export { delete_ as delete };
