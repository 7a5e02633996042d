// The client's parsers of qubesd replies, for the formats Qubes releases send.
import { parsePropertyValue, parseVmListLine } from "../../admin/client";
import { hasQubesCode, isQubesError, QubesError, qubesErrorOf } from "../../admin/errors";

describe("admin.vm.List lines", () => {
  it("R4.2: name, class and state", () => {
    expect(parseVmListLine("sys-net class=AppVM state=Running")).toEqual({ name: "sys-net", klass: "AppVM", state: "Running" });
  });
  it("R4.3 adds the uuid (qubes-core-admin: Support using UUIDs instead of VM names)", () => {
    expect(parseVmListLine("dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000")).toEqual({
      name: "dom0", klass: "AdminVM", state: "Running", uuid: "00000000-0000-0000-0000-000000000000",
    });
  });
  it("refuses anything else", () => {
    for (const bad of ["sys-net class=AppVM", "sys-net class=Toaster state=Running", "sys-net class=AppVM state=Running uuid=x", "a b c d"]) {
      expect(parseVmListLine(bad)).toBeUndefined();
    }
  });
  it("property values keep the text after the type", () => {
    expect(parsePropertyValue("default=True type=vm ")).toEqual({ isDefault: true, type: "vm", value: "" });
  });
});

describe("typed Admin errors", () => {
  const e = new QubesError("QubesVMNotFoundError", "No such domain: 'x'", { method: "admin.vm.property.Get", dest: "x", arg: "netvm" });
  it("carry a code to branch on, found behind wrapping errors", () => {
    const wrapped = new Error("QubesVm x: reading", { cause: new Error("step", { cause: e }) });
    expect(qubesErrorOf(wrapped)).toBe(e);
    expect(hasQubesCode(wrapped, "vm-not-found")).toBe(true);
    expect(hasQubesCode(wrapped, "policy-not-found")).toBe(false);
  });
  it("are recognised across copies of the module (each provider kind bundles its own)", () => {
    const copy = Object.assign(Object.create(Error.prototype) as object, { qubesType: "QubesVMNotFoundError", code: "vm-not-found" });
    expect(isQubesError(copy)).toBe(false);
    Object.defineProperty(copy, Symbol.for("qubes-build-infra.QubesError"), { value: true });
    expect(isQubesError(copy, "QubesVMNotFoundError")).toBe(true);
  });
});
