// The quarantine: raw instances the pipeline could not de-identify (a permanent failure: the gate found PHI, the
// data set is unreadable, burned-in text cannot be cleaned…; the job's reason code says which). They leave the PACS and are kept here sealed with the crosswalk key
// (AES-256-GCM), one file per job, until an operator requeues or purges them.
// A sealed file is durable before the caller deletes the raw copy from the PACS: written to a temporary name,
// fsynced, renamed, and the directory fsynced, so a crash (kill -9, power loss) leaves either the previous file or
// the whole new one, never a torn one; `crosswalk rekey` re-seals every file the same way.
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync, existsSync } from 'node:fs';
import path from 'node:path';
import { openBytes, sealBytes } from '../crosswalk/crypto.js';
import type { OrthancClient } from '../pacs/orthanc.js';
import type { Job, Journal } from './journal.js';

const SEALED = /^(\d+)\.dcm\.sealed$/;
const TEMP = /^\d+\.dcm\.sealed\.tmp$/;

/** A sealed file that does not open with the key tried (sealed under another crosswalk key, or damaged). */
export class QuarantineKeyError extends Error {
  constructor(readonly jobId: number) {
    super(`quarantined job ${jobId} does not open with the configured crosswalk key (sealed under another key: see crosswalk rekey in the README)`);
  }
}

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

  /** Seals `bytes` for the job; durable on disk when it returns (only then may the raw copy leave the PACS). */
  put(jobId: number, bytes: Uint8Array): void {
    this.write(jobId, sealBytes(this.key, bytes));
  }

  has(jobId: number): boolean {
    return existsSync(this.file(jobId));
  }

  get(jobId: number): Buffer {
    const sealed = readFileSync(this.file(jobId));
    try {
      return openBytes(this.key, sealed);
    } catch {
      throw new QuarantineKeyError(jobId);
    }
  }

  /** `onlyInode`: remove the file only if it is still that one (not one the worker wrote since: a new inode). */
  remove(jobId: number, onlyInode?: number): void {
    if (onlyInode !== undefined && this.inode(jobId) !== onlyInode) return;
    rmSync(this.file(jobId), { force: true });
  }

  /** The sealed file's inode number (every put or re-seal makes a new one), or undefined when there is none. */
  inode(jobId: number): number | undefined {
    try {
      return statSync(this.file(jobId)).ino;
    } catch {
      return undefined;
    }
  }

  jobIds(): number[] {
    return readdirSync(this.dir)
      .map((f) => SEALED.exec(f)?.[1])
      .filter((x): x is string => !!x)
      .map(Number)
      .sort((a, b) => a - b);
  }

  /**
   * Temporary files a crash left behind (never renamed: their job was sealed again or is still IN_PACS). Only the
   * data directory's owner (`dphiant serve`, under its lock) calls this: another process may be writing one now.
   */
  removeTemps(): number {
    const temps = readdirSync(this.dir).filter((f) => TEMP.test(f));
    for (const f of temps) rmSync(path.join(this.dir, f), { force: true });
    return temps.length;
  }

  /**
   * Re-seals every file under `next` (crosswalk rekey, with the middleman stopped). A file that already opens with
   * `next` is left as it is, so an interrupted rekey is finished by running it again; each file is replaced by
   * temp + fsync + rename, so at every moment each one opens with one of the two keys. Returns the jobs re-sealed
   * and those that open with neither key (left as they are).
   */
  rekey(next: Buffer): { resealed: number[]; unreadable: number[] } {
    const resealed: number[] = [];
    const unreadable: number[] = [];
    for (const id of this.jobIds()) {
      const sealed = readFileSync(this.file(id));
      if (opens(next, sealed)) continue;
      let bytes: Buffer;
      try {
        bytes = openBytes(this.key, sealed);
      } catch {
        unreadable.push(id);
        continue;
      }
      this.write(id, sealBytes(next, bytes));
      resealed.push(id);
    }
    return { resealed, unreadable };
  }

  /** temp file (0600) → fsync → rename over the final name → fsync the directory. */
  private write(jobId: number, sealed: Buffer): void {
    const final = this.file(jobId);
    const temp = `${final}.tmp`;
    const fd = openSync(temp, 'w', 0o600);
    try {
      fchmodSync(fd, 0o600); // a temp file left by a crash keeps its mode; 'w' sets one only on creation
      for (let off = 0; off < sealed.length; ) off += writeSync(fd, sealed, off, sealed.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, final);
    const dirFd = openSync(this.dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }
}

function opens(key: Buffer, sealed: Buffer): boolean {
  try {
    openBytes(key, sealed);
    return true;
  } catch {
    return false;
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

/** How audit records name a quarantined instance: the prefix of its SOP Instance UID's keyed hash that the worker logs as `uid`. */
export function quarantineEntry(job: Job): string {
  return job.sopUidHash.slice(0, 12);
}

/**
 * The raw instance goes back to the PACS and the job to IN_PACS; a running middleman picks it up within a second.
 * The sealed copy is removed last: a crash before leaves the file beside an IN_PACS job (the PACS has the instance).
 * Only the file that was uploaded is removed: a running middleman may already have quarantined the job again.
 */
export async function requeueQuarantined(job: Job, d: QuarantineActions): Promise<void> {
  const inode = d.quarantine.inode(job.id);
  const up = await d.pacs.upload(d.quarantine.get(job.id));
  d.journal.requeued(job.id, up.ID);
  d.quarantine.remove(job.id, inode);
}

/**
 * The sealed copy is deleted for good; the job ends PURGED, its reason and code kept. The journal first: if the job is no
 * longer QUARANTINED (requeued meanwhile by another operator) it throws and the file stays.
 */
export function purgeQuarantined(job: Job, d: Omit<QuarantineActions, 'pacs'>, by: string): void {
  d.journal.transition(job.id, 'QUARANTINED', 'PURGED', `purged by ${by}: ${job.reason ?? ''}`.slice(0, 500), job.reasonCode);
  d.quarantine.remove(job.id);
}
