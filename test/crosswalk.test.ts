// One contract suite for both crosswalk stores: the embedded SQLite file and MongoDB (FerretDB in CI).
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FAMILY_NAMES, GIVEN_NAMES } from '../src/crosswalk/aliases.js';
import { Sealer } from '../src/crosswalk/crypto.js';
import { MongoCrosswalk } from '../src/crosswalk/mongo.js';
import { SqliteCrosswalk } from '../src/crosswalk/sqlite.js';
import type { CrosswalkSettings, CrosswalkStore } from '../src/crosswalk/store.js';
import type { PatientIdentity } from '../src/dicom/identity.js';
import { findUp } from '../src/paths.js';
import { DEV_STACK_ENV } from './support/cli.js';
import { startMongoServer, type MongoServer } from './support/ferretdb.js';

const SITE_KEY = Buffer.alloc(32, 0x11);
const CROSSWALK_KEY = Buffer.alloc(32, 0x22);

function settings(over: Partial<CrosswalkSettings> = {}): CrosswalkSettings {
  return { siteKey: SITE_KEY, sealer: new Sealer(CROSSWALK_KEY), matchKey: 'id', aliasPattern: 'random', aliasPrefix: 'DPH', dateOffsetMinDays: -3650, dateOffsetMaxDays: -365, ...over };
}

function person(n: number, sex = 'F', over: Partial<PatientIdentity> = {}): PatientIdentity {
  return { patientId: `PID-${n}`, issuerOfPatientId: 'HOSP-A', name: `Realname${n}^Given${n}`, sex, birthDate: '19700101', ...over };
}

/** An instance with no patient identity at all (a phantom, a secondary capture) of one study. */
function unidentified(studyInstanceUid: string, over: Partial<PatientIdentity> = {}): PatientIdentity {
  return { patientId: '', issuerOfPatientId: '', name: '', sex: '', birthDate: '', studyInstanceUid, ...over };
}

const NO_IDENTITY = { patientId: '', issuerOfPatientId: '', name: '', sex: '', birthDate: '' };

interface Backend {
  name: string;
  /** Opens a store on a fresh database (same `db` → the same database). */
  open(s: CrosswalkSettings, db?: string): Promise<CrosswalkStore>;
  /** Files where the store keeps its data, for the at-rest check. */
  files(db: string): string[];
  /** DPHIANT_* settings for a child process using the same database. */
  env(db: string): Record<string, string>;
  fresh(): string;
  stop(): Promise<void>;
}

const work = mkdtempSync(path.join(tmpdir(), 'dphiant-crosswalk-'));
const siteKeyFile = path.join(work, 'site.key');
writeFileSync(siteKeyFile, SITE_KEY.toString('hex') + '\n', { mode: 0o600 });

function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

const sqliteBackend: Backend = {
  name: 'SQLite (embedded, better-sqlite3)',
  fresh: () => path.join(work, `sqlite-${randomBytes(4).toString('hex')}`),
  open: async (s, db) => new SqliteCrosswalk(path.join(db ?? sqliteBackend.fresh(), 'crosswalk.sqlite'), s),
  files: (db) => listFiles(db),
  env: (db) => ({ DPHIANT_DATA_DIR: db }),
  stop: async () => {},
};

function mongoBackend(server: MongoServer): Backend {
  return {
    name: server.name,
    fresh: () => `dphiant_${randomBytes(4).toString('hex')}`,
    open: (s, db) => MongoCrosswalk.open(`${server.url}/${db ?? `dphiant_${randomBytes(4).toString('hex')}`}`, s),
    files: () => (server.dataDir ? listFiles(server.dataDir) : []),
    env: (db) => ({ DPHIANT_DATA_DIR: path.join(work, 'mongo-child'), DPHIANT_CROSSWALK_URL: `${server.url}/${db}` }),
    stop: () => server.stop(),
  };
}

/** Runs test/support/crosswalk-race.js: `calls` concurrent get-or-creates over `patients` patients; returns patientId → aliasId. */
function race(env: Record<string, string>, patients: number, calls: number, startAt: number): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [findUp('dist/test/support/crosswalk-race.js'), String(patients), String(calls), String(startAt)], {
      env: { ...process.env, ...DEV_STACK_ENV, ...env, DPHIANT_KEY_FILE: siteKeyFile, DPHIANT_CROSSWALK_KEY: CROSSWALK_KEY.toString('hex') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`race child exited ${code}: ${err.slice(-500)}`))));
  });
}

function contract(getBackend: () => Backend | undefined, label: string) {
  describe(`crosswalk contract on ${label}`, function () {
    this.timeout(300_000);
    let b: Backend;
    before(function () {
      const got = getBackend();
      if (!got) this.skip();
      b = got!;
    });

    it('gives the same patient the same alias, and says when it created one', async () => {
      const store = await b.open(settings());
      const first = await store.patient(person(1));
      const again = await store.patient(person(1, 'F', { name: 'Other^Spelling' }));
      expect(first.created).to.equal(true);
      expect(again).to.deep.equal({ ...first, created: false });
      expect(first.aliasId).to.match(/^DPH[A-Z2-7]{8}$/);
      expect(first.dateOffsetDays).to.be.within(-3650, -365);
      await store.close();
    });

    it('gives different match keys different aliases (the issuer is part of the key)', async () => {
      const store = await b.open(settings());
      const a = await store.patient(person(1));
      const other = await store.patient(person(2));
      const otherIssuer = await store.patient(person(1, 'F', { issuerOfPatientId: 'HOSP-B' }));
      expect(new Set([a.aliasId, other.aliasId, otherIssuer.aliasId]).size).to.equal(3);
      await store.close();
    });

    it('matches by name + birth date + sex when configured so, and falls back to them when there is no PatientID', async () => {
      const store = await b.open(settings({ matchKey: 'demographics' }));
      const a = await store.patient(person(1, 'M', { patientId: 'X' }));
      const b2 = await store.patient(person(1, 'M', { patientId: 'Y' }));
      expect(b2.aliasId).to.equal(a.aliasId);
      expect((await store.patient(person(1, 'M', { birthDate: '19700102' }))).aliasId).not.to.equal(a.aliasId);
      await store.close();
      const byId = await b.open(settings());
      const noId = await byId.patient(person(5, 'M', { patientId: '' }));
      expect((await byId.patient(person(5, 'M', { patientId: '' }))).aliasId).to.equal(noId.aliasId);
      await byId.close();
    });

    it('matches an instance with only a PatientID by it under the demographics key', async () => {
      const store = await b.open(settings({ matchKey: 'demographics' }));
      const onlyId = { ...NO_IDENTITY, patientId: 'PID-ONLY', studyInstanceUid: '1.2.3.1' };
      const a = await store.patient(onlyId);
      expect((await store.patient({ ...onlyId, studyInstanceUid: '1.2.3.2' })).aliasId).to.equal(a.aliasId);
      expect((await store.reveal(a.aliasId, 'dr.who', 'check the match key')).unidentified).to.equal(undefined);
      await store.close();
    });

    it('gives all instances of one unidentified study one alias, and each unidentified study its own (per-study)', async () => {
      const store = await b.open(settings({ unidentified: 'per-study' }));
      const first = await store.patient(unidentified('1.2.3.100'));
      const again = await store.patient(unidentified('1.2.3.100'));
      const onlyIssuer = await store.patient(unidentified('1.2.3.100', { issuerOfPatientId: 'HOSP-A' }));
      const other = await store.patient(unidentified('1.2.3.200'));
      expect(first.created).to.equal(true);
      expect(again).to.deep.equal({ ...first, created: false });
      expect(onlyIssuer.aliasId, 'an issuer without a PatientID identifies nobody').to.equal(first.aliasId);
      expect(other.aliasId).not.to.equal(first.aliasId);
      expect(first.aliasId).to.match(/^DPH[A-Z2-7]{8}$/);
      expect(GIVEN_NAMES.O.map((n) => n.toUpperCase()), 'a neutral given name').to.include(first.aliasName.split('^')[1]);
      expect((await store.listPatients()).items.map((p) => p.aliasSex)).to.deep.equal(['O', 'O']);
      const accession = await store.study(first, { studyInstanceUid: '1.2.3.100', accessionNumber: '' });
      const r = await store.reveal(first.aliasId, 'dr.who', 'which phantom study is this');
      expect(r.unidentified).to.equal('per-study');
      expect(r.identity).to.deep.equal(NO_IDENTITY);
      expect(r.studies).to.deep.equal([{ accessionAlias: accession, studyInstanceUid: '1.2.3.100', accessionNumber: '' }]);
      let refused: Error | undefined;
      await store.patient(unidentified('')).catch((e: Error) => (refused = e));
      expect(refused?.message).to.contain('Study Instance UID');
      await store.close();
    });

    it('gives all unidentified instances one alias with crosswalk.unidentified single', async () => {
      const store = await b.open(settings({ unidentified: 'single' }));
      const one = await store.patient(unidentified('1.2.3.100'));
      const two = await store.patient(unidentified('1.2.3.200'));
      const none = await store.patient(unidentified(''));
      expect(two.aliasId).to.equal(one.aliasId);
      expect(none.aliasId).to.equal(one.aliasId);
      expect((await store.listPatients()).total).to.equal(1);
      const r = await store.reveal(one.aliasId, 'dr.who', 'audit of the test objects');
      expect(r).to.include({ unidentified: 'single', aliasSex: 'O' });
      expect(r.identity).to.deep.equal(NO_IDENTITY);
      await store.close();
    });

    for (const mode of ['per-study', 'single'] as const) {
      it(`never gives an unidentified study the alias of a real patient (${mode})`, async () => {
        const store = await b.open(settings({ unidentified: mode }));
        // real patients whose values equal what an unidentified key is made of
        const real = [
          await store.patient(person(1, 'F', { studyInstanceUid: '1.2.3.100' })),
          await store.patient({ ...NO_IDENTITY, patientId: '1.2.3.100' }),
          await store.patient({ ...NO_IDENTITY, patientId: 'unknown patient' }),
          await store.patient({ ...NO_IDENTITY, name: 'unknown patient' }),
          await store.patient({ ...NO_IDENTITY, name: '1.2.3.100' }),
        ];
        const phantom = await store.patient(unidentified('1.2.3.100'));
        expect(phantom.created).to.equal(true);
        expect(real.map((p) => p.aliasId)).not.to.include(phantom.aliasId);
        expect(new Set(real.map((p) => p.aliasId)).size).to.equal(real.length);
        expect((await store.reveal(real[0]!.aliasId, 'dr.who', 'check the real patient')).identity, 'the study is not part of the identity').to.deep.equal(person(1));
        await store.close();
      });
    }

    it('numbers aliases with the counter pattern', async () => {
      const store = await b.open(settings({ aliasPattern: 'counter', aliasPrefix: 'RES' }));
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push((await store.patient(person(i))).aliasId);
      expect(ids).to.deep.equal(['RES00000001', 'RES00000002', 'RES00000003']);
      expect((await store.patient(person(1))).aliasId).to.equal('RES00000002');
      await store.close();
    });

    it('gives each study of a patient one stable accession alias', async () => {
      const store = await b.open(settings());
      const p = await store.patient(person(1));
      const s1 = await store.study(p, { studyInstanceUid: '1.2.3.1', accessionNumber: 'ACC-REAL-1' });
      expect(await store.study(p, { studyInstanceUid: '1.2.3.1', accessionNumber: 'ACC-REAL-1' })).to.equal(s1);
      const s2 = await store.study(p, { studyInstanceUid: '1.2.3.2', accessionNumber: 'ACC-REAL-2' });
      expect(s2).not.to.equal(s1);
      expect(s1).to.match(/^ACC[A-Z2-7]{10}$/);
      const studies = await store.listStudies(p.aliasId);
      expect(studies.map((s) => s.accessionAlias)).to.have.members([s1, s2]);
      await store.close();
    });

    it('pages and searches patients by alias, with study counts and no PHI', async () => {
      const store = await b.open(settings({ aliasPattern: 'counter', aliasPrefix: 'PG' }));
      for (let i = 0; i < 12; i++) {
        const p = await store.patient(person(i));
        if (i < 3) await store.study(p, { studyInstanceUid: `1.9.${i}`, accessionNumber: `A${i}` });
      }
      const page = await store.listPatients({ offset: 5, limit: 5 });
      expect(page.total).to.equal(12);
      expect(page.items.map((p) => p.aliasId)).to.deep.equal(['PG00000006', 'PG00000007', 'PG00000008', 'PG00000009', 'PG00000010']);
      const found = await store.listPatients({ search: 'PG0000000' });
      expect(found.total).to.equal(9);
      const first = (await store.listPatients({ search: 'PG00000001' })).items[0]!;
      expect(first.studies).to.equal(1);
      expect(first.lastStudyAt).to.be.a('string');
      expect(JSON.stringify(await store.listPatients())).not.to.match(/Realname|PID-|19700101/);
      await store.close();
    });

    it('refuses to reveal without a reason, and with one returns the PHI and adds exactly one audit record', async () => {
      const store = await b.open(settings());
      const p = await store.patient(person(7, 'M'));
      await store.study(p, { studyInstanceUid: '1.2.7', accessionNumber: 'ACC-7' });
      const before = (await store.audit()).length;
      for (const reason of ['', '   ', 'x']) {
        let err: Error | undefined;
        await store.reveal(p.aliasId, 'dr.who', reason).catch((e: Error) => (err = e));
        expect(err?.message, `reason ${JSON.stringify(reason)}`).to.contain('needs a reason');
      }
      expect((await store.audit()).length, 'no audit record for a refused reveal').to.equal(before);
      const r = await store.reveal(p.aliasId, 'dr.who', 'follow-up of an incidental finding');
      expect(r.identity).to.deep.equal(person(7, 'M'));
      expect(r.studies).to.deep.equal([{ accessionAlias: (await store.listStudies(p.aliasId))[0]!.accessionAlias, studyInstanceUid: '1.2.7', accessionNumber: 'ACC-7' }]);
      const audit = await store.audit();
      expect(audit.length).to.equal(before + 1);
      expect(audit[0]).to.include({ user: 'dr.who', reason: 'follow-up of an incidental finding', action: 'reveal', aliasId: p.aliasId });
      expect(JSON.stringify(audit[0]), 'the audit names what kind of data was shown, not the data').not.to.contain('Realname7');
      await store.close();
    });

    it('audits an export of the mapping', async () => {
      const store = await b.open(settings());
      await store.patient(person(1));
      await store.patient(person(2));
      const rows = await store.exportMapping('registry-bot', 'yearly registry reconciliation');
      expect(rows.map((r) => r.identity.patientId).sort()).to.deep.equal(['PID-1', 'PID-2']);
      expect((await store.audit())[0]).to.include({ action: 'export', aliasId: null });
      await store.close();
    });

    it('re-seals everything under a new key; the old key can no longer open the store', async () => {
      const db = b.fresh();
      const store = await b.open(settings(), db);
      const p = await store.patient(person(3));
      await store.study(p, { studyInstanceUid: '1.2.3', accessionNumber: 'ACC-3' });
      const newKey = Buffer.alloc(32, 0x33);
      expect(await store.rekey(new Sealer(newKey), 'admin', 'scheduled key rotation')).to.equal(3);
      await store.close();
      let refused: Error | undefined;
      await b.open(settings(), db).then((s) => s.close(), (e: Error) => (refused = e));
      expect(refused?.message).to.match(/sealed with key/);
      const reopened = await b.open(settings({ sealer: new Sealer(newKey) }), db);
      expect((await reopened.patient(person(3))).aliasId).to.equal(p.aliasId);
      expect((await reopened.reveal(p.aliasId, 'admin', 'check after rotation')).identity.patientId).to.equal('PID-3');
      await reopened.close();
    });

    it('keeps a planted real name and ID out of its files at rest (grep -c finds them 0 times)', async () => {
      const db = b.fresh();
      const store = await b.open(settings(), db);
      const planted = { patientId: 'QZ9911PLANT', issuerOfPatientId: 'HOSP-A', name: 'Zebulonovich^Philomena', sex: 'F', birthDate: '19550317' };
      const p = await store.patient(planted);
      await store.study(p, { studyInstanceUid: '1.2.826.0.1.99', accessionNumber: 'ACCPLANT77' });
      // an unidentified study: its Study Instance UID is its match key, blind-indexed like the others
      await store.patient(unidentified('1.2.826.0.1.4242777'));
      await store.close();
      const files = b.files(db);
      expect(files.length, 'the store has files to search').to.be.greaterThan(0);
      for (const needle of ['Zebulonovich', 'Philomena', 'QZ9911PLANT', 'ACCPLANT77', '19550317', '1.2.826.0.1.4242777']) {
        for (const f of files) {
          const count = readFileSync(f).toString('latin1').split(needle).length - 1;
          expect(count, `${needle} in ${path.basename(f)} (${statSync(f).size} bytes)`).to.equal(0);
        }
      }
    });

    it('gives 1,000 male and 1,000 female patients given names from the matching list, never the real name', async () => {
      const store = await b.open(settings());
      const male = new Set(GIVEN_NAMES.M.map((n) => n.toUpperCase()));
      const female = new Set(GIVEN_NAMES.F.map((n) => n.toUpperCase()));
      const family = new Set(FAMILY_NAMES.map((n) => n.toUpperCase()));
      for (let i = 0; i < 2000; i++) {
        const sex = i % 2 ? 'M' : 'F';
        // real names drawn from the same lists, so a careless generator would hit them
        const real = `${FAMILY_NAMES[i % FAMILY_NAMES.length]!.toUpperCase()}^${(sex === 'M' ? GIVEN_NAMES.M : GIVEN_NAMES.F)[i % 97]!.toUpperCase()}`;
        const a = await store.patient({ patientId: `SEX-${i}`, issuerOfPatientId: '', name: real, sex, birthDate: '' });
        const [fam, given] = a.aliasName.split('^') as [string, string];
        expect(family.has(fam), a.aliasName).to.equal(true);
        expect((sex === 'M' ? male : female).has(given), `${sex} alias ${a.aliasName}`).to.equal(true);
        expect(a.aliasName).not.to.equal(real);
        expect(real.split('^')).not.to.include(fam);
        expect(real.split('^')).not.to.include(given);
      }
      const o = await store.patient({ patientId: 'SEX-O', issuerOfPatientId: '', name: 'X^Y', sex: 'O', birthDate: '' });
      expect(GIVEN_NAMES.O.map((n) => n.toUpperCase())).to.include(o.aliasName.split('^')[1]);
      await store.close();
    });

    it('2 processes × 200 concurrent get-or-creates over 100 new patients make exactly 100 aliases, the same in both', async () => {
      const db = b.fresh();
      const store = await b.open(settings(), db); // creates the schema / indexes first
      const startAt = Date.now() + 1500; // both children start their bursts at this instant
      const [one, two] = await Promise.all([race(b.env(db), 100, 200, startAt), race(b.env(db), 100, 200, startAt)]);
      expect(Object.keys(one)).to.have.length(100);
      for (const [pid, alias] of Object.entries(one)) expect(two[pid], pid).to.equal(alias);
      expect((await store.listPatients({ limit: 1000 })).total).to.equal(100);
      expect(new Set(Object.values(one)).size).to.equal(100);
      await store.close();
    });
  });
}

let mongo: Backend | undefined;
let mongoSkip = '';
const server = await startMongoServer();
if ('skip' in server) mongoSkip = server.skip;
else mongo = mongoBackend(server);
after(async () => {
  await mongo?.stop();
});

contract(() => sqliteBackend, sqliteBackend.name);
contract(() => {
  if (!mongo) console.log(`      (skipped: ${mongoSkip})`);
  return mongo;
}, mongo?.name ?? 'MongoDB wire protocol (FerretDB v1.24.2)');

describe('crosswalk on MongoDB: reconnect() (after a long outage)', function () {
  this.timeout(120_000);
  before(function () {
    if (!mongo) {
      console.log(`      (skipped: ${mongoSkip})`);
      this.skip();
    }
  });

  it('leaves the calls in flight on the replaced client to finish, and serves new calls on the new one', async () => {
    const store = (await mongo!.open(settings())) as MongoCrosswalk;
    const leases = store.collection<{ _id: string }>('nodes');
    await leases.insertOne({ _id: 'x' });
    // lease renewals and web session lookups keep going on the old client while the worker replaces it
    let done = false;
    let calls = 0;
    let failed = 0;
    const callers = Array.from({ length: 8 }, async () => {
      while (!done) {
        calls++;
        await leases.findOne({ _id: 'x' }).catch(() => failed++);
      }
    });
    await store.reconnect();
    await new Promise((r) => setTimeout(r, 300));
    done = true;
    await Promise.all(callers);
    const after = await store.patient(person(7));
    console.log(`      ${calls} calls on the replaced client during and after reconnect(): ${failed} failed; a new call got ${after.aliasId}`);
    expect(failed).to.equal(0);
    expect(calls).to.be.greaterThan(8);
    await store.close();
  });
});

describe('crosswalk on SQLite: the audit table is append-only', () => {
  it('refuses UPDATE and DELETE on audit records', async () => {
    const dir = sqliteBackend.fresh();
    const store = (await sqliteBackend.open(settings(), dir)) as SqliteCrosswalk;
    const p = await store.patient(person(1));
    await store.reveal(p.aliasId, 'dr.who', 'a reason for the test');
    await store.close();
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(path.join(dir, 'crosswalk.sqlite'));
    expect(() => db.prepare("UPDATE audit SET reason = 'changed'").run()).to.throw('append-only');
    expect(() => db.prepare('DELETE FROM audit').run()).to.throw('append-only');
    db.close();
  });
});
