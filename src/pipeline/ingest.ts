// Ingest: what happens to one received instance before its sender gets an answer.
// check the data set → RECEIVED (journal) → forward to PACS → IN_PACS (journal, durable) → success to the sender,
// and the job goes to the de-identification worker (with the bytes, when they fit the hand-off);
// any failure → REJECTED with a reason and a failure status, and the middleman keeps nothing.
import { readFile, rm } from 'node:fs/promises';
import { DicomParseError, parseDataset } from '../dicom/walker.js';
import { topLevelString } from '../dicom/values.js';
import type { Logger } from '../log.js';
import { fingerprint } from '../log.js';
import type { PacsTarget, StoreOutcome } from '../scu/store.js';
import { storeInstance } from '../scu/store.js';
import type { Journal } from './journal.js';
import { Metrics, reasonClass } from '../metrics.js';
import { isSuccessOrWarning, Status, type ReceivedInstance, type StoreReply } from './types.js';

export type Forward = (target: PacsTarget, inst: ReceivedInstance) => Promise<StoreOutcome>;

export interface IngestOptions {
  /** Data sets up to this size are read and checked before forwarding (larger ones are checked by the worker). */
  checkMaxBytes: number;
  /** Called once a job is IN_PACS, with the data set bytes when they were read. */
  inPacs?: (jobId: number, bytes: Buffer | undefined) => void;
  forward?: Forward;
  metrics?: Metrics;
}

const SOP_CLASS_MISMATCH = 0xa900;

/** Why a data set cannot be taken in, or null. Checks structure and that it is the instance the command names. */
export function checkDataset(bytes: Buffer, inst: ReceivedInstance, maxInflatedBytes = 64 * 1024 ** 2): { status: number; comment: string } | null {
  let ds;
  try {
    ds = parseDataset(bytes, inst.transferSyntaxUid, { maxInflatedBytes });
  } catch (e) {
    if (e instanceof DicomParseError) return { status: Status.CannotUnderstand, comment: `malformed data set at offset ${e.offset}`.slice(0, 64) };
    throw e;
  }
  const top = (tag: number) => topLevelString(ds, tag, []);
  if (top(0x00080018) !== inst.sopInstanceUid) return { status: Status.CannotUnderstand, comment: 'SOP Instance UID differs from the C-STORE request' };
  if (top(0x00080016) !== inst.sopClassUid) return { status: SOP_CLASS_MISMATCH, comment: 'SOP Class UID differs from the C-STORE request' };
  return null;
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

  /** Forwards one instance and answers for its sender. Never throws. */
  async store(inst: ReceivedInstance): Promise<StoreReply> {
    const uid = fingerprint(inst.sopInstanceUid);
    this.metrics.inc('dphiant_instances_received_total');
    try {
      let bytes: Buffer | undefined;
      if (inst.bytes <= this.opts.checkMaxBytes) {
        bytes = await readFile(inst.spoolPath);
        const bad = checkDataset(bytes, inst, this.opts.checkMaxBytes);
        if (bad) return this.refuse(inst, bad);
      }
      let jobId: number;
      try {
        jobId = this.journal.received(inst);
      } catch (e) {
        this.log.error({ uid, err: (e as Error).message }, 'journal write failed; instance refused');
        return { status: Status.ProcessingFailure, comment: 'DPHIANT journal unavailable' };
      }
      const started = Date.now();
      const outcome = await this.metrics.time('forward', () => this.forward(this.pacs, inst));
      const reply = replyFor(outcome);
      const stored = outcome.kind === 'answered' && isSuccessOrWarning(outcome.status);
      try {
        if (stored) this.journal.transition(jobId, 'RECEIVED', 'IN_PACS');
        else this.journal.transition(jobId, 'RECEIVED', 'REJECTED', reply.comment ?? null);
      } catch (e) {
        // the PACS may hold it, but unless the journal says so the sender must not be told it is safe
        this.log.error({ job: jobId, uid, err: (e as Error).message }, 'journal update failed');
        return { status: Status.ProcessingFailure, comment: 'DPHIANT journal unavailable' };
      }
      const level = reply.status === Status.Success ? 'info' : 'warn';
      this.log[level](
        { job: jobId, uid, bytes: inst.bytes, ts: inst.transferSyntaxUid, caller: inst.callingAet, status: hex(reply.status), ms: Date.now() - started, reason: reply.comment },
        stored ? 'forwarded to PACS' : 'refused',
      );
      if (stored) {
        this.metrics.inc('dphiant_instances_forwarded_total');
        this.opts.inPacs?.(jobId, bytes);
      } else this.metrics.inc('dphiant_instances_rejected_total', { reason: reasonClass(reply.comment ?? '') });
      return reply;
    } catch (e) {
      this.log.error({ uid, err: (e as Error).message }, 'ingest failed');
      return { status: Status.ProcessingFailure, comment: 'DPHIANT internal error' };
    } finally {
      await rm(inst.spoolPath, { force: true }).catch(() => undefined);
    }
  }

  /** A data set refused before forwarding: journalled REJECTED with the reason, so it shows in status and the UI. */
  private refuse(inst: ReceivedInstance, bad: { status: number; comment: string }): StoreReply {
    this.metrics.inc('dphiant_instances_rejected_total', { reason: reasonClass(bad.comment) });
    try {
      const jobId = this.journal.received(inst);
      this.journal.transition(jobId, 'RECEIVED', 'REJECTED', bad.comment);
      this.log.warn({ job: jobId, uid: fingerprint(inst.sopInstanceUid), caller: inst.callingAet, status: hex(bad.status), reason: bad.comment }, 'refused before forwarding');
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'journal write failed');
    }
    return bad;
  }
}

/** The sender's answer for a PACS outcome. Comments are fixed texts: they reach the sender's logs. */
export function replyFor(outcome: StoreOutcome): StoreReply {
  switch (outcome.kind) {
    case 'answered':
      return outcome.status === Status.Success ? { status: Status.Success } : { status: outcome.status, comment: `PACS answered ${hex(outcome.status)}` };
    case 'not-accepted':
      return { status: Status.SopClassNotSupported, comment: 'PACS refused SOP class or transfer syntax' };
    case 'unavailable':
      return { status: Status.OutOfResources, comment: `PACS unavailable: ${outcome.reason}`.slice(0, 64) };
  }
}

export function hex(status: number): string {
  return '0x' + status.toString(16).toUpperCase().padStart(4, '0');
}
