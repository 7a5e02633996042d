/**
 * qubes.Gpg gate (keys VM): split-gpg server side. Signs only for configured build VMs whose
 * signing window (opened by qubesbuilder.LogReceived after their log was published) is open,
 * and only with a strict allowlist of gpg options. See services/README.md.
 *
 * Protocol: stdin line 1 = gpg options separated by single spaces (≤ 4096 bytes, `\n`
 * terminated); the rest of stdin = the data to sign. stdout = gpg's output (the signature),
 * stderr = gpg's messages (and status lines with `--status-fd 2`). Exit = gpg's exit code,
 * or 1 when refused, 2 on a configuration error.
 */
import { spawn } from "child_process";
import * as path from "path";
import { z } from "zod";
import { Refusal, acquireLock, appendJsonLine, fingerprint, loadConfig, log, printable, qrexecEnv, runMain, vmName } from "./lib/common";
import { readWindow, signingStateDir, writeWindow } from "./lib/window";

const SERVICE = "qubes.Gpg";

export const GpgGateConfig = z
  .object({
    /** Build VMs allowed to ask for signatures (QREXEC_REMOTE_DOMAIN). */
    clients: z.array(vmName).min(1),
    /** GNUPGHOME of the keys VM's keyring (default: gpg's default, ~/.gnupg). */
    gnupgHome: z.string().startsWith("/").optional(),
    /** Signing keys a client may select with -u; empty = any secret key of the keyring. */
    keys: z.array(fingerprint).default([]),
    /** Key used when the client gives no -u (default: gpg's default key). */
    defaultKey: fingerprint.optional(),
    /** Signatures allowed per window; unset = unlimited within the window's time. */
    maxSignaturesPerWindow: z.number().int().positive().optional(),
    maxInputBytes: z.number().int().positive().default(1024 * 1024 * 1024),
    gpgProgram: z.string().startsWith("/").optional(),
  })
  .strict();
type GpgGateConfig = z.infer<typeof GpgGateConfig>;

const FLAGS: Record<string, string> = {
  "--armor": "--armor",
  "-a": "--armor",
  "--no-armor": "--no-armor",
  "--detach-sign": "--detach-sign",
  "-b": "--detach-sign",
  "--clearsign": "--clearsign",
  "--clear-sign": "--clearsign",
  "--sign": "--sign",
  "-s": "--sign",
  "--textmode": "--textmode",
  "-t": "--textmode",
  "--quiet": "--quiet",
  "-q": "--quiet",
  "--no-verbose": "--no-verbose",
  "--no-secmem-warning": "--no-secmem-warning",
  "--batch": "--batch",
  "--no-tty": "--no-tty",
  "--yes": "--yes",
};
const VALUED: Record<string, { canon: string; re: RegExp }> = {
  "--local-user": { canon: "--local-user", re: /^(0x)?[0-9A-Fa-f]{40}$/ },
  "-u": { canon: "--local-user", re: /^(0x)?[0-9A-Fa-f]{40}$/ },
  "--status-fd": { canon: "--status-fd", re: /^2$/ },
  "--digest-algo": { canon: "--digest-algo", re: /^(SHA256|SHA384|SHA512)$/ },
};

/** Parses the client's option line into canonical gpg options, or throws Refusal. */
export function parseOptions(line: string): { args: string[]; localUser?: string } {
  if (line.length > 4096) throw new Refusal("option line too long");
  if (!/^[A-Za-z0-9 =_-]*$/.test(line)) throw new Refusal("option line has characters outside [A-Za-z0-9 =_-]");
  const tokens = line === "" ? [] : line.split(" ");
  const args: string[] = [];
  let localUser: string | undefined;
  const modes = new Set<string>();
  for (let i = 0; i < tokens.length; i++) {
    let tok = tokens[i];
    if (tok === "") throw new Refusal("empty option (double space)");
    let value: string | undefined;
    if (tok.startsWith("--") && tok.includes("=")) {
      value = tok.slice(tok.indexOf("=") + 1);
      tok = tok.slice(0, tok.indexOf("="));
    }
    // Combined short flags such as -sba (only value-less letters).
    if (/^-[abstq]{2,}$/.test(tok)) {
      for (const c of tok.slice(1)) {
        const f = FLAGS[`-${c}`];
        args.push(f);
        modes.add(f);
      }
      continue;
    }
    if (FLAGS[tok] && value === undefined) {
      args.push(FLAGS[tok]);
      modes.add(FLAGS[tok]);
      continue;
    }
    const v = VALUED[tok];
    if (!v) throw new Refusal(`option not allowed: ${printable(tok)}`);
    if (value === undefined) {
      value = tokens[++i];
      if (value === undefined) throw new Refusal(`option ${tok} needs a value`);
    }
    if (!v.re.test(value)) throw new Refusal(`bad value for ${tok}: ${printable(value)}`);
    if (v.canon === "--local-user") {
      if (localUser) throw new Refusal("only one --local-user");
      localUser = value.replace(/^0x/, "").toUpperCase();
      args.push(v.canon, localUser);
    } else args.push(v.canon, value);
  }
  const signing = modes.has("--sign") || modes.has("--detach-sign") || modes.has("--clearsign");
  if (!signing) throw new Refusal("one of --sign, --detach-sign, --clearsign is required");
  if (modes.has("--detach-sign") && modes.has("--clearsign")) throw new Refusal("--detach-sign and --clearsign exclude each other");
  return { args, localUser };
}

/** Reads stdin up to the first `\n` (≤ 4097 bytes); returns the line and what followed it. */
async function readFirstLine(): Promise<{ line: string; rest: Buffer }> {
  const stdin = process.stdin;
  const chunks: Buffer[] = [];
  let size = 0;
  for (;;) {
    const chunk = await new Promise<Buffer | null>((resolve) => {
      const onData = (d: Buffer) => {
        cleanup();
        stdin.pause();
        resolve(d);
      };
      const onEnd = () => {
        cleanup();
        resolve(null);
      };
      const cleanup = () => {
        stdin.off("data", onData);
        stdin.off("end", onEnd);
      };
      stdin.on("data", onData);
      stdin.on("end", onEnd);
      stdin.resume();
    });
    if (!chunk) throw new Refusal("no option line");
    chunks.push(chunk);
    size += chunk.length;
    const all = Buffer.concat(chunks);
    const nl = all.indexOf(0x0a);
    if (nl !== -1 && nl <= 4096) return { line: all.subarray(0, nl).toString("latin1"), rest: all.subarray(nl + 1) };
    if (size > 4096) throw new Refusal("option line too long");
  }
}

function checkWindow(cfg: GpgGateConfig, dir: string, vm: string): void {
  const w = readWindow(dir, vm);
  const now = Date.now();
  if (!w) throw new Refusal(`no published log acknowledged for ${vm}: signing window closed`);
  if (now >= w.expiresAt || now < w.openedAt - 5000) throw new Refusal(`signing window for ${vm} closed (expired ${new Date(w.expiresAt).toISOString()})`);
  if (cfg.maxSignaturesPerWindow !== undefined && w.signatures >= cfg.maxSignaturesPerWindow) {
    throw new Refusal(`signing window for ${vm} used up (${w.signatures} signatures)`);
  }
  writeWindow(dir, { ...w, signatures: w.signatures + 1 });
}

async function main(): Promise<number> {
  const q = qrexecEnv();
  const cfg = loadConfig("gpg-gate", GpgGateConfig);
  const dir = signingStateDir();
  const journal = path.join(dir, "gpg-gate.jsonl");
  const refuse = (reason: string): never => {
    appendJsonLine(journal, { caller: q.remoteDomain, decision: "refused", reason });
    throw new Refusal(reason);
  };
  if (!cfg.clients.includes(q.remoteDomain)) refuse(`caller ${printable(q.remoteDomain)} is not an allowed client`);
  let opts: { args: string[]; localUser?: string };
  let rest: Buffer;
  try {
    const first = await readFirstLine();
    rest = first.rest;
    opts = parseOptions(first.line);
  } catch (e) {
    return refuse((e as Error).message);
  }
  const key = opts.localUser ?? cfg.defaultKey;
  if (cfg.keys.length > 0 && (!key || !cfg.keys.includes(key))) refuse(`signing key ${key ?? "(default)"} is not allowed`);
  const release = await acquireLock(path.join(dir, "windows", `${q.remoteDomain}.lock`), 10000);
  try {
    checkWindow(cfg, dir, q.remoteDomain);
  } catch (e) {
    release();
    return refuse((e as Error).message);
  }
  release();
  appendJsonLine(journal, { caller: q.remoteDomain, decision: "allowed", options: opts.args });

  const args = ["--batch", "--no-tty", "--no-auto-key-retrieve", ...opts.args];
  if (!opts.localUser && cfg.defaultKey) args.push("--local-user", cfg.defaultKey);
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (cfg.gnupgHome) env.GNUPGHOME = cfg.gnupgHome;
  const child = spawn(cfg.gpgProgram ?? "gpg", args, { env, stdio: ["pipe", "inherit", "inherit"] });
  child.stdin.on("error", () => undefined);
  let size = rest.length;
  let tooBig = size > cfg.maxInputBytes;
  if (!tooBig) child.stdin.write(rest);
  process.stdin.on("data", (d: Buffer) => {
    size += d.length;
    if (size > cfg.maxInputBytes) {
      tooBig = true;
      child.kill("SIGKILL");
      process.stdin.destroy();
      return;
    }
    if (!child.stdin.write(d)) {
      process.stdin.pause();
      child.stdin.once("drain", () => process.stdin.resume());
    }
  });
  process.stdin.on("end", () => child.stdin.end());
  process.stdin.resume();
  const code = await new Promise<number>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (c) => resolve(c ?? 2));
  });
  if (tooBig) throw new Refusal(`input larger than ${cfg.maxInputBytes} bytes`);
  if (code !== 0) log(SERVICE, `gpg exited with ${code}`);
  return code;
}

if (require.main === module) runMain(SERVICE, main);
