import { parseSiteConfig } from "../../site/config";
import { cleanupConfig, releaseStatusScript, timerFiles, USER_UNITS } from "../../site/timers";

const base = {
  admin: { transport: "sim", socket: "/tmp/x.sock" },
  logs: { repo: "file:///srv/logs.git" },
  uploadHosts: { "yum.qubes-os.org": { user: "user", hostKeys: [{ type: "ssh-ed25519", key: "AAAAC3NzaC1lZDI1NTE5AAAAIE" }] } },
  envs: {
    fedora: { logs: "logs", builders: [{ dir: "/home/user/builder-r4.1", release: "4.1" }, { dir: "/home/user/builder-r4.2", release: "4.2" }] },
    debian: { logs: "logs", builderv2: true, builders: [{ dir: "/home/user/artifacts", release: "4.3" }] },
  },
};

describe("build VM timers", () => {
  const cfg = parseSiteConfig(base);

  it("writes a weekly cleanup and a daily status upload as user units, each enabled by a link", () => {
    const files = timerFiles(cfg, cfg.envs.debian);
    expect(files.map((f) => f.path)).toEqual([
      `${USER_UNITS}/qbi-builder-cleanup.service`, `${USER_UNITS}/qbi-builder-cleanup.timer`, `${USER_UNITS}/timers.target.wants/qbi-builder-cleanup.timer`,
      `${USER_UNITS}/qbi-upload-release-status.service`, `${USER_UNITS}/qbi-upload-release-status.timer`,
      `${USER_UNITS}/timers.target.wants/qbi-upload-release-status.timer`,
    ]);
    const text = (p: string) => {
      const f = files.find((x) => x.path === `${USER_UNITS}/${p}`);
      return f?.kind === "file" ? f.content : "";
    };
    expect(text("qbi-builder-cleanup.timer")).toMatch(/\[Timer\]\nOnCalendar=weekly\nPersistent=true\n/);
    expect(text("qbi-builder-cleanup.service")).toContain("ExecStart=/usr/local/lib/qubes-build-infra/builder-cleanup.js\n");
    expect(text("qbi-upload-release-status.timer")).toContain("OnCalendar=daily\n");
    expect(text("qbi-upload-release-status.service")).toMatch(/Environment=HOST=yum\.qubes-os\.org\nExecStart=\/home\/user\/qubes-builderv2-github\/utils\/upload-release-status\n/);
    expect(files[2]).toEqual({ path: `${USER_UNITS}/timers.target.wants/qbi-builder-cleanup.timer`, target: `${USER_UNITS}/qbi-builder-cleanup.timer`, kind: "symlink" });
  });

  it("runs v1's status upload from the last builder's builder-github, and cleans each builder's ISOs", () => {
    expect(releaseStatusScript(cfg.envs.fedora)).toBe("/home/user/builder-r4.2/qubes-src/builder-github/upload-release-status");
    expect(cleanupConfig(cfg, cfg.envs.fedora)).toEqual({
      logDirs: ["/home/user/builder-github-logs"], logRetentionDays: 30,
      isoDirs: ["/home/user/builder-r4.1/iso", "/home/user/builder-r4.2/iso"], isoRetentionDays: 7,
    });
  });

  it("leaves out a disabled timer, and the status upload when there is no upload host", () => {
    const off = parseSiteConfig({ ...base, timers: { builderCleanup: { enabled: false }, releaseStatus: { onCalendar: "Mon *-*-* 04:00" } } });
    const names = timerFiles(off, off.envs.debian).map((f) => f.path.split("/").pop());
    expect(names).toEqual(["qbi-upload-release-status.service", "qbi-upload-release-status.timer", "qbi-upload-release-status.timer"]);
    expect(timerFiles(parseSiteConfig({ ...base, uploadHosts: {} }), cfg.envs.debian).map((f) => f.path)).not.toContainEqual(expect.stringContaining("release-status"));
  });

  it.each([
    [{ timers: { releaseStatus: { host: "deb.qubes-os.org" } } }, /timers.releaseStatus.host: deb.qubes-os.org is not one of uploadHosts \(yum.qubes-os.org\)/],
    [{ timers: { builderCleanup: { onCalendar: "weekly\nExecStart=/bin/sh" } } }, /timers.builderCleanup.onCalendar: a systemd OnCalendar= expression/],
    [{ timers: { builderCleanup: { logRetentionDays: 0 } } }, /timers.builderCleanup.logRetentionDays/],
  ])("rejects %j naming the key", (patch, message) => {
    expect(() => parseSiteConfig({ ...base, ...patch })).toThrow(message);
  });
});
