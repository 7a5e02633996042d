/**
 * The logs VM's configuration (`build-log.json`), read by BuildLog and LogDigest alike
 * (services/lib/publisher.ts): written by the site.
 */
import { z } from "zod";
import { fingerprintAnyCase as fingerprint } from "../fingerprint";
import { domUVmName as vmName } from "../vmName";

export const LogsVmConfig = z
  .object({
    /** The logs git working copy (a clone of `remote` on `branch`). */
    repoDir: z.string().startsWith("/"),
    /** Any git URL (ssh in production, file:// in tests); never an option. */
    remote: z.string().min(1).refine((s) => !s.startsWith("-"), "must not start with -"),
    branch: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,100}$/),
    /** Fingerprint of the logs key: signs our commits, and must have signed the remote head. */
    signingKey: fingerprint,
    gnupgHome: z.string().startsWith("/").optional(),
    /** The build VMs this logs VM serves: their env and the keys VMs that sign for them. */
    buildVms: z.record(vmName, z.strictObject({ env: z.string().min(1).max(64), keysVm: vmName, winKeysVm: vmName.optional() })),
    tlog: z.strictObject({
      /** The qbi-tlog program. */
      program: z.string().min(1).default("qbi-tlog"),
      /** The log's note signing key (made by `qbi-tlog keygen` in this VM). */
      privateKey: z.string().startsWith("/"),
      /** Tessera's directory (default: `<state>/tlog`). */
      dir: z.string().startsWith("/").optional(),
      /** Where the log is published inside the repository. */
      repoSubdir: z.string().regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/).default("tlog"),
    }),
    /** A signature request outside any open session may point at a log published this recently. */
    maxLogAgeSeconds: z.number().int().min(60).max(7 * 86400).default(3600),
    xzThresholdBytes: z.number().int().nonnegative().default(10 * 1024 * 1024),
    maxLineBytes: z.number().int().min(256).max(16 * 1024 * 1024).default(64 * 1024),
    /** Content bytes kept per log; the rest is dropped after a marker line (GitHub refuses > 100 MB). */
    maxLogBytes: z.number().int().min(4096).max(1024 * 1024 * 1024).default(50 * 1024 * 1024),
    /** Concurrent BuildLog streams per build VM. */
    maxStreamsPerVm: z.number().int().min(1).max(1000).default(8),
    /** A stream without data for this long is closed (and published). */
    idleTimeoutSeconds: z.number().int().min(1).max(7 * 86400).default(4 * 3600),
    fsyncIntervalMs: z.number().int().min(0).max(10000).default(200),
    pushAttempts: z.number().int().min(1).max(20).default(5),
    pushBackoffMs: z.number().int().min(0).default(2000),
    /** A log whose push failed is retried alone after this long. */
    retryAfterSeconds: z.number().int().min(0).default(300),
    lockTimeoutMs: z.number().int().positive().default(30 * 60 * 1000),
    authorName: z.string().min(1).default("Qubes OS build bot"),
    authorEmail: z.string().min(3).default("builder-bot@qubes-os.org"),
  })
  .strict();
