/** QrexecClientVmTransport with a stand-in qrexec-client-vm that forwards to qubes-sim's socket. */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { AdminClient } from "../../admin/client";
import { QrexecClientVmTransport, vmShellScript } from "../../admin/transport";
import { startSim, StartedSim } from "../helpers/sim";

let sim: StartedSim;
let fake: string;
let argsLog: string;
beforeAll(async () => {
  sim = await startSim();
  // The calls come from the management qube, which must exist: qubesd looks up a request's source first.
  await sim.client.vmCreate("AppVM", "mgmt", "red", "debian-13");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qcvm-"));
  fake = path.join(dir, "qrexec-client-vm");
  argsLog = path.join(dir, "args");
  // qrexec-client-vm <dest> <service+arg>: forwarded as the qrexec Admin API handler would.
  fs.writeFileSync(
    fake,
    `#!/bin/sh\necho "$@" >> ${argsLog}\nsvc="$2"; case "$svc" in *+*) m="\${svc%%+*}"; a="\${svc#*+}";; *) m="$svc"; a="";; esac\n` +
      `{ printf '%s+%s mgmt name %s\\0' "$m" "$a" "$1"; cat; } | socat -t 30 - UNIX-CONNECT:${sim.socket}\n`,
    { mode: 0o755 },
  );
});
afterAll(async () => {
  await sim?.stop();
});

describe("QrexecClientVmTransport", () => {
  it("passes dest and method+arg as qubesadmin's QubesRemote, and parses replies", async () => {
    const c = new AdminClient(new QrexecClientVmTransport(fake));
    await c.vmCreate("AppVM", "remote1", "red", "debian-13");
    expect(await c.tagList("remote1")).toEqual(["created-by-mgmt"]);
    expect((await c.propertyGet("remote1", "template")).value).toBe("debian-13");
    await expect(c.propertyGet("nope", "label")).rejects.toMatchObject({ qubesType: "QubesVMNotFoundError" });
    const log = fs.readFileSync(argsLog, "utf8").split("\n");
    expect(log[0]).toBe("dom0 admin.vm.Create.AppVM+debian-13");
    expect(log[1]).toBe("remote1 admin.vm.tag.List");
    expect(log[2]).toBe("remote1 admin.vm.property.Get+template");
  });

  it("qubes.VMShell script carries stdin inside as base64", () => {
    const script = vmShellScript("root", "cat; echo \"[$0]\"", Buffer.from("a'b\n\0z"));
    const out = execFileSync("sh", [], { input: script });
    expect(out).toEqual(Buffer.from("a'b\n\0z[sh]\n"));
  });
});
