// C-STORE SCU to the PACS: one spooled instance, byte for byte in the transfer syntax it arrived in (streamed from
// its spool file by the dcmjs-dimse adapter, src/dicom/dimse.ts, which never lets the library transcode it: its
// own send path would re-encode the data set and could store a placeholder), within a bound, with one retry on a
// fresh association. Where the association comes from is an AssociationSource: a new one per attempt here
// (storeInstance), or the pool of open associations the middleman forwards over (src/scu/pool.ts).
import { ArrivingData, AssociationClosedError, AssociationRejectedError, StoreAssociation, type ClientTls, type StoreAnswer, type StorageContext } from '../dicom/dimse.js';
import type { ReceivedInstance } from '../dicom/c-store.js';
import { readFileSync } from 'node:fs';
import type { Config } from '../config/index.js';
import { networkFailure, type Failure } from '../reasons.js';

export interface PacsTarget {
  host: string;
  port: number;
  aet: string;
  callingAet: string;
  /** TCP connect and A-ASSOCIATE-AC. */
  connectTimeoutMs: number;
  /** An attempt in which no byte moves to or from the PACS for this long is aborted. */
  noProgressTimeoutMs: number;
  /** Bound on the whole forward of one instance, its retry included. */
  storeTimeoutMs: number;
  /** Associate over TLS (pacs.tls), else TCP. */
  tls?: ClientTls;
}

/** pacs.tls as the connection takes it: its PEM files read (loadConfig checked them); undefined when it is off. */
export function pacsTls(t: Config['pacs']['tls']): ClientTls | undefined {
  if (!t.enabled) return undefined;
  return {
    ca: readFileSync(t.ca),
    ...(t.cert && t.key ? { cert: readFileSync(t.cert), key: readFileSync(t.key) } : {}),
    minVersion: t.minVersion,
    ...(t.servername ? { servername: t.servername } : {}),
  };
}

export type StoreOutcome = (
  /** The PACS answered; `status` is its C-STORE status (success, warning or failure). */
  | { kind: 'answered'; status: number; comment?: string }
  /** The PACS accepted neither the SOP class nor the exact transfer syntax. */
  | { kind: 'not-accepted' }
  /** No answer: connection refused, association rejected or aborted, no progress, timeout. `reason` holds no PHI. */
  | { kind: 'unavailable'; code: 'pacs-unavailable' | 'pacs-timeout'; reason: string }
) & {
  /** Set when a first attempt failed and the outcome is a later one's: why the first failed (a fixed text). */
  retried?: string;
};

/**
 * Why an attempt ended without an answer, when another attempt on a fresh association may well succeed. 'reused
 * association lost': an association that had carried earlier instances was gone when this one was sent (the PACS
 * closed it while idle, and its close had not been seen yet).
 */
type Retryable = 'no progress' | 'connection lost after association' | 'reused association lost';

type AttemptResult = StoreOutcome & { retryable?: Retryable };

/** An association lent to one attempt. */
export interface Lease {
  association: StoreAssociation;
  /** It carried an instance before this one. */
  reused: boolean;
  /** The attempt is over: a `healthy` association (the PACS answered it) may carry another instance; others are dropped. */
  done(healthy: boolean): void;
}

/** Where an attempt gets its association. */
export interface AssociationSource {
  /**
   * An association for this instance, connecting or open; `fresh`: a new one, never one that carried an instance.
   * It may wait for one until `deadline`; it resolves with an outcome instead when it cannot give one.
   */
  acquire(ctx: StorageContext, fresh: boolean, deadline: number): Promise<Lease | StoreOutcome>;
}

/**
 * A new association to the PACS, proposed for the instance's SOP class and transfer syntax. The library's own timers
 * are only a backstop: the no-progress timer and the deadline of each forward decide. Its "connectTimeout" is the
 * socket's idle timeout for the whole association, its pduTimeout counts from the last PDU received (none arrives
 * while a large data set is sent, nor while the association waits in a pool): both get the whole forward's bound
 * plus `idleMs`, the longest the association may wait idle between two instances.
 */
export function openAssociation(target: PacsTarget, first: StorageContext, idleMs = 0): StoreAssociation {
  return new StoreAssociation(first, {
    host: target.host,
    port: target.port,
    callingAet: target.callingAet,
    calledAet: target.aet,
    connectTimeout: target.storeTimeoutMs + idleMs,
    associationTimeout: target.connectTimeoutMs,
    pduTimeout: target.storeTimeoutMs + idleMs,
    ...(target.tls ? { tls: target.tls } : {}),
  });
}

/** A new association for every attempt, released after its answer. */
function oneShot(target: PacsTarget): AssociationSource {
  return {
    acquire: async (inst) => {
      try {
        const association = openAssociation(target, inst);
        return { association, reused: false, done: (healthy) => (healthy ? void association.release() : association.abort()) };
      } catch (e) {
        const f = networkFailure(e);
        return { kind: 'unavailable', code: f.code, reason: f.message };
      }
    },
  };
}

/**
 * Stores one spooled instance in the PACS on a new association, within `storeTimeoutMs` in all (see forward()).
 * `retry: false` makes one attempt only (a modality stand-in in tests). Never throws.
 */
export function storeInstance(target: PacsTarget, inst: ReceivedInstance, opts: { retry?: boolean } = {}): Promise<StoreOutcome> {
  return forward(target, oneShot(target), inst, opts);
}

/**
 * Stores one spooled instance in the PACS over associations from `source`, within `storeTimeoutMs` in all. An
 * attempt in which no byte moves to or from the PACS for `noProgressTimeoutMs`, or whose association is lost before
 * the answer, is aborted and made once more on a fresh association: the PACS de-duplicates by SOP Instance UID, so
 * a copy it stored without answering is answered for (Orthanc says success again). A reused association found lost
 * (the PACS closed it while idle) is not that retry: the instance goes on a fresh association, and keeps its one
 * retry. An attempt that never got an association (connection refused, association rejected, no answer to
 * A-ASSOCIATE) is not repeated: the PACS is down or refuses us, the sender is answered at once and retries later.
 * Never throws; the outcome says what happened.
 */
export async function forward(
  target: PacsTarget,
  source: AssociationSource,
  inst: ReceivedInstance,
  opts: { retry?: boolean; first?: (deadline: number) => Promise<AttemptResult> } = {},
): Promise<StoreOutcome> {
  const deadline = Date.now() + target.storeTimeoutMs;
  const again = () => opts.retry !== false && deadline - Date.now() >= RETRY_MIN_MS;
  const run = async (fresh: boolean): Promise<AttemptResult> => {
    const lease = await source.acquire(inst, fresh, deadline);
    return 'association' in lease ? attempt(target, lease, () => lease.association.send(inst), deadline) : lease;
  };
  const first = await (opts.first?.(deadline) ?? run(false));
  let last = first;
  let attempts = 1;
  if (last.retryable === 'reused association lost' && again()) {
    last = await run(true);
    attempts++;
  }
  if (last.retryable && again()) {
    last = await run(true);
    attempts++;
  }
  const outcome = outcomeOf(last);
  if (attempts === 1) return outcome;
  // fixed texts: the reason ends in the sender's ErrorComment (LO, 64 characters)
  if (outcome.kind === 'unavailable') return { ...outcome, reason: `${outcome.reason} (retried)`, retried: first.retryable };
  return { ...outcome, retried: first.retryable };
}

/** A retry with less time than this left would only delay the sender's answer. */
const RETRY_MIN_MS = 1000;

function outcomeOf(r: AttemptResult): StoreOutcome {
  const { retryable: _, ...outcome } = r;
  return outcome;
}

/** One attempt on a lent association: wait for it to be accepted (when new), `send`, wait for the answer. */
function attempt(target: PacsTarget, lease: Lease, send: () => Promise<StoreAnswer>, deadline: number): Promise<AttemptResult> {
  const association = lease.association;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (outcome: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(overall);
      clearTimeout(stalled);
      association.off('progress', progress);
      // one that did not answer is dropped: an A-ABORT tells the PACS (when it still reads), then the connection goes
      lease.done(outcome.kind === 'answered' || outcome.kind === 'not-accepted');
      resolve(outcome);
    };
    /** The association is gone before the answer: worth a second attempt only once the PACS had accepted it. */
    const lost = (f: Failure & { code: 'pacs-unavailable' | 'pacs-timeout' }) =>
      finish({
        kind: 'unavailable',
        code: f.code,
        reason: f.message,
        ...(association.associated ? { retryable: lease.reused ? ('reused association lost' as const) : ('connection lost after association' as const) } : {}),
      });
    const overall = setTimeout(() => finish({ kind: 'unavailable', code: 'pacs-timeout', reason: 'PACS timeout' }), Math.max(0, deadline - Date.now()));
    // restarted by every byte to or from the PACS (progress); before the association, a silent PACS is a down one
    const stalled = setTimeout(
      () => finish({ kind: 'unavailable', code: 'pacs-timeout', reason: 'no progress', ...(association.associated ? { retryable: 'no progress' as const } : {}) }),
      target.noProgressTimeoutMs,
    );
    const progress = () => {
      if (!settled) stalled.refresh();
    };
    association.on('progress', progress);
    association.accepted
      .then(() => (settled ? ('not-accepted' as const) : send()))
      .then(
        (answer) => finish(answer === 'not-accepted' ? { kind: 'not-accepted' } : { kind: 'answered', ...answer }),
        (e: unknown) => {
          if (e instanceof AssociationRejectedError) {
            const rj = e.rejection;
            finish({ kind: 'unavailable', code: 'pacs-unavailable', reason: `association rejected (result ${rj.result}, source ${rj.source}, reason ${rj.reason})` });
          } else if (e instanceof AssociationClosedError) lost({ code: 'pacs-unavailable', message: e.message });
          else lost(networkFailure(e));
        },
      );
  });
}

/** A forward begun while its data set arrives (cutThrough()). */
export interface CutThrough {
  /** One more fragment of the data set, in order. */
  push(chunk: Buffer): void;
  /**
   * The data set is whole, checked and journalled (`inst`, as the spool holds it): its last fragment goes, and the
   * PACS's answer comes back as forward() gives it. Never throws.
   */
  commit(inst: ReceivedInstance): Promise<StoreOutcome>;
  /** The instance is refused or gone: the C-STORE under way is aborted before its last fragment, the PACS keeps nothing. */
  abort(): void;
}

/**
 * Cut-through forwarding: at the data set's first fragment an association is taken from `source` and the C-STORE
 * begun, each fragment passed on as it arrives (src/dicom/dimse.ts, ArrivingData), the last held back until
 * commit(). The PACS therefore stores nothing before the instance is checked and journalled (invariant 1 holds as
 * with a store-and-forward), and an abort() leaves it nothing (an A-ABORT before the last fragment). The spool keeps
 * every byte meanwhile: whatever went wrong before the answer (no association, the PACS closed it, the context was
 * not accepted on it), commit() is forward()'s first attempt, and its retry, on a fresh association, is sent from
 * the spool as before.
 */
export function cutThrough(target: PacsTarget, source: AssociationSource, ctx: StorageContext & { sopInstanceUid: string }): CutThrough {
  const data = new ArrivingData();
  let over = false;
  /** The association the C-STORE was begun on, with the answer to come; undefined: none could be begun. */
  const begun: Promise<{ lease: Lease; answer: Promise<StoreAnswer> } | undefined> = source
    .acquire(ctx, false, Date.now() + target.storeTimeoutMs)
    .then(async (lease) => {
      if (!('association' in lease)) return undefined;
      try {
        await lease.association.accepted;
      } catch {
        lease.done(false);
        return undefined;
      }
      if (over || lease.association.carries(ctx) !== true) {
        lease.done(true); // nothing was sent on it
        return undefined;
      }
      const answer = lease.association.sendArriving(ctx, data);
      answer.catch(() => undefined); // awaited at commit(), if it comes to that
      return { lease, answer };
    });
  return {
    push: (chunk) => data.push(chunk),
    abort: () => {
      if (over) return;
      over = true;
      void begun.then((b) => b?.lease.done(false)); // not answered: aborted and dropped
    },
    commit: async (inst) => {
      over = true;
      const b = await begun;
      if (!b) return forward(target, source, inst);
      const send = async (): Promise<StoreAnswer> => {
        await data.finish(inst);
        return b.answer;
      };
      return forward(target, source, inst, { first: (deadline) => attempt(target, b.lease, send, deadline) });
    },
  };
}
