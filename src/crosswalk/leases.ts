// Nodes in the shared database (docs/design.md, "Growing past one machine"): one document per node, keyed by the
// node's calling AE title to the PACS (the RemoteAET of the raw instances it owns), with its journal's counts at its
// last heartbeat (the dashboard shows every node) and, under pipeline.takeoverAfterMs, its lease. Its holder is the node
// itself while it runs; a node whose lease has expired (no heartbeat for the grace time) is taken over by one
// other node, which becomes the holder, adopts the dead node's raw instances and marks the lease settled once each
// of them is finished; the owner, back, claims its lease again only once it has expired or is settled. Every change
// of holder is one conditional update on the document, made only by the node whose claim on the lease's next epoch
// was inserted first (a unique _id): a MongoDB-wire server whose findAndModify is not atomic (FerretDB 1.24 reads,
// then writes) lets two racing conditional updates both succeed, an insert of one _id never.
// Takeover records say which raw instances a node took in or removed from the PACS, by keyed hash of the Orthanc
// ID (no identifier of the instance in the shared database), and how they ended there: the owner, back, finds
// there what became of its raw copies that are gone (adopted in a takeover, or a resend of the same instance that
// another node de-identified).
import type { Collection } from 'mongodb';
import type { SharedDatabase } from './open.js';

export interface NodeLease {
  /** The owner: its pacs.callingAet. */
  _id: string;
  /** Who works the owner's instances now: the owner itself, or the node that took over. */
  holder: string;
  /** ms since the epoch; past it, the holder is presumed dead. Null for a node without takeover: never taken over. */
  expiresAt: number | null;
  /** The holder's last renewal (ms). */
  heartbeatAt: number;
  /** The PACS change-log Seq after which every unfinished raw instance of the owner has its NewInstance entry. */
  mark: number;
  /** A takeover is over: every raw instance the holder took in is finished; the owner may claim the lease back. */
  settled: boolean;
  /** The owner's journal counts per job state at its last heartbeat (dashboard). */
  counts: Record<string, number>;
  /** How many times its holder has changed: the claim on epoch + 1 decides the next change (absent: 0). */
  epoch?: number;
}

export type TakeoverOutcome = 'DONE' | 'QUARANTINED';

interface TakeoverRecord {
  /** The keyed hash of the raw instance's Orthanc ID. */
  _id: string;
  by: string;
  at: string;
  outcome?: TakeoverOutcome;
}

/**
 * Updates per update command. FerretDB 1.24 on PostgreSQL keeps the read of each update that finds its document
 * open (a pooled connection) until the whole command ends, and takes another connection for each write: a command
 * of as many such updates as its pool has connections (50) waits for ever, and so does every later call to that
 * FerretDB (test/node-leases.test.ts).
 */
const UPDATES_PER_COMMAND = 16;

const nextEpoch = (lease: NodeLease) => (lease.epoch ?? 0) + 1;
/** The claim on a lease's next change of holder. */
const claimId = (lease: NodeLease) => `${lease._id}#${nextEpoch(lease)}`;

export class NodeLeases {
  constructor(
    private readonly db: SharedDatabase,
    private readonly graceMs: number,
  ) {}

  private get leases(): Collection<NodeLease> {
    return this.db.collection<NodeLease>('nodes');
  }

  private get records(): Collection<TakeoverRecord> {
    return this.db.collection<TakeoverRecord>('node_takeovers');
  }

  private get claims(): Collection<{ _id: string; by: string; at: number }> {
    return this.db.collection('node_lease_claims');
  }

  /** `me` claims the change of `lease`'s holder to its next epoch; false: another node claimed it first. */
  private async claimNext(lease: NodeLease, me: string, now: number): Promise<boolean> {
    const _id = claimId(lease);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await this.claims.insertOne({ _id, by: me, at: now });
        return true;
      } catch {
        // another node won, or the database failed: asked again later; unless the claim is older than the grace
        // time, left by a node that died between its claim and its update (one delete of it succeeds, then one insert)
        const left = await this.claims.findOne({ _id }).catch(() => null);
        if (!left || left.at >= now - this.graceMs) return false;
        if ((await this.claims.deleteOne({ _id, at: left.at })).deletedCount !== 1) return false;
      }
    }
    return false;
  }

  /** A claim whose conditional update then found the lease changed (renewed meanwhile): given back for a later try. */
  private async unclaim(lease: NodeLease, me: string): Promise<void> {
    await this.claims.deleteOne({ _id: claimId(lease), by: me });
  }

  /**
   * The owner takes its own lease: when it holds it already (a restart within the grace time), when it has expired,
   * or when a takeover of it is settled. Null while another node holds it (a takeover under way): wait and ask again.
   */
  async claimOwn(me: string, counts: Record<string, number>, now = Date.now()): Promise<NodeLease | null> {
    const fresh = { holder: me, expiresAt: now + this.graceMs, heartbeatAt: now, settled: false, counts };
    const current = await this.leases.findOne({ _id: me });
    if (!current) {
      try {
        await this.leases.insertOne({ _id: me, mark: 0, ...fresh });
        return { _id: me, mark: 0, ...fresh };
      } catch {
        return null; // another start of the same node won, or the database failed: asked again
      }
    }
    if (current.holder !== me && (current.expiresAt ?? 0) >= now && !current.settled) return null;
    // its own lease still running (a restart within the grace time): no other node may take it, nothing to claim
    const mine = current.holder === me && (current.expiresAt ?? 0) >= now;
    if (!mine && !(await this.claimNext(current, me, now))) return null;
    const epoch = mine ? (current.epoch ?? 0) : nextEpoch(current);
    const r = await this.leases.findOneAndUpdate({ _id: me, holder: current.holder, expiresAt: current.expiresAt }, { $set: { ...fresh, epoch } }, { returnDocument: 'after' });
    if (!r && !mine) await this.unclaim(current, me);
    return r ?? null;
  }

  /** The holder's heartbeat; false: the lease is no longer `me`'s (taken over, or claimed back by its owner). */
  async renew(owner: string, me: string, fields: { mark?: number; counts?: Record<string, number>; settled?: boolean } = {}, now = Date.now()): Promise<boolean> {
    const r = await this.leases.updateOne({ _id: owner, holder: me }, { $set: { expiresAt: now + this.graceMs, heartbeatAt: now, ...fields } });
    return r.matchedCount === 1;
  }

  /** Takes over every other node's expired lease it can (one conditional update each); returns those taken. */
  async takeExpired(me: string, now = Date.now()): Promise<NodeLease[]> {
    const taken: NodeLease[] = [];
    for (const l of await this.leases.find({ _id: { $ne: me }, expiresAt: { $lt: now } }).toArray()) {
      if (!(await this.claimNext(l, me, now))) continue;
      const r = await this.leases.findOneAndUpdate(
        { _id: l._id, holder: l.holder, expiresAt: l.expiresAt },
        { $set: { holder: me, expiresAt: now + this.graceMs, heartbeatAt: now, settled: false, epoch: nextEpoch(l) } },
        { returnDocument: 'after' },
      );
      if (r) taken.push(r);
      else await this.unclaim(l, me);
    }
    return taken;
  }

  /** A node without takeover (pipeline.takeoverAfterMs 0) reports its counts only: it holds no lease to expire. */
  async report(me: string, counts: Record<string, number>, now = Date.now()): Promise<void> {
    await this.leases.updateOne(
      { _id: me },
      { $set: { holder: me, expiresAt: null, heartbeatAt: now, counts }, $setOnInsert: { mark: 0, settled: false } },
      { upsert: true },
    );
  }

  /** Every node's document (the dashboard). */
  list(): Promise<NodeLease[]> {
    return this.leases.find({}).sort({ _id: 1 }).toArray();
  }

  /** Before adopting another node's raw instance: the record its owner will find. */
  async recordTakeover(rawKey: string, by: string): Promise<void> {
    await this.records.updateOne({ _id: rawKey }, { $set: { by, at: new Date().toISOString() } }, { upsert: true });
  }

  /** How raw instances `by` removed from the PACS ended (one write for many). */
  async recordOutcomes(outcomes: [rawKey: string, outcome: TakeoverOutcome][], by: string): Promise<void> {
    const at = new Date().toISOString();
    for (let i = 0; i < outcomes.length; i += UPDATES_PER_COMMAND) {
      const part = outcomes.slice(i, i + UPDATES_PER_COMMAND);
      await this.records.bulkWrite(part.map(([rawKey, outcome]) => ({ updateOne: { filter: { _id: rawKey }, update: { $set: { by, at, outcome } }, upsert: true } })), { ordered: false });
    }
  }

  /** Whether (and by whom, how) a node other than `owner` took in or removed this raw instance. */
  async takenOver(owner: string, rawKey: string): Promise<{ by: string; outcome?: TakeoverOutcome } | null> {
    const r = await this.records.findOne({ _id: rawKey });
    return r && r.by !== owner ? { by: r.by, ...(r.outcome ? { outcome: r.outcome } : {}) } : null;
  }

  /** Records older than `days` go: an owner back after that long finds its gone raw copies quarantined as absent. */
  async pruneRecords(days: number): Promise<number> {
    const r = await this.records.deleteMany({ at: { $lt: new Date(Date.now() - days * 86_400_000).toISOString() } });
    return r.deletedCount;
  }
}
