// Stack config validation: every bad value named by its key with what is expected, and one meaning
// for each shape shared with the providers (sizes).
import { parseSiteConfig } from "../../site/config";
import { vmInputs } from "../../providers/impl/qubesVm";

const base = {
  admin: { transport: "sim", socket: "/tmp/s.sock" },
  envs: { fedora: { logs: "logs", builders: [{ dir: "/home/user/b", release: "4.2" }] } },
  logs: { repo: "file:///srv/logs.git" },
};
const problems = (patch: Record<string, unknown>): string => {
  try {
    parseSiteConfig({ ...base, ...patch });
    return "";
  } catch (e) {
    return (e as Error).message;
  }
};
const env = (extra: Record<string, unknown>) => ({ envs: { fedora: { ...base.envs.fedora, ...extra } } });

describe("sizes", () => {
  it("mean the same in the stack config and in the providers (binary units)", () => {
    const cfg = parseSiteConfig({ ...base, ...env({ volumeSize: "20G" }), builderDvmSize: "1.5GiB" });
    expect(cfg.envs.fedora.volumeSize).toBe(20 * 1024 ** 3);
    expect(cfg.builderDvmSize).toBe(1.5 * 1024 ** 3);
    const vm = vmInputs.parse({ name: "build-fedora", klass: "AppVM", label: "green", privateVolumeSize: "20G" });
    expect(vm.privateVolumeSize).toBe(cfg.envs.fedora.volumeSize);
  });

  it("refuses zero, decimal units and sizes past the bound, naming the key, where the providers would refuse them too", () => {
    for (const [value, message] of [
      ["0B", 'qubes-build-infra:envs.fedora.volumeSize: invalid size "0B": must be more than 0 bytes'],
      ["20GB", 'qubes-build-infra:envs.fedora.volumeSize: invalid size "20GB": GB is ambiguous (decimal or binary); write 20GiB'],
      ["8000TiB", 'qubes-build-infra:envs.fedora.volumeSize: invalid size "8000TiB": more than 64 TiB (70368744177664 bytes), the largest volume size accepted'],
      ["999999TiB", 'qubes-build-infra:envs.fedora.volumeSize: invalid size "999999TiB": more than 64 TiB'],
    ] as const) {
      expect(problems(env({ volumeSize: value }))).toContain(message);
      expect(vmInputs.safeParse({ name: "b", klass: "AppVM", label: "green", privateVolumeSize: value }).success).toBe(false);
    }
  });
});

describe("upload hosts", () => {
  const host = (address: string) => ({ uploadHosts: { "up.example.org": { user: "u", hostKeys: [{ type: "ssh-ed25519", key: "AAAA" }], address } } });

  it("take a host name or an IP address as their address", () => {
    for (const ok of ["127.0.0.1", "::1", "2001:db8::5", "mirror", "mirror.example.org"]) expect(problems(host(ok))).toBe("");
  });

  it("refuse anything else, naming the key", () => {
    for (const bad of ["127.0.0.1; rm -rf /", "$(id)", "-oProxyCommand=x", "a b", "host:22", ""]) {
      expect(problems(host(bad))).toContain("qubes-build-infra:uploadHosts.up.example.org.address: a host name or an IP address");
    }
  });
});

describe("logs", () => {
  const armored = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nxx\n-----END PGP PUBLIC KEY BLOCK-----\n";
  const FPR = "1B760CED53D8EB5AE529BEBB16D7539A228D30DB";
  const two = { envs: { fedora: base.envs.fedora, kernel: { ...base.envs.fedora, logs: "logs-kernel" } } };

  it("a logs VM may have its own repository, and then its own key", () => {
    expect(problems({ ...two, logs: { ...base.logs, vms: { "logs-kernel": { repo: "file:///srv/kernel-logs.git" } } } })).toBe("");
  });

  it("logs VMs sharing a repository must share a named key; a per-VM entry must name a logs VM", () => {
    expect(problems(two)).toContain("qubes-build-infra:logs.keyFingerprint: the logs VMs logs, logs-kernel share the logs repository file:///srv/logs.git");
    expect(problems({ logs: { ...base.logs, vms: { "logs-x": { repo: "file:///x" } } } })).toContain(
      "qubes-build-infra:logs.vms.logs-x: no environment has logs-x as its logs VM (they use logs)");
  });

  it("previous logs keys are fingerprints with armored public keys", () => {
    expect(parseSiteConfig({ ...base, logs: { ...base.logs, previousKeys: { [FPR]: armored } } }).logs.previousKeys).toEqual({ [FPR]: armored });
    expect(problems({ logs: { ...base.logs, previousKeys: { [FPR]: "not a key" } } })).toContain(
      `qubes-build-infra:logs.previousKeys.${FPR}: an armored OpenPGP public key`);
    expect(problems({ logs: { ...base.logs, previousKeys: { nothex: armored } } })).toContain("qubes-build-infra:logs.previousKeys.nothex");
  });
});

describe("every finding at once", () => {
  it("a bad environment name is reported together with the bad values inside it", () => {
    const m = problems({ envs: { "Bad Env": { ...base.envs.fedora, volumeSize: "0" } } });
    expect(m).toContain("qubes-build-infra:envs.Bad Env: environment name");
    expect(m).toContain("qubes-build-infra:envs.Bad Env.volumeSize: invalid size");
  });
});
