/** sim/wire.ts: how the daemon reads one request off a connection's chunks (pure, no socket). */
import { encodeRequest, MAX_HEADER, QUBESD_MAX_REQUEST } from "../../admin/wire";
import { SimError } from "../../sim/model";
import { exceptionReply, okReply, RequestReader, SIM_MAX_REQUEST } from "../../sim/wire";

const read = (...chunks: Buffer[]) => {
  const r = new RequestReader();
  for (const c of chunks) r.push(c);
  return r.end();
};
const message = (x: ReturnType<RequestReader["end"]>): string => (x instanceof SimError ? `${x.type}: ${x.message}` : `request ${x.method}`);

describe("RequestReader", () => {
  it("joins a request split anywhere, the header's NUL included", () => {
    const whole = encodeRequest({ method: "admin.vm.property.Set", arg: "memory", dest: "w1", payload: "1000\0x" });
    for (let cut = 0; cut <= whole.length; cut++) {
      const got = read(whole.subarray(0, cut), whole.subarray(cut));
      expect(got).toEqual({ method: "admin.vm.property.Set", arg: "memory", source: "dom0", dest: "w1", payload: Buffer.from("1000\0x") });
    }
  });

  it("answers a ProtocolError for an empty request, a missing NUL, a bad header", () => {
    expect(message(read())).toBe("ProtocolError: framing error: empty request");
    expect(message(read(Buffer.from("admin.vm.List+ dom0 name dom0")))).toBe("ProtocolError: framing error: no NUL after the header");
    expect(message(read(Buffer.from("admin.vm.List+ dom0 name d\xe9m0\0", "latin1")))).toBe("ProtocolError: framing error: non-ASCII or control byte in header");
    expect(message(read(Buffer.alloc(MAX_HEADER + 1, "x")))).toBe("ProtocolError: framing error: header too long");
  });

  it("refuses more than qubesd's buffer, except for sim.vm.Run whose header raises the limit", () => {
    const big = Buffer.alloc(QUBESD_MAX_REQUEST, "y");
    expect(message(read(encodeRequest({ method: "admin.vm.List", dest: "dom0" }), big))).toBe(`ProtocolError: request too long (more than ${QUBESD_MAX_REQUEST} bytes)`);
    const run = read(encodeRequest({ method: "sim.vm.Run", dest: "w1" }), big);
    expect(message(run)).toBe("request sim.vm.Run");
    expect(SIM_MAX_REQUEST).toBeGreaterThan(QUBESD_MAX_REQUEST);
  });

  it("keeps the first error: what follows an oversize request is dropped", () => {
    const r = new RequestReader();
    r.push(Buffer.alloc(MAX_HEADER + 1, "x"));
    r.push(Buffer.from("\0"));
    expect(message(r.end())).toBe("ProtocolError: framing error: header too long");
  });
});

describe("replies", () => {
  it("encodes a value as 0\\0<data> and a SimError as 2\\0<type>\\0\\0<message>\\0", () => {
    expect(okReply("a\nb").toString("latin1")).toBe("0\0a\nb");
    expect(exceptionReply(new SimError("QubesVMNotFoundError", "No such domain: 'x'")).toString("latin1")).toBe("2\0QubesVMNotFoundError\0\0No such domain: 'x'\0");
  });
});
