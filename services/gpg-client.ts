/**
 * Build-VM client of sign-if-logged (installed as qubes-gpg-client-wrapper; builderv2's
 * `gpg-client`, rpm's `%__gpg`). It takes gpg-style arguments and keeps file handling local
 * (`-o/--output <file>`, one input file). For a signature it:
 *   1. hashes the exact bytes to be signed (stdin is spooled to a private temp file first);
 *   2. asks the logs VM to log that digest (`qrexec-client-vm dom0 qubesbuilder.LogDigest`,
 *      redirected by policy): the logs VM publishes the entry (and the prefix of this VM's open
 *      build log), then hands the entry with its proofs to the keys VM;
 *   3. sends the options as the first line, then the same bytes, to
 *      `qrexec-client-vm <keys VM> qubes.Gpg`, whose gate signs only logged bytes.
 * `--export <fingerprint>` goes to the keys VM directly (public keys need no log).
 * The keys VM comes from /rw/config/gpg-split-domain (`$QBI_GPG_SPLIT_DOMAIN_FILE`) or
 * `$QUBES_GPG_DOMAIN`. Exit code: the logs VM's when logging failed, else the gate's (gpg's);
 * 1 on a local usage error.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import { isVmName } from "./lib/names";
import { reasonIn } from "./lib/outcome";
import { hashFile, spool } from "./lib/spool";

const VALUE_OPTS = new Set(["-u", "--local-user", "--status-fd", "--digest-algo"]);

export interface ClientArgs {
  remote: string[];
  output?: string;
  input?: string;
}

export function splitArgs(argv: string[]): ClientArgs {
  const remote: string[] = [];
  let output: string | undefined;
  const inputs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      inputs.push(...argv.slice(i + 1));
      break;
    }
    if (a === "-o" || a === "--output") {
      output = argv[++i];
      continue;
    }
    if (a.startsWith("--output=")) {
      output = a.slice(9);
      continue;
    }
    // Combined short options, e.g. rpm's -sbo <file>: the last letter may take the next argument.
    const m = /^-([a-zA-Z]{2,})$/.exec(a);
    if (m) {
      for (const c of m[1]) {
        if (c === "o") output = argv[++i];
        else if (c === "u") remote.push("-u", argv[++i] ?? "");
        else remote.push(`-${c}`);
      }
      continue;
    }
    if (VALUE_OPTS.has(a)) {
      remote.push(a, argv[++i] ?? "");
      continue;
    }
    if (a === "--export") {
      // The key to export is an argument of the request, not an input file.
      remote.push(a, ...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("-") && a !== "-") {
      remote.push(a);
      continue;
    }
    inputs.push(a);
  }
  if (inputs.length > 1) throw new Error("at most one input file");
  return { remote, output, input: inputs[0] === "-" ? undefined : inputs[0] };
}

/** True when the options ask for a signature (what needs a logged digest). */
export function isSigning(remote: string[]): boolean {
  return remote.some((a) => ["--sign", "-s", "--detach-sign", "-b", "--clearsign", "--clear-sign"].includes(a) || /^-[a-z]*[sb][a-z]*$/.test(a));
}

/** The key the request names: the fingerprint after -u/--local-user, or `default`. */
export function requestedKey(remote: string[]): string {
  for (let i = 0; i < remote.length; i++) {
    const a = remote[i];
    if (a === "-u" || a === "--local-user") return (remote[i + 1] ?? "").replace(/^0x/, "").toUpperCase();
    if (a.startsWith("--local-user=")) return a.slice(13).replace(/^0x/, "").toUpperCase();
  }
  return "default";
}

function domain(): string {
  const env = process.env.QUBES_GPG_DOMAIN;
  const d = env ?? fs.readFileSync(process.env.QBI_GPG_SPLIT_DOMAIN_FILE || "/rw/config/gpg-split-domain", "utf8").trim();
  if (!isVmName(d)) throw new Error(`bad gpg split domain: ${d.replace(/[^\x20-\x7e]/g, "?").slice(0, 40)}`);
  return d;
}

/** Runs qrexec-client-vm, feeding `input` (a string, a file or nothing); stdout to `out`. */
function qrexec(target: string, service: string, input: { text?: string; file?: string }, out: number | "pipe", onChild?: (c: ChildProcess) => void): Promise<{ code: number; stdout: string }> {
  const started = Date.now();
  const child = spawn("qrexec-client-vm", ["--", target, service], { stdio: ["pipe", out, "inherit"] });
  onChild?.(child);
  let stdout = "";
  child.stdout?.on("data", (d: Buffer) => {
    if (stdout.length < 65536) stdout += d.toString();
  });
  child.stdin?.on("error", () => undefined);
  if (input.text !== undefined) child.stdin?.write(input.text);
  if (input.file) fs.createReadStream(input.file).pipe(child.stdin!);
  else child.stdin?.end();
  return new Promise((resolve) => {
    child.on("error", (e) => {
      process.stderr.write(`qubes-gpg-client: ${e.message}\n`);
      resolve({ code: 1, stdout });
    });
    child.on("close", (code) => {
      if (process.env.QBI_TRACE === "1") process.stderr.write(`trace: qrexec ${target} ${service}: ${Date.now() - started} ms\n`);
      resolve({ code: code ?? 1, stdout });
    });
  });
}

/**
 * Calls the keys VM's gate. Its output goes to a private temp file first: a refusal's reason
 * (the `qbi-reason:` line, since qrexec passes stdout, not stderr) goes to stderr, never into the
 * output file; the output is delivered only on success. `cancel` stops the call.
 */
function gateCall(target: string, input: { text: string; file?: string }, output: string | undefined): { done: Promise<number>; cancel: () => void } {
  let child: ChildProcess | undefined;
  let cancelled = false;
  const done = (async () => {
    const dir = fs.mkdtempSync(`${os.tmpdir()}/qbi-gpg-out-`);
    const tmp = `${dir}/out`;
    try {
      const fd = fs.openSync(tmp, "w", 0o600);
      const r = await qrexec(target, "qubes.Gpg", input, fd, (c) => {
        child = c;
        if (cancelled) c.kill();
      });
      fs.closeSync(fd);
      if (r.code !== 0 || cancelled) {
        const why = reasonIn(fs.readFileSync(tmp));
        if (why && !cancelled) process.stderr.write(`qubes-gpg-client: ${why}\n`);
        return r.code || 1;
      }
      if (output && output !== "-") {
        fs.copyFileSync(tmp, output);
        fs.chmodSync(output, 0o644);
      } else for await (const chunk of fs.createReadStream(tmp)) if (!process.stdout.write(chunk)) await new Promise((ok) => process.stdout.once("drain", ok));
      return 0;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  })();
  return { done, cancel: () => {
    cancelled = true;
    child?.kill();
  } };
}

async function main(): Promise<number> {
  let parsed: ClientArgs;
  let target: string;
  try {
    parsed = splitArgs(process.argv.slice(2));
    target = domain();
  } catch (e) {
    process.stderr.write(`qubes-gpg-client: ${(e as Error).message}\n`);
    return 1;
  }
  const options = `${parsed.remote.join(" ")}\n`;
  if (!isSigning(parsed.remote)) {
    // No data to log (e.g. --export); the gate refuses anything that is neither.
    return gateCall(target, { text: options }, parsed.output).done;
  }
  let data: { file: string; sha256: string; size: number; remove?: () => void };
  try {
    data = parsed.input
      ? { file: parsed.input, ...(await hashFile(parsed.input)) }
      : await spool(os.tmpdir(), process.stdin, Number.MAX_SAFE_INTEGER);
  } catch (e) {
    process.stderr.write(`qubes-gpg-client: reading the data to sign: ${(e as Error).message}\n`);
    return 1;
  }
  try {
    // The logs VM logs and publishes the digest while the keys VM already receives the data; its
    // gate waits (bounded) for the logged entry, and signs only then.
    const request = `${JSON.stringify({ sha256: data.sha256, size: data.size, key: requestedKey(parsed.remote) })}\n`;
    const gate = gateCall(target, { text: options, file: data.file }, parsed.output);
    const logged = await qrexec("dom0", "qubesbuilder.LogDigest", { text: request }, "pipe");
    if (logged.code !== 0) {
      gate.cancel();
      await gate.done.catch(() => 1);
      const why = reasonIn(logged.stdout) ?? `exit ${logged.code}`;
      process.stderr.write(`qubes-gpg-client: the logs VM did not log the digest, nothing was signed: ${why}\n`);
      return logged.code;
    }
    return await gate.done;
  } finally {
    data.remove?.();
  }
}

if (require.main === module) {
  main().then((code) => process.stdout.write("", () => process.exit(code)), (e: unknown) => {
    process.stderr.write(`qubes-gpg-client: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
