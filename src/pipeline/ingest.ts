// Ingest: what happens to one received instance before its sender gets an answer.
// backpressure (refuse at once while a dependency of the worker fails or the backlog is over its bound) →
// check the data set → RECEIVED (journal) → forward to PACS → IN_PACS (journal, durable) → success to the sender,
// (with cut-through, begin() starts the forward at the data set's first fragment, and the PACS gets its last only
// after the check and RECEIVED: src/scu/store.ts, cutThrough)
// and the job goes to the de-identification worker (with the bytes, when they fit the hand-off);
// any failure → REJECTED with a reason and a failure status, and the middleman keeps nothing.
// The job records the raw copy's Orthanc ID (computed from the data set, or looked up for one too large to parse): from then on the pipeline fetches and
// deletes only that ID, never whatever the PACS holds under the SOP Instance UID (with Retain UIDs the
// de-identified copy has the same UID).
import { readFile, rm } from 'node:fs/promises';
import { IDENTIFY_TIMEOUT_MS } from '../config/index.js';
import { DicomParseError, parseDataset } from '../dicom/walker.js';
import { topLevelString } from '../dicom/values.js';
import type { Logger } from '../log.js';
import { orthancInstanceId, type OrthancClient } from '../pacs/orthanc.js';
import type { CutThrough, PacsTarget, StoreOutcome } from '../scu/store.js';
import type { StorageContext } from '../dicom/dimse.js';
import { storeInstance } from '../scu/store.js';
import type { Journal } from './journal.js';
import { Metrics } from '../metrics.js';
import type { Backpressure } from './health.js';
import { withinTime } from './deadline.js';
import { formatStatus, isSuccessOrWarning, refusal, Status, type ReceivedInstance, type RefusalCode, type StoreReply } from '../dicom/c-store.js';

/** A failure answer: its code is what the journal and the metrics record. */
type Refusal = StoreReply & { code: RefusalCode; comment: string };

export type Forward = (target: PacsTarget, inst: ReceivedInstance) => Promise<StoreOutcome>;

export interface IngestOptions {
  /** Data sets up to this size are read and checked before forwarding (larger ones are checked by the worker). */
  checkMaxBytes: number;
  /** Called once a job is IN_PACS, with the data set bytes when they were read. */
  inPacs?: (jobId: number, bytes: Buffer | undefined) => void;
  forward?: Forward;
  /** Begins a forward at a data set's first fragment (cut-through); absent: each is forwarded whole. */
  cutThrough?: (ctx: StorageContext & { sopInstanceUid: string }) => CutThrough;
  metrics?: Metrics;
  /** The PACS's REST API, to confirm the raw copy's Orthanc ID once the PACS accepted the C-STORE. */
  pacsRest?: Pick<OrthancClient, 'instance' | 'lookup'>;
  /** Refuses new instances before forwarding while the worker cannot keep up (src/pipeline/health.ts). */
  backpressure?: Pick<Backpressure, 'refusal'>;
}

/**
 * Why a data set cannot be taken in (its structure, or it is not the instance the command names), or for one that
 * passes, the Orthanc ID the PACS will give it: Orthanc's SHA-1 of the top-level Patient ID and the study, series
 * and instance UIDs (src/pacs/orthanc.ts).
 */
export function inspectDataset(bytes: Buffer, inst: ReceivedInstance, maxInflatedBytes = 64 * 1024 ** 2): Refusal | { rawId: string } {
  let ds;
  try {
    ds = parseDataset(bytes, inst.transferSyntaxUid, { maxInflatedBytes });
  } catch (e) {
    if (e instanceof DicomParseError) return refusal('malformed', `malformed data set at offset ${e.offset}`);
    throw e;
  }
  const top = (tag: number) => topLevelString(ds, tag, []);
  if (top(0x00080018) !== inst.sopInstanceUid) return refusal('sop-instance-mismatch', 'SOP Instance UID differs from the C-STORE request');
  if (top(0x00080016) !== inst.sopClassUid) return refusal('sop-class-mismatch', 'SOP Class UID differs from the C-STORE request');
  // as Orthanc reads them: trailing padding is not part of the value, leading spaces are (test/raw-id.test.ts)
  const id = (tag: number) => topLevelString(ds, tag).trimEnd();
  return { rawId: orthancInstanceId(id(0x00100020), id(0x0020000d), id(0x0020000e), inst.sopInstanceUid) };
}

export class Ingest {
  private readonly forward: Forward;
  private readonly metrics: Metrics;

  constructor(
    private readonly journal: Journal,
    private readonly pacs: PacsTarget,
    private readonly log: Logger,
    private readonly opts: IngestOptions = { checkMaxBytes: 64 * 1024 ** 2 },
  ) {
    this.forward = opts.forward ?? storeInstance;
    this.metrics = opts.metrics ?? new Metrics();
  }

  /**
   * A forward to begin while the data set arrives, unless cut-through is off or the instance will be refused for
   * backpressure anyway (store() then says so).
   */
  begin(ctx: StorageContext & { sopInstanceUid: string }): CutThrough | undefined {
    if (!this.opts.cutThrough || this.opts.backpressure?.refusal()) return undefined;
    return this.opts.cutThrough(ctx);
  }

  /**
   * Forwards one instance and answers for its sender; `early`, the forward begin() started, is committed once the
   * instance is checked and journalled, and aborted (the PACS keeps nothing) when it is refused. Never throws.
   */
  async store(inst: ReceivedInstance, early?: CutThrough): Promise<StoreReply> {
    const uid = this.journal.fingerprint(inst.sopInstanceUid);
    this.metrics.inc('dphiant_instances_received_total');
    try {
      // before anything is read or forwarded: the sender keeps its copy and sends it again later
      const refused = this.opts.backpressure?.refusal();
      if (refused) return this.refuse(inst, refused);
      let bytes: Buffer | undefined;
      let rawId: string | null = null;
      if (inst.bytes <= this.opts.checkMaxBytes) {
        bytes = inst.data ?? (await readFile(inst.spoolPath));
        const checked = inspectDataset(bytes, inst, this.opts.checkMaxBytes);
        if (!('rawId' in checked)) return this.refuse(inst, checked);
        rawId = checked.rawId;
      }
      let jobId: number;
      try {
        // the computed ID is recorded at once: after a crash before the PACS answered, recovery asks for it
        jobId = await this.journal.durably(() => this.journal.received({ ...inst, rawId }));
      } catch (e) {
        this.log.error({ uid, err: (e as Error).message }, 'journal write failed; instance refused');
        return this.ownFailure(JOURNAL_UNAVAILABLE);
      }
      const started = Date.now();
      const outcome = await this.metrics.time('forward', () => (early ? early.commit(inst) : this.forward(this.pacs, inst)));
      const reply = replyFor(outcome);
      if (outcome.retried) {
        this.metrics.inc('dphiant_forward_retries_total');
        this.log.warn({ job: jobId, uid, first: outcome.retried, outcome: outcome.kind }, 'forward retried on a fresh association');
      }
      const stored = outcome.kind === 'answered' && isSuccessOrWarning(outcome.status);
      if (stored) rawId = await this.identifyRaw(inst, rawId, jobId);
      try {
        await this.journal.durably(() =>
          stored ? this.journal.inPacs(jobId, rawId) : this.journal.transition(jobId, 'RECEIVED', 'REJECTED', reply.comment ?? null, reply.code ?? 'internal'),
        );
      } catch (e) {
        // the PACS may hold it, but unless the journal says so the sender must not be told it is safe
        this.log.error({ job: jobId, uid, err: (e as Error).message }, 'journal update failed');
        return this.ownFailure(JOURNAL_UNAVAILABLE);
      }
      const level = reply.status === Status.Success ? 'info' : 'warn';
      this.log[level](
        { job: jobId, uid, bytes: inst.bytes, ts: inst.transferSyntaxUid, caller: inst.callingAet, status: formatStatus(reply.status), ms: Date.now() - started, code: reply.code, reason: reply.comment },
        stored ? 'forwarded to PACS' : 'refused',
      );
      if (stored) {
        this.metrics.inc('dphiant_instances_forwarded_total');
        this.opts.inPacs?.(jobId, bytes);
      } else this.metrics.inc('dphiant_instances_rejected_total', { reason: reply.code ?? 'internal' });
      return reply;
    } catch (e) {
      this.log.error({ uid, err: (e as Error).message }, 'ingest failed');
      return this.ownFailure(refusal('internal', 'DPHIANT internal error'));
    } finally {
      early?.abort(); // refused before it was committed: the PACS keeps nothing of it (after commit(), nothing)
      if (!inst.data) await rm(inst.spoolPath, { force: true }).catch(() => undefined);
    }
  }

  /**
   * The raw copy's Orthanc ID as the PACS holds it. A computed one is taken as it is, without a request on the
   * sender's answer path: Orthanc derives the ID from the same four values, and should it ever have derived another,
   * the copy is an instance no job covers, which the reconciler adopts from the PACS's change log. A large data set
   * that was not parsed is looked up: the one instance under this UID that is no job's output and, if several, the
   * one no job covers yet. When the REST API does not answer, null: the reconciler then identifies the copy by its
   * UID hash. Never throws.
   */
  private async identifyRaw(inst: ReceivedInstance, computed: string | null, jobId: number): Promise<string | null> {
    const rest = this.opts.pacsRest;
    if (!rest || computed) return computed;
    const ask = async (): Promise<string | null> => {
      const found = (await rest.lookup(inst.sopInstanceUid)).filter((r) => r.Type === 'Instance' && !this.journal.isOutput(r.ID)).map((r) => r.ID);
      const uncovered = found.length > 1 ? found.filter((id) => !this.journal.knows(id)) : found;
      if (uncovered.length === 1) return uncovered[0]!;
      this.log.warn({ job: jobId, uid: this.journal.fingerprint(inst.sopInstanceUid), copies: found.length }, 'raw copy not identified in the PACS; the reconciler will');
      return null;
    };
    try {
      return await withinTime(IDENTIFY_TIMEOUT_MS, ask(), () => new Error(`no answer in ${IDENTIFY_TIMEOUT_MS} ms`));
    } catch (e) {
      this.log.warn({ job: jobId, uid: this.journal.fingerprint(inst.sopInstanceUid), err: (e as Error).message }, 'PACS REST API did not identify the raw copy');
      return null;
    }
  }

  /** A refusal for a failure of DPHIANT's own (journal, a bug): counted; the journal may be what failed, so not journalled. */
  private ownFailure(reply: Refusal): Refusal {
    this.metrics.inc('dphiant_instances_rejected_total', { reason: reply.code });
    return reply;
  }

  /** An instance the SCP refused while it arrived (over the size limit, spool full): counted and journalled like one refused here. */
  refuseReceived(inst: ReceivedInstance, reply: StoreReply): StoreReply {
    this.metrics.inc('dphiant_instances_received_total');
    return this.refuse(inst, { ...reply, code: reply.code ?? 'internal', comment: reply.comment ?? '' });
  }

  /** An instance refused before forwarding: journalled REJECTED with its code and comment, so it shows in status and the UI. */
  private refuse(inst: ReceivedInstance, bad: Refusal): StoreReply {
    this.metrics.inc('dphiant_instances_rejected_total', { reason: bad.code });
    try {
      const jobId = this.journal.received(inst);
      this.journal.transition(jobId, 'RECEIVED', 'REJECTED', bad.comment, bad.code);
      this.log.warn({ job: jobId, uid: this.journal.fingerprint(inst.sopInstanceUid), caller: inst.callingAet, status: formatStatus(bad.status), code: bad.code, reason: bad.comment }, 'refused before forwarding');
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'journal write failed');
    }
    return bad;
  }
}

const JOURNAL_UNAVAILABLE = refusal('journal-unavailable', 'DPHIANT journal unavailable');

/** The sender's answer for a PACS outcome. Comments are fixed texts: they reach the sender's logs. */
export function replyFor(outcome: StoreOutcome): StoreReply {
  switch (outcome.kind) {
    case 'answered':
      if (outcome.status === Status.Success) return { status: Status.Success };
      // a warning is stored: passed on with its status, no failure code
      if (isSuccessOrWarning(outcome.status)) return { status: outcome.status, comment: `PACS answered ${formatStatus(outcome.status)}` };
      return refusal('pacs-refused', `PACS answered ${formatStatus(outcome.status)}`, outcome.status);
    case 'not-accepted':
      return refusal('pacs-unsupported', 'PACS refused SOP class or transfer syntax');
    case 'unavailable':
      return refusal(outcome.code, `PACS unavailable: ${outcome.reason}`);
  }
}
