// Ingest: what happens to one received instance before its sender gets an answer.
// RECEIVED (journal) → forward to PACS → IN_PACS (journal, durable) → success to the sender;
// any failure → REJECTED with a reason and a failure status, and the middleman keeps nothing.
import { rm } from 'node:fs/promises';
import type { Logger } from '../log.js';
import { fingerprint } from '../log.js';
import type { PacsTarget, StoreOutcome } from '../scu/store.js';
import { storeInstance } from '../scu/store.js';
import type { Journal } from './journal.js';
import { isSuccessOrWarning, Status, type ReceivedInstance, type StoreReply } from './types.js';

export type Forward = (target: PacsTarget, inst: ReceivedInstance) => Promise<StoreOutcome>;

export class Ingest {
  constructor(
    private readonly journal: Journal,
    private readonly pacs: PacsTarget,
    private readonly log: Logger,
    private readonly forward: Forward = storeInstance,
  ) {}

  /** Forwards one instance and answers for its sender. Never throws. */
  async store(inst: ReceivedInstance): Promise<StoreReply> {
    const uid = fingerprint(inst.sopInstanceUid);
    let jobId: number;
    try {
      jobId = this.journal.received(inst);
    } catch (e) {
      this.log.error({ uid, err: (e as Error).message }, 'journal write failed; instance refused');
      await this.discard(inst);
      return { status: Status.ProcessingFailure, comment: 'DPHIANT journal unavailable' };
    }
    const started = Date.now();
    const outcome = await this.forward(this.pacs, inst);
    const reply = replyFor(outcome);
    try {
      if (outcome.kind === 'answered' && isSuccessOrWarning(outcome.status)) {
        this.journal.transition(jobId, 'RECEIVED', 'IN_PACS');
      } else {
        this.journal.transition(jobId, 'RECEIVED', 'REJECTED', reply.comment ?? null);
      }
    } catch (e) {
      // the PACS may hold it, but unless the journal says so the sender must not be told it is safe
      this.log.error({ job: jobId, uid, err: (e as Error).message }, 'journal update failed');
      await this.discard(inst);
      return { status: Status.ProcessingFailure, comment: 'DPHIANT journal unavailable' };
    }
    const level = reply.status === Status.Success ? 'info' : 'warn';
    this.log[level](
      { job: jobId, uid, bytes: inst.bytes, ts: inst.transferSyntaxUid, caller: inst.callingAet, status: hex(reply.status), ms: Date.now() - started, reason: reply.comment },
      reply.status === Status.Success ? 'forwarded to PACS' : 'refused',
    );
    await this.discard(inst);
    return reply;
  }

  private async discard(inst: ReceivedInstance): Promise<void> {
    await rm(inst.spoolPath, { force: true }).catch(() => undefined);
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
