// The journal: one row per received instance and its state. SQLite in WAL mode with synchronous=FULL,
// so a state is on disk before the sender is told anything (invariant 1).
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

export const JOB_STATES = ['RECEIVED', 'IN_PACS', 'REJECTED', 'DEIDENTIFIED', 'DONE', 'QUARANTINED'] as const;
export type JobState = (typeof JOB_STATES)[number];

export interface Job {
  id: number;
  sopInstanceUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  callingAet: string;
  bytes: number;
  state: JobState;
  /** Why a job was rejected or quarantined; never PHI. */
  reason: string | null;
  receivedAt: string;
  updatedAt: string;
}

export interface NewJob {
  sopInstanceUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  callingAet: string;
  bytes: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  id                  INTEGER PRIMARY KEY,
  sop_instance_uid    TEXT NOT NULL,
  sop_class_uid       TEXT NOT NULL,
  transfer_syntax_uid TEXT NOT NULL,
  calling_aet         TEXT NOT NULL,
  bytes               INTEGER NOT NULL,
  state               TEXT NOT NULL CHECK (state IN (${JOB_STATES.map((s) => `'${s}'`).join(',')})),
  reason              TEXT,
  received_at         TEXT NOT NULL,
  updated_at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_sop_instance ON jobs (sop_instance_uid);
`;

export class Journal {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly move: Database.Statement;

  constructor(readonly file: string) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.insert = this.db.prepare(
      `INSERT INTO jobs (sop_instance_uid, sop_class_uid, transfer_syntax_uid, calling_aet, bytes, state, received_at, updated_at)
       VALUES (@sopInstanceUid, @sopClassUid, @transferSyntaxUid, @callingAet, @bytes, 'RECEIVED', @now, @now)`,
    );
    this.move = this.db.prepare(`UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE id = ? AND state = ?`);
  }

  /** Records a received instance; returns its job id. */
  received(job: NewJob): number {
    return Number(this.insert.run({ ...job, now: new Date().toISOString() }).lastInsertRowid);
  }

  /** Moves a job from one state to the next; durable when it returns. Throws if the job was not in `from`. */
  transition(id: number, from: JobState, to: JobState, reason: string | null = null): void {
    const r = this.move.run(to, reason, new Date().toISOString(), id, from);
    if (r.changes !== 1) throw new Error(`journal: job ${id} is not ${from}`);
  }

  get(id: number): Job | undefined {
    const row = this.db.prepare(`SELECT * FROM jobs WHERE id = ?`).get(id) as Record<string, unknown> | undefined;
    return row && toJob(row);
  }

  /** Number of jobs in each state (every state listed, zero included). */
  counts(): Record<JobState, number> {
    const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
    const rows = this.db.prepare(`SELECT state, count(*) AS n FROM jobs GROUP BY state`).all() as { state: JobState; n: number }[];
    for (const r of rows) counts[r.state] = r.n;
    return counts;
  }

  byState(state: JobState, limit = 1000): Job[] {
    return (this.db.prepare(`SELECT * FROM jobs WHERE state = ? ORDER BY id LIMIT ?`).all(state, limit) as Record<string, unknown>[]).map(toJob);
  }

  close(): void {
    this.db.close();
  }
}

function toJob(r: Record<string, unknown>): Job {
  return {
    id: r.id as number,
    sopInstanceUid: r.sop_instance_uid as string,
    sopClassUid: r.sop_class_uid as string,
    transferSyntaxUid: r.transfer_syntax_uid as string,
    callingAet: r.calling_aet as string,
    bytes: r.bytes as number,
    state: r.state as JobState,
    reason: (r.reason as string | null) ?? null,
    receivedAt: r.received_at as string,
    updatedAt: r.updated_at as string,
  };
}

export function journalPath(dataDir: string): string {
  return path.join(dataDir, 'journal.sqlite');
}
