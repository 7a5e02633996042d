// Unit tests of the pure parts of the providers: managed blocks, sizes, update planning, renderers.
import { findBlock, removeBlock, upsertBlock } from "../../providers/impl/blocks";
import { planVmUpdate, type VmState } from "../../providers/impl/qubesVm";
import { summarizeRuleDiff } from "../../providers/impl/qrexecPolicy";
import { formatSize, parseSize } from "../../providers/size";
import { renderKnownHosts, renderSshConfig } from "../../providers/impl/sshProxyConfig";
import { missingMessage } from "../../providers/impl/templateRequirement";

describe("managed blocks", () => {
  const B = "# BEGIN qubes-build-infra x";
  const E = "# END qubes-build-infra x";

  it("creates, appends, replaces in place and removes, leaving other text untouched", () => {
    expect(upsertBlock("", "x", "a")).toBe(`${B}\na\n${E}\n`);
    const rc = "#!/bin/sh\necho mine\n";
    const once = upsertBlock(rc, "x", "one\n");
    expect(once).toBe(`${rc}${B}\none\n${E}\n`);
    const edited = once.replace("echo mine", "echo mine, edited") + "echo after\n";
    const twice = upsertBlock(edited, "x", "two\nlines\n");
    expect(twice).toBe(`#!/bin/sh\necho mine, edited\n${B}\ntwo\nlines\n${E}\necho after\n`);
    expect(upsertBlock(twice, "x", "two\nlines\n")).toBe(twice);
    expect(findBlock(twice, "x")?.inner).toBe("two\nlines\n");
    expect(removeBlock(twice, "x")).toBe("#!/bin/sh\necho mine, edited\necho after\n");
    expect(removeBlock(rc, "x")).toBe(rc);
  });

  it("adds a missing final newline before appending, and can put a new block first", () => {
    expect(upsertBlock("no newline", "x", "a")).toBe(`no newline\n${B}\na\n${E}\n`);
    expect(upsertBlock("Host *\n  User me\n", "x", "Host a\n", { position: "start" })).toBe(`${B}\nHost a\n${E}\nHost *\n  User me\n`);
  });

  it("keeps blocks with other ids apart", () => {
    const both = upsertBlock(upsertBlock("", "x", "x1"), "y", "y1");
    expect(findBlock(both, "y")?.inner).toBe("y1\n");
    expect(removeBlock(both, "x")).toBe("# BEGIN qubes-build-infra y\ny1\n# END qubes-build-infra y\n");
  });

  it("refuses damaged markers and content holding its own markers", () => {
    expect(() => findBlock(`${B}\nno end\n`, "x", "vm:/f")).toThrow(/vm:\/f: the markers of block "x" are damaged/);
    expect(() => findBlock(`${B}\n${E}\n${B}\n${E}\n`, "x")).toThrow(/damaged/);
    expect(() => upsertBlock("", "x", `${E}\n`)).toThrow(/must not contain its own markers/);
    expect(() => upsertBlock("", "bad id", "a")).toThrow(/invalid block id/);
  });
});

describe("sizes: one meaning (binary units), shared by the stack config and the providers", () => {
  it("parses binary units and bytes", () => {
    expect(parseSize("20GiB")).toBe(20 * 1024 ** 3);
    expect(parseSize("30G")).toBe(30 * 1024 ** 3);
    expect(parseSize("1.5 GiB")).toBe(1.5 * 1024 ** 3);
    expect(parseSize("512MiB")).toBe(512 * 1024 ** 2);
    expect(parseSize("64TiB")).toBe(64 * 1024 ** 4);
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize("4096")).toBe(4096);
  });
  it("refuses decimal units instead of guessing, with the binary spelling", () => {
    expect(() => parseSize("20GB")).toThrow('invalid size "20GB": GB is ambiguous (decimal or binary); write 20GiB for 20 × 1024^3 bytes, or the number of bytes');
    expect(() => parseSize("2mb")).toThrow(/mb is ambiguous/);
  });
  it("rejects zero, nonsense and sizes past the upper bound, saying which", () => {
    for (const bad of ["", "GiB", "20 parsecs", "-1G"]) expect(() => parseSize(bad)).toThrow(/invalid size .*: (expected|unknown unit)/);
    for (const zero of ["0", "0B", "0GiB", 0]) expect(() => parseSize(zero)).toThrow(/must be more than 0 bytes/);
    expect(() => parseSize("8000TiB")).toThrow('invalid size "8000TiB": more than 64 TiB (70368744177664 bytes), the largest volume size accepted');
    expect(() => parseSize("999999TiB")).toThrow(/more than 64 TiB/);
    expect(() => parseSize(1e300)).toThrow(/more than 64 TiB/);
    expect(() => parseSize(-5)).toThrow(/must be more than 0 bytes/);
    expect(() => parseSize(1.5)).toThrow(/not a whole number of bytes/);
    expect(() => parseSize("0.1K")).toThrow(/not a whole number of bytes/);
  });
  it("formats for messages", () => {
    expect(formatSize(20 * 1024 ** 3)).toBe("20 GiB (21474836480 bytes)");
    expect(formatSize(100)).toBe("100 bytes");
  });
});

describe("QubesVm update planning", () => {
  const base: VmState = {
    label: "green", template: "fedora-43-xfce", netvm: "sys-whonix", defaultDispvm: "builder-dvm",
    features: { a: "1", b: "2" }, tags: ["qbi-site", "qbi-role-build"], privateVolumeBytes: 20 * 1024 ** 3,
  };

  it("plans nothing when nothing differs", () => {
    expect(planVmUpdate(base, { ...base, tags: ["qbi-role-build", "qbi-site"] }, 20 * 1024 ** 3)).toEqual([]);
  });

  it("plans exactly the calls for what differs", () => {
    expect(planVmUpdate(base, { ...base, netvm: null })).toEqual([{ op: "propertySet", prop: "netvm", value: "", what: "netvm=none" }]);
    expect(planVmUpdate(base, { ...base, netvm: undefined })).toEqual([{ op: "propertyReset", prop: "netvm", what: "netvm (to Qubes' default)" }]);
    expect(planVmUpdate(base, { ...base, templateForDispvms: true, memory: 800 })).toEqual([
      { op: "propertySet", prop: "template_for_dispvms", value: "True", what: "template_for_dispvms=true" },
      { op: "propertySet", prop: "memory", value: "800", what: "memory=800" },
    ]);
    expect(planVmUpdate(base, { ...base, features: { a: "1", b: "3", c: "" } })).toEqual([
      { op: "featureSet", feature: "b", value: "3" }, { op: "featureSet", feature: "c", value: "" },
    ]);
    expect(planVmUpdate(base, { ...base, features: { a: "1" }, tags: ["qbi-site", "new"] })).toEqual([
      { op: "featureRemove", feature: "b" }, { op: "tagSet", tag: "new" }, { op: "tagRemove", tag: "qbi-role-build" },
    ]);
  });

  it("grows the volume only when asked for more than it has", () => {
    expect(planVmUpdate(base, base, 30 * 1024 ** 3)).toEqual([{ op: "volumeResize", bytes: 30 * 1024 ** 3 }]);
    expect(planVmUpdate(base, base, 10 * 1024 ** 3)).toEqual([]);
  });

  it("never resets the template or the label for being unset", () => {
    expect(planVmUpdate(base, { ...base, template: undefined })).toEqual([]);
  });
});

describe("QrexecPolicy rule diff summary", () => {
  const r = (service: string, target = "sys-net") => ({ service, argument: "*", source: "build-a", target, action: "allow" as const, params: {} });
  it("names the added and removed rules", () => {
    const s = summarizeRuleDiff("20-x", [r("a.A"), r("b.B")], [r("a.A"), r("b.B", "keys-a"), r("c.C")]);
    expect(s.split("\n")[0]).toBe("20-x.policy: 2 rule(s) added, 1 removed, 1 kept");
    expect(s).toMatch(/^- b\.B \* build-a sys-net allow$/m);
    expect(s).toMatch(/^\+ b\.B \* build-a keys-a allow$/m);
    expect(s).toMatch(/^\+ c\.C \* build-a sys-net allow$/m);
    expect(summarizeRuleDiff("20-x", [r("a.A")], [r("a.A")])).toBe("");
  });
});

describe("SshProxyConfig rendering", () => {
  const hosts = [
    { host: "upload.example.org", user: "qubes", hostKeys: [{ type: "ssh-ed25519", key: "AAAAC3Nza" }] },
    { host: "mirror", user: "m", hostName: "mirror.example.net", hostKeys: [{ type: "ssh-rsa", key: "AAAAB3" }, { type: "ssh-ed25519", key: "AAAAC4" }] },
  ];
  it("writes one Host block per upload host, through the net VM, without Host * or UseRoaming", () => {
    const c = renderSshConfig("sys-net", hosts);
    expect(c).toBe([
      "Host upload.example.org", "    HostName upload.example.org", "    User qubes",
      "    ProxyCommand /usr/bin/qrexec-client-vm sys-net local.ConnectSSH+%h",
      "    ControlMaster auto", "    ControlPath ~/.ssh/ctl-%r@%h:%p", "    ControlPersist 60s",
      "Host mirror", "    HostName mirror.example.net", "    User m",
      "    ProxyCommand /usr/bin/qrexec-client-vm sys-net local.ConnectSSH+%h",
      "    ControlMaster auto", "    ControlPath ~/.ssh/ctl-%r@%h:%p", "    ControlPersist 60s", "",
    ].join("\n"));
    expect(c).not.toMatch(/Host \*|UseRoaming/);
  });
  it("pins every key", () => {
    expect(renderKnownHosts(hosts)).toBe(
      "upload.example.org ssh-ed25519 AAAAC3Nza\nmirror,mirror.example.net ssh-rsa AAAAB3\nmirror,mirror.example.net ssh-ed25519 AAAAC4\n");
  });
});

describe("TemplateRequirement message", () => {
  it("lists the missing commands and the packages for Fedora and Debian", () => {
    expect(missingMessage("fedora-43-minimal", ["node", "gpg"], "keys VMs")).toBe(
      "template fedora-43-minimal lacks node, gpg (needed by keys VMs): install them in the template " +
      "(Fedora: sudo dnf install nodejs gnupg2; Debian: sudo apt install nodejs gnupg), shut the template down, then run the preview again");
  });
});
