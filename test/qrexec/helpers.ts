/** Shared fixtures for the qrexec tests. */
import { DomainInfo, SystemInfo } from "../../qrexec";

/** Build a domain with defaults. */
export function dom(uuidN: number, over: Partial<DomainInfo> = {}): DomainInfo {
  const hex = uuidN.toString(16).padStart(8, "0");
  return {
    type: "AppVM",
    tags: [],
    default_dispvm: "default-dvm",
    template_for_dispvms: false,
    power_state: "Halted",
    label: "red",
    icon: "appvm-red",
    guivm: "dom0",
    uuid: `${hex}-0000-4000-8000-000000000000`,
    ...over,
  };
}

/** A small system: dom0, work (tag work), personal, vault (no dispvm), gpg (Running), two dispvm templates. */
export function system(): SystemInfo {
  return {
    domains: {
      dom0: dom(0, { type: "AdminVM", uuid: "00000000-0000-0000-0000-000000000000", power_state: "Running", default_dispvm: "default-dvm" }),
      work: dom(1, { tags: ["work"], power_state: "Running" }),
      personal: dom(2, { tags: ["personal"] }),
      vault: dom(3, { default_dispvm: null, tags: ["secret"] }),
      gpg: dom(4, { power_state: "Running", tags: ["work"] }),
      "default-dvm": dom(5, { template_for_dispvms: true, tags: ["dvm-ok"] }),
      "work-dvm": dom(6, { template_for_dispvms: true, tags: ["work", "dvm-ok"], default_dispvm: "work-dvm" }),
      "fedora-40": dom(7, { type: "TemplateVM", default_dispvm: null }),
      "sys-net": dom(8, { power_state: "Running", internal: false }),
      "sys-hidden": dom(9, { internal: true }),
      // As qubesd sends it: the value of the `internal` feature, a string.
      "sys-hidden-feature": dom(10, { internal: "1" }),
      "sys-shown-feature": dom(11, { internal: "" }),
    },
  };
}
