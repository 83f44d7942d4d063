// C-STORE SCU to the PACS: one spooled instance, byte for byte in the transfer syntax it arrived in (streamed from
// its spool file by the dcmjs-dimse adapter, src/dicom/dimse.ts, which never lets the library transcode it: its
// own send path would re-encode the data set and could store a placeholder), within a bound, with one retry on a
// fresh association.
import dimse, { SpooledStore } from '../dicom/dimse.js';
import type { ReceivedInstance } from '../dicom/c-store.js';
import { networkFailure, type Failure } from '../reasons.js';

const { AbortSource, AbortReason } = dimse.constants;

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
}

export type StoreOutcome = (
  /** The PACS answered; `status` is its C-STORE status (success, warning or failure). */
  | { kind: 'answered'; status: number; comment?: string }
  /** The PACS accepted neither the SOP class nor the exact transfer syntax. */
  | { kind: 'not-accepted' }
  /** No answer: connection refused, association rejected or aborted, no progress, timeout. `reason` holds no PHI. */
  | { kind: 'unavailable'; code: 'pacs-unavailable' | 'pacs-timeout'; reason: string }
) & {
  /** Set when a first attempt failed and the outcome is the second's: why the first failed (a fixed text). */
  retried?: string;
};

/** Why an attempt ended without an answer, when a second attempt on a fresh association may well succeed. */
type Retryable = 'no progress' | 'connection lost after association';

type AttemptResult = StoreOutcome & { retryable?: Retryable };

/**
 * Stores one spooled instance in the PACS, within `storeTimeoutMs` in all. An attempt in which no byte moves to or
 * from the PACS for `noProgressTimeoutMs`, or whose association is lost before the answer, is aborted and made once
 * more on a fresh association: the PACS de-duplicates by SOP Instance UID, so a copy it stored without answering is
 * answered for (Orthanc says success again). An attempt that never got an association (connection refused,
 * association rejected, no answer to A-ASSOCIATE) is not repeated: the PACS is down or refuses us, the sender is
 * answered at once and retries later. `retry: false` makes one attempt only (a modality stand-in in tests). Never
 * throws; the outcome says what happened.
 */
export async function storeInstance(target: PacsTarget, inst: ReceivedInstance, opts: { retry?: boolean } = {}): Promise<StoreOutcome> {
  const deadline = Date.now() + target.storeTimeoutMs;
  const first = await attempt(target, inst, deadline);
  if (!first.retryable || opts.retry === false || deadline - Date.now() < RETRY_MIN_MS) return outcomeOf(first);
  const second = outcomeOf(await attempt(target, inst, deadline));
  // fixed texts: the reason ends in the sender's ErrorComment (LO, 64 characters)
  if (second.kind === 'unavailable') return { ...second, reason: `${second.reason} (retried)`, retried: first.retryable };
  return { ...second, retried: first.retryable };
}

/** A retry with less time than this left would only delay the sender's answer. */
const RETRY_MIN_MS = 1000;

function outcomeOf(r: AttemptResult): StoreOutcome {
  const { retryable: _, ...outcome } = r;
  return outcome;
}

/** One association: connect, associate, send, wait for the answer. */
function attempt(target: PacsTarget, inst: ReceivedInstance, deadline: number): Promise<AttemptResult> {
  return new Promise((resolve) => {
    let settled = false;
    let associated = false;
    let store: SpooledStore | undefined;
    const finish = (outcome: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(overall);
      clearTimeout(stalled);
      // an A-ABORT tells the PACS to drop the association (when it still reads), then the connection goes
      if (outcome.kind !== 'answered') store?.abort(AbortSource.ServiceUser, AbortReason.NotSpecified);
      resolve(outcome);
    };
    /** The association is gone before the answer: worth a second attempt only once the PACS had accepted it. */
    const lost = (f: Failure & { code: 'pacs-unavailable' | 'pacs-timeout' }) =>
      finish({ kind: 'unavailable', code: f.code, reason: f.message, ...(associated ? { retryable: 'connection lost after association' as const } : {}) });
    const overall = setTimeout(() => finish({ kind: 'unavailable', code: 'pacs-timeout', reason: 'PACS timeout' }), Math.max(0, deadline - Date.now()));
    // restarted by every byte to or from the PACS (progress); before the association, a silent PACS is a down one
    const stalled = setTimeout(
      () => finish({ kind: 'unavailable', code: 'pacs-timeout', reason: 'no progress', ...(associated ? { retryable: 'no progress' as const } : {}) }),
      target.noProgressTimeoutMs,
    );
    const progress = () => {
      if (!settled) stalled.refresh();
    };
    try {
      // the library's own timers are only a backstop: the no-progress timer and the deadline above decide.
      // Its "connectTimeout" is the socket's idle timeout for the whole association, its pduTimeout counts from
      // the last PDU received (none arrives while a large data set is sent): both get the whole forward's bound.
      store = new SpooledStore(inst, {
        host: target.host,
        port: target.port,
        callingAet: target.callingAet,
        calledAet: target.aet,
        connectTimeout: target.storeTimeoutMs,
        associationTimeout: target.connectTimeoutMs,
        pduTimeout: target.storeTimeoutMs,
        progress,
      });
    } catch (e) {
      const f = networkFailure(e);
      finish({ kind: 'unavailable', code: f.code, reason: f.message });
      return;
    }
    store.on('response', ({ status, comment }) => finish({ kind: 'answered', status, ...(comment ? { comment } : {}) }));
    store.on('done', () => finish({ kind: 'not-accepted' })); // done without a response: no usable context
    store.on('associationAccepted', () => {
      associated = true;
    });
    store.on('associationRejected', (rj) =>
      finish({ kind: 'unavailable', code: 'pacs-unavailable', reason: `association rejected (result ${rj.result}, source ${rj.source}, reason ${rj.reason})` }),
    );
    store.on('networkError', (e) => lost(networkFailure(e)));
    store.on('closed', () => lost({ code: 'pacs-unavailable', message: 'connection closed before response' }));
  });
}
