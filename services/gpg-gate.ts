/**
 * qubes.Gpg gate (keys VM): split-gpg server side of sign-if-logged. It signs only bytes whose
 * sha256 the logs VM logged in its transparency log as a signature request of this build VM,
 * with this key, and handed to this keys VM with proofs it verified itself
 * (qubesbuilder.LogReceived): one signature per logged entry, before the entry expires, with a
 * strict allowlist of gpg options. The data is spooled and hashed first, so the key never
 * touches unlogged bytes. `--export` of a configured public key needs no log. See
 * services/README.md.
 *
 * Protocol: stdin line 1 = gpg options separated by single spaces (≤ 4096 bytes, `\n`
 * terminated); the rest of stdin = the data to sign. stdout = gpg's output (the signature),
 * stderr = gpg's messages (and status lines with `--status-fd 2`). Exit = gpg's exit code,
 * or 1 when refused (the reason on stderr and in the journal), 2 on a configuration error.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { GpgGateConfig } from "../contracts/serviceConfig/gpgGate";
import { loadConfig } from "./lib/config";
import { appendJsonLine } from "./lib/files";
import { log } from "./lib/log";
import { runMain } from "./lib/main";
import { printable, Refusal } from "./lib/outcome";
import { qrexecEnv } from "./lib/proc";
import { awaitEntry, refuseOnAlarm, signingStateDir } from "./lib/signing";
import { spool } from "./lib/spool";

const SERVICE = "qubes.Gpg";

export { GpgGateConfig };
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

/** A parsed request: a signature, or the export of one public key. */
export type GateRequest = { mode: "sign"; args: string[]; localUser?: string } | { mode: "export"; args: string[]; key: string };

const EXPORT_FLAGS = new Set(["--armor", "--batch", "--no-tty", "--quiet", "--yes", "--no-verbose", "--no-secmem-warning"]);

/**
 * `--export <fingerprint>` with harmless flags only: public keys of the configured signing keys
 * (builderv2's sign and publish plugins import them into their own keyrings). Never secret keys.
 */
function parseExport(tokens: string[]): GateRequest {
  const args: string[] = [];
  let key: string | undefined;
  for (const tok of tokens) {
    if (tok === "--export") continue;
    const flag = FLAGS[tok];
    if (flag && EXPORT_FLAGS.has(flag)) {
      args.push(flag);
      continue;
    }
    if (/^(0x)?[0-9A-Fa-f]{40}$/.test(tok) && key === undefined) {
      key = tok.replace(/^0x/, "").toUpperCase();
      continue;
    }
    throw new Refusal(`option not allowed with --export: ${printable(tok)}`);
  }
  if (!key) throw new Refusal("--export needs exactly one key fingerprint");
  return { mode: "export", args: [...args, "--export", key], key };
}

/** Parses the client's option line into canonical gpg options, or throws Refusal. */
export function parseOptions(line: string): GateRequest {
  if (line.length > 4096) throw new Refusal("option line too long");
  if (!/^[A-Za-z0-9 =_-]*$/.test(line)) throw new Refusal("option line has characters outside [A-Za-z0-9 =_-]");
  const tokens = line === "" ? [] : line.split(" ");
  if (tokens.includes("")) throw new Refusal("empty option (double space)");
  if (tokens.includes("--export")) return parseExport(tokens);
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
  return { mode: "sign", args, localUser };
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

function gpgEnv(cfg: GpgGateConfig): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (cfg.gnupgHome) env.GNUPGHOME = cfg.gnupgHome;
  return env;
}

/** Runs gpg with stdin from `input` (a file) or nothing; stdout and stderr go to the caller. */
function runGpg(cfg: GpgGateConfig, args: string[], input?: string): Promise<number> {
  const child = spawn(cfg.gpgProgram ?? "gpg", ["--batch", "--no-tty", "--no-auto-key-retrieve", ...args], {
    env: gpgEnv(cfg),
    stdio: [input ? "pipe" : "ignore", "inherit", "inherit"],
  });
  if (input && child.stdin) {
    child.stdin.on("error", () => undefined);
    fs.createReadStream(input).pipe(child.stdin);
  }
  return new Promise<number>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (c) => resolve(c ?? 2));
  });
}

async function main(): Promise<number> {
  const q = qrexecEnv();
  const cfg = loadConfig("gpg-gate", GpgGateConfig);
  const dir = signingStateDir();
  const journal = path.join(dir, "gate.jsonl");
  const refuse = (reason: string, extra: Record<string, unknown> = {}): never => {
    appendJsonLine(journal, { caller: q.remoteDomain, decision: "refused", reason, ...extra });
    throw new Refusal(reason);
  };
  if (!cfg.clients.includes(q.remoteDomain)) refuse(`caller ${printable(q.remoteDomain)} is not an allowed client`);
  let req: GateRequest;
  let rest: Buffer;
  try {
    const first = await readFirstLine();
    rest = first.rest;
    req = parseOptions(first.line);
  } catch (e) {
    return refuse((e as Error).message);
  }
  if (req.mode === "export") {
    if (!cfg.keys.includes(req.key)) refuse(`key ${req.key} is not a signing key of this VM`);
    appendJsonLine(journal, { caller: q.remoteDomain, decision: "export", key: req.key });
    process.stdin.destroy();
    return runGpg(cfg, req.args);
  }
  const key = req.localUser ?? cfg.defaultKey;
  if (!key || !cfg.keys.includes(key)) refuse(`signing key ${key ?? "(default)"} is not allowed`);
  refuseOnAlarm(dir);
  // Everything is received and hashed before the log is consulted: a call opened while an entry
  // was valid but fed after it expired is refused.
  let data;
  try {
    data = await spool(path.join(dir, "spool"), process.stdin, cfg.maxInputBytes, rest);
  } catch (e) {
    return refuse((e as Error).message);
  }
  try {
    const wanted = { vm: q.remoteDomain, key: req.localUser ?? "default", sha256: data.sha256, size: data.size };
    let entry;
    try {
      entry = await awaitEntry(dir, wanted, cfg.entryWaitSeconds * 1000);
    } catch (e) {
      return refuse((e as Error).message, { sha256: data.sha256, size: data.size, key: wanted.key });
    }
    appendJsonLine(journal, { caller: q.remoteDomain, decision: "signed", entry: entry.index, sha256: data.sha256, size: data.size, key: wanted.key, options: req.args });
    const args = [...req.args];
    if (!req.localUser && cfg.defaultKey) args.push("--local-user", cfg.defaultKey);
    const code = await runGpg(cfg, args, data.file);
    if (code !== 0) log(SERVICE, `gpg exited with ${code}`);
    return code;
  } finally {
    data.remove();
  }
}

if (require.main === module) runMain(SERVICE, main, { reasonOnStdout: true });
