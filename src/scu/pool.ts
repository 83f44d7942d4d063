// A pool of open associations to the PACS: forwarding one instance costs one C-STORE round trip, not a TCP
// connection, an A-ASSOCIATE and an A-RELEASE as well (what storescu itself does: all its files over one
// association). The forward's semantics are store.ts's (timeouts, the one retry on a fresh association); the pool
// only decides which association an attempt gets.
import type { ReceivedInstance } from '../dicom/c-store.js';
import { cutThrough, forward, openAssociation, type AssociationSource, type CutThrough, type Lease, type PacsTarget, type StoreOutcome } from './store.js';
import type { StorageContext, StoreAssociation } from '../dicom/dimse.js';
import { networkFailure } from '../reasons.js';

export interface PoolSettings {
  /** Associations open to the PACS at most (connecting, busy, idle or being released). */
  maxAssociations: number;
  /** An association idle this long is released; 0: each is released after its instance (no reuse). */
  idleTimeoutMs: number;
}

/**
 * After this many instances an association is released instead of kept: bounds what one association accumulates
 * (the library's message IDs wrap at 65536).
 */
const MAX_STORES_PER_ASSOCIATION = 10_000;

/** How long close() lets forwards under way finish before it aborts their associations. */
const CLOSE_WAIT_MS = 5000;

const POOL_CLOSED: StoreOutcome = { kind: 'unavailable', code: 'pacs-unavailable', reason: 'association pool closed' };

interface Member {
  association: StoreAssociation;
  /** Lent to an attempt. */
  busy: boolean;
  /** Released or aborted: it still holds its slot until its connection is closed. */
  closing: boolean;
  stores: number;
  lastUsed: number;
  idleTimer?: NodeJS.Timeout;
}

interface Waiter {
  ctx: StorageContext;
  fresh: boolean;
  resolve: (r: Lease | StoreOutcome) => void;
  timer: NodeJS.Timeout;
}

/**
 * Associations are opened with the contexts of the instance that needs one, kept open between instances, and
 * reused for any instance whose SOP class and exact transfer syntax they accepted (or whose refusal they already
 * hold). At most `maxAssociations` are open; a forward that finds none free waits for one, within its own deadline.
 * One that failed, was aborted or timed out is dropped, never reused; an idle one is released (A-RELEASE) after
 * `idleTimeoutMs`, well before the PACS would close it (Orthanc: DicomScpTimeout, 30 s), and all are at close().
 */
export class AssociationPool implements AssociationSource {
  private readonly members = new Set<Member>();
  private readonly waiters: Waiter[] = [];
  private closed = false;

  constructor(
    private readonly target: PacsTarget,
    private readonly settings: PoolSettings,
  ) {}

  /** Forwards one instance (store.ts's forward over this pool). Never throws. */
  store(inst: ReceivedInstance): Promise<StoreOutcome> {
    return forward(this.target, this, inst);
  }

  /** Begins the forward of an instance whose data set is still arriving (store.ts's cutThrough over this pool). */
  begin(ctx: StorageContext & { sopInstanceUid: string }): CutThrough {
    return cutThrough(this.target, this, ctx);
  }

  /** Open associations now (connecting, busy, idle, or being released). */
  get size(): number {
    return this.members.size;
  }

  acquire(ctx: StorageContext, fresh: boolean, deadline: number): Promise<Lease | StoreOutcome> {
    if (this.closed) return Promise.resolve(POOL_CLOSED);
    let lease: Lease | undefined;
    try {
      lease = this.tryAcquire(ctx, fresh);
    } catch (e) {
      const f = networkFailure(e); // the connection could not even be started
      return Promise.resolve({ kind: 'unavailable', code: f.code, reason: f.message });
    }
    if (lease) return Promise.resolve(lease);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        ctx,
        fresh,
        resolve,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          resolve({ kind: 'unavailable', code: 'pacs-timeout', reason: 'PACS timeout' });
        }, Math.max(0, deadline - Date.now())),
      };
      this.waiters.push(waiter);
    });
  }

  private tryAcquire(ctx: StorageContext, fresh: boolean): Lease | undefined {
    // the most recently used first: under a lighter load the others stay idle and are released
    const idle = [...this.members].filter((m) => !m.busy && !m.closing && m.association.idle).sort((a, b) => b.lastUsed - a.lastUsed);
    if (!fresh) {
      const fit = idle.find((m) => m.association.carries(ctx) === true) ?? idle.find((m) => m.association.carries(ctx) === false);
      if (fit) return this.lend(fit, true);
    }
    if (this.members.size < this.settings.maxAssociations) return this.lend(this.open(ctx), false);
    // at the cap, an idle association that cannot serve this one makes room: the least recently used, one at a time
    const victim = idle.at(-1);
    if (victim && ![...this.members].some((m) => m.closing)) this.retire(victim);
    return undefined;
  }

  private open(ctx: StorageContext): Member {
    const member: Member = { association: openAssociation(this.target, ctx, this.settings.idleTimeoutMs), busy: true, closing: false, stores: 0, lastUsed: Date.now() };
    this.members.add(member);
    member.association.on('closed', () => {
      clearTimeout(member.idleTimer);
      this.members.delete(member);
      this.pump();
    });
    return member;
  }

  private lend(member: Member, reused: boolean): Lease {
    member.busy = true;
    clearTimeout(member.idleTimer);
    let returned = false;
    return {
      association: member.association,
      reused,
      done: (healthy) => {
        if (returned) return;
        returned = true;
        this.giveBack(member, healthy);
      },
    };
  }

  private giveBack(member: Member, healthy: boolean): void {
    member.busy = false;
    member.stores++;
    member.lastUsed = Date.now();
    if (!healthy) {
      member.closing = true;
      member.association.abort();
      return; // its slot is free once the connection is closed
    }
    if (this.closed || this.settings.idleTimeoutMs === 0 || member.stores >= MAX_STORES_PER_ASSOCIATION || !member.association.idle) return this.retire(member);
    member.idleTimer = setTimeout(() => this.retire(member), this.settings.idleTimeoutMs);
    this.pump();
  }

  /** A-RELEASE (or abort, when it is not idle); the member leaves the pool when its connection is closed. */
  private retire(member: Member): void {
    if (member.closing) return;
    member.closing = true;
    clearTimeout(member.idleTimer);
    void member.association.release();
  }

  /** Gives waiting forwards what has become free, in the order they came. */
  private pump(): void {
    for (const waiter of [...this.waiters]) {
      const lease = this.closed ? POOL_CLOSED : this.tryAcquire(waiter.ctx, waiter.fresh);
      if (!lease) continue;
      clearTimeout(waiter.timer);
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve(lease);
    }
  }

  /**
   * Releases every association: idle ones at once, busy ones when their forward ends, or aborted after
   * CLOSE_WAIT_MS; waiting and later forwards get 'unavailable'. Resolves once every connection is closed.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.pump();
    for (const m of this.members) if (!m.busy) this.retire(m);
    const all = () => Promise.all([...this.members].map((m) => m.association.whenClosed()));
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([all().then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), CLOSE_WAIT_MS)))]);
    clearTimeout(timer);
    if (waited) return;
    for (const m of this.members) m.association.abort();
    await all();
  }
}
