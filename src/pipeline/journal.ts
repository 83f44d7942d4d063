// The journal: one row per received instance and its state. SQLite in WAL mode with synchronous=FULL,
// so a state is on disk before the sender is told anything (docs/design.md, invariant 1).
// It names a raw instance by a keyed hash of its SOP Instance UID and by its Orthanc ID, never by the UID itself:
// next to the alias and the new UID, the original UID would be a re-identification map outside the encrypted
// crosswalk. The Orthanc ID is an unkeyed SHA-1 of the Patient ID and the UIDs, so a finished job
// keeps only its keyed hash (raw_key): enough to recognise a second send of the same instance, not to test a guess.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import path from 'node:path';
import { keyedHash } from '../anonymize/keyed.js';
import { isReasonCode, type Failure, type ReasonCode } from '../reasons.js';

export const JOB_STATES = ['RECEIVED', 'IN_PACS', 'REJECTED', 'DEIDENTIFIED', 'DONE', 'QUARANTINED', 'PURGED'] as const;
/** States with work left for the middleman. */
export const UNFINISHED: readonly JobState[] = ['RECEIVED', 'IN_PACS', 'DEIDENTIFIED'];
export type JobState = (typeof JOB_STATES)[number];
/** States nothing follows (QUARANTINED waits for an operator, so it is not one of them). */
export const FINISHED: readonly JobState[] = ['DONE', 'REJECTED', 'PURGED'];

export interface Job {
  id: number;
  /** HMAC-SHA-256 (site key, hex) of the original SOP Instance UID. */
  sopUidHash: string;
  /**
   * The raw instance's Orthanc ID (content identity: Patient ID and the three UIDs); null until known, and null
   * again once the job is finished (the journal then keeps only its keyed hash).
   */
  rawId: string | null;
  sopClassUid: string;
  transferSyntaxUid: string;
  callingAet: string;
  bytes: number;
  state: JobState;
  /** Why a job was rejected or quarantined, or its last failed attempt: free text, never PHI. */
  reason: string | null;
  /** The fixed code of that failure (src/reasons.ts); null when `reason` is a note (requeued, adopted) or none. */
  reasonCode: ReasonCode | null;
  receivedAt: string;
  updatedAt: string;
  /** Failed attempts of the current step; the next one is not before nextAttemptAt (ms since the epoch). */
  attempts: number;
  nextAttemptAt: number;
  /** Set once de-identified: the alias, the new SOP and Study Instance UIDs, and its id in the PACS. */
  aliasId: string | null;
  newSopInstanceUid: string | null;
  /** Null in jobs journalled before it was kept. */
  newStudyInstanceUid: string | null;
  deidentifiedId: string | null;
}

export interface NewJob {
  sopInstanceUid: string;
  /** The raw instance's Orthanc ID when it is known (computed from the data set, or what the PACS reports). */
  rawId?: string | null;
  sopClassUid: string;
  transferSyntaxUid: string;
  callingAet: string;
  bytes: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  id                  INTEGER PRIMARY KEY,
  sop_uid_hash        TEXT NOT NULL,
  raw_id              TEXT,
  raw_key             TEXT,
  sop_class_uid       TEXT NOT NULL,
  transfer_syntax_uid TEXT NOT NULL,
  calling_aet         TEXT NOT NULL,
  bytes               INTEGER NOT NULL,
  state               TEXT NOT NULL CHECK (state IN (${JOB_STATES.map((s) => `'${s}'`).join(',')})),
  reason              TEXT,
  reason_code         TEXT,
  received_at         TEXT NOT NULL,
  updated_at          TEXT NOT NULL,
  attempts            INTEGER NOT NULL DEFAULT 0,
  next_attempt_at     INTEGER NOT NULL DEFAULT 0,
  alias_id            TEXT,
  new_sop_instance_uid TEXT,
  deidentified_id     TEXT,
  new_study_instance_uid TEXT,
  audit_pending       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
`;
// after the migration: the columns they name exist in every journal from here on. Each query reads only the rows it
// returns or counts, however many finished jobs the journal keeps (bench/journal-scale.ts, test/journal-scale.test.ts);
// an older journal gets them on open (IF NOT EXISTS), and loses the two they replace.
const INDEXES = `
CREATE INDEX IF NOT EXISTS jobs_state_updated ON jobs (state, updated_at);
CREATE INDEX IF NOT EXISTS jobs_sop_uid_hash ON jobs (sop_uid_hash);
CREATE INDEX IF NOT EXISTS jobs_raw_id ON jobs (raw_id);
CREATE INDEX IF NOT EXISTS jobs_raw_key ON jobs (raw_key);
CREATE INDEX IF NOT EXISTS jobs_deidentified ON jobs (deidentified_id);
CREATE INDEX IF NOT EXISTS jobs_alias_state ON jobs (alias_id, state);
CREATE INDEX IF NOT EXISTS jobs_alias_prefix ON jobs (alias_id COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS jobs_new_sop_prefix ON jobs (new_sop_instance_uid COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS jobs_audit_pending ON jobs (id) WHERE audit_pending = 1;
DROP INDEX IF EXISTS jobs_state;
DROP INDEX IF EXISTS jobs_new_sop_instance;
`;
// what each index is for: jobs_state_updated: byState, due, oldestUnfinished, and the range over updated_at of the
// dashboard's DONE per minute and of retention; jobs_alias_state: instances per alias (/api/patients);
// the two *_prefix ones: the dashboard's search (LIKE is case-insensitive, so its prefix range needs NOCASE).

// counts() per state without reading the jobs: a row per state kept by triggers, so every writer of the file keeps
// it right (an older version too, once a newer one has opened the journal).
const STATE_COUNTS = `
CREATE TABLE state_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO state_counts (state, n) SELECT value, (SELECT count(*) FROM jobs WHERE state = value) FROM json_each('${JSON.stringify(JOB_STATES)}');
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN UPDATE state_counts SET n = n + 1 WHERE state = NEW.state; END;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN UPDATE state_counts SET n = n - 1 WHERE state = OLD.state; END;
CREATE TRIGGER jobs_count_move AFTER UPDATE OF state ON jobs WHEN OLD.state <> NEW.state BEGIN
  UPDATE state_counts SET n = n - 1 WHERE state = OLD.state;
  UPDATE state_counts SET n = n + 1 WHERE state = NEW.state;
END;
`;

const sqlList = (states: readonly JobState[]) => `(${states.map((s) => `'${s}'`).join(', ')})`;
export const UNFINISHED_SQL = sqlList(UNFINISHED);
/** States in which the raw copy's Orthanc ID is no longer needed, only recognised (see raw_key). */
const RAW_GONE_SQL = sqlList([...FINISHED, 'QUARANTINED']);

export class Journal {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly statements = new Map<string, Database.Statement>();
  /** Writes durably() was asked for in this turn of the event loop, committed together on the next. */
  private queued: { write: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  private readonly move: Database.Statement;

  /** `siteKey`: the key of the UID hashes (the site key, as everywhere a keyed hash names an identifier). */
  constructor(
    readonly file: string,
    private readonly siteKey: Buffer,
    warn: (msg: string) => void = () => undefined,
  ) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    // SQLite gives the -wal and -shm files the database file's mode: create it 0600 before SQLite does
    if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
    for (const f of [file, `${file}-wal`, `${file}-shm`]) {
      if (existsSync(f) && (statSync(f).mode & 0o077) !== 0) {
        chmodSync(f, 0o600);
        warn(`${f} was readable by group or others: now mode 0600`);
      }
    }
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    // what is deleted or rewritten (the migration below) is overwritten, not left in free pages
    this.db.pragma('secure_delete = ON');
    this.db.exec(SCHEMA);
    this.db.function('dphiant_key', { deterministic: true }, (v: unknown) => (v == null ? null : this.rawKey(String(v))));
    if (this.migratePlaintextUids()) warn(`${file}: original SOP Instance UIDs replaced by keyed hashes`);
    if (this.migrateFinishedRawIds()) warn(`${file}: raw Orthanc IDs of finished jobs replaced by keyed hashes`);
    this.addColumn('new_study_instance_uid');
    this.addColumn('audit_pending', 'INTEGER NOT NULL DEFAULT 0');
    const coded = this.migrateReasonCodes();
    if (coded) warn(`${file}: reason codes given to ${coded} jobs journalled by an older version`);
    this.db.exec(INDEXES);
    this.db.transaction(() => {
      if (!this.sql(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'state_counts'`).get()) this.db.exec(STATE_COUNTS);
    }).immediate();
    this.insert = this.sql(
      `INSERT INTO jobs (sop_uid_hash, raw_id, sop_class_uid, transfer_syntax_uid, calling_aet, bytes, state, received_at, updated_at)
       VALUES (@sopUidHash, @rawId, @sopClassUid, @transferSyntaxUid, @callingAet, @bytes, 'RECEIVED', @now, @now)`,
    );
    this.move = this.sql(
      `UPDATE jobs SET state = @to, reason = @reason, reason_code = @code, updated_at = @now,
         raw_key = CASE WHEN @to IN ${RAW_GONE_SQL} THEN coalesce(dphiant_key(raw_id), raw_key) ELSE raw_key END,
         raw_id = CASE WHEN @to IN ${RAW_GONE_SQL} THEN NULL ELSE raw_id END,
         audit_pending = CASE WHEN @audit THEN 1 ELSE audit_pending END
       WHERE id = @id AND state = @from`,
    );
  }

  /**
   * A journal written before failures carried codes: the reason_code column is added, and the jobs whose reason is a
   * failure (rejected, quarantined, purged, or retrying) get the code their text maps to, once. Returns how many.
   */
  private migrateReasonCodes(): number {
    const columns = (this.sql(`PRAGMA table_info(jobs)`).all() as { name: string }[]).map((c) => c.name);
    if (columns.includes('reason_code')) return 0;
    return this.db.transaction(() => {
      this.db.exec(`ALTER TABLE jobs ADD COLUMN reason_code TEXT`);
      const rows = this.sql(`SELECT id, reason FROM jobs WHERE reason IS NOT NULL AND (state IN ('REJECTED', 'QUARANTINED', 'PURGED') OR (state IN ${UNFINISHED_SQL} AND attempts > 0))`)
        .all() as { id: number; reason: string }[];
      const set = this.sql(`UPDATE jobs SET reason_code = ? WHERE id = ?`);
      for (const r of rows) set.run(legacyReasonCode(r.reason), r.id);
      return rows.length;
    })();
  }

  /** A column of SCHEMA that a journal written by an older version lacks: added, empty (or its default). */
  private addColumn(name: string, type = 'TEXT'): void {
    const columns = (this.sql(`PRAGMA table_info(jobs)`).all() as { name: string }[]).map((c) => c.name);
    if (!columns.includes(name)) this.db.exec(`ALTER TABLE jobs ADD COLUMN ${name} ${type}`);
  }

  /** A journal written before finished jobs kept only raw_key: hash their raw IDs (adding the column if needed). */
  private migrateFinishedRawIds(): boolean {
    const columns = (this.sql(`PRAGMA table_info(jobs)`).all() as { name: string }[]).map((c) => c.name);
    if (!columns.includes('raw_key')) this.db.exec(`ALTER TABLE jobs ADD COLUMN raw_key TEXT`);
    const changed = this.sql(`UPDATE jobs SET raw_key = dphiant_key(raw_id), raw_id = NULL WHERE raw_id IS NOT NULL AND state IN ${RAW_GONE_SQL}`).run().changes;
    if (changed) this.db.pragma('wal_checkpoint(TRUNCATE)');
    return changed > 0;
  }

  /**
   * A journal written before the UIDs were hashed has a sop_instance_uid column: hash its values into
   * sop_uid_hash and drop it, then rewrite the file and empty the WAL so no page keeps the old values.
   * Their raw IDs stay unknown; the reconciler fills them in from the PACS (it matches the hash).
   */
  private migratePlaintextUids(): boolean {
    const columns = (this.sql(`PRAGMA table_info(jobs)`).all() as { name: string }[]).map((c) => c.name);
    if (!columns.includes('sop_instance_uid')) return false;
    this.db.function('dphiant_uid_hash', { deterministic: true }, (uid: unknown) => this.uidHash(String(uid ?? '')));
    this.db.transaction(() => {
      if (!columns.includes('sop_uid_hash')) this.db.exec(`ALTER TABLE jobs ADD COLUMN sop_uid_hash TEXT NOT NULL DEFAULT ''`);
      if (!columns.includes('raw_id')) this.db.exec(`ALTER TABLE jobs ADD COLUMN raw_id TEXT`);
      this.db.exec(`UPDATE jobs SET sop_uid_hash = dphiant_uid_hash(sop_instance_uid)`);
      this.db.exec(`DROP INDEX IF EXISTS jobs_sop_instance`);
      this.db.exec(`ALTER TABLE jobs DROP COLUMN sop_instance_uid`);
    })();
    this.db.exec('VACUUM');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    return true;
  }

  /** A prepared statement, prepared once: preparing on every call cost more than running most of them. */
  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (!st) {
      if (this.statements.size >= 256) this.statements.clear(); // a few statements are built per call (IN lists)
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  /** The keyed hash the journal names an original SOP Instance UID by. */
  uidHash(sopInstanceUid: string): string {
    return keyedHash(this.siteKey, sopInstanceUid.replace(/[\0 ]+$/, ''));
  }

  /** The keyed fingerprint logs name a SOP Instance UID by (src/log.ts): the hash's prefix. */
  fingerprint(sopInstanceUid: string): string {
    return this.uidHash(sopInstanceUid).slice(0, 12);
  }

  /** Records a received instance; returns its job id. */
  received(job: NewJob): number {
    const { sopInstanceUid, rawId, ...rest } = job;
    return Number(this.insert.run({ ...rest, sopUidHash: this.uidHash(sopInstanceUid), rawId: rawId ?? null, now: new Date().toISOString() }).lastInsertRowid);
  }

  /** RECEIVED → IN_PACS: the PACS accepted the C-STORE; `rawId` is what it holds the raw copy as, when known. */
  inPacs(id: number, rawId: string | null, reason: string | null = null): void {
    const r = this.sql(`UPDATE jobs SET state = 'IN_PACS', raw_id = coalesce(?, raw_id), reason = ?, reason_code = NULL, updated_at = ? WHERE id = ? AND state = 'RECEIVED'`)
      .run(rawId, reason, new Date().toISOString(), id);
    if (r.changes !== 1) throw new Error(`journal: job ${id} is not RECEIVED`);
  }

  /**
   * The PACS holds a raw instance with this UID hash under `rawId`: unfinished jobs of that UID whose raw copy was
   * not identified yet (the PACS REST API did not answer at ingest, a crash, a migrated journal) take it.
   * Returns how many jobs did.
   */
  identifyRaw(sopUidHash: string, rawId: string): number {
    return this.sql(`UPDATE jobs SET raw_id = ?, updated_at = ? WHERE sop_uid_hash = ? AND raw_id IS NULL AND state IN ${UNFINISHED_SQL}`)
      .run(rawId, new Date().toISOString(), sopUidHash).changes;
  }

  /** Records a raw instance found in the PACS that no job covered (the reconciler), straight as IN_PACS. */
  adopted(job: NewJob): number {
    const id = this.received(job);
    this.transition(id, 'RECEIVED', 'IN_PACS', 'adopted by the reconciler');
    return id;
  }

  /**
   * Moves a job from one state to the next; durable when it returns. Throws if the job was not in `from`.
   * `code`: the failure's code when `reason` is a failure (REJECTED, QUARANTINED, PURGED), else null.
   * `auditPending`: the move removed the job's raw copy from the PACS, and its audit records are still to be written:
   * kept with the move, so a crash before they are in the audit trail's spool loses none (auditPending()).
   */
  transition(id: number, from: JobState, to: JobState, reason: string | null = null, code: ReasonCode | null = null, auditPending = false): void {
    const r = this.move.run({ to, reason, code, now: new Date().toISOString(), id, from, audit: auditPending ? 1 : 0 });
    if (r.changes !== 1) throw new Error(`journal: job ${id} is not ${from}`);
  }

  /** IN_PACS → DEIDENTIFIED, with what identifies the de-identified copy. */
  deidentified(id: number, d: { aliasId: string; newSopInstanceUid: string; newStudyInstanceUid: string; deidentifiedId: string }): void {
    const r = this.sql(
        `UPDATE jobs SET state = 'DEIDENTIFIED', reason = NULL, reason_code = NULL, attempts = 0, next_attempt_at = 0, alias_id = ?, new_sop_instance_uid = ?, new_study_instance_uid = ?, deidentified_id = ?, updated_at = ?
         WHERE id = ? AND state = 'IN_PACS'`,
      )
      .run(d.aliasId, d.newSopInstanceUid, d.newStudyInstanceUid, d.deidentifiedId, new Date().toISOString(), id);
    if (r.changes !== 1) throw new Error(`journal: job ${id} is not IN_PACS`);
  }

  /** Finished jobs whose raw copy's removal has no audit record in the trail's spool yet (a crash came first). */
  auditPending(limit = 100_000): Job[] {
    return (this.sql(`SELECT * FROM jobs WHERE audit_pending = 1 ORDER BY id LIMIT ?`).all(limit) as Record<string, unknown>[]).map(toJob);
  }

  /** The audit records of these jobs' removals are in the trail's spool. */
  audited(ids: readonly number[]): void {
    const clear = this.sql(`UPDATE jobs SET audit_pending = 0 WHERE id = ?`);
    this.db.transaction(() => {
      for (const id of ids) clear.run(id);
    })();
  }

  /** A failed attempt: its code and message (no PHI), and when to try again. */
  failed(id: number, failure: Failure, nextAttemptAt: number): number {
    this.sql('UPDATE jobs SET attempts = attempts + 1, reason = ?, reason_code = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?')
      .run(failure.message, failure.code, nextAttemptAt, new Date().toISOString(), id);
    return this.get(id)?.attempts ?? 0;
  }

  /** QUARANTINED → IN_PACS with a fresh attempt count (the raw instance is back in the PACS, as `rawId`). */
  requeued(id: number, rawId: string): void {
    const r = this.sql(`UPDATE jobs SET state = 'IN_PACS', raw_id = ?, attempts = 0, next_attempt_at = 0, reason = 'requeued', reason_code = NULL, updated_at = ? WHERE id = ? AND state = 'QUARANTINED'`).run(rawId, new Date().toISOString(), id);
    if (r.changes !== 1) throw new Error(`journal: job ${id} is not QUARANTINED`);
  }

  /** Jobs with work left whose next attempt is due, oldest first. */
  due(now: number, limit = 1000): Job[] {
    return (this.sql(`SELECT * FROM jobs WHERE state IN ('IN_PACS', 'DEIDENTIFIED') AND next_attempt_at <= ? ORDER BY id LIMIT ?`).all(now, limit) as Record<string, unknown>[]).map(toJob);
  }

  /**
   * Whether the PACS instance `orthancId` is covered: the raw copy of a job with work left, or the output of any
   * job. By Orthanc ID, not by UID: with Retain UIDs the de-identified copy, and another raw instance under the
   * same UID, share the UID.
   */
  knows(orthancId: string): boolean {
    return !!this.sql(`SELECT 1 FROM jobs WHERE (raw_id = ? AND state IN ${UNFINISHED_SQL}) OR deidentified_id = ? LIMIT 1`)
      .get(orthancId, orthancId);
  }

  /** Whether the PACS instance `orthancId` is the de-identified output of a job. */
  isOutput(orthancId: string): boolean {
    return !!this.sql(`SELECT 1 FROM jobs WHERE deidentified_id = ? LIMIT 1`).get(orthancId);
  }

  /** Another job that de-identified the same raw instance (same content identity: the modality sent it twice), if any. */
  twinOf(job: Job): Job | undefined {
    if (!job.rawId) return undefined;
    // +state: not by the state index, which would read every DONE job; the raw_id and raw_key indexes find the few
    return this.jobsOfRaw(job.rawId, `AND id <> ? AND +state IN ('DEIDENTIFIED', 'DONE') AND deidentified_id IS NOT NULL`, job.id)[0];
  }

  /** The jobs, oldest first, whose raw copy was the PACS instance `orthancId`, by its ID or, once finished, its keyed hash. */
  jobsOfRaw(orthancId: string, andWhere = '', ...params: unknown[]): Job[] {
    return (
      this.sql(`SELECT * FROM jobs WHERE (raw_id = ? OR raw_key = ?) ${andWhere} ORDER BY id`).all(orthancId, this.rawKey(orthancId), ...params) as Record<string, unknown>[]
    ).map(toJob);
  }

  /** The keyed hash a finished job keeps of its raw copy's Orthanc ID (raw_key); what other nodes may be told. */
  rawKey(orthancId: string): string {
    return keyedHash(this.siteKey, orthancId);
  }

  /** When the oldest job with work left arrived, or null. */
  oldestUnfinished(): string | null {
    const r = this.sql(`SELECT min(received_at) AS at FROM jobs WHERE state IN ('RECEIVED', 'IN_PACS', 'DEIDENTIFIED')`).get() as { at: string | null };
    return r.at;
  }

  /** The newest jobs, optionally those whose alias or new SOP Instance UID starts with `search`. */
  recent(search = '', limit = 50): Job[] {
    const like = `${search.replace(/[%_\\]/g, (c) => '\\' + c)}%`;
    const rows = search
      ? this.sql(`SELECT * FROM jobs WHERE alias_id LIKE ? ESCAPE '\\' OR new_sop_instance_uid LIKE ? ESCAPE '\\' ORDER BY id DESC LIMIT ?`).all(like, like, limit)
      : this.sql('SELECT * FROM jobs ORDER BY id DESC LIMIT ?').all(limit);
    return (rows as Record<string, unknown>[]).map(toJob);
  }

  /** Jobs finished (DONE) per minute over the last `minutes` minutes, oldest first, zeros included. */
  donePerMinute(minutes: number, now = Date.now()): { minute: string; done: number }[] {
    const since = new Date(now - minutes * 60_000).toISOString();
    const rows = this.sql(`SELECT substr(updated_at, 1, 16) AS minute, count(*) AS n FROM jobs WHERE state = 'DONE' AND updated_at >= ? GROUP BY minute`)
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
    const q = this.sql(`SELECT count(*) AS n FROM jobs WHERE alias_id = ? AND state = 'DONE'`);
    for (const a of aliases) out.set(a, (q.get(a) as { n: number }).n);
    return out;
  }

  /**
   * Retention: deletes the finished jobs (DONE, REJECTED, PURGED) last changed more than `days` days before `now`;
   * QUARANTINED and unfinished jobs are never deleted. Returns how many were. secure_delete overwrites their pages,
   * and the checkpoint moves the change out of the WAL, so the rows are gone from the files too.
   */
  pruneFinished(days: number, now = Date.now()): number {
    const before = new Date(now - days * 86_400_000).toISOString();
    const deleted = this.sql(`DELETE FROM jobs WHERE state IN ${sqlList(FINISHED)} AND updated_at < ?`)
      .run(before).changes;
    if (deleted > 0) this.db.pragma('wal_checkpoint(TRUNCATE)');
    return deleted;
  }

  getMeta(key: string): string | undefined {
    return (this.sql('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  setMeta(key: string, value: string): void {
    this.sql('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  get(id: number): Job | undefined {
    const row = this.sql(`SELECT * FROM jobs WHERE id = ?`).get(id) as Record<string, unknown> | undefined;
    return row && toJob(row);
  }

  /** Number of jobs in each state (every state listed, zero included). */
  counts(): Record<JobState, number> {
    const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
    const rows = this.sql(`SELECT state, n FROM state_counts`).all() as { state: JobState; n: number }[];
    for (const r of rows) counts[r.state] = r.n;
    return counts;
  }

  byState(state: JobState, limit = 1000): Job[] {
    return (this.sql(`SELECT * FROM jobs WHERE state = ? ORDER BY id LIMIT ?`).all(state, limit) as Record<string, unknown>[]).map(toJob);
  }

  /** Runs `fn` as one transaction: many writes, one commit (one fsync). */
  inTransaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /**
   * Runs `write` durably, committed together with the other writes asked for in the same turn of the event loop: one
   * transaction, so one fsync for writes from several associations at once (group commit). Each write is a savepoint
   * of its own: one that throws fails alone. Resolves once the commit is on disk.
   */
  durably<T>(write: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queued.push({ write, resolve: resolve as (v: unknown) => void, reject });
      if (this.queued.length === 1) setImmediate(() => this.commitQueued());
    });
  }

  private commitQueued(): void {
    const batch = this.queued;
    this.queued = [];
    const outcomes: ({ value: unknown } | { error: unknown })[] = [];
    try {
      this.db.transaction(() => {
        for (const q of batch) {
          try {
            outcomes.push({ value: this.db.transaction(q.write)() });
          } catch (error) {
            outcomes.push({ error });
          }
        }
      })();
    } catch (e) {
      for (const q of batch) q.reject(e);
      return;
    }
    batch.forEach((q, i) => {
      const o = outcomes[i]!;
      if ('error' in o) q.reject(o.error);
      else q.resolve(o.value);
    });
  }

  close(): void {
    this.db.close();
  }
}

function toJob(r: Record<string, unknown>): Job {
  return {
    id: r.id as number,
    sopUidHash: r.sop_uid_hash as string,
    rawId: (r.raw_id as string | null) ?? null,
    sopClassUid: r.sop_class_uid as string,
    transferSyntaxUid: r.transfer_syntax_uid as string,
    callingAet: r.calling_aet as string,
    bytes: r.bytes as number,
    state: r.state as JobState,
    reason: (r.reason as string | null) ?? null,
    reasonCode: isReasonCode(r.reason_code) ? r.reason_code : null,
    receivedAt: r.received_at as string,
    updatedAt: r.updated_at as string,
    attempts: (r.attempts as number) ?? 0,
    nextAttemptAt: (r.next_attempt_at as number) ?? 0,
    aliasId: (r.alias_id as string | null) ?? null,
    newSopInstanceUid: (r.new_sop_instance_uid as string | null) ?? null,
    newStudyInstanceUid: (r.new_study_instance_uid as string | null) ?? null,
    deidentifiedId: (r.deidentified_id as string | null) ?? null,
  };
}

/**
 * The code of a reason an older version journalled as text only (the migration above, once per journal): the texts
 * those versions wrote, matched loosely; what matches none is 'other'.
 */
export function legacyReasonCode(reason: string): ReasonCode {
  const r = reason.replace(/^purged by .*?: /, '').toLowerCase();
  const rules: [RegExp, ReasonCode][] = [
    [/^verification/, 'gate-hit'],
    [/size limit/, 'too-large'],
    [/spool full/, 'spool-full'],
    [/^dphiant spool/, 'disk'],
    [/malformed|unreadable|empty data set/, 'malformed'],
    [/sop instance uid differs/, 'sop-instance-mismatch'],
    [/sop class uid differs/, 'sop-class-mismatch'],
    [/^dphiant (backlog|cannot reach)/, 'backpressure'],
    [/journal/, 'journal-unavailable'],
    [/internal error/, 'internal'],
    [/after a restart/, 'interrupted'],
    [/^pacs unavailable: .*(timeout|no progress)/, 'pacs-timeout'],
    [/^pacs unavailable/, 'pacs-unavailable'],
    [/sop class or transfer syntax/, 'pacs-unsupported'],
    [/^pacs answered|^pacs refused/, 'pacs-refused'],
    [/^pacs stored the de-identified/, 'id-mismatch'],
    [/character set/, 'charset'],
    [/profile cannot apply|raw instance's orthanc id/, 'profile'],
    [/^burned-in text/, 'pixels'],
    [/raw instance absent/, 'raw-absent'],
    [/crosswalk/, 'crosswalk-unavailable'],
    [/not identified/, 'raw-not-identified'],
    [/^orthanc .*http 40[13]\b/, 'pacs-auth'],
    [/^orthanc .*no answer \((timeout|timed out)/, 'pacs-timeout'],
    [/^orthanc .*no answer/, 'pacs-unavailable'],
    [/^orthanc /, 'pacs-error'],
    [/sealing|failed: e[a-z]+$/, 'disk'],
  ];
  return rules.find(([re]) => re.test(r))?.[1] ?? 'other';
}

export function journalPath(dataDir: string): string {
  return path.join(dataDir, 'journal.sqlite');
}
