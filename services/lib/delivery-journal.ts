/**
 * The webhook receiver's memory of deliveries: which signed bodies and delivery ids it has
 * accepted, and for each build VM whether the call is queued, done, or owed (dropped: a full
 * queue, a timeout, a failure; GitHub may redeliver it). Kept as an append-only journal with
 * group commit (one fdatasync for every line written while the previous one ran) and periodic
 * compaction into a snapshot, so that an accepted delivery costs one short append instead of a
 * rewrite of the whole cache.
 *
 * Files in the state directory:
 * - `deliveries.jsonl`: the current log, one line per change;
 * - `deliveries.base.jsonl`: the last snapshot; its first line `{"k":"base","gen":G}`;
 * - `deliveries.seg-<g>.jsonl`: a log rotated out for a snapshot still being written (g > G),
 *   replayed after the base on load, removed once a snapshot covers it;
 * - `deliveries.json`: the earlier format (an array of ids), imported once, then removed.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { vmName } from "./shapes";

export const DELIVERY_ID_RE = /^[A-Za-z0-9-]{1,64}$/;
const HASH = z.string().regex(/^[0-9a-f]{64}$/);
const CallState = z.enum(["queued", "done", "owed"]);
export type CallState = z.infer<typeof CallState>;
const VmCall = z.object({ st: CallState, why: z.string().max(300).optional() }).strict();
export type VmCall = z.infer<typeof VmCall>;

const RecordLine = z
  .object({
    k: z.literal("new"),
    /** sha256 of `<route>\n<body>`: the HMAC covers the body, not the delivery id. */
    h: HASH,
    ids: z.array(z.string().regex(DELIVERY_ID_RE)).min(1).max(64),
    t: z.number().int(),
    ev: z.string().max(64),
    route: z.string().max(64),
    repo: z.string().max(201).optional(),
    org: z.string().max(64).optional(),
    hook: z.string().max(20).optional(),
    /** The qrexec call (service and stdin), kept while a VM still has it queued or owed. */
    call: z.object({ s: z.string().max(200), in: z.string().max(8192) }).strict().optional(),
    vms: z.record(vmName, VmCall),
  })
  .strict();
const Line = z.discriminatedUnion("k", [
  RecordLine,
  z.object({ k: z.literal("id"), h: HASH, id: z.string().regex(DELIVERY_ID_RE) }).strict(),
  z.object({ k: z.literal("vm"), h: HASH, vm: vmName, st: CallState, why: z.string().max(300).optional() }).strict(),
  z.object({ k: z.literal("base"), gen: z.number().int().nonnegative() }).strict(),
]);
type Line = z.infer<typeof Line>;

export interface Delivery {
  h: string;
  ids: string[];
  t: number;
  ev: string;
  route: string;
  repo?: string;
  org?: string;
  hook?: string;
  call?: { s: string; in: string };
  vms: Record<string, VmCall>;
}

/** Routes of records imported from the earlier format, which did not know the route. */
export const ANY_ROUTE = "*";

export function bodyHash(route: string, body: Buffer): string {
  return crypto.createHash("sha256").update(`${route}\n`).update(body).digest("hex");
}

export interface JournalOptions {
  /** Records kept (oldest first out; never one with a call still queued). */
  capacity: number;
  /** Lines appended before the log is compacted into a new snapshot. */
  compactAfterLines?: number;
  log: (msg: string) => void;
}

export class DeliveryJournal {
  private readonly recs = new Map<string, Delivery>();
  private readonly byId = new Map<string, string>();
  private fd = -1;
  private gen = 0;
  private lines = 0;
  private syncs = 0;
  private compactions = 0;
  private dirty = false;
  private syncing = false;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private rotateWanted = false;
  private kickScheduled = false;
  private compacting: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private readonly file: string;
  private readonly baseFile: string;
  private readonly compactAfter: number;

  constructor(
    private readonly dir: string,
    private readonly opts: JournalOptions,
  ) {
    this.file = path.join(dir, "deliveries.jsonl");
    this.baseFile = path.join(dir, "deliveries.base.jsonl");
    this.compactAfter = opts.compactAfterLines ?? Math.max(1000, 2 * opts.capacity);
  }

  /** Loads base, rotated segments and log; imports the earlier format; opens the log for appends. */
  async open(): Promise<void> {
    const base = this.readLines(this.baseFile);
    const head = base[0];
    this.gen = head && head.k === "base" ? head.gen : 0;
    for (const l of base) this.apply(l);
    const segs = this.segments();
    for (const { gen, file } of segs) if (gen > this.gen) for (const l of this.readLines(file)) this.apply(l);
    const current = this.readLines(this.file);
    for (const l of current) this.apply(l);
    const legacy = path.join(this.dir, "deliveries.json");
    let imported = false;
    if (fs.existsSync(legacy)) {
      let data: unknown = null;
      try {
        data = JSON.parse(fs.readFileSync(legacy, "utf8"));
      } catch {
        data = null;
      }
      const ids = z.array(z.string()).safeParse(data);
      if (!ids.success) throw new Error(`${legacy}: expected a JSON array of delivery ids (the earlier format); fix or remove it`);
      for (const id of ids.data.filter((x) => DELIVERY_ID_RE.test(x))) {
        if (this.byId.has(`${ANY_ROUTE} ${id}`)) continue;
        this.insert({ h: crypto.createHash("sha256").update(`legacy\0${id}`).digest("hex"), ids: [id], t: 0, ev: "legacy", route: ANY_ROUTE, vms: {} });
      }
      imported = true;
    }
    this.evict();
    // A log cut by a crash may end in half a line: start appends on a fresh line.
    this.fd = fs.openSync(this.file, "a", 0o600);
    const size = fs.fstatSync(this.fd).size;
    if (size > 0 && fs.readFileSync(this.file).subarray(size - 1)[0] !== 0x0a) fs.writeSync(this.fd, "\n");
    this.lines = current.length;
    if (imported || segs.length > 0) {
      await this.compact();
      if (imported) fs.rmSync(legacy, { force: true });
    }
    this.timer = setInterval(() => this.kick(), 1000);
    this.timer.unref();
  }

  get(h: string): Delivery | undefined {
    return this.recs.get(h);
  }

  /** The record that delivery id `id` was first seen with on `route` (or imported without a route). */
  byDelivery(route: string, id: string): Delivery | undefined {
    const h = this.byId.get(`${route} ${id}`) ?? this.byId.get(`${ANY_ROUTE} ${id}`);
    return h === undefined ? undefined : this.recs.get(h);
  }

  /** Every record, oldest first. */
  all(): IterableIterator<Delivery> {
    return this.recs.values();
  }

  get size(): number {
    return this.recs.size;
  }

  /** fdatasyncs made, lines in the current log, compactions done: for /api/status and tests. */
  stats(): { syncs: number; logLines: number; compactions: number } {
    return { syncs: this.syncs, logLines: this.lines, compactions: this.compactions };
  }

  add(d: Delivery): void {
    this.insert(d);
    this.append({ k: "new", ...d });
    this.evict();
  }

  alias(h: string, id: string): void {
    const d = this.recs.get(h);
    if (!d || d.ids.includes(id) || d.ids.length >= 64) return;
    d.ids.push(id);
    this.byId.set(`${d.route} ${id}`, h);
    this.append({ k: "id", h, id });
  }

  setCall(h: string, vm: string, st: CallState, why?: string): void {
    const d = this.recs.get(h);
    if (!d) return;
    d.vms[vm] = why === undefined ? { st } : { st, why };
    this.append(why === undefined ? { k: "vm", h, vm, st } : { k: "vm", h, vm, st, why });
    if (st === "done" && Object.values(d.vms).every((c) => c.st === "done")) delete d.call;
  }

  /**
   * Resolves once every line written so far is on disk. The sync starts at the end of the current
   * turn of the event loop, so that everything written in it shares one fdatasync.
   */
  durable(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.kickScheduled) {
        this.kickScheduled = true;
        setImmediate(() => {
          this.kickScheduled = false;
          this.kick();
        });
      }
    });
  }

  /** Flushes and closes the log (at exit). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.fd >= 0 && !this.syncing) {
      fs.fdatasyncSync(this.fd);
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }

  /** Writes a new snapshot of every record and drops the logs it covers. */
  compact(): Promise<void> {
    if (!this.compacting) {
      this.compacting = new Promise<void>((resolve) => {
        this.rotateWanted = true;
        this.waiters.push({ resolve, reject: () => resolve() });
        this.kick();
      })
        .then(() => this.writeBase())
        .finally(() => {
          this.compacting = null;
        });
    }
    return this.compacting;
  }

  // ------------------------------------------------------------------ internals

  private insert(d: Delivery): void {
    if (this.recs.has(d.h)) this.recs.delete(d.h); // seen again after it was evicted: the newer state wins
    this.recs.set(d.h, { ...d, ids: [...d.ids], vms: { ...d.vms } });
    for (const id of d.ids) this.byId.set(`${d.route} ${id}`, d.h);
  }

  private apply(l: Line): void {
    if (l.k === "new") {
      const { k: _k, ...d } = l;
      this.insert(d);
      this.evict();
    } else if (l.k === "id") {
      const d = this.recs.get(l.h);
      if (d && !d.ids.includes(l.id)) {
        d.ids.push(l.id);
        this.byId.set(`${d.route} ${l.id}`, l.h);
      }
    } else if (l.k === "vm") {
      const d = this.recs.get(l.h);
      if (d) d.vms[l.vm] = l.why === undefined ? { st: l.st } : { st: l.st, why: l.why };
    }
  }

  /** Oldest records out while over capacity; one with a call still queued stays (bounded by the queues). */
  private evict(): void {
    if (this.recs.size <= this.opts.capacity) return;
    for (const d of this.recs.values()) {
      if (this.recs.size <= this.opts.capacity) break;
      if (Object.values(d.vms).some((c) => c.st === "queued")) continue;
      this.recs.delete(d.h);
      for (const id of d.ids) if (this.byId.get(`${d.route} ${id}`) === d.h) this.byId.delete(`${d.route} ${id}`);
    }
  }

  private append(l: Line): void {
    fs.writeSync(this.fd, `${JSON.stringify(l)}\n`);
    this.lines++;
    this.dirty = true;
    if (this.lines >= this.compactAfter && !this.compacting) this.compact().catch((e: Error) => this.opts.log(`compaction failed: ${e.message}`));
  }

  /** Group commit: one fdatasync at a time; the callers that wrote meanwhile share the next one. */
  private kick(): void {
    if (this.syncing || this.fd < 0) return;
    if (this.waiters.length === 0 && !this.dirty && !this.rotateWanted) return;
    const batch = this.waiters;
    this.waiters = [];
    this.dirty = false;
    this.syncing = true;
    this.syncs++;
    fs.fdatasync(this.fd, (err) => {
      this.syncing = false;
      let failure: Error | null = err;
      // Rotation happens here, with no fdatasync in flight on the descriptor it closes.
      if (!failure && this.rotateWanted) {
        try {
          this.rotate();
        } catch (e) {
          failure = e as Error;
        }
      }
      for (const w of batch) {
        if (failure) w.reject(failure);
        else w.resolve();
      }
      this.kick();
    });
  }

  private rotate(): void {
    this.rotateWanted = false;
    if (this.dirty) fs.fdatasyncSync(this.fd);
    this.dirty = false;
    fs.closeSync(this.fd);
    const gen = Math.max(this.gen, ...this.segments().map((s) => s.gen)) + 1;
    fs.renameSync(this.file, path.join(this.dir, `deliveries.seg-${gen}.jsonl`));
    this.fd = fs.openSync(this.file, "a", 0o600);
    this.syncDir();
    this.lines = 0;
    // The snapshot is taken now, in the same tick: it holds exactly what the rotated logs hold.
    this.snapshot = { gen, text: this.serialize(gen) };
  }

  private snapshot: { gen: number; text: string } | null = null;

  private async writeBase(): Promise<void> {
    const snap = this.snapshot;
    if (!snap) return;
    this.snapshot = null;
    const tmp = `${this.baseFile}.tmp`;
    const fh = await fs.promises.open(tmp, "w", 0o600);
    try {
      await fh.writeFile(snap.text);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, this.baseFile);
    this.syncDir();
    this.gen = snap.gen;
    this.compactions++;
    for (const s of this.segments()) if (s.gen <= snap.gen) fs.rmSync(s.file, { force: true });
  }

  private serialize(gen: number): string {
    const out = [JSON.stringify({ k: "base", gen })];
    for (const d of this.recs.values()) {
      const keepCall = Object.values(d.vms).some((c) => c.st !== "done");
      const { call, ...rest } = d;
      out.push(JSON.stringify({ k: "new", ...rest, ...(keepCall && call ? { call } : {}) }));
    }
    return `${out.join("\n")}\n`;
  }

  private segments(): { gen: number; file: string }[] {
    return fs
      .readdirSync(this.dir)
      .map((f) => /^deliveries\.seg-([0-9]+)\.jsonl$/.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ gen: Number(m[1]), file: path.join(this.dir, m[0]) }))
      .sort((a, b) => a.gen - b.gen);
  }

  private syncDir(): void {
    const fd = fs.openSync(this.dir, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Lines of a journal file; a line that does not parse (e.g. cut by a crash) is skipped and named. */
  private readLines(file: string): Line[] {
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw e;
    }
    const out: Line[] = [];
    text.split("\n").forEach((raw, i) => {
      if (!raw) return;
      let data: unknown = null;
      try {
        data = JSON.parse(raw);
      } catch {
        data = null;
      }
      const r = Line.safeParse(data);
      if (r.success) out.push(r.data);
      else this.opts.log(`${file}:${i + 1}: skipping an unreadable journal line`);
    });
    return out;
  }
}
