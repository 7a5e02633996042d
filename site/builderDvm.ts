/**
 * What builder-dvm (the dispvm template builderv2's disposables start from) carries besides the
 * qube itself: builderv2's own in-disposable services, linked from a verified checkout of the
 * pinned qubes-builderv2 in the template's home (which every disposable inherits); `/builder`
 * made persistent with bind-dirs; and, at each boot, `/builder` remounted with `dev,suid`, which
 * chroot and mock builds need. Pure: the site writes these as ManagedFiles and one BuilderCheckout.
 */
import { type PlannedCheckout, v2BuilderCheckout } from "./builders";
import type { SiteConfig } from "./config";

export const RPC_DIR = "/usr/local/etc/qubes-rpc";
export const BIND_DIRS_CONF = "/rw/config/qubes-bind-dirs.d/50_qubes-build-infra-builder.conf";
/** A file in /rw/bind-dirs/builder: the bind source must exist before the first boot binds it. */
export const BIND_DIR_MARKER = "/rw/bind-dirs/builder/.qubes-build-infra";

export interface BuilderDvmFiles {
  checkout: PlannedCheckout;
  files: { path: string; content: string; mode: number }[];
  links: { path: string; target: string }[];
  /** The rc.local block (id `builder-mount`). */
  boot: string;
}

/** builder-dvm's pieces, or undefined when no environment uses builderv2. */
export function builderDvmFiles(cfg: SiteConfig): BuilderDvmFiles | undefined {
  const v2 = Object.entries(cfg.envs).filter(([, e]) => e.builderv2);
  if (v2.length === 0) return undefined;
  // The site-wide pin when there is one, else the first v2 environment's.
  const [first] = v2.find(([, e]) => e.builderSources?.builder === undefined) ?? v2[0];
  const checkout = { ...v2BuilderCheckout(cfg, first), label: "builder-dvm, qubes-builderv2 (its in-disposable services)" };
  const services = ["qubesbuilder.FileCopyIn", "qubesbuilder.FileCopyOut", ...(v2.some(([, e]) => e.windows) ? ["qubesbuilder.WinSign.Timestamp"] : [])];
  return {
    checkout,
    files: [
      { path: BIND_DIRS_CONF, content: "binds+=( '/builder' )\n", mode: 0o644 },
      { path: BIND_DIR_MARKER, content: "/builder of builder-dvm's disposables, kept by bind-dirs (qubes-build-infra)\n", mode: 0o644 },
    ],
    links: services.map((s) => ({ path: `${RPC_DIR}/${s}`, target: `${checkout.dir}/rpc/${s}` })),
    boot: [
      "# chroot and mock builds need device nodes and setuid programs in /builder",
      "mount -o remount,dev,suid /builder || echo 'qubes-build-infra: cannot remount /builder with dev,suid' >&2",
      "",
    ].join("\n"),
  };
}
