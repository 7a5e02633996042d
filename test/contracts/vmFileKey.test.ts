// The one naming rule of files managed in a VM: a path, or path#blockId.
import { parseVmFileKey, vmFileKey } from "../../contracts/vmFileKey";

describe("vm file keys", () => {
  it("round-trips a whole file and a block", () => {
    expect(parseVmFileKey(vmFileKey("/etc/app.conf"))).toEqual({ path: "/etc/app.conf" });
    expect(parseVmFileKey(vmFileKey("/rw/config/rc.local", "webhooks"))).toEqual({ path: "/rw/config/rc.local", blockId: "webhooks" });
  });

  it.each(["relative/path", "/dir/", "/a#", "", "/with\0nul"])("refuses %j", (key) => {
    expect(parseVmFileKey(key)).toBeUndefined();
  });
});
