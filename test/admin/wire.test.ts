import { decodeReply, decodeRequest, encodeError, encodeOk, encodeRequest, escapeValue, FramingError, pyFormat, unescapeValue } from "../../admin/wire";
import fc from "fast-check";

describe("qubesd wire protocol", () => {
  it("encodes requests as qubesadmin's QubesLocal does", () => {
    expect(encodeRequest({ method: "admin.vm.List", dest: "dom0" }).toString("latin1")).toBe("admin.vm.List+ dom0 name dom0\0");
    expect(encodeRequest({ method: "admin.vm.property.Set", arg: "netvm", dest: "work", payload: "sys-firewall" }).toString("latin1")).toBe(
      "admin.vm.property.Set+netvm dom0 name work\0sys-firewall",
    );
    expect(encodeRequest({ method: "admin.vm.Create.AppVM", arg: "fedora-43-xfce", dest: "dom0", payload: "name=w label=red" }).toString("latin1")).toBe(
      "admin.vm.Create.AppVM+fedora-43-xfce dom0 name dom0\0name=w label=red",
    );
  });

  it("decodes the request forms qubesd accepts", () => {
    const r = decodeRequest(Buffer.from("admin.vm.tag.Set+created-by-x sys-mgmt name work\0"));
    expect(r).toEqual({ method: "admin.vm.tag.Set", arg: "created-by-x", source: "sys-mgmt", dest: "work", payload: Buffer.alloc(0) });
    expect(decodeRequest(Buffer.from("admin.vm.List dom0 keyword adminvm\0")).dest).toBe("dom0");
    expect(decodeRequest(Buffer.from("admin.vm.List dom0 name dom0\0")).arg).toBe("");
    expect(decodeRequest(Buffer.from("policy.Replace+a dom0 name dom0\0any\nx\0y")).payload.toString()).toBe("any\nx\0y");
  });

  it.each([
    ["admin.vm.List+ dom0 name dom0"],
    ["admin.vm.List+ dom0 dom0\0"],
    ["admin.vm.List+ dom0 uuid dom0\0"],
    ["admin.vm.List+é dom0 name dom0\0"],
    ["+x dom0 name dom0\0"],
  ])("refuses malformed header %j", (h) => {
    expect(() => decodeRequest(Buffer.from(h, "utf8"))).toThrow(FramingError);
  });

  it("encodes and decodes replies byte for byte", () => {
    expect(encodeOk("a\n").toString("latin1")).toBe("0\0a\n");
    const err = encodeError("QubesVMNotFoundError", "No such domain: 'x'");
    expect(err.toString("latin1")).toBe("2\0QubesVMNotFoundError\0\0No such domain: 'x'\0");
    expect(decodeReply(err)).toMatchObject({ kind: "error", type: "QubesVMNotFoundError", message: "No such domain: 'x'", args: [] });
    const withArgs = Buffer.from("2\0QubesException\0\0Domain %s has %d vcpus: %r%%\0work\x002\0x\0", "latin1");
    expect(decodeReply(withArgs)).toMatchObject({ message: "Domain work has 2 vcpus: 'x'%", args: ["work", "2", "x"] });
    expect(decodeReply(Buffer.from("0\0"))).toEqual({ kind: "ok", data: Buffer.alloc(0) });
    expect(() => decodeReply(Buffer.alloc(0))).toThrow(/empty reply/);
    expect(() => decodeReply(Buffer.from("9\0"))).toThrow();
  });

  it("formats like Python % when args are given", () => {
    expect(pyFormat("100%", [])).toBe("100%");
    expect(pyFormat("%s-%s", ["a", "b"])).toBe("a-b");
  });

  it("escape/unescape of GetAll values round-trip", () => {
    expect(escapeValue("a\\b\nc")).toBe("a\\\\b\\nc");
    fc.assert(fc.property(fc.string(), (s) => unescapeValue(escapeValue(s)) === s && !escapeValue(s).includes("\n")));
  });
});
