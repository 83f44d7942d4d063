// The de-identification worker: takes IN_PACS jobs to DONE, each step journalled before the next starts.
//   IN_PACS: original bytes (hand-off, else from the PACS) → crosswalk → de-identify + verify → upload, confirm
//            the PACS id → DEIDENTIFIED
//   DEIDENTIFIED: delete the raw instance (never before the copy is confirmed: invariant 4) → DONE
// Every step is repeatable: the output is deterministic (keyed UIDs, stored aliases), so a repeat after a crash is
// AlreadyStored in the PACS, and deleting what is gone is a no-op. PACS and database errors are retried with
// backoff; after maxAttempts, or at once when the gate finds PHI, the data set is unreadable or a new value cannot be
// written in its character set, the raw instance moves to the quarantine.
// The raw copy is the Orthanc ID the job recorded at ingest (src/pipeline/ingest.ts), never a look-up by SOP
// Instance UID: with Retain UIDs the de-identified copy has the same UID.
import PQueue from 'p-queue';
import type { Config } from '../config/index.js';
import { deidentify, deidentifyDataset } from '../anonymize/deidentify.js';
import { encodeFileMeta } from '../dicom/writer.js';
import { VerificationError } from '../anonymize/gate.js';
import type { Profile } from '../anonymize/profile.js';
import type { CrosswalkStore } from '../crosswalk/store.js';
import { CharsetError } from '../dicom/values.js';
import { DicomParseError, parseDataset } from '../dicom/walker.js';
import { topLevelString } from '../dicom/values.js';
import type { Logger } from '../log.js';
import { OrthancHttpError, orthancInstanceId, type OrthancClient } from '../pacs/orthanc.js';
import type { Job, Journal } from './journal.js';
import type { Quarantine } from './quarantine.js';
import { Metrics, reasonClass } from '../metrics.js';

/** Received bytes kept for the worker, bounded in total; what does not fit is fetched back from the PACS. */
export class Handoff {
  private readonly held = new Map<number, Buffer>();
  private total = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly maxInstanceBytes: number,
  ) {}

  offer(jobId: number, bytes: Buffer): void {
    if (bytes.length > this.maxInstanceBytes || this.total + bytes.length > this.maxBytes) return;
    this.held.set(jobId, bytes);
    this.total += bytes.length;
  }

  take(jobId: number): Buffer | undefined {
    const b = this.held.get(jobId);
    if (b) {
      this.held.delete(jobId);
      this.total -= b.length;
    }
    return b;
  }
}

/** An error that retrying cannot fix. */
class Permanent extends Error {}

/** The raw copy's Orthanc ID is not known yet: the reconciler identifies it from the PACS (by the UID hash). */
class RawNotIdentified extends Error {
  constructor() {
    super('the raw copy in the PACS is not identified yet');
  }
}

/**
 * The SOP Instance UID of a received data set, read from its bytes (the journal keeps only a keyed hash of it);
 * '' when they cannot be read.
 */
function sopInstanceUidOf(dataset: Buffer, tsUid: string): string {
  try {
    return topLevelString(parseDataset(dataset, tsUid), 0x00080018);
  } catch {
    return '';
  }
}

/**
 * Why de-identifying an instance failed for good (the same bytes, profile and aliases fail the same way every
 * time), or undefined when a retry may succeed (crosswalk or other transient trouble). Names no value.
 */
function permanentReason(e: unknown): string | undefined {
  if (e instanceof VerificationError) return `verification: ${e.hits.map((h) => `${h.kind} in ${h.path}`).join('; ')}`.slice(0, 500);
  if (e instanceof DicomParseError) return `unreadable data set: ${e.message}`;
  if (e instanceof CharsetError) return CharsetError.REASON;
  return undefined;
}

export interface WorkerDeps {
  journal: Journal;
  pacs: OrthancClient;
  crosswalk: CrosswalkStore;
  profile: Profile;
  siteKey: Buffer;
  quarantine: Quarantine;
  handoff: Handoff;
  settings: Config['pipeline'];
  log: Logger;
  metrics?: Metrics;
}

export class DeidentificationWorker {
  private readonly queue: PQueue;
  private readonly queued = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  private readonly metrics: Metrics;

  constructor(private readonly d: WorkerDeps) {
    this.queue = new PQueue({ concurrency: d.settings.concurrency });
    this.metrics = d.metrics ?? new Metrics();
  }

  /** Picks up due jobs now and every second (retries, requeued jobs, jobs of a previous run). */
  start(): void {
    this.sweep();
    this.timer = setInterval(() => this.sweep(), 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.queue.clear();
    await this.queue.onIdle();
  }

  /** Jobs waiting or running. */
  get depth(): number {
    return this.queued.size;
  }

  enqueue(jobId: number): void {
    if (this.stopped || this.queued.has(jobId)) return;
    this.queued.add(jobId);
    void this.queue.add(async () => {
      try {
        await this.process(jobId);
      } catch (e) {
        // process() handles its own failures; this is a bug, logged without values
        this.d.log.error({ job: jobId, err: (e as Error).message }, 'worker error');
      } finally {
        this.queued.delete(jobId);
      }
    });
  }

  private sweep(): void {
    for (const job of this.d.journal.due(Date.now(), 500)) this.enqueue(job.id);
  }

  private async process(jobId: number): Promise<void> {
    let job = this.d.journal.get(jobId);
    if (!job || job.nextAttemptAt > Date.now()) return;
    let raw: Buffer | undefined;
    let received: Buffer | undefined;
    try {
      if (job.state === 'IN_PACS' && (await this.doneByTwin(job))) return;
      if (job.state === 'IN_PACS') {
        // the received data set (no file meta) when the hand-off kept it, else the PS3.10 file from the PACS
        received = this.d.handoff.take(job.id);
        if (received) await this.deidentifyAndUpload(job, received, job.transferSyntaxUid);
        else await this.deidentifyAndUpload(job, (raw = await this.fetchRaw(job)));
        job = this.d.journal.get(jobId)!;
      }
      if (job.state === 'DEIDENTIFIED') {
        await this.metrics.time('delete', () => this.deleteRaw(job!));
        this.d.journal.transition(job.id, 'DEIDENTIFIED', 'DONE');
        this.metrics.inc('dphiant_instances_deidentified_total');
        this.d.log.info({ job: job.id, alias: job.aliasId }, 'de-identified in the PACS');
      }
    } catch (e) {
      // what the quarantine would keep: the PACS's file, or the received data set made a PS3.10 file
      const asFile =
        raw ??
        (received && Buffer.concat([encodeFileMeta({ sopClassUid: job.sopClassUid, sopInstanceUid: sopInstanceUidOf(received, job.transferSyntaxUid), tsUid: job.transferSyntaxUid }), received]));
      await this.failed(job, e as Error, asFile);
    }
  }

  /**
   * The same raw instance arrived twice (a resubmitted store job, a retry after a lost answer): the PACS held one
   * copy, and the job that de-identified it also deleted it. This job is then done too, once the PACS confirms the
   * de-identified copy and holds no raw one. A twin has the same raw Orthanc ID (the same content identity), not
   * only the same UID: another instance under the same UID is not done by it.
   */
  private async doneByTwin(job: Job): Promise<boolean> {
    const twin = this.d.journal.twinOf(job);
    if (!twin || (await this.rawPresent(job))) return false;
    if (!(await this.d.pacs.instance(twin.deidentifiedId!))) return false;
    this.d.journal.transition(job.id, 'IN_PACS', 'DONE', `same instance as job ${twin.id}`);
    this.d.handoff.take(job.id);
    return true;
  }

  /** The raw instance from the PACS, by the Orthanc ID the job recorded. */
  private async fetchRaw(job: Job): Promise<Buffer> {
    if (!job.rawId) throw new RawNotIdentified();
    if (!(await this.rawPresent(job))) throw new Permanent('the raw instance is no longer in the PACS');
    return this.d.pacs.instanceFile(job.rawId);
  }

  /** Whether the PACS still holds the job's raw copy. */
  private async rawPresent(job: Job): Promise<boolean> {
    return !!job.rawId && (await this.d.pacs.instance(job.rawId)) !== null;
  }

  /** `datasetTs`: `raw` is a bare data set in this transfer syntax (from the hand-off), else a PS3.10 file. */
  private async deidentifyAndUpload(job: Job, raw: Buffer, datasetTs?: string): Promise<void> {
    let d;
    const { profile, siteKey, crosswalk } = this.d;
    try {
      d = await this.metrics.time('deidentify', () =>
        datasetTs ? deidentifyDataset(raw, datasetTs, profile, siteKey, crosswalk) : deidentify(raw, profile, siteKey, crosswalk),
      );
    } catch (e) {
      const reason = permanentReason(e);
      if (reason !== undefined) throw new Permanent(reason);
      throw e;
    }
    const expected = orthancInstanceId(d.alias.aliasId, d.report.studyInstanceUid, d.report.seriesInstanceUid, d.report.sopInstanceUid);
    // same Patient ID and UIDs as the raw copy (a profile keeping both): the PACS would answer AlreadyStored with
    // the raw content, and deleting "the raw copy" would delete the only copy
    if (expected === job.rawId) throw new Permanent('the de-identified instance would have the raw instance\'s Orthanc ID (same Patient ID and UIDs)');
    const up = await this.metrics.time('upload', () => this.d.pacs.upload(Buffer.concat(d.chunks, d.byteLength)));
    if ((up.Status !== 'Success' && up.Status !== 'AlreadyStored') || up.ID !== expected)
      throw new Error(`PACS stored the de-identified instance as ${up.ID} (${up.Status}), expected ${expected}`);
    this.d.journal.deidentified(job.id, { aliasId: d.alias.aliasId, newSopInstanceUid: d.report.sopInstanceUid, deidentifiedId: up.ID });
  }

  /** The job's raw copy only: a second send of the same content is the same Orthanc ID, other content is another job's. */
  private async deleteRaw(job: Job): Promise<void> {
    if (!job.rawId) throw new RawNotIdentified();
    if (job.rawId !== job.deidentifiedId) await this.d.pacs.deleteInstance(job.rawId);
  }

  private async failed(job: Job, e: Error, raw: Buffer | undefined): Promise<void> {
    const reason = reasonOf(e);
    const permanent = e instanceof Permanent;
    const attempts = this.d.journal.failed(job.id, reason, Date.now() + this.backoff(job.attempts + 1));
    this.metrics.inc('dphiant_failures_total', { reason: reasonClass(reason) });
    const log = { job: job.id, uid: job.sopUidHash.slice(0, 12), state: job.state, attempts, reason };
    if (!permanent && attempts < this.d.settings.maxAttempts) {
      this.d.log.warn(log, 'step failed, will retry');
      return;
    }
    if (e instanceof RawNotIdentified) {
      // nothing to keep or remove yet: quarantining now would leave the raw copy in the PACS, uncovered
      this.d.log.warn(log, 'raw copy not identified yet; will keep retrying');
      return;
    }
    if (job.state === 'DEIDENTIFIED') {
      // the de-identified copy is in the PACS; only the raw deletion keeps failing: keep trying, never quarantine
      this.d.log.error(log, 'cannot delete the raw instance; will keep retrying');
      return;
    }
    try {
      await this.quarantine(job, reason, raw);
    } catch (qe) {
      this.d.log.error({ ...log, err: reasonOf(qe as Error) }, 'quarantine failed, will retry');
    }
  }

  /** Keeps the raw instance sealed locally, removes it from the PACS, then journals QUARANTINED. */
  private async quarantine(job: Job, reason: string, raw: Buffer | undefined): Promise<void> {
    const rawId = (await this.rawPresent(job)) ? job.rawId : undefined;
    const bytes = raw ?? (rawId ? await this.d.pacs.instanceFile(rawId) : undefined);
    if (bytes) this.d.quarantine.put(job.id, bytes);
    if (rawId) await this.d.pacs.deleteInstance(rawId);
    this.d.journal.transition(job.id, 'IN_PACS', 'QUARANTINED', bytes ? reason : `${reason}; nothing left to keep`);
    this.metrics.inc('dphiant_instances_quarantined_total');
    this.d.log.warn({ job: job.id, uid: job.sopUidHash.slice(0, 12), reason }, 'quarantined');
  }

  private backoff(attempt: number): number {
    return Math.min(this.d.settings.retryMaxMs, this.d.settings.retryBaseMs * 2 ** (attempt - 1));
  }
}

/** A reason for the journal and the logs: error class and message, which name steps and codes, never values. */
function reasonOf(e: Error): string {
  if (e instanceof OrthancHttpError) return e.message;
  return (e.message || e.name).slice(0, 500);
}
