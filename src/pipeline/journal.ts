// The journal: one row per received instance and its state. SQLite in WAL mode with synchronous=FULL,
// so a state is on disk before the sender is told anything (invariant 1).
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

export const JOB_STATES = ['RECEIVED', 'IN_PACS', 'REJECTED', 'DEIDENTIFIED', 'DONE', 'QUARANTINED', 'PURGED'] as const;
/** States with work left for the middleman. */
export const UNFINISHED: readonly JobState[] = ['RECEIVED', 'IN_PACS', 'DEIDENTIFIED'];
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
  /** Failed attempts of the current step; the next one is not before nextAttemptAt (ms since the epoch). */
  attempts: number;
  nextAttemptAt: number;
  /** Set once de-identified: the alias and the new SOP Instance UID and its id in the PACS. */
  aliasId: string | null;
  newSopInstanceUid: string | null;
  deidentifiedId: string | null;
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
  updated_at          TEXT NOT NULL,
  attempts            INTEGER NOT NULL DEFAULT 0,
  next_attempt_at     INTEGER NOT NULL DEFAULT 0,
  alias_id            TEXT,
  new_sop_instance_uid TEXT,
  deidentified_id     TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_sop_instance ON jobs (sop_instance_uid);
CREATE INDEX IF NOT EXISTS jobs_new_sop_instance ON jobs (new_sop_instance_uid);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
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

  /** Records a raw instance found in the PACS that no job covered (the reconciler), straight as IN_PACS. */
  adopted(job: NewJob): number {
    const id = this.received(job);
    this.transition(id, 'RECEIVED', 'IN_PACS', 'adopted by the reconciler');
    return id;
  }

  /** Moves a job from one state to the next; durable when it returns. Throws if the job was not in `from`. */
  transition(id: number, from: JobState, to: JobState, reason: string | null = null): void {
    const r = this.move.run(to, reason, new Date().toISOString(), id, from);
    if (r.changes !== 1) throw new Error(`journal: job ${id} is not ${from}`);
  }

  /** IN_PACS → DEIDENTIFIED, with what identifies the de-identified copy. */
  deidentified(id: number, d: { aliasId: string; newSopInstanceUid: string; deidentifiedId: string }): void {
    const r = this.db
      .prepare(
        `UPDATE jobs SET state = 'DEIDENTIFIED', reason = NULL, attempts = 0, next_attempt_at = 0, alias_id = ?, new_sop_instance_uid = ?, deidentified_id = ?, updated_at = ?
         WHERE id = ? AND state = 'IN_PACS'`,
      )
      .run(d.aliasId, d.newSopInstanceUid, d.deidentifiedId, new Date().toISOString(), id);
    if (r.changes !== 1) throw new Error(`journal: job ${id} is not IN_PACS`);
  }

  /** A failed attempt: the reason (no PHI) and when to try again. */
  failed(id: number, reason: string, nextAttemptAt: number): number {
    this.db.prepare('UPDATE jobs SET attempts = attempts + 1, reason = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?').run(reason, nextAttemptAt, new Date().toISOString(), id);
    return this.get(id)?.attempts ?? 0;
  }

  /** QUARANTINED → IN_PACS with a fresh attempt count (the raw instance is back in the PACS). */
  requeued(id: number): void {
    const r = this.db.prepare(`UPDATE jobs SET state = 'IN_PACS', attempts = 0, next_attempt_at = 0, reason = 'requeued', updated_at = ? WHERE id = ? AND state = 'QUARANTINED'`).run(new Date().toISOString(), id);
    if (r.changes !== 1) throw new Error(`journal: job ${id} is not QUARANTINED`);
  }

  /** Jobs with work left whose next attempt is due, oldest first. */
  due(now: number, limit = 1000): Job[] {
    return (this.db.prepare(`SELECT * FROM jobs WHERE state IN ('IN_PACS', 'DEIDENTIFIED') AND next_attempt_at <= ? ORDER BY id LIMIT ?`).all(now, limit) as Record<string, unknown>[]).map(toJob);
  }

  /** Whether a job with work left covers this (raw) SOP Instance UID, or it is the output of one. */
  knows(sopInstanceUid: string): boolean {
    return !!this.db
      .prepare(`SELECT 1 FROM jobs WHERE (sop_instance_uid = ? AND state IN ('RECEIVED', 'IN_PACS', 'DEIDENTIFIED')) OR new_sop_instance_uid = ? LIMIT 1`)
      .get(sopInstanceUid, sopInstanceUid);
  }

  /** Another job that de-identified the same raw instance (the modality sent it twice), if any. */
  twinOf(job: Job): Job | undefined {
    const row = this.db
      .prepare(`SELECT * FROM jobs WHERE sop_instance_uid = ? AND id <> ? AND state IN ('DEIDENTIFIED', 'DONE') AND deidentified_id IS NOT NULL ORDER BY id LIMIT 1`)
      .get(job.sopInstanceUid, job.id) as Record<string, unknown> | undefined;
    return row && toJob(row);
  }

  /** When the oldest job with work left arrived, or null. */
  oldestUnfinished(): string | null {
    const r = this.db.prepare(`SELECT min(received_at) AS at FROM jobs WHERE state IN ('RECEIVED', 'IN_PACS', 'DEIDENTIFIED')`).get() as { at: string | null };
    return r.at;
  }

  /** The newest jobs, optionally those whose alias or new SOP Instance UID starts with `search`. */
  recent(search = '', limit = 50): Job[] {
    const like = `${search.replace(/[%_\\]/g, (c) => '\\' + c)}%`;
    const rows = search
      ? this.db.prepare(`SELECT * FROM jobs WHERE alias_id LIKE ? ESCAPE '\\' OR new_sop_instance_uid LIKE ? ESCAPE '\\' ORDER BY id DESC LIMIT ?`).all(like, like, limit)
      : this.db.prepare('SELECT * FROM jobs ORDER BY id DESC LIMIT ?').all(limit);
    return (rows as Record<string, unknown>[]).map(toJob);
  }

  /** Jobs finished (DONE) per minute over the last `minutes` minutes, oldest first, zeros included. */
  donePerMinute(minutes: number, now = Date.now()): { minute: string; done: number }[] {
    const since = new Date(now - minutes * 60_000).toISOString();
    const rows = this.db
      .prepare(`SELECT substr(updated_at, 1, 16) AS minute, count(*) AS n FROM jobs WHERE state = 'DONE' AND updated_at >= ? GROUP BY minute`)
      .all(since) as { minute: string; n: number }[];
    const by = new Map(rows.map((r) => [r.minute, r.n]));
    return Array.from({ length: minutes }, (_, i) => {
      const minute = new Date(now - (minutes - 1 - i) * 60_000).toISOString().slice(0, 16);
      return { minute, done: by.get(minute) ?? 0 };
    });
  }

  /** Instances de-identified per alias. */
  instancesPerAlias(aliases: string[]): Map<string, number> {
    const out = new Map<string, number>();
    const q = this.db.prepare(`SELECT count(*) AS n FROM jobs WHERE alias_id = ? AND state = 'DONE'`);
    for (const a of aliases) out.set(a, (q.get(a) as { n: number }).n);
    return out;
  }

  getMeta(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
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
    attempts: (r.attempts as number) ?? 0,
    nextAttemptAt: (r.next_attempt_at as number) ?? 0,
    aliasId: (r.alias_id as string | null) ?? null,
    newSopInstanceUid: (r.new_sop_instance_uid as string | null) ?? null,
    deidentifiedId: (r.deidentified_id as string | null) ?? null,
  };
}

export function journalPath(dataDir: string): string {
  return path.join(dataDir, 'journal.sqlite');
}
