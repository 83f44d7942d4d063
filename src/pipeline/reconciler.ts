// The reconciler (invariant 2): finds raw instances in the PACS that no job covers — stored before a crash wiped
// a journal entry, sent straight to the PACS, restored from a backup — and takes them into the pipeline.
// At start-up it walks every instance; afterwards it follows Orthanc's change log.
// A PACS instance is covered by its Orthanc ID (a job's raw copy or output), not by its UID; the UID only names,
// through its keyed hash, the jobs whose raw copy is not identified yet (src/pipeline/journal.ts identifyRaw).
import type { Logger } from '../log.js';
import type { OrthancClient } from '../pacs/orthanc.js';
import type { Journal } from './journal.js';

const SEQ_KEY = 'reconciler.changes.seq';

export class Reconciler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** RECEIVED jobs of a previous run: it stopped between journalling them and hearing from the PACS. */
  private stale: number[];
  /** Whether a full pass has completed: until then a stale job without a raw ID cannot be told absent. */
  private scanned = false;

  constructor(
    private readonly journal: Journal,
    private readonly pacs: OrthancClient,
    private readonly log: Logger,
    private readonly adopt: (jobId: number) => void,
  ) {
    this.stale = journal.byState('RECEIVED', 100_000).map((j) => j.id);
  }

  /**
   * A full pass now, then the change log every `intervalMs` (0: no periodic pass; stale jobs then retried every 5 s).
   * The first full pass runs before stale jobs are resolved: it identifies the raw copies of those whose ID was not
   * known (a large data set, not parsed before forwarding).
   */
  start(intervalMs: number): Promise<void> {
    const first = this.run(async () => (await this.fullScan()) + (await this.resolveStale()));
    // until a full pass has completed (the PACS was down at start-up), every tick tries one
    const later = async () => (this.scanned ? (await this.resolveStale()) + (intervalMs > 0 ? await this.followChanges() : 0) : (await this.fullScan()) + (await this.resolveStale()));
    this.timer = setInterval(() => void this.run(later), intervalMs || 5000);
    this.timer.unref();
    return first;
  }

  /**
   * A RECEIVED job of a previous run: its sender was never told the instance was stored. If the PACS has it, it
   * is IN_PACS (and gets de-identified); if not, REJECTED (the sender sends it again).
   */
  private async resolveStale(): Promise<number> {
    let adopted = 0;
    while (this.stale.length) {
      const job = this.journal.get(this.stale[0]!);
      if (job?.state === 'RECEIVED') {
        if (!job.rawId && !this.scanned) return adopted;
        const inPacs = !!job.rawId && (await this.pacs.instance(job.rawId)) !== null;
        if (inPacs) {
          this.journal.inPacs(job.id, null, 'found in the PACS after a restart');
          this.adopt(job.id);
          adopted++;
        } else this.journal.transition(job.id, 'RECEIVED', 'REJECTED', 'not in the PACS after a restart; the sender was not told it was stored');
      }
      this.stale.shift();
    }
    return adopted;
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

  /** Every instance of the PACS; remembers where the change log stands. */
  async fullScan(): Promise<number> {
    const last = (await this.pacs.changes(0, 1)).Last;
    let adopted = 0;
    for (let since = 0; ; ) {
      const page = await this.pacs.listInstances({ since, limit: 1000 });
      for (const id of page) adopted += await this.consider(id);
      if (page.length < 1000) break;
      since += page.length;
    }
    this.journal.setMeta(SEQ_KEY, String(last));
    this.scanned = true;
    return adopted;
  }

  /** New instances since the last pass, from the change log. */
  async followChanges(): Promise<number> {
    let since = Number(this.journal.getMeta(SEQ_KEY) ?? 0);
    let adopted = 0;
    for (;;) {
      const page = await this.pacs.changes(since, 1000);
      for (const c of page.Changes) if (c.ChangeType === 'NewInstance') adopted += await this.consider(c.ID);
      since = page.Last;
      this.journal.setMeta(SEQ_KEY, String(since));
      if (page.Done) return adopted;
    }
  }

  /** Adopts one PACS instance if it is raw and no job covers it; returns 1 if adopted. */
  private async consider(id: string): Promise<number> {
    if (this.journal.knows(id)) return 0;
    const instance = await this.pacs.instance(id);
    const sop = instance?.MainDicomTags.SOPInstanceUID;
    if (!sop) return 0;
    if ((await this.pacs.tagValue(id, '0012-0062'))?.toUpperCase() === 'YES') return 0;
    // a job of this UID that has not identified its raw copy: this is it
    if (this.journal.identifyRaw(this.journal.uidHash(sop), id) > 0) return 0;
    if (this.journal.knows(id)) return 0; // ingested meanwhile
    const jobId = this.journal.adopted({ sopInstanceUid: sop, rawId: id, sopClassUid: '', transferSyntaxUid: '', callingAet: 'RECONCILER', bytes: 0 });
    this.log.warn({ job: jobId, uid: this.journal.fingerprint(sop) }, 'raw instance adopted by the reconciler');
    this.adopt(jobId);
    return 1;
  }
}
