/**
 * Build-VM client of the qubes.Gpg gate (a small qubes-gpg-client-wrapper): takes gpg-style
 * arguments, keeps file handling local (`-o/--output <file>`, one input file), and sends the
 * remaining options as the first line, then the data, to `qrexec-client-vm <keys VM> qubes.Gpg`.
 * The keys VM is read from /rw/config/gpg-split-domain (`$QBI_GPG_SPLIT_DOMAIN_FILE`), or
 * `$QUBES_GPG_DOMAIN`. Exit code: the gate's (gpg's), 1 on a local usage error.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import { isVmName } from "./lib/common";

const VALUE_OPTS = new Set(["-u", "--local-user", "--status-fd", "--digest-algo"]);

export function splitArgs(argv: string[]): { remote: string[]; output?: string; input?: string } {
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
    if (a.startsWith("-") && a !== "-") {
      remote.push(a);
      continue;
    }
    inputs.push(a);
  }
  if (inputs.length > 1) throw new Error("at most one input file");
  return { remote, output, input: inputs[0] === "-" ? undefined : inputs[0] };
}

function domain(): string {
  const env = process.env.QUBES_GPG_DOMAIN;
  const d = env ?? fs.readFileSync(process.env.QBI_GPG_SPLIT_DOMAIN_FILE || "/rw/config/gpg-split-domain", "utf8").trim();
  if (!isVmName(d)) throw new Error(`bad gpg split domain: ${d.replace(/[^\x20-\x7e]/g, "?").slice(0, 40)}`);
  return d;
}

function main(): void {
  let parsed: ReturnType<typeof splitArgs>;
  let target: string;
  try {
    parsed = splitArgs(process.argv.slice(2));
    target = domain();
  } catch (e) {
    process.stderr.write(`qbi-gpg-client: ${(e as Error).message}\n`);
    process.exit(1);
  }
  const out = parsed.output && parsed.output !== "-" ? fs.openSync(parsed.output, "w", 0o644) : "inherit";
  const child = spawn("qrexec-client-vm", ["--", target, "qubes.Gpg"], { stdio: ["pipe", out, "inherit"] });
  const stdin = child.stdin;
  if (!stdin) process.exit(1);
  stdin.on("error", () => undefined);
  stdin.write(`${parsed.remote.join(" ")}\n`);
  const input = parsed.input ? fs.createReadStream(parsed.input) : process.stdin;
  input.pipe(stdin);
  child.on("error", (e) => {
    process.stderr.write(`qbi-gpg-client: ${e.message}\n`);
    process.exit(1);
  });
  child.on("close", (code) => process.exit(code ?? 1));
}

if (require.main === module) main();
