// The quarantine: raw instances the pipeline could not de-identify (the gate found PHI, the data set is
// unreadable, or every retry failed). They leave the PACS and are kept here sealed with the crosswalk key
// (AES-256-GCM), one file per job, until an operator requeues or purges them.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openBytes, sealBytes } from '../crosswalk/crypto.js';
import type { OrthancClient } from '../pacs/orthanc.js';
import type { Job, Journal } from './journal.js';

export class Quarantine {
  constructor(
    readonly dir: string,
    private readonly key: Buffer,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private file(jobId: number): string {
    return path.join(this.dir, `${jobId}.dcm.sealed`);
  }

  put(jobId: number, bytes: Uint8Array): void {
    writeFileSync(this.file(jobId), sealBytes(this.key, bytes), { mode: 0o600 });
  }

  get(jobId: number): Buffer {
    return openBytes(this.key, readFileSync(this.file(jobId)));
  }

  /** Whether a sealed copy of the job is kept (a quarantine step cut short after the seal leaves one). */
  has(jobId: number): boolean {
    return existsSync(this.file(jobId));
  }

  remove(jobId: number): void {
    rmSync(this.file(jobId), { force: true });
  }

  jobIds(): number[] {
    return readdirSync(this.dir)
      .map((f) => /^(\d+)\.dcm\.sealed$/.exec(f)?.[1])
      .filter((x): x is string => !!x)
      .map(Number)
      .sort((a, b) => a - b);
  }
}

export function quarantineDir(dataDir: string): string {
  return path.join(dataDir, 'quarantine');
}

/** An operator's decision on a quarantined job: the CLI and the web UI both act through these. */
export interface QuarantineActions {
  journal: Journal;
  quarantine: Quarantine;
  pacs: OrthancClient;
}

/** The raw instance goes back to the PACS and the job to IN_PACS; a running middleman picks it up within a second. */
export async function requeueQuarantined(job: Job, d: QuarantineActions): Promise<void> {
  const up = await d.pacs.upload(d.quarantine.get(job.id));
  d.journal.requeued(job.id, up.ID);
  d.quarantine.remove(job.id);
}

/** The sealed copy is deleted for good; the job ends PURGED, its reason kept. */
export function purgeQuarantined(job: Job, d: Omit<QuarantineActions, 'pacs'>, by: string): void {
  d.quarantine.remove(job.id);
  d.journal.transition(job.id, 'QUARANTINED', 'PURGED', `purged by ${by}: ${job.reason ?? ''}`.slice(0, 500));
}
