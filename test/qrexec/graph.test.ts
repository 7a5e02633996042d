import { flowGraph, loadPolicySet, servicesInPolicy, sourcesReaching, toDot } from "../../qrexec";
import { system } from "./helpers";

const set = loadPolicySet([
  {
    name: "50-site.policy",
    text: [
      "qubes.Gpg * @tag:work gpg allow",
      "qubes.Gpg * @anyvm gpg deny",
      "qubes.Filecopy * personal work ask",
      "qubes.Open +pdf work @default allow target=@dispvm:work-dvm",
      "* * @anyvm @anyvm deny",
    ].join("\n"),
  },
]);

test("policy is valid", () => expect(set.errors).toEqual([]));

test("sourcesReaching lists allowed and asked sources with the deciding rule", () => {
  const r = sourcesReaching(set, system(), "qubes.Gpg", "", "gpg");
  expect(r.map((x) => [x.source, x.action, x.rule.line])).toEqual([["work", "allow", 1], ["work-dvm", "allow", 1]]);
  expect(sourcesReaching(set, system(), "qubes.Filecopy", "", "work").map((x) => [x.source, x.action])).toEqual([["personal", "ask"]]);
});

test("servicesInPolicy: named services with their specific arguments", () => {
  expect([...servicesInPolicy(set).entries()]).toEqual([["qubes.Filecopy", [""]], ["qubes.Gpg", [""]], ["qubes.Open", ["", "+pdf"]]]);
});

test("flowGraph covers every pair and service; toDot renders edges", () => {
  const edges = flowGraph(set, system());
  expect(edges).toEqual(
    expect.arrayContaining([
      { source: "work", service: "qubes.Gpg", argument: "", target: "gpg", action: "allow", file: "50-site.policy", line: 1 },
      { source: "personal", service: "qubes.Filecopy", argument: "", target: "work", action: "ask", file: "50-site.policy", line: 3 },
      { source: "work", service: "qubes.Open", argument: "+pdf", target: "@default", resolvedTarget: "@dispvm:work-dvm", action: "allow", file: "50-site.policy", line: 4 },
    ]),
  );
  expect(edges).toHaveLength(4);
  expect(flowGraph(set, system(), ["qubes.Gpg"])).toHaveLength(2);
  const dot = toDot(edges);
  expect(dot).toContain('"work" -> "gpg" [label="qubes.Gpg"];');
  expect(dot).toContain('"personal" -> "work" [label="qubes.Filecopy", style=dashed];');
  expect(dot).toContain('"work" -> "@dispvm:work-dvm" [label="qubes.Open+pdf"];');
  expect(toDot(edges)).toBe(dot);
});
