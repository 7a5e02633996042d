/**
 * local.ConnectSSH (sys-net): relays the qrexec connection to port 22 of one configured upload
 * host. The service argument is the host name; anything not configured is refused (exit 1).
 * Relay with node's `net` (no socat). See services/README.md.
 */
import * as net from "net";
import { ConnectSshConfig, HOST_RE } from "../contracts/serviceConfig/connectSsh";
import { loadConfig } from "./lib/config";
import { log } from "./lib/log";
import { runMain } from "./lib/main";
import { EXIT, printable, Refusal } from "./lib/outcome";
import { qrexecEnv } from "./lib/proc";

const SERVICE = "local.ConnectSSH";

/** Host names: letters, digits, `-`, `.`; no leading `-` or `.`, no ports, no options. */
export { HOST_RE, ConnectSshConfig };

async function main(): Promise<number> {
  const cfg = loadConfig("connect-ssh", ConnectSshConfig);
  const host = qrexecEnv().argument;
  if (!HOST_RE.test(host) || host.length > 253) throw new Refusal(`not a host name: ${printable(host)}`);
  const entry = Object.prototype.hasOwnProperty.call(cfg.hosts, host) ? cfg.hosts[host] : undefined;
  if (!entry) throw new Refusal(`host ${host} is not a configured upload host`);
  const address = entry.address ?? host;
  const port = entry.port ?? 22;
  return new Promise<number>((resolve) => {
    const sock = net.connect({ host: address, port });
    let connected = false;
    const timer = setTimeout(() => {
      log(SERVICE, `connect to ${host} timed out`);
      sock.destroy();
      resolve(EXIT.FAILED);
    }, cfg.connectTimeoutMs);
    sock.on("connect", () => {
      connected = true;
      clearTimeout(timer);
      process.stdin.pipe(sock);
      sock.pipe(process.stdout);
    });
    sock.on("error", (e) => {
      clearTimeout(timer);
      log(SERVICE, `${host}: ${e.message}`);
      resolve(connected ? EXIT.OK : EXIT.FAILED);
    });
    sock.on("close", () => resolve(EXIT.OK));
    process.stdout.on("error", () => sock.destroy());
  });
}

if (require.main === module) runMain(SERVICE, main);
