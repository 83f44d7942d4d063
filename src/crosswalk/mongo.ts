// The crosswalk on MongoDB (or any MongoDB-wire server, FerretDB in the tests): the shared store of several
// middleman nodes. New patients are created by insert-or-get on the unique blind index: a duplicate-key error
// means another node won, and its document is read back.
import { MongoClient, MongoServerError, type Collection, type Db, type Document } from 'mongodb';
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

const isDuplicateKey = (e: unknown) => e instanceof MongoServerError && e.code === 11000;

// The blind index is each document's _id: the primary key every MongoDB-wire server looks up fastest (FerretDB's
// SQLite backend pushes _id equality down to SQLite; other fields it scans).
type PatientDoc = Omit<PatientRecord, 'matchHash'> & { _id: string };
type StudyDoc = Omit<StudyRecord, 'matchHash'> & { _id: string };
const patientDoc = ({ matchHash, ...rest }: PatientRecord): PatientDoc => ({ _id: matchHash, ...rest });
const studyDoc = ({ matchHash, ...rest }: StudyRecord): StudyDoc => ({ _id: matchHash, ...rest });
const patientRecord = ({ _id, ...rest }: PatientDoc): PatientRecord => ({ matchHash: _id, ...rest });
const studyRecord = ({ _id, ...rest }: StudyDoc): StudyRecord => ({ matchHash: _id, ...rest });

/**
 * A socket that stays silent this long is closed, so a call on a database that stopped mid-call fails (and is
 * retried) instead of waiting for ever.
 */
const CLIENT_OPTIONS = { serverSelectionTimeoutMS: 10_000, socketTimeoutMS: 60_000 };

/** How long a client replaced by reconnect() stays open for its calls in flight (the workers bound theirs at 30 s). */
const RETIRE_AFTER_MS = 35_000;

export class MongoCrosswalk implements CrosswalkStore {
  readonly backend = 'mongodb';
  private patients!: Collection<PatientDoc>;
  private studies!: Collection<StudyDoc>;
  private audits!: Collection<AuditRecord>;
  private counters!: Collection<{ _id: string; value: number }>;
  /** Clients replaced by reconnect(), closed once their calls in flight have had their time. */
  private readonly retiring = new Set<MongoClient>();

  private constructor(
    private client: MongoClient,
    private readonly url: string,
    private s: CrosswalkSettings,
  ) {
    this.bind(client);
  }

  private bind(client: MongoClient): void {
    const db: Db = client.db();
    this.client = client;
    this.patients = db.collection('patients');
    this.studies = db.collection('studies');
    this.audits = db.collection('audit');
    this.counters = db.collection('counters');
  }

  /** Connects, creates the unique indexes, and checks the crosswalk key against a stored value. */
  static async open(url: string, s: CrosswalkSettings): Promise<MongoCrosswalk> {
    const client = new MongoClient(url, CLIENT_OPTIONS);
    await client.connect();
    const store = new MongoCrosswalk(client, url, s);
    try {
      await store.patients.createIndex({ aliasId: 1 }, { unique: true, name: 'aliasId_unique' });
      await store.studies.createIndex({ accessionAlias: 1 }, { unique: true, name: 'accessionAlias_unique' });
      await store.studies.createIndex({ aliasId: 1 }, { name: 'aliasId' });
      await store.audits.createIndex({ aliasId: 1, at: -1 }, { name: 'aliasId_at' });
      const one = await store.patients.findOne({}, { projection: { phi: 1 } });
      if (one) s.sealer.open(one.phi);
    } catch (e) {
      await client.close();
      throw e;
    }
    return store;
  }

  /**
   * A collection of the shared database other than the crosswalk's own (node leases, web sessions), always on the
   * current client: fetch it per call, since reconnect() replaces the client.
   */
  collection<T extends Document>(name: string): Collection<T> {
    return this.client.db().collection<T>(name);
  }

  private async nextCounter(): Promise<number> {
    const r = await this.counters.findOneAndUpdate({ _id: 'patient' }, { $inc: { value: 1 } }, { upsert: true, returnDocument: 'after' });
    return r!.value;
  }

  async patient(identity: PatientIdentity): Promise<PatientAlias> {
    const matchHash = patientMatchHash(this.s, identity);
    const existing = await this.patients.findOne({ _id: matchHash });
    if (existing) return aliasOf(this.s, patientRecord(existing), false);
    for (let attempt = 0; ; attempt++) {
      const record = await newPatientRecord(this.s, identity, matchHash, () => this.nextCounter());
      try {
        await this.patients.insertOne(patientDoc(record));
        return aliasOf(this.s, record, true);
      } catch (e) {
        if (!isDuplicateKey(e)) throw e;
        // someone else created this patient first (same blind index), or the alias ID was taken: read, or retry
        const winner = await this.patients.findOne({ _id: matchHash });
        if (winner) return aliasOf(this.s, patientRecord(winner), false);
        if (attempt >= 10) throw e;
      }
    }
  }

  async study(patient: PatientAlias, study: { studyInstanceUid: string; accessionNumber: string }): Promise<string> {
    const matchHash = studyMatchHash(this.s, patient.aliasId, study.studyInstanceUid);
    const existing = await this.studies.findOne({ _id: matchHash });
    if (existing) return existing.accessionAlias;
    for (let attempt = 0; ; attempt++) {
      const record = newStudyRecord(this.s, patient.aliasId, study, matchHash);
      try {
        await this.studies.insertOne(studyDoc(record));
        return record.accessionAlias;
      } catch (e) {
        if (!isDuplicateKey(e)) throw e;
        const winner = await this.studies.findOne({ _id: matchHash });
        if (winner) return winner.accessionAlias;
        if (attempt >= 10) throw e;
      }
    }
  }

  async listPatients(q: { search?: string; offset?: number; limit?: number } = {}): Promise<{ total: number; items: PatientSummary[] }> {
    const filter = q.search ? { aliasId: { $regex: '^' + q.search.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') } } : {};
    const total = await this.patients.countDocuments(filter);
    const page = await this.patients
      .find(filter, { projection: { aliasId: 1, aliasName: 1, aliasSex: 1, createdAt: 1 } })
      .sort({ aliasId: 1 })
      .skip(q.offset ?? 0)
      .limit(q.limit ?? 50)
      .toArray();
    const items: PatientSummary[] = [];
    for (const p of page) {
      const studies = await this.studies.find({ aliasId: p.aliasId }, { projection: { createdAt: 1 } }).toArray();
      const last = studies.map((s) => s.createdAt).sort().at(-1) ?? null;
      items.push({ aliasId: p.aliasId, aliasName: p.aliasName, aliasSex: p.aliasSex, studies: studies.length, createdAt: p.createdAt, lastStudyAt: last });
    }
    return { total, items };
  }

  async listStudies(aliasId: string): Promise<StudySummary[]> {
    const rows = await this.studies.find({ aliasId }).sort({ createdAt: 1 }).toArray();
    return rows.map((r) => ({ aliasId, accessionAlias: r.accessionAlias, createdAt: r.createdAt }));
  }

  async reveal(aliasId: string, user: string, reason: string): Promise<RevealedPatient> {
    checkReason(user, reason);
    const p = await this.patients.findOne({ aliasId });
    if (!p) throw new Error(`crosswalk: no patient with alias ${aliasId}`);
    const result = revealed(this.s, patientRecord(p), (await this.studies.find({ aliasId }).sort({ createdAt: 1 }).toArray()).map(studyRecord));
    // the audit record is stored (majority write concern where there is a replica set) before anyone sees the PHI
    await this.audits.insertOne({ at: new Date().toISOString(), user, reason, action: 'reveal', aliasId, disclosed: REVEALED_FIELDS });
    return result;
  }

  async audit(q: { aliasId?: string; limit?: number } = {}): Promise<AuditRecord[]> {
    const rows = await this.audits
      .find(q.aliasId ? { aliasId: q.aliasId } : {}, { projection: { _id: 0 } })
      .sort({ at: -1 })
      .limit(q.limit ?? 100)
      .toArray();
    return rows;
  }

  async exportMapping(user: string, reason: string): Promise<RevealedPatient[]> {
    checkReason(user, reason);
    const out: RevealedPatient[] = [];
    for (const p of await this.patients.find({}).sort({ aliasId: 1 }).toArray()) {
      out.push(revealed(this.s, patientRecord(p), (await this.studies.find({ aliasId: p.aliasId }).sort({ createdAt: 1 }).toArray()).map(studyRecord)));
    }
    await this.audits.insertOne({ at: new Date().toISOString(), user, reason, action: 'export', aliasId: null, disclosed: REVEALED_FIELDS });
    return out;
  }

  async rekey(next: Sealer, user: string, reason: string): Promise<number> {
    checkReason(user, reason);
    // document by document: an interrupted rekey leaves values under either key, each marked with its key id;
    // running it again finishes the job (values already under the new key are skipped)
    const open = (sealed: string) => (next.sealedWith(sealed) === next.keyId ? sealed : next.seal(this.s.sealer.open(sealed)));
    let count = 0;
    for (const p of await this.patients.find({}).toArray()) {
      const dateOffset = open(p.dateOffset);
      const phi = open(p.phi);
      if (dateOffset !== p.dateOffset || phi !== p.phi) {
        await this.patients.updateOne({ _id: p._id }, { $set: { dateOffset, phi } });
        count += Number(dateOffset !== p.dateOffset) + Number(phi !== p.phi);
      }
    }
    for (const st of await this.studies.find({}).toArray()) {
      const phi = open(st.phi);
      if (phi !== st.phi) {
        await this.studies.updateOne({ _id: st._id }, { $set: { phi } });
        count++;
      }
    }
    await this.audits.insertOne({ at: new Date().toISOString(), user, reason, action: 'rekey', aliasId: null, disclosed: [] });
    this.s = { ...this.s, sealer: next };
    return count;
  }

  /**
   * A new client in place of this one, once the database answers it: after a long outage the driver's own client
   * was seen (once, in CI) to keep failing server selection for minutes after the server was back. While the
   * database is still down the new client fails to connect and the current one stays.
   */
  async reconnect(): Promise<void> {
    const next = new MongoClient(this.url, CLIENT_OPTIONS);
    try {
      await next.connect();
    } catch (e) {
      await next.close(true).catch(() => undefined);
      throw e;
    }
    const old = this.client;
    this.bind(next);
    // closing a client fails its calls in flight, which may be working (a lease renewal, a web session): it gets
    // the workers' call bound to finish them first
    this.retiring.add(old);
    setTimeout(() => void this.retire(old), RETIRE_AFTER_MS).unref();
  }

  private async retire(client: MongoClient): Promise<void> {
    if (!this.retiring.delete(client)) return;
    await client.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    await Promise.all([...this.retiring].map((c) => this.retire(c)));
    await this.client.close();
  }
}
