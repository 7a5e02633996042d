import { builderDvmFiles } from "../../site/builderDvm";
import { parseSiteConfig } from "../../site/config";

const pin = (name: string, commit: string) => ({ url: `https://github.com/QubesOS/${name}`, commit, tag: "v1", maintainers: ["852671D5ECE9AE71B3E42D6CAB64E651547FC575"] });
const base = {
  admin: { transport: "sim", socket: "/tmp/x.sock" },
  logs: { repo: "file:///srv/logs.git" },
  uploadHosts: {},
  windowsTemplate: "windows-10",
  builderSources: { v2: { builder: pin("qubes-builderv2", "a".repeat(40)), github: pin("qubes-builderv2-github", "b".repeat(40)) } },
  envs: {
    fedora: { logs: "logs", builders: [{ dir: "/home/user/builder-r4.2", release: "4.2" }] },
    debian: { logs: "logs", builderv2: true, builders: [{ dir: "/home/user/artifacts", release: "4.3" }] },
  },
};

describe("builder-dvm", () => {
  it("links builderv2's in-disposable services from the pinned checkout, keeps /builder and remounts it dev,suid", () => {
    const d = builderDvmFiles(parseSiteConfig(base))!;
    expect(d.checkout).toMatchObject({ dir: "/home/user/qubes-builderv2", commit: "a".repeat(40), tag: "v1" });
    expect(d.links).toEqual([
      { path: "/usr/local/etc/qubes-rpc/qubesbuilder.FileCopyIn", target: "/home/user/qubes-builderv2/rpc/qubesbuilder.FileCopyIn" },
      { path: "/usr/local/etc/qubes-rpc/qubesbuilder.FileCopyOut", target: "/home/user/qubes-builderv2/rpc/qubesbuilder.FileCopyOut" },
    ]);
    expect(d.files.map((f) => [f.path, f.content])).toContainEqual(["/rw/config/qubes-bind-dirs.d/50_qubes-build-infra-builder.conf", "binds+=( '/builder' )\n"]);
    expect(d.boot).toMatch(/^mount -o remount,dev,suid \/builder /m);
  });

  it("adds WinSign.Timestamp when an environment builds Windows, and is absent without builderv2", () => {
    const win = builderDvmFiles(parseSiteConfig({ ...base, envs: { ...base.envs, debian: { ...base.envs.debian, windows: true } } }))!;
    expect(win.links.map((l) => l.path)).toContain("/usr/local/etc/qubes-rpc/qubesbuilder.WinSign.Timestamp");
    expect(builderDvmFiles(parseSiteConfig({ ...base, envs: { fedora: base.envs.fedora } }))).toBeUndefined();
  });
});
