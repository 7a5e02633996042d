// The fleet's summary table and exit code (fleet/summary.ts).
import { exitCode, renderSummary, type MachineResult } from "../../fleet/summary";

const ok: MachineResult = { stack: "machine-a", outcome: "changed", changes: { create: 57, same: 1 }, violations: [], seconds: 41.26 };
const stopped: MachineResult = {
  stack: "machine-b",
  outcome: "stopped",
  changes: { create: 57 },
  violations: [
    { level: "mandatory", policy: "build-network-through-tor", resource: "build-fedora", message: "build-fedora: netvm is sys-net.\nFix: set netvm" },
    { level: "advisory", policy: "vm-hygiene", message: "keys-fedora is not labelled black" },
  ],
  seconds: 7,
};
const failed: MachineResult = { stack: "machine-c", outcome: "failed", changes: {}, violations: [], error: "preview: the stack is currently locked by 1 lock(s)", seconds: 1.04 };

describe("renderSummary", () => {
  it("prints one row per machine with its changes and violations, then the details", () => {
    expect(renderSummary("up", [ok, stopped, failed])).toBe([
      "machine    result            create  update  replace  delete  same  mandatory  advisory  seconds",
      "machine-a  updated               57       0        0       0     1          0         0     41.3",
      "machine-b  STOPPED (policy)      57       0        0       0     0          1         1      7.0",
      "machine-c  FAILED                 -       -        -       -     -          0         0      1.0",
      "",
      "machine-b: [mandatory] build-network-through-tor (build-fedora): build-fedora: netvm is sys-net. | Fix: set netvm",
      "machine-b: [advisory] vm-hygiene: keys-fedora is not labelled black",
      "machine-c: preview: the stack is currently locked by 1 lock(s)",
      "",
      "Not applied to machine-b: the preview found mandatory policy violations.",
      "",
    ].join("\n"));
  });

  it("says what a preview would do", () => {
    const text = renderSummary("preview", [ok, { ...ok, stack: "machine-d", outcome: "unchanged", changes: { same: 58 } }, stopped]);
    expect(text.split("\n").slice(1, 4).map((l) => l.split(/\s{2,}/)[1])).toEqual(["changes", "no changes", "VIOLATES POLICY"]);
    expect(text).not.toMatch(/Not applied/);
  });
});

describe("exitCode", () => {
  it("is 0 only when no machine failed or was stopped by a policy", () => {
    expect(exitCode([ok, { ...ok, outcome: "unchanged" }])).toBe(0);
    expect(exitCode([ok, { ...ok, violations: [{ level: "advisory", policy: "vm-hygiene", message: "m" }] }])).toBe(0);
    expect(exitCode([ok, stopped])).toBe(1);
    expect(exitCode([ok, failed])).toBe(1);
  });
});
