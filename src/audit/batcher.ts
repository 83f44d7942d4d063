// Audit events that come by the instance or by the connection, folded into one record each: the instances of one
// study transferred (or their raw copies deleted) make one record once the study has been quiet for a while, as
// DICOM Instances Transferred counts instances per SOP class; a refused peer's alerts make one record at once and
// one more at the end of its window with how many followed, so a caller retrying in a loop cannot flood the trail
// (or fill its spool). Each instance comes with its job: once every record it counts in is recorded (in the trail's
// spool), `written` hears of it, so the journal stops keeping it audit-pending for a restart to record again.
import type { AuditEvent, Peer } from './messages.js';

export interface AuditBatcherSettings {
  /** A study's record goes when no instance of it has come for this long. */
  quietMs?: number;
  /** ... or when it counts this many instances. */
  maxInstances?: number;
  /** Alerts of one peer and kind after the first, within this window, are folded into one record. */
  alertWindowMs?: number;
}

/** Quarantined copies named in one record at most: each is a participant object of its own (about 200 bytes). */
const MAX_QUARANTINED = 100;

type Transfer = Extract<AuditEvent, { kind: 'transfer' }>;
type RawDeleted = Extract<AuditEvent, { kind: 'raw-deleted' }>;
type Alert = Extract<AuditEvent, { kind: 'security-alert' }>;

interface Pending<E> {
  event: E;
  count: number;
  timer: NodeJS.Timeout;
  jobs: number[];
}

export class AuditBatcher {
  private readonly transfers = new Map<string, Pending<Transfer>>();
  private readonly deletions = new Map<string, Pending<RawDeleted>>();
  private readonly alerts = new Map<string, Pending<Alert>>();
  private readonly quietMs: number;
  private readonly maxInstances: number;
  private readonly alertWindowMs: number;
  /** Per job: how many pending records count it. */
  private readonly unwritten = new Map<number, number>();

  constructor(
    private readonly record: (e: AuditEvent) => void,
    s: AuditBatcherSettings = {},
    private readonly written: (jobs: number[]) => void = () => undefined,
    /** A record that could not be spooled (the disk full): its jobs stay unwritten, for the next start. */
    private readonly failed: (e: unknown) => void = () => undefined,
  ) {
    this.quietMs = s.quietMs ?? 5_000;
    this.maxInstances = s.maxInstances ?? 10_000;
    this.alertWindowMs = s.alertWindowMs ?? 60_000;
  }

  /** One de-identified instance of a study stored in the PACS (job `job`). */
  transferred(job: number, from: Peer, to: Peer, studyUid: string, aliasId: string, sopClassUid: string): void {
    const key = `${from.aet}\0${studyUid}\0${aliasId}`;
    this.add(job, this.transfers, key, () => ({ kind: 'transfer', from, to, studyUid, aliasId, sopClasses: {} as Record<string, number> }), (e) => {
      e.sopClasses[sopClassUid] = (e.sopClasses[sopClassUid] ?? 0) + 1;
    });
  }

  /** One raw copy deleted from the PACS once de-identified, named by the study and alias of its new copy. */
  rawDeleted(job: number, pacs: Peer, studyUid: string, aliasId: string): void {
    this.add(job, this.deletions, `${studyUid}\0${aliasId}`, () => ({ kind: 'raw-deleted', reason: 'deidentified', pacs, studyUid, aliasId, instances: 0 }), (e) => {
      e.instances++;
    });
  }

  /** One raw copy deleted from the PACS once quarantined, named by its keyed UID hash; folded per sender. */
  rawQuarantined(job: number, pacs: Peer, callingAet: string, hash: string): void {
    this.add(job, this.deletions, `\0quarantined\0${callingAet}`, () => ({ kind: 'raw-deleted', reason: 'quarantined', pacs, quarantined: [], instances: 0 }), (e) => {
      e.instances++;
      if (e.reason === 'quarantined') e.quarantined.push(hash);
    }, MAX_QUARANTINED);
  }

  /** A security alert: the first of its peer and kind is recorded at once, later ones in its window are counted. */
  alert(e: Omit<Alert, 'kind' | 'repeats'>): void {
    const key = `${e.type ?? 'node'}\0${e.peer}\0${e.address}\0${e.why}`;
    const p = this.alerts.get(key);
    if (p) {
      p.count++;
      return;
    }
    this.spool({ kind: 'security-alert', ...e });
    const timer = setTimeout(() => this.flushAlert(key), this.alertWindowMs).unref();
    this.alerts.set(key, { event: { kind: 'security-alert', ...e }, count: 0, timer, jobs: [] });
  }

  /** Everything pending recorded now (at a stop). */
  flush(): void {
    for (const key of [...this.transfers.keys()]) this.flushStudy(this.transfers, key);
    for (const key of [...this.deletions.keys()]) this.flushStudy(this.deletions, key);
    for (const key of [...this.alerts.keys()]) this.flushAlert(key);
  }

  /** Counts one instance into the study's pending record (`count`), which goes when quiet or full. */
  private add<E extends Transfer | RawDeleted>(job: number, map: Map<string, Pending<E>>, key: string, make: () => E, count: (e: E) => void, cap = this.maxInstances): void {
    const p = map.get(key);
    if (p) clearTimeout(p.timer);
    const pending = p ?? { event: make(), count: 0, timer: undefined as unknown as NodeJS.Timeout, jobs: [] };
    map.set(key, pending);
    count(pending.event);
    pending.jobs.push(job);
    this.unwritten.set(job, (this.unwritten.get(job) ?? 0) + 1);
    if (++pending.count >= cap) this.flushStudy(map, key);
    else pending.timer = setTimeout(() => this.flushStudy(map, key), this.quietMs).unref();
  }

  private flushStudy<E extends Transfer | RawDeleted>(map: Map<string, Pending<E>>, key: string): void {
    const p = map.get(key);
    if (!p) return;
    clearTimeout(p.timer);
    map.delete(key);
    if (!this.spool(p.event)) {
      // never written in this run, whatever else of theirs is: the next start records them again
      for (const job of p.jobs) this.unwritten.set(job, Infinity);
      return;
    }
    const done: number[] = [];
    for (const job of p.jobs) {
      const left = this.unwritten.get(job)! - 1;
      if (left > 0) this.unwritten.set(job, left);
      else {
        this.unwritten.delete(job);
        done.push(job);
      }
    }
    if (!done.length) return;
    try {
      this.written(done);
    } catch (err) {
      this.failed(err); // they stay pending in the journal: recorded again by the next start
    }
  }

  private flushAlert(key: string): void {
    const p = this.alerts.get(key);
    if (!p) return;
    clearTimeout(p.timer);
    this.alerts.delete(key);
    if (p.count > 0) this.spool({ ...p.event, repeats: p.count });
  }

  /** Called from timers and from the pipeline's hooks: a failure is reported, never thrown at them. */
  private spool(e: AuditEvent): boolean {
    try {
      this.record(e);
      return true;
    } catch (err) {
      this.failed(err);
      return false;
    }
  }
}
