/**
 * qubes-sim's network: one Linux network namespace per running VM, wired as Qubes wires netvms.
 *
 * - A VM with a netvm gets `eth0` (address 10.137.<qid/256>.<qid%256>/32, default route to its
 *   netvm's address), the netvm the other end `vif<qid>`; a VM without a netvm has loopback only.
 * - Every network-providing VM forwards its clients' traffic upstream only (no client to client,
 *   nothing to the netvm itself), drops spoofed source addresses, and is configured from outside
 *   (the namespaces belong to the host's user namespace: VM processes cannot change them).
 * - The VM holding the network card (NET_CARD_VM, sys-net) is the only one with a host-facing side:
 *   a veth to the host, in a /24 chosen per sim instance (10.250.<slot>.0/24, `slot` locked in
 *   /run/qubes-sim/slots so that sims on one host do not collide). On the host side live the
 *   stand-in internet's hosts: `internet` (.1, uploads.qubes-sim.test) and `github` (.2,
 *   github.qubes-sim.test). sys-net reaches those two addresses only, and masquerades.
 * - A Tor gateway (provides network, tagged `whonix-gw` or based on a whonix template) forwards only
 *   to the Tor-reachable hosts (github) and rewrites the source to the "Tor exit" address (.4),
 *   which sys-net passes unmasqueraded: a server of the stand-in internet sees via-Tor traffic as
 *   coming from torExit, clearnet traffic as coming from sysNet (.3).
 * - The webhook front of sys-net: what the template's nginx does for the site's server block (a
 *   port on the uplink forwarded to the receiver's loopback port) and the formula's firewall opening
 *   for GitHub's hook ranges (the block's `allow` ranges; others are dropped), as nftables rules.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

export const NET_CARD_VM = "sys-net";
export const TOR_GATEWAY_TAG = "whonix-gw";
export const HOST_NAMES = { internet: "uploads.qubes-sim.test", github: "github.qubes-sim.test" } as const;
const SLOTS_DIR = "/run/qubes-sim/slots";
const TABLE = "qubes_sim";

/** The addresses of one sim instance's uplink. */
export interface Uplink {
  slot: number;
  /** The host end of sys-net's uplink veth. */
  hostIf: string;
  /** Host side: the stand-in internet's general host (upload hosts listen here). */
  internet: string;
  /** Host side: the stand-in GitHub's address (the only Tor-reachable host). */
  github: string;
  /** sys-net's uplink address (clearnet traffic comes from here). */
  sysNet: string;
  /** The address via-Tor traffic comes from. */
  torExit: string;
}

export function uplinkOf(slot: number): Uplink {
  const p = `10.250.${slot}`;
  return { slot, hostIf: `qsim${slot}`, internet: `${p}.1`, github: `${p}.2`, sysNet: `${p}.3`, torExit: `${p}.4` };
}

/** Qubes' address of a VM (the `ip` property). */
export function vmIp(qid: number): string {
  return `10.137.${qid >> 8}.${qid & 255}`;
}

/** What the network needs to know of a running VM. */
export interface NetVm {
  name: string;
  qid: number;
  netvm: string | null;
  providesNetwork: boolean;
  torGateway: boolean;
}

/** sys-net's webhook front: uplink port → loopback port, from the allowed source ranges (none: any). */
export interface WebFront {
  port: number;
  target: number;
  allow: string[];
}

/** Per running VM: its namespace's configuration script (run inside it) and the link to its netvm. */
export interface NetPlan {
  /** client → netvm, for running pairs. */
  links: Map<string, string>;
  scripts: Map<string, string>;
  uplinkVm: string | null;
}

const CIDR = /^(?:\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/;

/** The network of the running VMs (pure). */
export function planNetwork(vms: NetVm[], up: Uplink, front?: WebFront): NetPlan {
  const byName = new Map(vms.map((v) => [v.name, v]));
  const clients = (n: string) => vms.filter((v) => v.netvm === n);
  const links = new Map<string, string>();
  for (const v of vms) if (v.netvm && byName.get(v.netvm)?.providesNetwork) links.set(v.name, v.netvm);
  const card = byName.get(NET_CARD_VM);
  const uplinkVm = card && card.providesNetwork && !card.netvm ? card.name : null;
  // Source addresses that may come out of a client's vif.
  const upstream = (v: NetVm, seen = new Set<string>()): string[] => {
    if (seen.has(v.name)) return [];
    seen.add(v.name);
    if (v.torGateway) return [vmIp(v.qid), up.torExit];
    if (!v.providesNetwork) return [vmIp(v.qid)];
    return [vmIp(v.qid), ...clients(v.name).filter((c) => links.get(c.name) === v.name).flatMap((c) => upstream(c, seen))];
  };
  const scripts = new Map<string, string>();
  for (const v of vms) {
    const s = ["set -e", "ip link set lo up", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6", "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"];
    const gw = links.get(v.name);
    if (gw) {
      const g = vmIp(byName.get(gw)!.qid);
      s.push("ip link set eth0 up", `ip addr replace ${vmIp(v.qid)}/32 dev eth0`, `ip route replace ${g} dev eth0 scope link`, `ip route replace default via ${g} dev eth0 onlink`);
    }
    const isUplink = v.name === uplinkVm;
    if (isUplink) {
      s.push("ip link set eth0 up", `ip addr replace ${up.sysNet}/24 dev eth0`, `ip route replace default via ${up.internet} dev eth0`);
      s.push("echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet");
    }
    if (v.providesNetwork) {
      s.push("echo 1 > /proc/sys/net/ipv4/ip_forward");
      const mine = clients(v.name).filter((c) => links.get(c.name) === v.name);
      for (const c of mine) {
        const vif = `vif${c.qid}`;
        s.push(`ip link set ${vif} up`, `ip addr replace ${vmIp(v.qid)}/32 dev ${vif}`, `ip route replace ${vmIp(c.qid)} dev ${vif} scope link`);
        for (const a of upstream(c).slice(1)) s.push(`ip route replace ${a} via ${vmIp(c.qid)} dev ${vif} onlink`);
      }
      s.push(`nft -f - <<'NFT'\n${netvmRules(v, mine.map((c) => ({ vif: `vif${c.qid}`, from: upstream(c) })), up, isUplink, isUplink ? front : undefined)}NFT`);
    }
    scripts.set(v.name, s.join("\n") + "\n");
  }
  return { links, scripts, uplinkVm };
}

/** The nftables ruleset of a network-providing VM. */
export function netvmRules(v: NetVm, clients: { vif: string; from: string[] }[], up: Uplink, uplink: boolean, front?: WebFront): string {
  const set = (xs: string[]) => `{ ${xs.join(", ")} }`;
  const internet = [up.internet, up.github];
  const tor = [up.github];
  const r: string[] = [`table inet ${TABLE} {}`, `delete table inet ${TABLE}`, `table inet ${TABLE} {`];
  r.push("  chain antispoof {", "    type filter hook prerouting priority raw; policy accept;");
  for (const c of clients) r.push(`    iifname "${c.vif}" ip saddr != ${set(c.from)} drop`);
  r.push('    iifname "vif*" meta nfproto ipv6 drop', "  }");
  r.push("  chain front {", "    type nat hook prerouting priority dstnat; policy accept;");
  if (front) {
    const from = front.allow.length ? ` ip saddr ${set(front.allow)}` : "";
    r.push(`    iifname "eth0"${from} tcp dport ${front.port} dnat ip to 127.0.0.1:${front.target}`);
  }
  r.push("  }");
  r.push("  chain input {", "    type filter hook input priority filter; policy drop;", '    iif "lo" accept', "    ct state established,related accept");
  if (front) r.push('    iifname "eth0" ct status dnat accept');
  r.push("  }");
  r.push("  chain forward {", "    type filter hook forward priority filter; policy drop;", "    ct state established,related accept");
  if (uplink) r.push(`    iifname "vif*" oifname "eth0" ip daddr ${set(internet)} accept`);
  else if (v.torGateway) r.push(`    iifname "vif*" oifname "eth0" ip daddr ${set(tor)} accept`);
  else r.push('    iifname "vif*" oifname "eth0" accept');
  r.push("  }");
  r.push("  chain output {", "    type filter hook output priority filter; policy accept;");
  if (uplink) r.push(`    oifname "eth0" ip daddr != ${set(internet)} drop`);
  else if (v.torGateway) r.push(`    oifname "eth0" ip daddr != ${set(tor)} drop`);
  r.push("  }");
  r.push("  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;");
  if (uplink) r.push(`    oifname "eth0" ip saddr != ${up.torExit} masquerade`);
  else if (v.torGateway) r.push(`    oifname "eth0" snat ip to ${up.torExit}`);
  r.push("  }", "}", "");
  return r.join("\n");
}

/**
 * sys-net's webhook front, as the template's nginx would serve the site's server block: the block
 * is the file that `/rw/config/rc.local` links into /etc/nginx; `listen <port>;`, `proxy_pass
 * http://127.0.0.1:<port>` and `allow <cidr>;` are read from it. Undefined when there is none.
 */
export function webFrontOf(rwDir: string, log: (m: string) => void = () => undefined): WebFront | undefined {
  let rc: string;
  try {
    rc = fs.readFileSync(path.join(rwDir, "config", "rc.local"), "utf8");
  } catch {
    return undefined;
  }
  const m = /\bln\s+-s\w*\s+(\/rw\/\S+)\s+\/etc\/nginx\/\S+/.exec(rc);
  if (!m) return undefined;
  let conf: string;
  try {
    conf = fs.readFileSync(path.join(rwDir, m[1].slice("/rw/".length)), "utf8");
  } catch {
    return undefined;
  }
  // TLS is nginx's own work, which this model (a port forward to the receiver) cannot stand in for.
  if (/^\s*listen\s+[^;]*\bssl\b/m.test(conf)) {
    log(`${m[1]}: an HTTPS front (listen ... ssl) is not modelled: no webhook front`);
    return undefined;
  }
  const port = /^\s*listen\s+(?:(?:\d{1,3}\.){3}\d{1,3}:|\[::\]:)?(\d{1,5})\s*;/m.exec(conf);
  const target = /proxy_pass\s+http:\/\/127\.0\.0\.1:(\d{1,5})\s*;/.exec(conf);
  if (!port || !target) {
    log(`${m[1]}: no listen port or loopback proxy_pass: no webhook front`);
    return undefined;
  }
  const allow = [...conf.matchAll(/^\s*allow\s+(\S+)\s*;/gm)].map((x) => x[1]);
  const bad = allow.filter((c) => !CIDR.test(c) && !/^(?:\d{1,3}\.){3}\d{1,3}$/.test(c));
  if (bad.length) {
    log(`${m[1]}: allow ranges this model cannot apply (${bad.join(", ")}): no webhook front`);
    return undefined;
  }
  const denyAll = /^\s*deny\s+all\s*;/m.test(conf);
  if (denyAll && allow.length === 0) return undefined;
  return { port: Number(port[1]), target: Number(target[1]), allow: denyAll ? allow : [] };
}

function sh(cmd: string, args: string[], input?: string): void {
  try {
    execFileSync(cmd, args, { input, stdio: ["pipe", "ignore", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    const what = [cmd, ...args].join(" ").split("\n")[0].slice(0, 120);
    throw new Error(`${what}: ${err.stderr?.toString().trim() || err.message}`);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Namespaces, veths and rules of one sim instance, kept in line with the running VMs. */
export class SimNetwork {
  readonly uplink: Uplink;
  private readonly slotFile: string;
  private readonly namespaces = new Set<string>();
  private readonly linked = new Map<string, string>();
  private readonly applied = new Map<string, string>();
  /** VM name → qid, as last synced (to find what a deleted namespace took with it). */
  private readonly qidOf = new Map<string, number>();
  private uplinkUp = false;

  constructor(private readonly log: (m: string) => void) {
    fs.mkdirSync(SLOTS_DIR, { recursive: true });
    for (let slot = 0; slot < 256; slot++) {
      const f = path.join(SLOTS_DIR, String(slot));
      try {
        fs.writeFileSync(f, `${process.pid}\n`, { flag: "wx" });
      } catch {
        const owner = Number(fs.readFileSync(f, "utf8").trim());
        if (Number.isInteger(owner) && owner > 0 && pidAlive(owner)) continue;
        SimNetwork.cleanSlot(slot);
        fs.rmSync(f, { force: true });
        try {
          fs.writeFileSync(f, `${process.pid}\n`, { flag: "wx" });
        } catch {
          continue;
        }
      }
      this.slotFile = f;
      this.uplink = uplinkOf(slot);
      return;
    }
    throw new Error("qubes-sim: no free network slot (256 sims running on this host?)");
  }

  /** Remove what a dead sim left in a slot (its namespaces and uplink). */
  private static cleanSlot(slot: number): void {
    const prefix = `qsim${slot}-`;
    const names = fs.existsSync("/run/netns") ? fs.readdirSync("/run/netns").filter((n) => n.startsWith(prefix)) : [];
    for (const n of names) {
      try {
        sh("ip", ["netns", "del", n]);
      } catch {
        /* gone already */
      }
    }
    try {
      sh("ip", ["link", "del", `qsim${slot}`]);
    } catch {
      /* gone with its namespace */
    }
  }

  nsName(qid: number): string {
    return `qsim${this.uplink.slot}-${qid}`;
  }

  nsPath(qid: number): string {
    return `/run/netns/${this.nsName(qid)}`;
  }

  /** Bring the namespaces, links and rules in line with the running VMs. */
  sync(vms: NetVm[], front?: WebFront): void {
    for (const v of vms) this.qidOf.set(v.name, v.qid);
    const want = new Map(vms.map((v) => [this.nsName(v.qid), v]));
    const byName = new Map(vms.map((v) => [v.name, v]));
    for (const ns of [...this.namespaces]) {
      if (want.has(ns)) continue;
      this.delNs(ns);
    }
    for (const [ns] of want) {
      if (this.namespaces.has(ns)) continue;
      sh("ip", ["netns", "add", ns]);
      this.namespaces.add(ns);
    }
    const plan = planNetwork(vms, this.uplink, front);
    // Links: (re)made when missing or pointing at another netvm.
    for (const v of vms) {
      const want = plan.links.get(v.name);
      const have = this.linked.get(v.name);
      if (have === want) continue;
      if (have) {
        try {
          sh("ip", ["-n", this.nsName(v.qid), "link", "del", "eth0"]);
        } catch {
          /* went with the old netvm */
        }
        this.linked.delete(v.name);
      }
      if (want) {
        const nv = byName.get(want)!;
        sh("ip", ["-n", this.nsName(nv.qid), "link", "add", `vif${v.qid}`, "type", "veth", "peer", "name", "eth0", "netns", this.nsName(v.qid)]);
        this.linked.set(v.name, want);
        this.applied.delete(want);
      }
      this.applied.delete(v.name);
    }
    if (plan.uplinkVm && !this.uplinkUp) {
      const u = this.uplink;
      const card = byName.get(plan.uplinkVm)!;
      sh("ip", ["link", "add", u.hostIf, "type", "veth", "peer", "name", "eth0", "netns", this.nsName(card.qid)]);
      sh("ip", ["addr", "add", `${u.internet}/24`, "dev", u.hostIf]);
      sh("ip", ["addr", "add", `${u.github}/32`, "dev", u.hostIf]);
      sh("ip", ["link", "set", u.hostIf, "up"]);
      sh("ip", ["route", "replace", `${u.torExit}/32`, "via", u.sysNet, "dev", u.hostIf, "onlink"]);
      this.uplinkUp = true;
      this.applied.delete(card.name);
    }
    for (const v of vms) {
      const script = plan.scripts.get(v.name)!;
      if (this.applied.get(v.name) === script) continue;
      sh("nsenter", [`--net=${this.nsPath(v.qid)}`, "--", "sh", "-c", script]);
      this.applied.set(v.name, script);
    }
  }

  private delNs(ns: string): void {
    try {
      sh("ip", ["netns", "del", ns]);
    } catch (e) {
      this.log(`cannot delete network namespace ${ns}: ${(e as Error).message}`);
    }
    this.namespaces.delete(ns);
    const qid = Number(ns.slice(ns.indexOf("-") + 1));
    // Links ending in the deleted namespace are gone; so is the uplink when it was sys-net's.
    for (const [client, netvm] of [...this.linked]) {
      if (this.qidOf.get(client) === qid || this.qidOf.get(netvm) === qid) {
        this.linked.delete(client);
        this.applied.delete(client);
        this.applied.delete(netvm);
      }
    }
    for (const [vm, q] of this.qidOf) {
      if (q !== qid) continue;
      this.applied.delete(vm);
      if (vm === NET_CARD_VM) this.uplinkUp = false;
    }
  }


  /** Delete everything and release the slot. */
  close(): void {
    for (const ns of [...this.namespaces]) this.delNs(ns);
    try {
      sh("ip", ["link", "del", this.uplink.hostIf]);
    } catch {
      /* went with sys-net's namespace */
    }
    fs.rmSync(this.slotFile, { force: true });
  }
}
