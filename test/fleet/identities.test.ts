// What must differ between the machines of a fleet (fleet/identities.ts), on real site configs.
import { identityProblems, type Machine } from "../../fleet/identities";
import { parseSiteConfig } from "../../site/config";

const FPR_A = "1B760CED53D8EB5AE529BEBB16D7539A228D30DB";
const FPR_B = "427F11FD0FAA4B080123F01CDDFA1A3E36879494";

/** A machine like the local stack: two envs sharing the logs VM `logs`, pushing to one repository. */
function machine(stack: string, patch: Record<string, unknown> = {}, envs?: Record<string, Record<string, unknown>>): Machine {
  const builders = [{ dir: "/home/user/artifacts", release: "4.3" }];
  return {
    stack,
    config: parseSiteConfig({
      admin: { transport: "sim", socket: `/run/${stack}/qubesd.sock` },
      envs: envs ?? { fedora: { logs: "logs", builders }, debian: { logs: "logs", builders } },
      logs: { repo: "git@github.com:QubesOS/build-logs.git" },
      ...patch,
    }),
  };
}
const builders = [{ dir: "/home/user/artifacts", release: "4.3" }];

describe("identityProblems", () => {
  it("accepts machines that each publish to their own branch with their own origin", () => {
    const a = machine("a", { logs: { repo: "git@github.com:QubesOS/build-logs.git", branch: "a", tlogOrigin: "github.com/QubesOS/build-logs/a" } });
    const b = machine("b", { logs: { repo: "git@github.com:QubesOS/build-logs.git", branch: "b", tlogOrigin: "github.com/QubesOS/build-logs/b" } });
    expect(identityProblems([a, b])).toEqual([]);
    // ... or to their own repository.
    expect(identityProblems([machine("a"), machine("b", { logs: { repo: "git@github.com:QubesOS/build-logs-b.git" } })])).toEqual([]);
    expect(identityProblems([machine("a")])).toEqual([]);
  });

  it("accepts machines sharing one branch with distinct logs and build VMs and one logs key", () => {
    const logs = { repo: "git@github.com:QubesOS/build-logs.git", keyFingerprint: FPR_A };
    const a = machine("a", { logs }, { fedora: { logs: "logs-a", builders } });
    const b = machine("b", { logs: { ...logs, repo: "git@github.com:QubesOS/build-logs" } }, { debian: { logs: "logs-b", builders } });
    expect(identityProblems([a, b])).toEqual([]);
    // One repository however spelled: the same logs VM name is then found.
    const c = machine("c", { logs: { ...logs, repo: "https://github.com/QubesOS/build-logs.git/" } }, { arch: { logs: "logs-a", builders } });
    expect(identityProblems([a, c])).toEqual([
      expect.stringMatching(/^a and c publish to github\.com\/QubesOS\/build-logs branch main and both have a logs VM named logs-a:/),
      expect.stringMatching(/^a \(logs VM logs-a\) and c \(logs VM logs-a\) would sign transparency logs with one origin/),
    ]);
  });

  it("refuses two stacks on one dom0", () => {
    const a = machine("a");
    const b = { ...machine("b", { logs: { repo: "/srv/other.git" } }), config: { ...machine("b", { logs: { repo: "/srv/other.git" } }).config, admin: a.config.admin } };
    expect(identityProblems([a, b])).toEqual([
      "a and b both manage the Qubes machine at qubes-sim socket /run/a/qubesd.sock (qubes-build-infra:admin): one stack per machine, or each would take the other's VMs and policy file",
    ]);
    const qrexec = (s: string) => ({ ...machine(s), config: { ...machine(s).config, admin: { transport: "qrexec" as const } } });
    expect(identityProblems([qrexec("a"), qrexec("b")]).join("\n")).toMatch(/a and b both manage the Qubes machine at this management qube's own dom0/);
  });

  it("refuses machines sharing a branch with the same logs VM, build VMs or without one logs key, and one transparency-log origin", () => {
    const problems = identityProblems([machine("a"), machine("b")]);
    expect(problems).toEqual([
      "a and b publish to github.com/QubesOS/build-logs branch main and both have a logs VM named logs: both would publish their transparency "
        + "logs as tlog/logs/. Name the logs VMs of each machine apart (qubes-build-infra:envs), or give each machine its own logs.branch (and logs.tlogOrigin)",
      "a and b publish to github.com/QubesOS/build-logs branch main and both have a build VM named build-debian: both would file build logs "
        + "under build-debian/. Name the build VMs of each machine apart (qubes-build-infra:envs), or give each machine its own logs.branch (and logs.tlogOrigin)",
      "a and b publish to github.com/QubesOS/build-logs branch main and both have a build VM named build-fedora: both would file build logs "
        + "under build-fedora/. Name the build VMs of each machine apart (qubes-build-infra:envs), or give each machine its own logs.branch (and logs.tlogOrigin)",
      "a and b publish to github.com/QubesOS/build-logs branch main, whose commits must all be signed by one logs key (a logs VM refuses a head "
        + "another key signed): set the same logs.keyFingerprint on each (that key imported into each logs VM), or give each machine its own logs.branch (and logs.tlogOrigin)",
      "a (logs VM logs) and b (logs VM logs) would sign transparency logs with one origin, github.com/QubesOS/build-logs/logs, which verifiers "
        + "could not tell apart: set logs.tlogOrigin per machine (e.g. <repository>/<machine>) or name the logs VMs apart",
    ]);
    // Different keys on one branch.
    const a = machine("a", { logs: { repo: "r.git", keyFingerprint: FPR_A } }, { fedora: { logs: "logs-a", builders } });
    const b = machine("b", { logs: { repo: "r.git", keyFingerprint: FPR_B } }, { debian: { logs: "logs-b", builders } });
    expect(identityProblems([a, b])).toEqual([expect.stringMatching(/^a and b publish to r branch main, whose commits must all be signed by one logs key/)]);
  });

  it("refuses one origin on two branches (the default origin does not name the branch)", () => {
    const a = machine("a", { logs: { repo: "git@github.com:QubesOS/build-logs.git", branch: "a" } });
    const b = machine("b", { logs: { repo: "git@github.com:QubesOS/build-logs.git", branch: "b" } });
    expect(identityProblems([a, b])).toEqual([expect.stringMatching(/^a \(logs VM logs\) and b \(logs VM logs\) would sign transparency logs with one origin, github.com\/QubesOS\/build-logs\/logs,/)]);
    // The same logs.tlogOrigin set on purpose is no better.
    const same = { repo: "x.git", tlogOrigin: "example.org/logs" };
    expect(identityProblems([machine("a", { logs: { ...same, branch: "a" } }), machine("b", { logs: { ...same, branch: "b" } })]))
      .toEqual([expect.stringContaining("one origin, example.org/logs/logs,")]);
  });

  it("refuses one signing key pinned on two machines", () => {
    const a = machine("a", { logs: { repo: "a.git" } }, { fedora: { logs: "logs", builders, signingKey: FPR_A } });
    const b = machine("b", { logs: { repo: "b.git" } }, { debian: { logs: "logs", builders, signingKey: FPR_A.toLowerCase() } });
    expect(identityProblems([a, b])).toEqual([
      `envs.fedora.signingKey of a and envs.debian.signingKey of b pin one signing key, ${FPR_A}, which would then live in the keys VMs of several `
        + "machines: let each machine's keys VMs make their own (leave signingKey out), or build that environment on one machine",
    ]);
    // Pinned keys that differ are fine.
    const c = machine("c", { logs: { repo: "c.git" } }, { debian: { logs: "logs", builders, signingKey: FPR_B } });
    expect(identityProblems([a, c])).toEqual([]);
  });
});
