// The embedded crosswalk: one SQLite file in the data directory (WAL, busy timeout, so several processes can share
// it). New patients are created by insert-or-get on the unique blind index: two processes creating the same
// patient at the same moment both end up with the one row that won.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Sealer } from './crypto.js';
import type { PatientAlias, PatientIdentity } from '../dicom/identity.js';
import {
  aliasOf,
  checkReason,
  newPatientRecord,
  newStudyRecord,
  patientMatchHash,
  revealed,
  REVEALED_FIELDS,
  studyMatchHash,
  type AuditRecord,
  type CrosswalkSettings,
  type CrosswalkStore,
  type PatientRecord,
  type PatientSummary,
  type RevealedPatient,
  type StudyRecord,
  type StudySummary,
} from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS patients (
  match_hash  TEXT PRIMARY KEY,
  alias_id    TEXT NOT NULL UNIQUE,
  alias_name  TEXT NOT NULL,
  alias_sex   TEXT NOT NULL CHECK (alias_sex IN ('M','F','O')),
  date_offset TEXT NOT NULL,
  phi         TEXT NOT NULL,
  created_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS studies (
  match_hash      TEXT PRIMARY KEY,
  alias_id        TEXT NOT NULL REFERENCES patients (alias_id),
  accession_alias TEXT NOT NULL UNIQUE,
  phi             TEXT NOT NULL,
  created_at      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS studies_alias ON studies (alias_id);
-- the browser's search by alias prefix: LIKE is case-insensitive, so its range needs a NOCASE index
CREATE INDEX IF NOT EXISTS patients_alias_prefix ON patients (alias_id COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS audit (
  id        INTEGER PRIMARY KEY,
  at        TEXT NOT NULL,
  user      TEXT NOT NULL,
  reason    TEXT NOT NULL,
  action    TEXT NOT NULL,
  alias_id  TEXT,
  disclosed TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
`;

type Row = Record<string, unknown>;

const toPatient = (r: Row): PatientRecord => ({
  matchHash: r.match_hash as string,
  aliasId: r.alias_id as string,
  aliasName: r.alias_name as string,
  aliasSex: r.alias_sex as PatientRecord['aliasSex'],
  dateOffset: r.date_offset as string,
  phi: r.phi as string,
  createdAt: r.created_at as string,
});
const toStudy = (r: Row): StudyRecord => ({
  matchHash: r.match_hash as string,
  aliasId: r.alias_id as string,
  accessionAlias: r.accession_alias as string,
  phi: r.phi as string,
  createdAt: r.created_at as string,
});

function isUniqueViolation(e: unknown): boolean {
  return (e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' || (e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export class SqliteCrosswalk implements CrosswalkStore {
  readonly backend = 'sqlite';
  private readonly db: Database.Database;
  private readonly q: Record<string, Database.Statement>;

  constructor(
    readonly file: string,
    private s: CrosswalkSettings,
  ) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 10000');
    this.db.exec(SCHEMA);
    this.q = {
      patientByHash: this.db.prepare('SELECT * FROM patients WHERE match_hash = ?'),
      patientByAlias: this.db.prepare('SELECT * FROM patients WHERE alias_id = ?'),
      insertPatient: this.db.prepare(
        `INSERT INTO patients (match_hash, alias_id, alias_name, alias_sex, date_offset, phi, created_at)
         VALUES (@matchHash, @aliasId, @aliasName, @aliasSex, @dateOffset, @phi, @createdAt) ON CONFLICT (match_hash) DO NOTHING`,
      ),
      studyByHash: this.db.prepare('SELECT * FROM studies WHERE match_hash = ?'),
      insertStudy: this.db.prepare(
        `INSERT INTO studies (match_hash, alias_id, accession_alias, phi, created_at)
         VALUES (@matchHash, @aliasId, @accessionAlias, @phi, @createdAt) ON CONFLICT (match_hash) DO NOTHING`,
      ),
      studiesOf: this.db.prepare('SELECT * FROM studies WHERE alias_id = ? ORDER BY created_at'),
      nextCounter: this.db.prepare(
        `INSERT INTO counters (name, value) VALUES ('patient', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value`,
      ),
      insertAudit: this.db.prepare('INSERT INTO audit (at, user, reason, action, alias_id, disclosed) VALUES (?, ?, ?, ?, ?, ?)'),
    };
    this.checkKey();
  }

  /** Refuses to run with a crosswalk key that did not seal the stored values. */
  private checkKey(): void {
    const row = this.db.prepare('SELECT phi FROM patients LIMIT 1').get() as Row | undefined;
    if (row) this.s.sealer.open(row.phi as string);
  }

  async patient(identity: PatientIdentity): Promise<PatientAlias> {
    const matchHash = patientMatchHash(this.s, identity);
    const existing = this.q.patientByHash!.get(matchHash) as Row | undefined;
    if (existing) return aliasOf(this.s, toPatient(existing), false);
    for (let attempt = 0; ; attempt++) {
      const record = await newPatientRecord(this.s, identity, matchHash, async () => (this.q.nextCounter!.get() as { value: number }).value);
      try {
        // insert-or-get: the unique blind index decides which of two concurrent creators wins
        const created = this.q.insertPatient!.run(record).changes === 1;
        const row = this.q.patientByHash!.get(matchHash) as Row;
        return aliasOf(this.s, toPatient(row), created);
      } catch (e) {
        if (!isUniqueViolation(e) || attempt >= 10) throw e; // an alias ID already taken: draw another
      }
    }
  }

  async study(patient: PatientAlias, study: { studyInstanceUid: string; accessionNumber: string }): Promise<string> {
    const matchHash = studyMatchHash(this.s, patient.aliasId, study.studyInstanceUid);
    const existing = this.q.studyByHash!.get(matchHash) as Row | undefined;
    if (existing) return existing.accession_alias as string;
    for (let attempt = 0; ; attempt++) {
      try {
        this.q.insertStudy!.run(newStudyRecord(this.s, patient.aliasId, study, matchHash));
        return (this.q.studyByHash!.get(matchHash) as Row).accession_alias as string;
      } catch (e) {
        if (!isUniqueViolation(e) || attempt >= 10) throw e;
      }
    }
  }

  async listPatients(q: { search?: string; offset?: number; limit?: number } = {}): Promise<{ total: number; items: PatientSummary[] }> {
    const like = `${(q.search ?? '').replace(/[%_\\]/g, (c) => '\\' + c)}%`;
    const total = (this.db.prepare(`SELECT count(*) AS n FROM patients WHERE alias_id LIKE ? ESCAPE '\\'`).get(like) as { n: number }).n;
    const rows = this.db
      .prepare(
        // the studies per patient as subqueries, not a grouped join: a GROUP BY alias_id made SQLite walk every
        // patient in alias order even for a search, instead of the prefix range of patients_alias_prefix
        `SELECT p.alias_id, p.alias_name, p.alias_sex, p.created_at,
           (SELECT count(*) FROM studies s WHERE s.alias_id = p.alias_id) AS studies,
           (SELECT max(s.created_at) FROM studies s WHERE s.alias_id = p.alias_id) AS last_study
         FROM patients p WHERE p.alias_id LIKE ? ESCAPE '\\' ORDER BY p.alias_id LIMIT ? OFFSET ?`,
      )
      .all(like, q.limit ?? 50, q.offset ?? 0) as Row[];
    return {
      total,
      items: rows.map((r) => ({
        aliasId: r.alias_id as string,
        aliasName: r.alias_name as string,
        aliasSex: r.alias_sex as PatientSummary['aliasSex'],
        studies: r.studies as number,
        createdAt: r.created_at as string,
        lastStudyAt: (r.last_study as string | null) ?? null,
      })),
    };
  }

  async listStudies(aliasId: string): Promise<StudySummary[]> {
    return (this.q.studiesOf!.all(aliasId) as Row[]).map((r) => ({ aliasId, accessionAlias: r.accession_alias as string, createdAt: r.created_at as string }));
  }

  private writeAudit(a: AuditRecord): void {
    this.q.insertAudit!.run(a.at, a.user, a.reason, a.action, a.aliasId, JSON.stringify(a.disclosed));
  }

  async reveal(aliasId: string, user: string, reason: string): Promise<RevealedPatient> {
    checkReason(user, reason);
    const row = this.q.patientByAlias!.get(aliasId) as Row | undefined;
    if (!row) throw new Error(`crosswalk: no patient with alias ${aliasId}`);
    const result = revealed(this.s, toPatient(row), (this.q.studiesOf!.all(aliasId) as Row[]).map(toStudy));
    // the audit record is on disk before anyone sees the PHI
    this.writeAudit({ at: new Date().toISOString(), user, reason, action: 'reveal', aliasId, disclosed: REVEALED_FIELDS });
    return result;
  }

  async audit(q: { aliasId?: string; limit?: number } = {}): Promise<AuditRecord[]> {
    const rows = (
      q.aliasId
        ? this.db.prepare('SELECT * FROM audit WHERE alias_id = ? ORDER BY id DESC LIMIT ?').all(q.aliasId, q.limit ?? 100)
        : this.db.prepare('SELECT * FROM audit ORDER BY id DESC LIMIT ?').all(q.limit ?? 100)
    ) as Row[];
    return rows.map((r) => ({
      at: r.at as string,
      user: r.user as string,
      reason: r.reason as string,
      action: r.action as AuditRecord['action'],
      aliasId: (r.alias_id as string | null) ?? null,
      disclosed: JSON.parse(r.disclosed as string) as string[],
    }));
  }

  async exportMapping(user: string, reason: string): Promise<RevealedPatient[]> {
    checkReason(user, reason);
    const patients = (this.db.prepare('SELECT * FROM patients ORDER BY alias_id').all() as Row[]).map(toPatient);
    const result = patients.map((p) => revealed(this.s, p, (this.q.studiesOf!.all(p.aliasId) as Row[]).map(toStudy)));
    this.writeAudit({ at: new Date().toISOString(), user, reason, action: 'export', aliasId: null, disclosed: REVEALED_FIELDS });
    return result;
  }

  async rekey(next: Sealer, user: string, reason: string): Promise<number> {
    checkReason(user, reason);
    let count = 0;
    const reseal = (sealed: string) => {
      if (next.sealedWith(sealed) === next.keyId) return sealed;
      count++;
      return next.seal(this.s.sealer.open(sealed));
    };
    this.db.transaction(() => {
      for (const r of this.db.prepare('SELECT match_hash, date_offset, phi FROM patients').all() as Row[]) {
        this.db.prepare('UPDATE patients SET date_offset = ?, phi = ? WHERE match_hash = ?').run(reseal(r.date_offset as string), reseal(r.phi as string), r.match_hash);
      }
      for (const r of this.db.prepare('SELECT match_hash, phi FROM studies').all() as Row[]) {
        this.db.prepare('UPDATE studies SET phi = ? WHERE match_hash = ?').run(reseal(r.phi as string), r.match_hash);
      }
      this.writeAudit({ at: new Date().toISOString(), user, reason, action: 'rekey', aliasId: null, disclosed: [] });
    })();
    this.s = { ...this.s, sealer: next };
    return count;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
