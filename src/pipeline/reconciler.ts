// The reconciler (docs/design.md, invariant 2): finds raw instances in the PACS that no job covers — stored before a crash wiped
// a journal entry, restored from a backup — and takes them into the pipeline; it also identifies the raw copies
// of jobs that do not know theirs yet, and settles the RECEIVED jobs a crash left behind.
//
// It follows Orthanc's change log by sequence number (`/changes?since=<Seq>`), its position kept in the journal's
// meta after every page. The first start records where the log stands (`/changes?last`) and walks nothing; later
// starts resume from the stored position, so no change is read twice. A walk of the whole archive runs only when
// asked (`dphiant reconcile`, src/cli/reconcile.ts): bounded by --limit and resumable.
// Why paging by Seq skips nothing while the worker deletes: Orthanc removes a resource's entries from the change
// log when it deletes the resource, and it never reuses a Seq; the entries left keep their Seq, so "after Seq N"
// names the same remaining entries before and after any deletion. (Paging /instances by offset does not: every
// deletion before the offset shifts the rest back, and one instance per deletion is skipped.)
//
// A PACS instance is covered by its Orthanc ID (a job's raw copy or output), not by its UID; the UID only names,
// through its keyed hash, the jobs whose raw copy is not identified yet (src/pipeline/journal.ts identifyRaw).
// Only instances this middleman stored are adopted (pipeline.reconcileAdopt 'own': Orthanc's RemoteAET metadata
// is pacs.callingAet); others are reported by Orthanc ID (a hash, no PHI) and left alone.
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { OrthancClient } from '../pacs/orthanc.js';
import { UNFINISHED_SQL, type Job, type Journal } from './journal.js';

/** Journal meta: the change-log Seq the follower has read up to. */
export const POSITION_KEY = 'reconciler.changes.position';
/** Journal meta: when a position was first recorded; a job received since has its changes after the position. */
const COVERED_SINCE_KEY = 'reconciler.changes.since';
/** COVERED_SINCE_KEY after the log was read from its start: no job is left uncovered (sorts before every date). */
const ALL_COVERED = '0';
/** Journal meta: where an unfinished `dphiant reconcile` walk resumes ('' or absent: from the start). */
export const WALK_KEY = 'reconciler.walk.position';
/** Journal meta: how many foreign instances were reported, and the last one's Orthanc ID (`dphiant status`). */
export const FOREIGN_COUNT_KEY = 'reconciler.foreign.count';
export const FOREIGN_LAST_KEY = 'reconciler.foreign.last';

const PAGE = 1000;

export interface ReconcilerOptions {
  /** pacs.callingAet: the AE title this middleman stores into the PACS with (Orthanc records it as RemoteAET). */
  callingAet: string;
  adopt: Config['pipeline']['reconcileAdopt'];
  metrics?: Metrics;
}

export interface WalkResult {
  /** NewInstance entries looked at in this run. */
  considered: number;
  adopted: number;
  foreign: number;
  /** The Seq the walk has read up to. */
  position: number;
  /** The whole log was read: the next walk starts from the beginning again. */
  complete: boolean;
}

type Verdict = 'covered' | 'adopted' | 'foreign';

export class Reconciler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** RECEIVED jobs of a previous run: it stopped between journalling them and hearing from the PACS. */
  private stale: number[];
  /** Unfinished jobs of a previous run whose raw copy is not identified (a large data set, a crash, a migration). */
  private readonly unidentified: Job[];
  /** Whether the change log has been read to its end in this run: until then a stale job cannot be told absent. */
  private followed = false;

  constructor(
    private readonly journal: Journal,
    private readonly pacs: OrthancClient,
    private readonly log: Logger,
    private readonly adopt: (jobId: number) => void,
    private readonly opts: ReconcilerOptions,
  ) {
    const received = journal.byState('RECEIVED', 100_000);
    this.stale = received.map((j) => j.id);
    this.unidentified = [...received, ...journal.byState('IN_PACS', 100_000), ...journal.byState('DEIDENTIFIED', 100_000)].filter((j) => !j.rawId);
  }

  /**
   * Follows the change log now, then every `intervalMs` (0: only until a first pass has succeeded), and settles
   * the stale jobs once it has read the log to its end.
   */
  start(intervalMs: number): Promise<void> {
    const pass = async () => (await this.followChanges()) + (await this.resolveStale());
    const first = this.run(pass);
    this.timer = setInterval(() => {
      if (intervalMs > 0 || !this.followed || this.stale.length) void this.run(pass);
    }, intervalMs || 5000);
    this.timer.unref();
    return first;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One pass at a time; a failed pass (PACS down) is logged and tried again at the next tick. */
  private run(pass: () => Promise<number>): Promise<void> {
    if (this.running) return this.running;
    this.running = pass()
      .then((adopted) => {
        if (adopted) this.log.warn({ adopted }, 'reconciler took in raw instances no job covered');
      })
      .catch((e: Error) => this.log.warn({ err: e.message }, 'reconciler pass failed'))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /**
   * New instances since the stored position, page by page (the position stored after each). With no position
   * (the first start on this journal) it records where the log stands and reads nothing, except when jobs of
   * before the position need their raw copies identified: then the log is read once from its start.
   */
  async followChanges(): Promise<number> {
    const start = this.startPosition();
    if (start === undefined) {
      this.journal.setMeta(POSITION_KEY, String((await this.pacs.lastChange()).Last));
      // after the answer: a job received from now on has its instance's entry after that position
      this.journal.setMeta(COVERED_SINCE_KEY, new Date().toISOString());
      this.followed = true;
      this.log.info({ position: Number(this.journal.getMeta(POSITION_KEY)) }, 'reconciler: first start, following the PACS change log from its last entry');
      return 0;
    }
    const passStart = new Date().toISOString();
    let since = start.since;
    let adopted = 0;
    let considered = 0;
    for (;;) {
      const page = await this.pacs.changes(since, PAGE);
      for (const c of page.Changes) {
        if (c.ChangeType !== 'NewInstance') continue;
        considered++;
        if ((await this.consider(c.ID)) === 'adopted') adopted++;
      }
      let next = page.Changes.length ? page.Changes[page.Changes.length - 1]!.Seq : since;
      if (!page.Changes.length && page.Last < since) {
        // Orthanc's last Seq is behind ours: its database was replaced; follow what it hands out from now on
        this.log.warn({ position: since, pacsLast: page.Last }, 'the PACS change log is behind the stored position (PACS database replaced?): following from its end; run dphiant reconcile to walk its archive');
        next = page.Last;
      }
      if (next !== since) this.journal.setMeta(POSITION_KEY, String(next));
      since = next;
      if (page.Done) break;
    }
    // read from the start: every job is covered from here on; else jobs from this pass on are
    if (start.fromStart) this.journal.setMeta(COVERED_SINCE_KEY, ALL_COVERED);
    else if (!this.journal.getMeta(COVERED_SINCE_KEY)) this.journal.setMeta(COVERED_SINCE_KEY, passStart);
    this.followed = true;
    this.log.debug({ from: start.since, to: since, considered, adopted }, 'reconciler followed the change log');
    return adopted;
  }

  /** Where this pass starts reading; undefined: nowhere yet (the first start on this journal). */
  private startPosition(): { since: number; fromStart: boolean } | undefined {
    const stored = this.journal.getMeta(POSITION_KEY);
    const position = stored === undefined || stored === '' ? undefined : Number(stored);
    if (this.followed) return { since: position ?? 0, fromStart: false };
    // jobs received before the log was followed for this journal (a journal of an older version, a crash before
    // the first pass) may have their instances' entries before the position: read the log from its start, once
    const coveredSince = this.journal.getMeta(COVERED_SINCE_KEY);
    const uncovered = this.unidentified.filter((j) => !coveredSince || j.receivedAt < coveredSince).length;
    if (uncovered) {
      this.log.warn({ jobs: uncovered }, 'jobs of before the reconciler followed the change log lack their raw copy: reading the change log from its start once');
      return { since: 0, fromStart: true };
    }
    return position === undefined ? undefined : { since: position, fromStart: false };
  }

  /**
   * A RECEIVED job of a previous run: its sender was never told the instance was stored. If the PACS has it, it
   * is IN_PACS (and gets de-identified); if not, REJECTED (the sender sends it again). A job that did not know its
   * raw copy's ID (a data set too large to parse before forwarding) is told only after the change log has been
   * read to its end in this run: its instance, had the PACS stored it, is an entry after the position stored
   * before it was received, and reading that entry identified its raw copy (identifyRaw). No walk of the archive.
   */
  private async resolveStale(): Promise<number> {
    if (!this.followed) return 0;
    let adopted = 0;
    while (this.stale.length) {
      const job = this.journal.get(this.stale[0]!);
      if (job?.state === 'RECEIVED') {
        const inPacs = !!job.rawId && (await this.pacs.instance(job.rawId)) !== null;
        if (inPacs) {
          this.journal.inPacs(job.id, null, 'found in the PACS after a restart');
          this.adopt(job.id);
          adopted++;
        } else this.journal.transition(job.id, 'RECEIVED', 'REJECTED', 'not in the PACS after a restart; the sender was not told it was stored', 'interrupted');
      }
      this.stale.shift();
    }
    return adopted;
  }

  /**
   * The archive, walked through its change log from the start (or where the last walk stopped) until the end or
   * `limit` NewInstance entries; the position is stored after every page, so a walk stopped by the limit, an error
   * or a crash resumes there. Every instance the PACS holds has its NewInstance entry, unless someone cleared the
   * log (DELETE /changes on the PACS): then the instances stored before are not walked.
   */
  async walk(limit: number, restart = false): Promise<WalkResult> {
    const stored = restart ? '' : (this.journal.getMeta(WALK_KEY) ?? '');
    let since = stored === '' ? 0 : Number(stored);
    const r: WalkResult = { considered: 0, adopted: 0, foreign: 0, position: since, complete: false };
    while (r.considered < limit) {
      const page = await this.pacs.changes(since, Math.min(PAGE, limit - r.considered));
      let whole = true;
      for (const c of page.Changes) {
        if (r.considered >= limit) {
          whole = false;
          break;
        }
        since = c.Seq;
        if (c.ChangeType !== 'NewInstance') continue;
        r.considered++;
        const v = await this.consider(c.ID);
        if (v === 'adopted') r.adopted++;
        else if (v === 'foreign') r.foreign++;
      }
      this.journal.setMeta(WALK_KEY, String(since));
      if (page.Done && whole) {
        r.complete = true;
        break;
      }
    }
    r.position = since;
    if (r.complete) this.journal.setMeta(WALK_KEY, '');
    return r;
  }

  /**
   * A takeover (src/pipeline/cluster.ts): the change log from `since` to its end, adopting every raw instance another
   * node, `owner`, stored (RemoteAET) and this journal does not cover yet; `before` runs before each adoption (the
   * takeover record its owner will find). Returns the jobs of this journal that work the owner's raw instances (those
   * adopted now and those adopted before, or received here again) and the position read up to.
   */
  async takeOver(owner: string, since: number, before: (rawId: string) => Promise<void>): Promise<{ jobs: { id: number; rawId: string }[]; position: number }> {
    const jobs: { id: number; rawId: string }[] = [];
    for (;;) {
      const page = await this.pacs.changes(since, PAGE);
      for (const c of page.Changes) {
        since = c.Seq;
        if (c.ChangeType !== 'NewInstance') continue;
        const unfinished = () => this.journal.jobsOfRaw(c.ID, `AND state IN ${UNFINISHED_SQL}`);
        let known = unfinished();
        if (!known.length && (await this.consider(c.ID, owner, before)) === 'adopted') known = unfinished();
        jobs.push(...known.map((j) => ({ id: j.id, rawId: c.ID })));
      }
      if (page.Done) return { jobs, position: since };
    }
  }

  /**
   * Looks at one PACS instance: identifies a job's raw copy, adopts it, or reports it as another system's. `owner`:
   * whose raw instances are adopted (this node's, or under a takeover another node's), `before` the adoption.
   */
  private async consider(id: string, owner = this.opts.callingAet, before?: (rawId: string) => Promise<void>): Promise<Verdict> {
    this.count('considered');
    if (this.journal.knows(id)) return 'covered';
    const instance = await this.pacs.instance(id);
    const sop = instance?.MainDicomTags.SOPInstanceUID;
    if (!sop) return 'covered'; // deleted meanwhile
    if ((await this.pacs.tagValue(id, '0012-0062'))?.toUpperCase() === 'YES') return 'covered';
    // a job of this UID that has not identified its raw copy: this is it
    if (this.journal.identifyRaw(this.journal.uidHash(sop), id) > 0) return 'covered';
    const takeover = owner !== this.opts.callingAet;
    if (this.opts.adopt === 'own' || takeover) {
      const meta = await this.pacs.instanceMetadata(id);
      if (!meta) return 'covered';
      if (takeover && meta.RemoteAET !== owner) return 'covered'; // not the dead node's: its own node's business
      if (meta.Origin !== 'DicomProtocol' || meta.RemoteAET !== owner) {
        this.count('foreign');
        this.journal.setMeta(FOREIGN_COUNT_KEY, String(Number(this.journal.getMeta(FOREIGN_COUNT_KEY) ?? 0) + 1));
        this.journal.setMeta(FOREIGN_LAST_KEY, id);
        this.log.warn({ orthancId: id, origin: meta.Origin ?? '', remoteAet: meta.RemoteAET ?? '' }, 'raw instance stored in the PACS by another system: left alone (pipeline.reconcileAdopt own)');
        return 'foreign';
      }
    }
    if (this.journal.knows(id)) return 'covered'; // ingested meanwhile
    await before?.(id);
    const jobId = this.journal.adopted({ sopInstanceUid: sop, rawId: id, sopClassUid: '', transferSyntaxUid: '', callingAet: 'RECONCILER', bytes: 0 });
    this.count('adopted');
    this.log.warn({ job: jobId, uid: this.journal.fingerprint(sop), ...(takeover ? { owner } : {}) }, takeover ? "raw instance of a node taken over adopted" : 'raw instance adopted by the reconciler');
    this.adopt(jobId);
    return 'adopted';
  }

  private count(what: 'considered' | 'adopted' | 'foreign'): void {
    this.opts.metrics?.inc(`dphiant_reconciler_${what}_total`);
  }
}
