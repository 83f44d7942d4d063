// A node on a shared crosswalk database: every heartbeat writes its journal's counts there (the dashboard shows
// every node). Under pipeline.takeoverAfterMs > 0 (docs/design.md, "Growing past one machine") it also works its
// own raw instances only while it holds its lease in the shared database (src/crosswalk/leases.ts), renewed every
// quarter of the grace time; and it takes over any other node whose lease has expired.
//   Held: new C-STOREs accepted, the worker and the reconciler running. Not held (at start until claimed, after a
//   takeover of this node, or no renewal for half the grace time): new C-STOREs refused with 0xA700, the worker
//   paused, the reconciler stopped. The half leaves the other half for the steps already started to end before any
//   other node may take over (a timer, not the heartbeat: the database may hold a heartbeat for seconds).
//   Taking over node X: the change log from X's mark to its end, adopting X's raw instances (RemoteAET X) after a
//   takeover record each; walked again at every heartbeat until nothing new appears and each adopted job is finished;
//   then the lease is marked settled, for X to claim back. Every raw copy a node removes from the PACS (de-identified
//   or quarantined: its own, adopted, or a resend of another node's) goes into the records with its outcome, so X,
//   back, ends each job whose raw copy is gone by them (src/pipeline/worker.ts rawAbsent).
// The mark: a change-log Seq read before the oldest unfinished job of this node was received, so each of its raw
// instances has its NewInstance entry after it (sampled at every heartbeat; a restart keeps the stored one until
// the jobs of before it are finished).
import type { NodeLease, NodeLeases, TakeoverOutcome } from '../crosswalk/leases.js';
import type { Logger } from '../log.js';
import type { OrthancClient } from '../pacs/orthanc.js';
import { UNFINISHED, type Journal } from './journal.js';
import type { Reconciler } from './reconciler.js';

export interface ClusterMemberDeps {
  leases: NodeLeases;
  /** This node: its pacs.callingAet. */
  me: string;
  /** pipeline.takeoverAfterMs; 0: no lease, counts only. */
  graceMs: number;
  journal: Journal;
  pacs: OrthancClient;
  reconciler: Reconciler;
  log: Logger;
  /** Whether this node may work its instances now (accept, de-identify, reconcile). */
  fence(held: boolean): void;
  /** Whether it takes over nodes whose lease expired (false with the pipeline off: nothing would finish their jobs). */
  takeOver: boolean;
  /** Days the takeover records are kept (pipeline.retainFinishedDays, at least one). */
  retainRecordsDays: number;
}

interface Takeover {
  /** The change-log Seq read up to. */
  position: number;
  /** Jobs of this journal that work the owner's raw instances, with their raw copies' keyed hashes. */
  jobs: Map<number, string>;
  settled: boolean;
}

/** Outcomes waiting for the database, at most (about 100 bytes each). */
const MAX_OUTCOMES = 200_000;

/** How often a node without takeover writes its counts. */
const REPORT_MS = 5000;

export class ClusterMember {
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  /** The takeovers' walks, beside the heartbeats: a long walk must not hold up a renewal. */
  private working: Promise<void> | undefined;
  private held = false;
  /** Fences this node half the grace time after its last renewal, whatever a heartbeat waiting on the database does. */
  private fenceTimer: NodeJS.Timeout | undefined;
  private mark = 0;
  private samples: { at: number; seq: number }[] = [];
  private readonly taken = new Map<string, Takeover>();
  /** Raw copies this node removed from the PACS, written to the takeover records at the next heartbeat. */
  private outcomes: [rawKey: string, outcome: TakeoverOutcome][] = [];
  private prunedAt = 0;

  constructor(private readonly d: ClusterMemberDeps) {}

  get heartbeatMs(): number {
    return this.d.graceMs ? Math.max(100, Math.floor(this.d.graceMs / 4)) : REPORT_MS;
  }

  /** Under takeover fenced until the first heartbeat claims the lease; then a heartbeat every quarter of the grace time. */
  start(): Promise<void> {
    if (this.d.graceMs) this.d.fence(false);
    this.timer = setInterval(() => void this.tick(), this.heartbeatMs);
    this.timer.unref();
    return this.tick();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.fenceTimer);
    await this.ticking;
    await this.working;
    await this.writeOutcomes().catch(() => undefined); // what is not written now the owner finds quarantined as absent
  }

  /** Whether this node holds its own lease now. */
  get holdsLease(): boolean {
    return this.held;
  }

  /** The owners this node holds the lease of now, besides its own. */
  get takenOver(): string[] {
    return [...this.taken.keys()];
  }

  /** One heartbeat at a time; a failed one (database or PACS down) is logged and the next one tries again. */
  tick(): Promise<void> {
    this.ticking ??= this.beat()
      .catch((e: Error) => this.d.log.warn({ err: e.message }, 'node lease heartbeat failed'))
      .finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async beat(): Promise<void> {
    const { leases, me, journal } = this.d;
    const counts = journal.counts();
    const now = Date.now();
    if (!this.d.graceMs) return leases.report(me, counts, now);
    // a PACS down only skips a sample
    await this.d.pacs.lastChange().then((c) => this.sample(Date.now(), c.Last), () => undefined);
    if (this.held) {
      if (await leases.renew(me, me, { mark: this.currentMark(), counts }, now)) this.renewed(now);
      else this.lose('another node took over its instances');
    } else {
      const lease = await leases.claimOwn(me, counts, now);
      if (lease) this.gain(lease, now);
      else this.d.log.warn({ node: me }, 'node lease held by another node (a takeover of this node): waiting until it is settled');
    }
    await this.writeOutcomes();
    if (now - this.prunedAt > 3_600_000) {
      this.prunedAt = now;
      await leases.pruneRecords(Math.max(1, this.d.retainRecordsDays));
    }
    for (const [owner, t] of this.taken) {
      if (await leases.renew(owner, me, {})) continue;
      this.taken.delete(owner);
      this.d.log.info({ node: owner }, t.settled ? 'taken-over node claimed its lease back' : 'lease of a taken-over node lost');
    }
    this.working ??= this.takeovers()
      .catch((e: Error) => this.d.log.warn({ err: e.message }, 'takeover pass failed'))
      .finally(() => (this.working = undefined));
  }

  /** Walks on with each takeover not settled, then takes over any node whose lease expired. */
  private async takeovers(): Promise<void> {
    for (const [owner, t] of this.taken) if (!t.settled && this.taken.has(owner)) await this.advance(owner, t);
    if (this.d.takeOver) for (const lease of await this.d.leases.takeExpired(this.d.me)) await this.begin(lease);
  }

  /** Renewed at `now` (before the database was asked): no renewal for half the grace time from then fences this node. */
  private renewed(now: number): void {
    clearTimeout(this.fenceTimer);
    this.fenceTimer = setTimeout(() => this.held && this.lose('its lease could not be renewed for half the grace time'), now + this.d.graceMs / 2 - Date.now());
    this.fenceTimer.unref();
  }

  private gain(lease: NodeLease, now: number): void {
    this.held = true;
    this.renewed(now);
    this.mark = lease.mark;
    this.d.log.info({ node: this.d.me }, 'node lease held: working this node’s instances');
    this.d.fence(true);
  }

  private lose(why: string): void {
    clearTimeout(this.fenceTimer);
    this.held = false;
    this.d.log.error({ node: this.d.me, why }, 'node lease lost: new instances refused and the worker paused until it is claimed again');
    this.d.fence(false);
  }

  private async begin(lease: NodeLease): Promise<void> {
    this.d.log.warn({ node: lease._id, holder: lease.holder, mark: lease.mark }, 'taking over a node whose lease expired');
    const t: Takeover = { position: lease.mark, jobs: new Map(), settled: false };
    this.taken.set(lease._id, t);
    await this.advance(lease._id, t);
  }

  /** Walks the owner's new raw instances (the heartbeat renews its lease meanwhile), and settles once nothing is left. */
  private async advance(owner: string, t: Takeover): Promise<void> {
    const { leases, me, journal, reconciler } = this.d;
    const walk = await reconciler.takeOver(owner, t.position, (rawId) => leases.recordTakeover(journal.rawKey(rawId), me));
    const fresh = walk.jobs.filter((j) => !t.jobs.has(j.id));
    for (const j of walk.jobs) t.jobs.set(j.id, journal.rawKey(j.rawId));
    t.position = walk.position;
    if (!(await leases.renew(owner, me, { mark: t.position }))) return; // lost meanwhile: the heartbeat drops it
    if (fresh.length) return this.d.log.warn({ node: owner, adopted: fresh.length, total: t.jobs.size }, 'raw instances of a taken-over node taken in');
    for (const id of t.jobs.keys()) {
      const job = journal.get(id);
      // unfinished yet: asked again at the next heartbeat (a job pruned from the journal was finished)
      if (job && UNFINISHED.includes(job.state)) return;
    }
    // their outcomes in the records before the owner may come back to read them
    await this.writeOutcomes();
    if (!(await leases.renew(owner, me, { settled: true }))) return;
    t.settled = true;
    this.d.log.warn({ node: owner, instances: t.jobs.size }, 'takeover settled: every raw instance of the node is finished; it may claim its lease back');
  }

  /** This node removed a raw copy from the PACS (src/pipeline/worker.ts): its owner may be another node. */
  removed(rawId: string, outcome: TakeoverOutcome): void {
    if (!this.d.graceMs) return;
    // bounded while the database is down: the oldest go, and their owners find those quarantined as absent
    if (this.outcomes.length >= MAX_OUTCOMES) this.outcomes.shift();
    this.outcomes.push([this.d.journal.rawKey(rawId), outcome]);
  }

  private async writeOutcomes(): Promise<void> {
    while (this.outcomes.length) {
      const batch = this.outcomes.slice(0, 1000);
      await this.d.leases.recordOutcomes(batch, this.d.me);
      this.outcomes = this.outcomes.slice(batch.length);
    }
  }

  /** `at`: a time after the Seq was read: a job received after it has its instance's entry after the Seq. */
  private sample(at: number, seq: number): void {
    this.samples.push({ at, seq });
  }

  /**
   * The newest sample read a heartbeat before the oldest unfinished job arrived (the stored mark while none is that
   * old). The heartbeat's margin covers entries an index on PostgreSQL commits out of Seq order.
   */
  private currentMark(): number {
    const oldest = this.d.journal.oldestUnfinished();
    const before = oldest ? Date.parse(oldest) - this.heartbeatMs : Infinity;
    let i = -1;
    for (let k = 0; k < this.samples.length && this.samples[k]!.at <= before; k++) i = k;
    if (i >= 0) {
      this.mark = Math.max(this.mark, this.samples[i]!.seq);
      this.samples = this.samples.slice(i);
    }
    return this.mark;
  }
}
