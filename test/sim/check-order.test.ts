/**
 * qubes-sim checks a request in qubesd's order, so that a request failing several checks gets the
 * exception qubesd would give (what a caller sees, and what it learns, depends on which check
 * fires first). Each case fails at least two checks; the expected reply is the first check's, per
 * qubes-core-admin (read at commit 1ad5f9b84dc1eae76d1b885d009f3e84f5503740). Sent through the
 * project's Admin client (and the raw wire for an unknown source) to a started sim.
 */
import { QubesError } from "../../admin/errors";
import { socketRoundTrip } from "../../admin/transport";
import { startSim, StartedSim } from "../helpers/sim";

let sim: StartedSim;
beforeAll(async () => {
  sim = await startSim();
});
afterAll(async () => {
  await sim?.stop();
});

async function failure(p: Promise<unknown>): Promise<QubesError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof QubesError) return e;
    throw e;
  }
  throw new Error("the call succeeded");
}

// [method, destination, argument, payload, exception class, message]. The sim's framing takes only
// qrexec's argument characters (letters, digits, `_.+-`), so a bad name or label is one with a `+`.
type Case = [string, string, string, string, string, RegExp];

const cases: Case[] = [
  // qubes/api/__init__.py AbstractQubesAPI.__init__ looks up the destination (decode_vm) before it
  // looks up the method, and before execute() checks the payload, the argument or dom0-ness.
  ["admin.vm.List", "nosuch", "x", "", "QubesVMNotFoundError", /No such domain: 'nosuch'/],
  ["admin.vm.CurrentState", "nosuch", "x", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.Start", "nosuch", "x", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.Remove", "nosuch", "x", "y", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.Shutdown", "nosuch", "bogus", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.tag.Set", "nosuch", "", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.tag.Get", "nosuch", "bad.tag", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.feature.Get", "nosuch", "", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.feature.Set", "nosuch", "bad+name", "\u00ff", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.property.Get", "nosuch", "", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.volume.Resize", "nosuch", "", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.label.Get", "nosuch", "", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.property.List", "nosuch", "x", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.Create.AppVM", "nosuch", "nosuch-template", "name=x label=nolabel", "QubesVMNotFoundError", /No such domain: 'nosuch'/],
  ["admin.vm.Frobnicate", "nosuch", "", "", "QubesVMNotFoundError", /nosuch/],
  ["admin.vm.Create.Bogus", "nosuch", "", "", "QubesVMNotFoundError", /nosuch/],
  // decode_vm validates a name (qubes/vm/__init__.py validate_name) and a `uuid:` reference before the lookup.
  ["admin.vm.List", "0bad", "x", "", "QubesValueError", /cannot start with hyphen, underscore, dot or numbers/],
  ["admin.vm.List", "uuid:not-a-uuid", "x", "", "QubesVMInvalidUUIDError", /VM UUID is not valid: 'not-a-uuid'/],
  ["admin.vm.List", "uuid:12345678-1234-1234-1234-123456789abc", "x", "", "QubesVMNotFoundError", /'uuid:12345678-1234-1234-1234-123456789abc'/],
  // AbstractQubesAPI.__init__: the method is looked up before execute() checks dom0-ness.
  ["admin.vm.Create.Bogus", "sys-net", "", "", "ProtocolError", /no such method: 'admin.vm.Create.Bogus'/],
  // AbstractQubesAPI.execute: the payload first, then the argument, then dom0-ness.
  ["admin.vm.List", "dom0", "x", "y", "ProtocolError", /unexpected payload/],
  ["admin.vm.tag.Set", "sys-net", "", "y", "ProtocolError", /unexpected payload/],
  ["admin.vm.volume.Resize", "sys-net", "", "", "ProtocolError", /expected payload/],
  ["admin.property.Get", "sys-net", "default_netvm", "y", "ProtocolError", /unexpected payload/],
  ["admin.label.Get", "sys-net", "", "", "ProtocolError", /expected an argument/],
  ["internal.GetSystemInfo", "sys-net", "x", "", "ProtocolError", /unexpected argument/],
  ["admin.vm.Create.AppVM", "sys-net", "nosuch-template", "name=sys-net label=nolabel", "ProtocolError", /expected destination to be AdminVM/],
  // ... and all of execute()'s checks come before the method body (dom0's own refusals are the body's).
  ["admin.vm.Kill", "dom0", "x", "", "ProtocolError", /unexpected argument/],
  ["admin.vm.Start", "dom0", "", "y", "ProtocolError", /unexpected payload/],
  // qubes/api/admin.py QubesAdminAPI.vm_shutdown: the argument (enforce) before the qube's own shutdown checks.
  ["admin.vm.Shutdown", "dom0", "now", "", "ProtocolError", /Argument must match: force, wait/],
  ["admin.vm.Shutdown", "debian-13", "force+now", "", "ProtocolError", /Argument must match/],
  // vm_start: dom0 passes execute() (any destination) and AdminVM.start refuses (qubes/vm/adminvm.py).
  ["admin.vm.Start", "dom0", "", "", "QubesVMNotHaltedError", /Cannot start Dom0 fake domain!/],
  ["admin.vm.Kill", "dom0", "", "", "QubesVMError", /Cannot kill Dom0 fake domain!/],
  // vm_volume_resize: enforce_arg over the destination's volumes (dom0 has none) before validate_number.
  ["admin.vm.volume.Resize", "dom0", "root", "abc", "PermissionDenied", /Argument not in 'dom0 volumes'/],
  ["admin.vm.volume.Resize", "sys-net", "nosuch", "abc", "PermissionDenied", /Argument not in 'sys-net volumes'/],
  // vm_feature_set: the value's encoding, then the feature name, then the value's characters.
  ["admin.vm.feature.Set", "sys-net", "bad+name", "\u00ff", "ProtocolError", /Feature value contains non-ASCII characters/],
  ["admin.vm.feature.Set", "sys-net", "bad+name", "\u0001", "ProtocolError", /feature name contains illegal characters/],
  // _property_set: the property must exist before its value is read.
  ["admin.vm.property.Set", "sys-net", "bogus", "not-a-number", "QubesNoSuchPropertyError", /Invalid property 'bogus'/],
  // vm_tag_remove: validate_tag before the tag is looked up.
  ["admin.vm.tag.Remove", "sys-net", "not.set", "", "QubesInvalidTagError", /disallowed characters/],
  // label_get: validate_label_name before get_label.
  ["admin.label.Get", "dom0", "no+such", "", "QubesInvalidLabelError", /Label must be in safe set/],
  // _vm_create: the options are parsed before the (permission-gated) existence checks.
  ["admin.vm.Create.AppVM", "dom0", "nosuch-template", "name=sys-net label=nolabel bad=1", "ProtocolError", /Options does not match/],
];

describe("qubes-sim checks a request in qubesd's order", () => {
  it.each(cases)("%s to %s, argument %j, payload %j: %s", async (method, dest, arg, payload, type, message) => {
    const e = await failure(sim.client.call(method, dest, arg, Buffer.from(payload, "latin1")));
    expect({ type: e.qubesType, message: e.message }).toEqual({ type, message: expect.stringMatching(message) });
  });

  // AbstractQubesAPI.__init__ decodes the source before the destination.
  it("an unknown source is reported before an unknown destination", async () => {
    const reply = await socketRoundTrip(sim.socket, Buffer.from("admin.vm.List+x ghost name nosuch\0", "latin1"));
    expect(reply.toString("latin1")).toBe("2\0QubesVMNotFoundError\0\0No such domain: 'ghost'\0");
  });

  it("failed checks change nothing", async () => {
    expect(await sim.client.vmListFrom("sys-net")).toEqual([{ name: "sys-net", klass: "AppVM", state: "Running" }]);
    expect(await sim.client.tagList("sys-net")).toEqual([]);
    expect(await sim.client.featureList("sys-net")).toEqual([]);
  });

  // qubes/vm/mix/net.py on_domain_pre_shutdown: running clients keep a network provider up unless forced.
  it("admin.vm.Shutdown+force shuts down a network provider with running clients", async () => {
    expect((await failure(sim.client.call("admin.vm.Shutdown", "sys-firewall"))).qubesType).toBe("QubesVMInUseError");
    await sim.client.call("admin.vm.Shutdown", "sys-firewall", "force");
    expect(await sim.client.vmListFrom("sys-firewall")).toEqual([{ name: "sys-firewall", klass: "AppVM", state: "Halted" }]);
  });
});
