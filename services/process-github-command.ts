/**
 * qubesbuilder.ProcessGithubCommand (build VM): a clearsigned command from a GitHub comment.
 * Strict framing → gpgv against only the configured command keys → replay/age checks →
 * grammar (v1 and v2 commands) → per-maintainer authorisation → configured action under the
 * builder lock. Every rejection is journaled and sent to the notifier. See services/README.md.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { z } from "zod";
import { type BuilderLine } from "../contracts/buildersList";
import { FINGERPRINT_RE } from "../contracts/fingerprint";
import { COMMAND_NAMES, type CommandName, ProcessCommandConfig } from "../contracts/serviceConfig/processGithubCommand";
import { builderValues, fillArgv, fillEnv, readBuildersList, startUnderLock } from "./lib/builders";
import { homeDir, loadConfig, stateDir } from "./lib/config";
import { acquireLock, appendJsonLine, readStdinLimited, writeFileAtomic } from "./lib/files";
import { log } from "./lib/log";
import { runMain } from "./lib/main";
import { ConfigError, EXIT, printable, Refusal } from "./lib/outcome";
import { requireProgram, run } from "./lib/proc";

const SERVICE = "qubesbuilder.ProcessGithubCommand";


export { COMMAND_NAMES, type CommandName, ProcessCommandConfig };
type Config = z.infer<typeof ProcessCommandConfig>;

// ---------------------------------------------------------------- framing

const HASHES: Record<string, number> = { SHA256: 8, SHA384: 9, SHA512: 10 };
// Words start with [A-Za-z0-9_.]; `-` and `,` only inside a word (`,` separates Upload-component
// distributions, as builder reports write them; the grammar checks each). No double/leading/trailing spaces.
const COMMAND_LINE_RE = /^[A-Za-z0-9_.][A-Za-z0-9_.,-]*(?: [A-Za-z0-9_.][A-Za-z0-9_.,-]*)*$/;

function crc24(data: Buffer): number {
  let crc = 0xb704ce;
  for (const byte of data) {
    crc ^= byte << 16;
    for (let i = 0; i < 8; i++) {
      crc <<= 1;
      if (crc & 0x1000000) crc ^= 0x1864cfb;
    }
  }
  return crc & 0xffffff;
}

/**
 * Checks that `sig` is exactly one v4 canonical-text signature packet with the given hash, and
 * returns the creation time (epoch seconds) from its hashed subpacket area.
 */
function checkSignaturePacket(sig: Buffer, hashAlgo: number): number {
  if (sig.length < 2 || !(sig[0] & 0x80)) throw new Refusal("signature is not an OpenPGP packet");
  let tag: number;
  let len: number;
  let hdr: number;
  if (sig[0] & 0x40) {
    tag = sig[0] & 0x3f;
    const l0 = sig[1];
    if (l0 < 192) [len, hdr] = [l0, 2];
    else if (l0 < 224) [len, hdr] = [((l0 - 192) << 8) + sig[2] + 192, 3];
    else if (l0 === 255) [len, hdr] = [sig.readUInt32BE(2), 6];
    else throw new Refusal("partial-length signature packet");
  } else {
    tag = (sig[0] >> 2) & 0x0f;
    const lt = sig[0] & 3;
    if (lt === 0) [len, hdr] = [sig[1], 2];
    else if (lt === 1) [len, hdr] = [sig.readUInt16BE(1), 3];
    else if (lt === 2) [len, hdr] = [sig.readUInt32BE(1), 5];
    else throw new Refusal("indeterminate-length packet");
  }
  if (tag !== 2) throw new Refusal("not a signature packet");
  if (hdr + len !== sig.length) throw new Refusal("signature block must hold exactly one packet");
  const body = sig.subarray(hdr);
  if (body.length < 6) throw new Refusal("truncated signature packet");
  if (body[0] !== 4) throw new Refusal("not a version 4 signature");
  if (body[1] !== 0x01) throw new Refusal("not a canonical-text signature");
  if (body[3] !== hashAlgo) throw new Refusal("signature hash does not match the Hash: header");
  const hashedLen = body.readUInt16BE(4);
  if (6 + hashedLen > body.length) throw new Refusal("signature's hashed subpacket area overruns the packet");
  return hashedCreationTime(body.subarray(6, 6 + hashedLen));
}

/**
 * The signature creation time from a v4 hashed subpacket area (RFC 4880 5.2.3.1). Exactly one
 * creation-time subpacket is required there: the unhashed area is not covered by the signature,
 * so a time found only there, or two differing ones, would let the same signature read as new.
 */
export function hashedCreationTime(area: Buffer): number {
  const times: number[] = [];
  let i = 0;
  while (i < area.length) {
    let len: number;
    const l0 = area[i];
    if (l0 < 192) [len, i] = [l0, i + 1];
    else if (l0 < 255) {
      if (i + 1 >= area.length) throw new Refusal("malformed hashed subpacket area");
      [len, i] = [((l0 - 192) << 8) + area[i + 1] + 192, i + 2];
    } else {
      if (i + 4 >= area.length) throw new Refusal("malformed hashed subpacket area");
      [len, i] = [area.readUInt32BE(i + 1), i + 5];
    }
    if (len < 1 || i + len > area.length) throw new Refusal("malformed hashed subpacket area");
    const type = area[i] & 0x7f;
    if (type === 2) {
      if (len !== 5) throw new Refusal("malformed signature creation time subpacket");
      times.push(area.readUInt32BE(i + 1));
    }
    i += len;
  }
  if (times.length !== 1) throw new Refusal(`signature must have exactly one hashed creation time (found ${times.length})`);
  return times[0];
}

export interface Framed {
  command: string;
  hash: string;
  signature: Buffer;
  /** Creation time (epoch seconds) from the signature's hashed subpackets. */
  signedAtSeconds: number;
  text: string;
}

/** Strict framing of the clearsigned block, before any cryptography. */
export function parseFraming(input: Buffer): Framed {
  if (input.length > 8192) throw new Refusal("input larger than 8192 bytes");
  const text = input.toString("latin1");
  if (!/^[\n\x20-\x7e]*$/.test(text)) throw new Refusal("input is not printable ASCII");
  if (!text.endsWith("\n")) throw new Refusal("input must end with a newline");
  const m =
    /^-----BEGIN PGP SIGNED MESSAGE-----\nHash: (SHA256|SHA384|SHA512)\n\n([^\n]*)\n-----BEGIN PGP SIGNATURE-----\n\n((?:[A-Za-z0-9+/=]+\n)+)-----END PGP SIGNATURE-----\n$/.exec(
      text,
    );
  if (!m) throw new Refusal("not a single clearsigned block with one command line");
  const [, hash, command, armor] = m;
  if (command.length > 255) throw new Refusal("command line longer than 255 bytes");
  if (!COMMAND_LINE_RE.test(command)) throw new Refusal("command line has bad characters or spacing");
  const lines = armor.split("\n").filter((l) => l !== "");
  let crcLine: string | undefined;
  if (lines.length > 1 && /^=[A-Za-z0-9+/]{4}$/.test(lines[lines.length - 1])) crcLine = lines.pop();
  const b64 = lines.join("");
  if (!lines.every((l) => /^[A-Za-z0-9+/]+={0,2}$/.test(l)) || b64.length % 4 !== 0 || b64.length < 88) throw new Refusal("bad signature armor");
  const sig = Buffer.from(b64, "base64");
  if (sig.toString("base64") !== b64) throw new Refusal("non-canonical base64 in signature");
  if (crcLine) {
    const crc = Buffer.from(crcLine.slice(1), "base64");
    if (crc.length !== 3 || crc.readUIntBE(0, 3) !== crc24(sig)) throw new Refusal("armor checksum mismatch");
  }
  const signedAtSeconds = checkSignaturePacket(sig, HASHES[hash]);
  return { command, hash, signature: sig, signedAtSeconds, text };
}

// ---------------------------------------------------------------- grammar

export interface Command {
  name: CommandName;
  release: string;
  component?: string;
  commit?: string;
  repo?: string;
  dists?: string[];
  template?: string;
  version?: string;
  timestamp?: string;
}

const RELEASE_RE = /^r?([0-9]+(?:\.[0-9]+)*)$/;
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/; // components and templates: no `.`, no `/`
const TS_RE = /^[0-9]{12}$/;

function field(value: string | undefined, re: RegExp, what: string): string {
  if (value === undefined || !re.test(value)) throw new Refusal(`bad ${what}: ${printable(value ?? "(missing)")}`);
  return value;
}
function release(v: string | undefined): string {
  return (RELEASE_RE.exec(field(v, RELEASE_RE, "release")) as RegExpExecArray)[1];
}

export function parseCommand(line: string): Command {
  const w = line.split(" ");
  const name = w[0];
  const nargs = (n: number) => {
    if (w.length !== n + 1) throw new Refusal(`${name} takes ${n} arguments`);
  };
  switch (name) {
    case "Upload": {
      // Upload <component> <commit> <release> <repo> [<dist> ...] repo
      if (w.length < 6 || w[w.length - 1] !== "repo") throw new Refusal("Upload: expected `Upload <component> <commit> <release> <repo> [dists] repo`");
      const repo = field(w[4], /^(current|security-testing|templates-itl|templates-community)$/, "repository");
      const dists = w.slice(5, -1).map((d) => field(d, /^(dom0|vm)-[a-z][a-z0-9_-]*$/, "distribution"));
      return { name, component: field(w[1], NAME_RE, "component"), commit: field(w[2], /^[0-9a-f]{40}$/, "commit"), release: release(w[3]), repo, dists };
    }
    case "Build-template":
      nargs(3);
      return { name, release: release(w[1]), template: field(w[2], NAME_RE, "template"), timestamp: field(w[3], TS_RE, "timestamp") };
    case "Upload-component": {
      nargs(5);
      const d = w[5] === "all" ? ["all"] : w[5].split(",").map((x) => field(x, /^(host|vm)-[a-z][a-z0-9_-]*$/, "distribution"));
      return {
        name,
        release: release(w[1]),
        component: field(w[2], NAME_RE, "component"),
        commit: field(w[3], /^[0-9a-f]{40}$/, "commit"),
        repo: field(w[4], /^(current|security-testing)$/, "repository"),
        dists: d,
      };
    }
    case "Upload-template":
      nargs(4);
      return {
        name,
        release: release(w[1]),
        template: field(w[2], NAME_RE, "template"),
        version: field(w[3], /^[0-9]+(\.[0-9]+)*-[0-9]{12}$/, "template version"),
        repo: field(w[4], /^(templates-itl|templates-community)$/, "repository"),
      };
    case "Build-iso":
      nargs(3);
      return { name, release: release(w[1]), version: field(w[2], /^[0-9A-Za-z_][0-9A-Za-z_.-]*$/, "iso version"), timestamp: field(w[3], TS_RE, "timestamp") };
    default:
      throw new Refusal(`unknown command ${printable(name ?? "", 40)}`);
  }
}

/** `YYYYmmddHHMM` (UTC) → epoch ms. */
export function commandTime(ts: string): number {
  const t = Date.UTC(+ts.slice(0, 4), +ts.slice(4, 6) - 1, +ts.slice(6, 8), +ts.slice(8, 10), +ts.slice(10, 12));
  if (Number.isNaN(t)) throw new Refusal("bad timestamp");
  return t;
}

const inList = (l: "_all_" | string[], v: string) => l === "_all_" || l.includes(v);

export function authorize(cfg: Config, signer: string, c: Command): void {
  const m = cfg.maintainers[signer];
  if (!m) throw new Refusal(`signer ${signer} is not a maintainer`);
  const releases = m.releases === "_all_" ? m.releases : m.releases.map((r) => r.replace(/^r/, ""));
  if (!inList(releases, c.release)) throw new Refusal(`signer ${signer} may not act on release ${c.release}`);
  if (c.component !== undefined && !inList(m.components, c.component)) throw new Refusal(`signer ${signer} may not upload component ${c.component}`);
  if (c.template !== undefined && !inList(m.templates, c.template)) throw new Refusal(`signer ${signer} may not act on template ${c.template}`);
  if (c.name === "Build-iso" && !m.iso) throw new Refusal(`signer ${signer} may not build ISOs`);
  for (const d of c.dists ?? []) {
    if (m.distributions !== "_all_" && (d === "all" || !m.distributions.includes(d))) throw new Refusal(`signer ${signer} may not upload for ${d}`);
  }
}

// ---------------------------------------------------------------- verification

interface Verified {
  signer: string;
  signedAt: number;
}

async function verify(cfg: Config, framed: Framed): Promise<Verified> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-cmd-"));
  try {
    const env = { ...process.env, GNUPGHOME: tmp };
    const imp = await run(["gpg", "--batch", "--no-auto-key-retrieve", "--import", cfg.trustedKeysFile], { env, timeoutMs: 30000 });
    if (imp.code !== 0) throw new ConfigError(`cannot import ${cfg.trustedKeysFile}: ${imp.stderr.trim().slice(0, 300)}`);
    const keyring = path.join(tmp, "trusted.gpg");
    const exp = await run(["gpg", "--batch", "--export", "--output", keyring], { env, timeoutMs: 30000 });
    if (exp.code !== 0) throw new ConfigError("cannot export the trusted command keys");
    const msg = path.join(tmp, "command.asc");
    fs.writeFileSync(msg, framed.text);
    const v = await run(["gpgv", "--homedir", tmp, "--status-fd", "1", "--keyring", keyring, msg], { env, timeoutMs: 30000 });
    const status = v.stdout.split("\n").filter((l) => l.startsWith("[GNUPG:] "));
    const has = (k: string) => status.filter((l) => l.split(" ")[1] === k);
    const bad = ["BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY"].filter((k) => has(k).length > 0);
    const valid = has("VALIDSIG");
    if (v.code !== 0 || bad.length > 0 || valid.length !== 1 || has("GOODSIG").length !== 1) {
      throw new Refusal(`invalid signature${bad.length ? ` (${bad.join(", ")})` : ""}`);
    }
    // VALIDSIG <fpr> <date> <sig-timestamp> <expire> <version> <reserved> <pubkey-algo> <hash-algo> <class> <primary-fpr>
    const f = valid[0].split(" ");
    const primary = (f[11] ?? f[2] ?? "").toUpperCase();
    if (!FINGERPRINT_RE.test(primary)) throw new Refusal("signer fingerprint is not a v4 fingerprint");
    // The replay key uses the time read from the hashed subpackets: it must be the one gpgv verified.
    if (f[4] !== String(framed.signedAtSeconds)) throw new Refusal("signature time reported by gpgv differs from the signed creation time");
    return { signer: primary, signedAt: framed.signedAtSeconds * 1000 };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The replay key of a verified command: what the signature covers, nothing of its encoding.
 * Signer (primary fingerprint of the key gpgv verified with), creation time (from the hashed
 * subpackets, checked equal to gpgv's) and the signed text are all inside the signed hash or
 * are the verifying key, so an unhashed subpacket, another packet length form, another armour
 * (line length, checksum) or even a fresh signature of the same text by the same key in the same
 * second all give the same key. The signed text of a canonical-text signature over our one-line
 * command is that line itself: framing refused trailing whitespace and dash-escaping.
 */
export function replayKey(signer: string, signedAtSeconds: number, command: string): string {
  const text = crypto.createHash("sha256").update(command, "latin1").digest("hex");
  return crypto.createHash("sha256").update(`qbi-command-replay-v1\0${signer}\0${signedAtSeconds}\0${text}`).digest("hex");
}

/**
 * Refuses a command seen before; remembers its replay key until the signature would be too old
 * anyway. `legacy` is the digest of the packet bytes under which earlier versions remembered a
 * signature: such entries are still honoured until they expire.
 */
async function checkReplay(dir: string, key: string, legacy: string, keepUntil: number): Promise<void> {
  const file = path.join(dir, "seen-signatures.json");
  const release = await acquireLock(path.join(dir, "seen.lock"), 30000);
  try {
    let seen: Record<string, number> = {};
    let raw: string | null = null;
    try {
      raw = fs.readFileSync(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    if (raw !== null) {
      // A store that cannot be read stops every command (exit 3) rather than forgetting what was used.
      let data: unknown = null;
      try {
        data = JSON.parse(raw);
      } catch {
        data = null;
      }
      const parsed = z.record(z.string(), z.number()).safeParse(data);
      if (!parsed.success) throw new Error(`replay store ${file} is corrupt; fix or remove it after checking ${path.join(dir, "commands.jsonl")}`);
      seen = parsed.data;
    }
    const now = Date.now();
    for (const [k, until] of Object.entries(seen)) if (until < now) delete seen[k];
    if (seen[`v1:${key}`] !== undefined || seen[legacy] !== undefined) throw new Refusal("replayed command (signature already used)");
    seen[`v1:${key}`] = keepUntil;
    writeFileAtomic(file, JSON.stringify(seen));
  } finally {
    release();
  }
}

// ---------------------------------------------------------------- main

async function notify(cfg: Config, record: Record<string, unknown>): Promise<void> {
  if (!cfg.notify) return;
  try {
    const r = await run(cfg.notify, { input: `${JSON.stringify(record)}\n`, timeoutMs: 30000 });
    if (r.code !== 0) log(SERVICE, `notifier exited with ${r.code}: ${printable(r.stderr.trim(), 200)}`);
  } catch (e) {
    log(SERVICE, `notifier failed: ${(e as Error).message}`);
  }
}

/** Runs an accepted command's action: per builder under its lock, or once for the VM. */
function startAction(
  cfg: Config,
  raw: Config["actions"][CommandName] & object,
  c: Command,
  line: string,
  signer: string,
  builders: BuilderLine[],
  at: { state: string; logDir: string; journal: string; now: number },
): void {
  const action = Array.isArray(raw) ? { command: raw, scope: "builder" as const, lock: "{dir}/builder.lock", env: {} } : raw;
  const flock = requireProgram(cfg.flockProgram);
  fs.mkdirSync(at.logDir, { recursive: true, mode: 0o700 });
  const values: Record<string, string> = {
    release: c.release, signer, component: c.component ?? "", commit: c.commit ?? "", repo: c.repo ?? "",
    dists: (c.dists ?? []).join(","), template: c.template ?? "", version: c.version ?? "", timestamp: c.timestamp ?? "",
  };
  // Handlers that read the command themselves (v1) get the verified line in a file of their own.
  if (action.command.some((a) => a.includes("{commandFile}"))) {
    const dir = path.join(at.state, "command-files");
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const f of fs.readdirSync(dir)) {
      if (fs.statSync(path.join(dir, f)).mtimeMs < at.now - 86400000) fs.rmSync(path.join(dir, f), { force: true });
    }
    values.commandFile = path.join(dir, `${Math.floor(at.now / 1000)}-${process.pid}.cmd`);
    fs.writeFileSync(values.commandFile, `${line}\n`, { mode: 0o600 });
  }
  const env = { QBI_COMMAND: JSON.stringify({ ...c, signer }) };
  const targets = action.scope === "vm" ? [builders[0]] : builders;
  for (const b of targets) {
    const all = action.scope === "vm" ? values : { ...values, ...builderValues(b) };
    const argv = fillArgv(action.command, all, { dists: c.dists ?? [] });
    const lock = action.scope === "vm" || !action.lock ? null : fillArgv([action.lock], all)[0];
    const logFile = path.join(at.logDir, `${Math.floor(at.now / 1000)}-${process.pid}-${c.name}-${b.release}.log`);
    const pid = startUnderLock({ flock, lock, argv, env: { ...fillEnv(action.env, all), ...env }, cwd: action.scope === "vm" ? homeDir() : b.dir, logFile });
    appendJsonLine(at.journal, { outcome: "started", signer, command: line, release: b.release, dir: action.scope === "vm" ? null : b.dir, argv, lock, pid, log: logFile });
  }
}

async function main(): Promise<number> {
  const cfg = loadConfig("process-github-command", ProcessCommandConfig);
  const home = homeDir();
  const state = stateDir(path.join(home, ".local/state/qubes-build-infra/process-github-command"));
  const journal = path.join(state, "commands.jsonl");
  const logDir = cfg.logDir ?? path.join(home, "builder-github-logs");
  const ctx: { signer?: string; command?: string } = {};
  try {
    const { data, overflow } = await readStdinLimited(8192);
    if (overflow) throw new Refusal("input larger than 8192 bytes");
    const framed = parseFraming(data);
    ctx.command = framed.command;
    const v = await verify(cfg, framed);
    ctx.signer = v.signer;
    const now = Date.now();
    if (v.signedAt > now + cfg.timestampFutureSeconds * 1000) throw new Refusal("signature made in the future");
    if (v.signedAt < now - cfg.maxSignatureAgeSeconds * 1000) throw new Refusal("signature too old");
    const legacy = crypto.createHash("sha256").update(framed.signature).digest("hex");
    await checkReplay(state, replayKey(v.signer, framed.signedAtSeconds, framed.command), legacy, v.signedAt + cfg.maxSignatureAgeSeconds * 1000 + 86400000);
    const c = parseCommand(framed.command);
    if (c.timestamp !== undefined) {
      const t = commandTime(c.timestamp);
      if (t < now - cfg.timestampPastSeconds * 1000 || t > now + cfg.timestampFutureSeconds * 1000) throw new Refusal(`timestamp ${c.timestamp} outside the accepted window`);
    }
    authorize(cfg, v.signer, c);
    // Every build VM receives every comment: a command for builders this VM does not have (another
    // release, or the other builder version's command) is journaled and left to the VMs that do.
    const action = cfg.actions[c.name];
    const list = cfg.buildersList ?? path.join(home, ".config/qubes-builder-github/builders.list");
    const builders = readBuildersList(list).filter((b) => b.release === c.release);
    if (builders.length === 0 || !action) {
      const reason = builders.length === 0 ? `no builder for release ${c.release}` : `no builder here takes ${c.name} (no action for it)`;
      appendJsonLine(journal, { outcome: "not-for-this-vm", signer: v.signer, command: framed.command, reason });
      log(SERVICE, `${reason}; ignored`);
      return EXIT.OK;
    }
    startAction(cfg, action, c, framed.command, v.signer, builders, { state, logDir, journal, now });
    log(SERVICE, `accepted ${c.name} from ${v.signer}`);
    return EXIT.OK;
  } catch (e) {
    if (!(e instanceof Refusal)) throw e;
    const record = { service: SERVICE, outcome: "rejected", reason: e.message, signer: ctx.signer ?? null, command: ctx.command ?? null };
    appendJsonLine(journal, record);
    await notify(cfg, { time: new Date().toISOString(), ...record });
    throw e;
  }
}

if (require.main === module) runMain(SERVICE, main);
