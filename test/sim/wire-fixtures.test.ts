/**
 * Hand-written wire fixtures, not recordings: raw requests as qvm-* tools (qubesadmin's QubesLocal)
 * send them, and the replies qubesd gives, written by hand from qubes-core-admin's source
 * (checked at commit 1ad5f9b84dc1eae76d1b885d009f3e84f5503740: qubes/api/__init__.py for framing
 * and error replies, qubes/api/admin.py for the reply formats, qubes/exc.py for the messages),
 * played against qubes-sim. Where the sim answers differently on purpose, the case says so:
 * qubesd closes the connection without a reply on a framing error or an oversize request (the
 * client then reports an empty reply); the sim answers them with a ProtocolError. qubesd R4.3 also
 * adds ` uuid=<uuid>` to admin.vm.List lines; the sim answers as R4.2 (the client reads both).
 */
import { socketRoundTrip } from "../../admin/transport";
import { startSim, StartedSim } from "../helpers/sim";

let sim: StartedSim;
beforeAll(async () => {
  sim = await startSim();
});
afterAll(async () => {
  await sim?.stop();
});

const raw = async (req: string | Buffer): Promise<string> => (await socketRoundTrip(sim.socket, Buffer.isBuffer(req) ? req : Buffer.from(req, "latin1"))).toString("latin1");

describe("hand-written wire fixtures (qubesd's replies per its source) against qubes-sim", () => {
  it.each([
    ["admin.vm.List+ dom0 name sys-net\0", "0\0sys-net class=AppVM state=Running\n"],
    ["admin.vm.List dom0 keyword adminvm\0", /^0\0debian-13 class=TemplateVM state=Halted\ndom0 class=AdminVM state=Running\n/],
    ["admin.vm.property.Get+netvm dom0 name sys-firewall\0", "0\0default=False type=vm sys-net"],
    ["admin.vm.property.Get+netvm dom0 name debian-13\0", "0\0default=True type=vm "],
    ["admin.vm.property.Get+provides_network dom0 name sys-net\0", "0\0default=False type=bool True"],
    ["admin.vm.property.Get+label dom0 name dom0\0", "0\0default=False type=label black"],
    ["admin.vm.property.Get+netvm dom0 name nosuch\0", "2\0QubesVMNotFoundError\0\0No such domain: 'nosuch'\0"],
    ["admin.vm.property.Get+bogus dom0 name sys-net\0", "2\0QubesNoSuchPropertyError\0\0Invalid property 'bogus' of sys-net\0"],
    ["admin.vm.feature.Get+nope dom0 name sys-net\0", "2\0QubesFeatureNotFoundError\0\0Feature not set for domain sys-net: nope\0"],
    ["admin.label.List+ dom0 name dom0\0", "0\0red\norange\nyellow\ngreen\ngray\nblue\npurple\nblack\n"],
    ["admin.label.Get+red dom0 name dom0\0", "0\x000xcc0000"],
    ["admin.property.Get+default_netvm dom0 name dom0\0", "0\0default=False type=vm sys-firewall"],
    ["admin.vm.CurrentState+ dom0 name debian-13\0", "0\0mem=0 mem_static_max=0 cputime=0 power_state=Halted"],
    ["admin.vm.volume.List+ dom0 name debian-13\0", "0\0kernel\nprivate\nroot\nvolatile\n"],
    ["admin.vm.tag.List+ dom0 name sys-net\0", "0\0"],
    ["admin.vm.Frobnicate+ dom0 name dom0\0", "2\0ProtocolError\0\0no such method: 'admin.vm.Frobnicate'\0"],
    // qubes-sim only: qubesd drops the connection here without a reply.
    ["admin.vm.List+ dom0 name dom0", /^2\0ProtocolError\0\0framing error/],
    ["admin.vm.List+ dom0 name d\xe9m0\0", /^2\0ProtocolError\0\0framing error/],
    ["", /^2\0ProtocolError\0\0framing error: empty request/],
    ["admin.vm.List+x dom0 name dom0\0", "2\0ProtocolError\0\0unexpected argument\0"],
    // admin.vm.Start accepts any destination; dom0's start itself refuses (qubes/vm/adminvm.py AdminVM.start).
    ["admin.vm.Start+ dom0 name dom0\0", "2\0QubesVMNotHaltedError\0\0Cannot start Dom0 fake domain!\0"],
    // qubes/vm/__init__.py validate_name: a leading digit has its own message.
    ["admin.vm.property.Get+name dom0 name 0bad\0", "2\0QubesValueError\0\0VM name cannot start with hyphen, underscore, dot or numbers\0"],
    ["admin.vm.property.Get+name dom0 name a@b\0", "2\0QubesValueError\0\0VM name contains illegal characters\0"],
  ])("%j", async (req, expected) => {
    const got = await raw(req);
    if (typeof expected === "string") expect(got).toBe(expected);
    else expect(got).toMatch(expected);
  });

  it("create + set as qvm-create/qvm-prefs send them", async () => {
    expect(await raw("admin.vm.Create.AppVM+debian-13 dom0 name dom0\0name=rec label=green")).toBe("0\0");
    expect(await raw("admin.vm.property.Set+memory dom0 name rec\0" + "1000")).toBe("0\0");
    expect(await raw("admin.vm.property.Get+memory dom0 name rec\0")).toBe("0\0default=False type=int 1000");
    expect(await raw("admin.vm.tag.List+ dom0 name rec\0")).toBe("0\0created-by-dom0\n");
    expect(await raw("admin.vm.Create.AppVM+ dom0 name dom0\0name=rec2 label=green bad=1")).toBe("2\0ProtocolError\0\0Options does not match: name, label, pool, pool:\0");
    expect(await raw("admin.vm.Remove+ dom0 name rec\0")).toBe("0\0");
  });

  it("refuses oversize payloads (qubes-sim answers; qubesd drops the connection), and keeps serving", async () => {
    const big = Buffer.concat([Buffer.from("admin.vm.feature.Set+x dom0 name sys-net\0"), Buffer.alloc(70000, 0x61)]);
    expect(await raw(big)).toMatch(/^2\0ProtocolError\0\0request too long/);
    expect(await raw("admin.vm.List+ dom0 name sys-net\0")).toBe("0\0sys-net class=AppVM state=Running\n");
  });

  // Checked against qubes-core-admin 1ad5f9b84dc1eae76d1b885d009f3e84f5503740 (qubes/api/admin.py, qubes/app.py, qubes/vm/__init__.py).
  it.each([
    // Create: nothing about existing qubes, templates or labels leaks before the permission check; then name, template, label.
    ["admin.vm.Create.AppVM+nosuch dom0 name dom0\0name=fresh label=red", "2\0QubesVMNotFoundError\0\0No such domain: 'nosuch'\0"],
    ["admin.vm.Create.AppVM+nosuch dom0 name dom0\0name=sys-net label=nolabel", "2\0QubesVMAlreadyExistsError\0\0Qube already exists: sys-net\0"],
    ["admin.vm.Create.AppVM+nosuch dom0 name dom0\0name=fresh label=nolabel", "2\0QubesVMNotFoundError\0\0No such domain: 'nosuch'\0"],
    ["admin.vm.Create.AppVM+debian-13 dom0 name dom0\0name=fresh label=nolabel", "2\0QubesLabelNotFoundError\0\0Label does not exist: untrusted label\0"],
    ["admin.vm.Create.TemplateVM+debian-13 dom0 name dom0\0name=fresh label=red", "2\0ProtocolError\0\0TemplateVM cannot be based on template\0"],
    ["admin.vm.Create.AppVM+debian-13 dom0 name dom0\0name=fresh label=red name=again", "2\0ProtocolError\0\0Options must be unique\0"],
    ["admin.vm.Create.AppVM+debian-13 dom0 name dom0\0label=red", "2\0ProtocolError\0\0Creation requested without key: name\0"],
    // A VM-valued property names a qube that does not exist: a bad value, not a missing destination.
    ["admin.vm.property.Set+netvm dom0 name sys-whonix\0nosuch", "2\0QubesPropertyValueError\0\0Can't set netvm to non-existing qube nosuch\0"],
    ["admin.vm.property.Set+template dom0 name sys-net\0sys-firewall", /^2\0QubesPropertyValueError\0\0wrong VM class/],
    // Tags are validated before anything else (QubesInvalidTagError is a ProtocolError in qubesd).
    ["admin.vm.tag.Set+bad.tag dom0 name sys-net\0", "2\0QubesInvalidTagError\0\0disallowed characters\0"],
    ["admin.vm.tag.Get+a.b dom0 name sys-net\0", "2\0QubesInvalidTagError\0\0disallowed characters\0"],
    ["admin.vm.tag.Remove+c.d dom0 name sys-net\0", "2\0QubesInvalidTagError\0\0disallowed characters\0"],
    ["admin.vm.tag.Remove+absent dom0 name sys-net\0", "2\0QubesTagNotFoundError\0\0Tag not set for domain sys-net: absent\0"],
    // Remove: dom0 is in use; a running VM is not halted before it is found in use.
    ["admin.vm.Remove+ dom0 name dom0\0", "2\0QubesVMInUseError\0\0'dom0' cannot be removed\0"],
    ["admin.vm.Remove+ dom0 name sys-net\0", "2\0QubesVMNotHaltedError\0\0Domain is not powered off: 'sys-net'\0"],
    ["admin.vm.Remove+ dom0 name fedora-43-xfce\0", /^2\0QubesVMInUseError\0\0Domain is in use: 'fedora-43-xfce'/],
    // The volume calls of qvm-volume.
    ["admin.vm.volume.ListSnapshots+private dom0 name sys-net\0", "0\0"],
    ["admin.vm.volume.ListSnapshots+nosuch dom0 name sys-net\0", "2\0PermissionDenied\0\0Argument not in 'sys-net volumes'\0"],
    ["admin.vm.volume.Info+nosuch dom0 name sys-net\0", "2\0PermissionDenied\0\0Argument not in 'sys-net volumes'\0"],
    ["admin.vm.volume.ListSnapshots+ dom0 name sys-net\0", "2\0ProtocolError\0\0expected an argument\0"],
  ])("as qubesd: %j", async (req, expected) => {
    const got = await raw(req);
    if (typeof expected === "string") expect(got).toBe(expected);
    else expect(got).toMatch(expected);
  });
});
