// The de-identification worker: takes IN_PACS jobs to DONE, each step journalled before the next starts.
//   IN_PACS: original bytes (hand-off, else from the PACS) → crosswalk → de-identify + verify (in the engine's
//            threads) → upload, confirm the PACS id → DEIDENTIFIED
//   DEIDENTIFIED: delete the raw instance (never before the copy is confirmed; in batches through
//                 /tools/bulk-delete, outside the worker's slots) → DONE once that deletion succeeded
// The two journal writes are grouped per bulk-delete batch: the batch's DEIDENTIFIED rows in one transaction
// before the request, its DONE rows in one after it; a crash before the first repeats the upload (AlreadyStored).
// Every step is repeatable: the output is deterministic (keyed UIDs, stored aliases), so a repeat after a crash is
// AlreadyStored in the PACS, and deleting what is gone is a no-op.
// Failures are classified where they happen (PipelineError.kind, src/pipeline/types.ts), never from their text:
// transient ones (PACS REST API, crosswalk, disk) are retried without a limit on attempts, with capped backoff, and
// feed the dependency health behind backpressure (src/pipeline/health.ts); permanent ones (gate hit, unreadable
// data set, unencodable value, a profile that cannot apply, an upload stored under another ID) move the raw
// instance to the quarantine: sealed first (from the hand-off or fetched from the PACS), then deleted from the PACS,
// then journalled QUARANTINED. A job is never QUARANTINED without a sealed copy or a raw copy the PACS confirmed
// absent (HTTP 404); while the PACS REST API fails it stays IN_PACS and retries.
// The raw copy is the Orthanc ID the job recorded at ingest (src/pipeline/ingest.ts), never a look-up by SOP
// Instance UID: with Retain UIDs the de-identified copy has the same UID.
import PQueue from 'p-queue';
import type { Config } from '../config/index.js';
import { encodeFileMeta } from '../dicom/writer.js';
import { VerificationError } from '../anonymize/gate.js';
import { PixelRiskError } from '../anonymize/pixels/types.js';
import { ThreadStoppedError, type DeidentifyThreads } from '../anonymize/pool.js';
import type { CrosswalkStore } from '../crosswalk/store.js';
import type { AliasSource } from '../dicom/identity.js';
import { CharsetError } from '../dicom/values.js';
import { DicomParseError, parseDataset } from '../dicom/walker.js';
import { topLevelString } from '../dicom/values.js';
import type { Logger } from '../log.js';
import { OrthancHttpError, orthancInstanceId, type OrthancClient } from '../pacs/orthanc.js';
import type { Job, Journal } from './journal.js';
import type { Quarantine } from './quarantine.js';
import { Metrics } from '../metrics.js';
import { DEPENDENCIES, DependencyHealth } from './health.js';
import { PipelineError, type Dependency } from './types.js';
import type { Failure } from '../reasons.js';
import { withinTime } from './deadline.js';

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

/** The upload was stored under another Orthanc ID than expected: permanent; `uploadedId` is removed before quarantining. */
class UploadMismatch extends PipelineError {
  constructor(
    message: string,
    /** What the worker's upload left in the PACS that is no other job's (null: nothing to remove). */
    readonly uploadedId: string | null,
  ) {
    super('permanent', 'id-mismatch', message);
  }
}

/** The raw copy's Orthanc ID is not known yet: the reconciler identifies it from the PACS (by the UID hash). */
const rawNotIdentified = () => new PipelineError('transient', 'raw-not-identified', 'the raw copy in the PACS is not identified yet');

/**
 * A PACS REST failure, its code set by the client (no answer, wrong credentials, another error). No answer, 401/403
 * and 5xx count against the PACS's health; another 4xx on one request means the API answers.
 */
function pacsFailure(e: OrthancHttpError): PipelineError {
  // the de-identified file itself refused (POST /instances answered 400): the same bytes are refused every time
  if (e.method === 'POST' && e.path === '/instances' && e.status === 400)
    return new PipelineError('permanent', 'pacs-refused', `PACS refused the de-identified instance: ${e.message}`);
  const apiFailing = e.status === 0 || e.status === 401 || e.status === 403 || e.status >= 500;
  return new PipelineError('transient', e.code, e.message, apiFailing ? 'pacs' : undefined);
}

/** Any failure as a PipelineError: the pipeline's own are classified already; what else arrives is a bug or the disk. */
function classify(e: unknown): PipelineError {
  if (e instanceof PipelineError) return e;
  if (e instanceof OrthancHttpError) return pacsFailure(e);
  const err = e as NodeJS.ErrnoException;
  if (typeof err?.code === 'string' && typeof err.syscall === 'string') return new PipelineError('transient', 'disk', `${err.syscall} failed: ${err.code}`);
  return new PipelineError('transient', 'internal', ((err?.message || err?.name) ?? String(e)).slice(0, 500));
}

/**
 * A failure of the de-identification itself (the crosswalk's are classified already): the pure engine on the same
 * bytes, profile and aliases fails the same way every time. Names no value.
 */
function deidentificationFailure(e: unknown): PipelineError {
  if (e instanceof PipelineError) return e;
  // the thread, not the instance: tried again on a fresh thread
  if (e instanceof ThreadStoppedError) return new PipelineError('transient', 'internal', e.message);
  if (e instanceof VerificationError) return new PipelineError('permanent', 'gate-hit', `verification: ${e.hits.map((h) => `${h.kind} in ${h.path}`).join('; ')}`.slice(0, 500));
  // the same pixels and policy fail the same way again (a missing OCR engine too, until someone installs it)
  if (e instanceof PixelRiskError) return new PipelineError('permanent', 'pixels', e.message);
  if (e instanceof DicomParseError) return new PipelineError('permanent', 'malformed', `unreadable data set: ${e.message}`);
  if (e instanceof CharsetError) return new PipelineError('permanent', 'charset', CharsetError.REASON);
  return new PipelineError('permanent', 'profile', `the profile cannot apply: ${((e as Error)?.message || String(e)).slice(0, 400)}`);
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

/** A confirmed upload of a de-identified copy, not journalled yet. */
type Upload = Parameters<Journal['deidentified']>[1];

/** A job whose raw copy is to be deleted: DEIDENTIFIED in the journal, or IN_PACS with its new `upload`. */
interface Deidentified {
  job: Job;
  upload?: Upload;
}

export interface WorkerDeps {
  journal: Journal;
  pacs: OrthancClient;
  crosswalk: CrosswalkStore;
  /** The engine's threads, asking this worker's alias source (its crosswalk calls, health-reported). */
  engine: (aliases: AliasSource) => DeidentifyThreads;
  quarantine: Quarantine;
  handoff: Handoff;
  settings: Config['pipeline'];
  log: Logger;
  metrics?: Metrics;
  /** Where the worker reports each dependency call; shared with backpressure and the web side. */
  health?: DependencyHealth;
  /**
   * Under node leases (src/pipeline/cluster.ts): whether another node took in this job's raw copy while it held this
   * node's lease, and how it ended there.
   */
  takenOver?: (job: Job) => Promise<{ by: string; outcome?: 'DONE' | 'QUARANTINED' } | null>;
  /**
   * This worker removed a job's raw copy from the PACS, de-identified (`job` with its alias and new UIDs) or
   * quarantined (with its reason code): for the audit trail, and under node leases the record its owner may look for.
   */
  removed?: (job: Job & { rawId: string }, outcome: 'DONE' | 'QUARANTINED') => void;
  /** The removals `removed` reports are audited: each job is journalled audit-pending with its move (Journal.transition). */
  auditsRemovals?: boolean;
}

/** Waiting jobs per instance de-identified at once (DeidentificationWorker.pace). */
const JOBS_PER_SLOT = 4;

/** A bulk delete goes when it holds this many raw copies, or this long after its first. */
const RAW_DELETE_BATCH = 50;
const RAW_DELETE_WAIT_MS = 200;

/** One raw copy to delete: `before` journals its job DEIDENTIFIED, `after` journals it DONE. */
interface RawDeletion {
  id: string;
  before: () => void;
  after: () => void;
  settle: (e?: unknown) => void;
}

/**
 * Raw copies of de-identified jobs, deleted in batches (POST /tools/bulk-delete: fewer requests, and the PACS's
 * storage removes emptied directories less often while stores arrive), with the journal written once per batch
 * through Journal.durably: every job of the batch DEIDENTIFIED in one commit before the request (never a deletion
 * before its upload is journalled), DONE in one after it succeeded. Each caller learns whether its job got there.
 */
class RawDeletions {
  private batch: RawDeletion[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly send: (ids: string[]) => Promise<void>,
    private readonly durably: (write: () => void) => Promise<void>,
  ) {}

  delete(id: string, before: () => void, after: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.batch.push({ id, before, after, settle: (e) => (e === undefined ? resolve() : reject(e)) });
      if (this.batch.length >= RAW_DELETE_BATCH) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), RAW_DELETE_WAIT_MS);
    });
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.batch;
    this.batch = [];
    if (!batch.length) return;
    void this.each(batch, 'before').then(async (journalled) => {
      if (!journalled.length) return;
      try {
        await this.send([...new Set(journalled.map((d) => d.id))]);
      } catch (e) {
        for (const d of journalled) d.settle(e ?? new Error('bulk delete failed'));
        return;
      }
      for (const d of await this.each(journalled, 'after')) d.settle();
    });
  }

  /** Journals `step` of every deletion in one commit; those it failed for are settled with the error, the rest returned. */
  private async each(ds: RawDeletion[], step: 'before' | 'after'): Promise<RawDeletion[]> {
    const written = await Promise.allSettled(ds.map((d) => this.durably(d[step])));
    return ds.filter((d, i) => {
      const w = written[i]!;
      if (w.status === 'rejected') d.settle(w.reason ?? new Error('journal write failed'));
      return w.status === 'fulfilled';
    });
  }
}

/** How long one crosswalk call may take before it counts as failed (the driver's own server selection gives up at 10 s). */
const CROSSWALK_CALL_TIMEOUT_MS = 30_000;

class CrosswalkTimeout extends Error {
  constructor() {
    super(`no answer in ${CROSSWALK_CALL_TIMEOUT_MS} ms`);
    this.name = 'CrosswalkTimeout';
  }
}

/** A failing dependency nothing has called for this long is asked directly (GET /system, one crosswalk read). */
const PROBE_AFTER_MS = 5_000;
/** A crosswalk failing this long gets a fresh client (at most once per this interval). */
const RECONNECT_AFTER_MS = 60_000;

export class DeidentificationWorker {
  private readonly queue: PQueue;
  private readonly queued = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Jobs whose transient failures passed pipeline.stuckAfterAttempts and have not succeeded since. */
  private readonly stuck = new Set<number>();
  private probing = false;
  private lastReconnect = 0;
  /** Raw deletions of DEIDENTIFIED jobs under way (stop() waits for them). */
  private readonly finishing = new Set<Promise<void>>();
  private readonly rawDeletions = new RawDeletions(
    (ids) => this.pacsCall(() => this.d.pacs.bulkDelete(ids)),
    (write) => this.d.journal.durably(write),
  );

  private readonly metrics: Metrics;
  readonly health: DependencyHealth;
  /** The engine's threads; they see the crosswalk through crosswalkCall: its failures are transient and count against its health. */
  private readonly engine: DeidentifyThreads;

  constructor(private readonly d: WorkerDeps) {
    this.queue = new PQueue({ concurrency: d.settings.concurrency });
    this.metrics = d.metrics ?? new Metrics();
    this.health = d.health ?? new DependencyHealth();
    this.engine = d.engine({
      patient: (p) => this.crosswalkCall(() => d.crosswalk.patient(p)),
      study: (a, s) => this.crosswalkCall(() => d.crosswalk.study(a, s)),
    });
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
    this.rawDeletions.flush();
    await Promise.all(this.finishing);
    await this.engine.close();
  }

  /** No new job starts until resume() (this node lost its lease); those under way finish. */
  pause(): void {
    this.queue.pause();
  }

  resume(): void {
    this.queue.start();
  }

  /** Jobs waiting or running. */
  get depth(): number {
    return this.queued.size;
  }

  enqueue(jobId: number): void {
    if (this.stopped || this.queued.has(jobId)) return;
    this.queued.add(jobId);
    void this.queue.add(async () => {
      let deidentified: Deidentified | undefined;
      try {
        deidentified = await this.process(jobId);
      } catch (e) {
        // process() handles its own failures; this is a bug (or the journal failing), logged without values
        this.d.log.error({ job: jobId, err: (e as Error).message }, 'worker error');
      } finally {
        // the raw deletion waits for its batch outside the queue: a worker slot goes on to the next job meanwhile
        if (deidentified) this.track(this.finish(deidentified).finally(() => this.queued.delete(jobId)));
        else this.queued.delete(jobId);
        this.pace();
      }
    });
    this.pace();
  }

  /**
   * As many instances at once as the backlog needs, up to pipeline.concurrency: one more per JOBS_PER_SLOT waiting.
   * Each upload competes with the forwards for the PACS and the CPU; measured here (500 CT instances, 2 cores), one
   * sender finished in 7.4 s with 1 at once and 9.0 s with 4, while four senders needed 4 (5.7 s, against 8.8 s with 1).
   */
  private pace(): void {
    this.queue.concurrency = Math.min(this.d.settings.concurrency, 1 + Math.floor(this.queue.size / JOBS_PER_SLOT));
  }

  private track(p: Promise<void>): void {
    this.finishing.add(p);
    void p.finally(() => this.finishing.delete(p));
  }

  /**
   * DEIDENTIFIED (journalled with its bulk-delete batch, when the upload is new) → DONE once the raw copy's deletion
   * succeeded; a failure is retried from the state the journal holds.
   */
  private async finish({ job, upload }: Deidentified): Promise<void> {
    let state = job.state;
    const toDeidentified = () => {
      if (upload) this.d.journal.deidentified(job.id, upload);
      state = 'DEIDENTIFIED';
    };
    const toDone = (removed = false) => this.d.journal.transition(job.id, 'DEIDENTIFIED', 'DONE', null, null, removed && !!this.d.auditsRemovals);
    try {
      try {
        const deidentifiedId = upload?.deidentifiedId ?? job.deidentifiedId;
        if (!job.rawId) {
          this.d.journal.inTransaction(toDeidentified);
          throw rawNotIdentified();
        }
        // a second send of the same content is the same Orthanc ID; other content is another job's
        if (job.rawId === deidentifiedId)
          this.d.journal.inTransaction(() => {
            toDeidentified();
            toDone();
          });
        else {
          await this.metrics.time('delete', () => this.rawDeletions.delete(job.rawId!, toDeidentified, () => toDone(true)));
          this.d.removed?.({ ...job, ...upload, rawId: job.rawId }, 'DONE');
        }
        this.metrics.inc('dphiant_instances_deidentified_total');
        this.d.log.info({ job: job.id, alias: upload?.aliasId ?? job.aliasId }, 'de-identified in the PACS');
        this.settled(job.id);
      } catch (e) {
        await this.failed({ ...job, state }, classify(e), undefined);
      }
    } catch (e) {
      this.d.log.error({ job: job.id, err: (e as Error).message }, 'worker error');
    }
  }

  private sweep(): void {
    for (const job of this.d.journal.due(Date.now(), 500)) this.enqueue(job.id);
    void this.probe();
  }

  /**
   * A dependency that failed and that no job has called for a while (every job waits in its backoff, or none is
   * left) is asked directly, so its streak ends as soon as it is back: backpressure must not outlast the outage.
   */
  private async probe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      const now = Date.now();
      const quiet = (dep: Dependency) => this.health.failingMs(dep, now) > 0 && now - (this.health.lastHeard(dep) ?? 0) >= PROBE_AFTER_MS;
      for (const dep of DEPENDENCIES) {
        if (!quiet(dep)) continue;
        if (dep === 'pacs') await this.pacsCall(() => this.d.pacs.system()).catch(() => undefined);
        else {
          await this.crosswalkCall(() => this.d.crosswalk.listPatients({ limit: 1 })).catch(() => undefined);
          // still failing a minute on: a fresh client, in case the driver's has stopped finding the server
          if (this.health.failingMs('crosswalk', Date.now()) >= RECONNECT_AFTER_MS && Date.now() - this.lastReconnect >= RECONNECT_AFTER_MS && this.d.crosswalk.reconnect) {
            this.lastReconnect = Date.now();
            await withinTime(CROSSWALK_CALL_TIMEOUT_MS, this.d.crosswalk.reconnect(), () => new CrosswalkTimeout()).then(
              () => this.d.log.warn('crosswalk: reconnected after a long failure'),
              () => undefined,
            );
          }
        }
      }
    } finally {
      this.probing = false;
    }
  }

  /** A call to the PACS REST API, reported to its health; its failures come out classified. */
  private async pacsCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      const r = await call();
      this.health.succeeded('pacs');
      return r;
    } catch (e) {
      const pe = classify(e);
      if (pe.dependency === 'pacs') this.health.failed('pacs', pe.code);
      else if (e instanceof OrthancHttpError) this.health.succeeded('pacs'); // it answered
      throw pe;
    }
  }

  /**
   * A call to the crosswalk, reported to its health; every failure of it is transient. Bounded in time: a driver
   * call that never settles (seen once when the database stopped mid-call) must not hold a worker slot for good.
   */
  private async crosswalkCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      const r = await withinTime(CROSSWALK_CALL_TIMEOUT_MS, call(), () => new CrosswalkTimeout());
      this.health.succeeded('crosswalk');
      return r;
    } catch (e) {
      this.health.failed('crosswalk', 'crosswalk-unavailable');
      // the driver's message may quote a key (a blind-index hash at most): the journal gets the error's name only
      this.d.log.warn({ err: (e as Error).message }, 'crosswalk call failed');
      throw new PipelineError('transient', 'crosswalk-unavailable', `crosswalk unavailable (${(e as Error)?.name ?? 'error'})`, 'crosswalk');
    }
  }

  /** Takes an IN_PACS job as far as its upload; returns it when its raw copy is to be deleted (finish). */
  private async process(jobId: number): Promise<Deidentified | undefined> {
    const job = this.d.journal.get(jobId);
    if (!job || job.nextAttemptAt > Date.now()) return;
    let raw: Buffer | undefined;
    let received: Buffer | undefined;
    try {
      if (job.state === 'IN_PACS' && (await this.doneByTwin(job))) {
        this.settled(job.id);
        return;
      }
      if (job.state === 'IN_PACS') {
        // the received data set (no file meta) when the hand-off kept it, else the PS3.10 file from the PACS
        received = this.d.handoff.take(job.id);
        if (received) return { job, upload: await this.deidentifyAndUpload(job, received, job.transferSyntaxUid) };
        const fetched = await this.fetchRaw(job);
        if (!fetched) {
          await this.rawAbsent(job);
          return;
        }
        return { job, upload: await this.deidentifyAndUpload(job, (raw = fetched)) };
      }
      if (job.state === 'DEIDENTIFIED') return { job };
    } catch (e) {
      // what the quarantine would keep: the PACS's file, or the received data set made a PS3.10 file; nothing when
      // the bytes moved to the engine's thread (empty now): the quarantine then fetches the raw copy from the PACS
      if (raw?.length === 0) raw = undefined;
      const asFile =
        raw ??
        (received?.length ? Buffer.concat([encodeFileMeta({ sopClassUid: job.sopClassUid, sopInstanceUid: sopInstanceUidOf(received, job.transferSyntaxUid), tsUid: job.transferSyntaxUid }), received]) : undefined);
      await this.failed(job, classify(e), asFile);
    }
  }

  /** The job left the retrying states (or got past its failing step). */
  private settled(jobId: number): void {
    if (this.stuck.delete(jobId)) this.health.setStuck(this.stuck.size);
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
    if (!(await this.pacsCall(() => this.d.pacs.instance(twin.deidentifiedId!)))) return false;
    this.d.journal.transition(job.id, 'IN_PACS', 'DONE', `same instance as job ${twin.id}`);
    this.d.handoff.take(job.id);
    return true;
  }

  /** The raw instance from the PACS, by the Orthanc ID the job recorded; null when the PACS says it is not there (404). */
  private async fetchRaw(job: Job): Promise<Buffer | null> {
    if (!job.rawId) throw rawNotIdentified();
    if (!(await this.rawPresent(job))) return null;
    return this.pacsCall(() => this.d.pacs.instanceFile(job.rawId!));
  }

  /** Whether the PACS still holds the job's raw copy: false only on its 404, a failing API throws. */
  private async rawPresent(job: Job): Promise<boolean> {
    return !!job.rawId && (await this.pacsCall(() => this.d.pacs.instance(job.rawId!))) !== null;
  }

  /**
   * An IN_PACS job whose raw copy the PACS confirmed absent (404) and that no twin finished (asked again: a twin
   * running at the same time may have deleted the copy after this job's first look): a quarantine step cut
   * short after the seal (a crash, a failed delete or journal write) ends QUARANTINED with its sealed copy; without
   * one, nothing is left to keep (the raw copy was removed by someone else) and nothing of this job was uploaded
   * (an IN_PACS job has no output yet).
   */
  private async rawAbsent(job: Job): Promise<void> {
    // a twin that de-identified the same raw copy since this job looked (it deletes the copy once DEIDENTIFIED)
    if (await this.doneByTwin(job)) {
      this.settled(job.id);
      return;
    }
    // another node finished it while it held this node's lease: the PACS holds that node's copy, or its quarantine the raw one
    const takenOver = this.d.takenOver;
    const taken = takenOver && (await this.crosswalkCall(() => takenOver(job)));
    if (taken) {
      const why = `de-identified by node ${taken.by} while it held this node's lease`;
      if (taken.outcome === 'QUARANTINED') this.quarantined(job, { code: 'taken-over', message: `quarantined by node ${taken.by} while it held this node's lease (its quarantine holds the instance)` }, 'raw copy taken over by another node: quarantined there');
      else {
        this.d.journal.transition(job.id, 'IN_PACS', 'DONE', why);
        this.settled(job.id);
        this.d.log.info({ job: job.id, by: taken.by }, 'raw copy taken over by another node: done there');
      }
      return;
    }
    const sealed = this.d.quarantine.has(job.id);
    // sealed: the permanent failure it was being quarantined for (kept by failed())
    const why: Failure = sealed
      ? { code: job.reasonCode ?? 'other', message: job.reason ?? 'sealed in the quarantine' }
      : { code: 'raw-absent', message: 'raw instance absent from the PACS; nothing to keep' };
    this.quarantined(job, why, 'raw copy absent from the PACS: quarantined', { sealed });
  }

  /** IN_PACS → QUARANTINED, counted and logged (the message names attribute paths and steps, never values). */
  private quarantined(job: Job, why: Failure, msg: string, extra: Record<string, unknown> = {}, removed = false): void {
    this.d.journal.transition(job.id, 'IN_PACS', 'QUARANTINED', why.message, why.code, removed && !!this.d.auditsRemovals);
    this.settled(job.id);
    this.metrics.inc('dphiant_instances_quarantined_total', { reason: why.code });
    this.d.log.warn({ job: job.id, uid: job.sopUidHash.slice(0, 12), ...extra, reason: why.message, code: why.code }, msg);
  }

  /**
   * De-identifies and uploads, and returns what the journal is to record (by finish(), with the raw deletion's
   * batch). `datasetTs`: `raw` is a bare data set in this transfer syntax (from the hand-off), else a PS3.10 file.
   */
  private async deidentifyAndUpload(job: Job, raw: Buffer, datasetTs?: string): Promise<Upload> {
    let d;
    try {
      d = await this.metrics.time('deidentify', () => this.engine.deidentify(raw, datasetTs));
    } catch (e) {
      throw deidentificationFailure(e);
    }
    this.metrics.inc('dphiant_pixels_total', { outcome: d.pixels.replace(/ /g, '-') });
    const expected = orthancInstanceId(d.aliasId, d.studyInstanceUid, d.seriesInstanceUid, d.sopInstanceUid);
    // same Patient ID and UIDs as the raw copy (a profile keeping both): the PACS would answer AlreadyStored with
    // the raw content, and deleting "the raw copy" would delete the only copy
    if (expected === job.rawId) throw new PipelineError('permanent', 'profile', "the de-identified instance would have the raw instance's Orthanc ID (same Patient ID and UIDs)");
    const up = await this.metrics.time('upload', () => this.pacsCall(() => this.d.pacs.upload(d.bytes)));
    if ((up.Status !== 'Success' && up.Status !== 'AlreadyStored') || up.ID !== expected) {
      // never the raw copy, another job's raw copy or output: only what this upload put there
      const ours = up.ID && up.ID !== job.rawId && !this.d.journal.knows(up.ID) ? up.ID : null;
      throw new UploadMismatch(`PACS stored the de-identified instance as ${up.ID} (${up.Status}), expected ${expected}`, ours);
    }
    return { aliasId: d.aliasId, newSopInstanceUid: d.sopInstanceUid, newStudyInstanceUid: d.studyInstanceUid, deidentifiedId: up.ID };
  }

  private async failed(job: Job, e: PipelineError, raw: Buffer | undefined): Promise<void> {
    const failure: Failure = { code: e.code, message: e.message.slice(0, 500) };
    const permanent = e.kind === 'permanent' && job.state === 'IN_PACS';
    // a job whose quarantine was cut short after the seal keeps the permanent failure it is being quarantined for
    const cutShort = !permanent && job.state === 'IN_PACS' && job.reason && job.reasonCode && this.d.quarantine.has(job.id);
    const kept: Failure = cutShort ? { code: job.reasonCode!, message: job.reason! } : failure;
    const attempts = this.d.journal.failed(job.id, kept, Date.now() + this.backoff(job.attempts + 1));
    this.metrics.inc('dphiant_failures_total', { kind: e.kind, reason: e.code });
    const log = { job: job.id, uid: job.sopUidHash.slice(0, 12), state: job.state, attempts, kind: e.kind, code: e.code, reason: failure.message };
    if (!permanent) {
      if (attempts >= this.d.settings.stuckAfterAttempts && !this.stuck.has(job.id)) {
        this.health.setStuck(this.stuck.add(job.id).size);
        this.d.log.error(log, 'step keeps failing: the job is stuck; it keeps retrying');
      } else this.d.log.warn(log, 'step failed, will retry');
      return;
    }
    try {
      await this.quarantine(job, failure, raw, e instanceof UploadMismatch ? e.uploadedId : null);
    } catch (qe) {
      const q = classify(qe);
      this.d.log.error({ ...log, step: 'quarantine', code: q.code, err: q.message }, 'quarantine step failed; the job stays IN_PACS and retries');
    }
  }

  /**
   * Seals the raw instance locally, removes it (and whatever this job's upload left) from the PACS, then journals
   * QUARANTINED. Without the bytes in hand they are fetched from the PACS first; a raw copy the PACS confirms
   * absent is the recovery of rawAbsent. Any failure leaves the job IN_PACS, to be retried.
   */
  private async quarantine(job: Job, why: Failure, raw: Buffer | undefined, uploadedId: string | null): Promise<void> {
    // the raw copy must be known to be removed: sealing without removing would leave it in the PACS, uncovered
    if (!job.rawId) throw rawNotIdentified();
    let bytes = raw;
    if (!bytes) {
      const fetched = await this.fetchRaw(job);
      if (!fetched) return this.rawAbsent({ ...job, reason: why.message, reasonCode: why.code });
      bytes = fetched;
    }
    try {
      this.d.quarantine.put(job.id, bytes);
    } catch (e) {
      throw new PipelineError('transient', 'disk', `sealing in the quarantine failed: ${(e as NodeJS.ErrnoException).code ?? (e as Error).name}`);
    }
    if (uploadedId) await this.pacsCall(() => this.d.pacs.deleteInstance(uploadedId));
    await this.pacsCall(() => this.d.pacs.deleteInstance(job.rawId!));
    this.quarantined(job, why, 'quarantined', {}, true);
    this.d.removed?.({ ...job, rawId: job.rawId, reason: why.message, reasonCode: why.code }, 'QUARANTINED');
  }

  private backoff(attempt: number): number {
    return Math.min(this.d.settings.retryMaxMs, this.d.settings.retryBaseMs * 2 ** Math.min(attempt - 1, 40));
  }
}
