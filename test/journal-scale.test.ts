// Issue 13, item 5: the journal's and the SQLite crosswalk's queries read only what they return, so their speed
// does not fall as finished jobs and patients pile up (bench/journal-scale.ts measures it at 1,000 vs 100,000).
// Not timed: each query's plan is read from SQLite while the public API runs it (test/support/query-plans.ts), and
// must name the index it is meant to use; and counts(), kept by triggers, must equal a count of the rows.
import Database from 'better-sqlite3';
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sealer } from '../src/crosswalk/crypto.js';
import { SqliteCrosswalk } from '../src/crosswalk/sqlite.js';
import { JOB_STATES, Journal, type JobState } from '../src/pipeline/journal.js';
import { connectionOf, queryPlans } from './support/query-plans.js';

const KEY = Buffer.alloc(32, 5);
const newJob = (n: number) => ({ sopInstanceUid: `1.2.826.0.1.3680043.10.${n}`, sopClassUid: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxUid: '1.2.840.10008.1.2.1', callingAet: 'MODALITY', bytes: 1000 });

/** The plan lines of the statements one call runs, all of them joined. */
async function planOf(db: Database.Database, call: () => unknown): Promise<string> {
  const plans = await queryPlans(db, call);
  expect(plans, 'the call ran no statement').to.not.be.empty;
  return plans.map((p) => p.plan.join(' | ')).join(' || ');
}

describe('journal and crosswalk indexes (issue 13, item 5)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'dphiant-scale-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** A journal with jobs in DONE, QUARANTINED, IN_PACS: the plans are those of any size (no ANALYZE is run). */
  function journalWithJobs(): { journal: Journal; inPacs: number } {
    const journal = new Journal(path.join(dir, 'journal.sqlite'), KEY);
    for (let n = 0; n < 6; n++) {
      const id = journal.received(newJob(n));
      journal.inPacs(id, `raw-${n}`);
      if (n === 5) continue;
      if (n === 4) {
        journal.transition(id, 'IN_PACS', 'QUARANTINED', 'verification gate hit', 'gate-hit');
        continue;
      }
      journal.deidentified(id, { aliasId: `DPHALIAS${n % 2}`, newSopInstanceUid: `2.25.${n}`, newStudyInstanceUid: `2.25.7${n % 10}`, deidentifiedId: `out-${n}` });
      journal.transition(id, 'DEIDENTIFIED', 'DONE');
    }
    return { journal, inPacs: journal.byState('IN_PACS')[0]!.id };
  }

  it('each query of the pipeline and the dashboard uses its index, and none reads every job', async () => {
    const { journal, inPacs } = journalWithJobs();
    const db = connectionOf(journal);
    const expected: [string, () => unknown, RegExp][] = [
      ['twinOf', () => journal.twinOf(journal.get(inPacs)!), /jobs_raw_id \(raw_id=\?\).*jobs_raw_key \(raw_key=\?\)/],
      ['knows', () => journal.knows('out-1'), /jobs_raw_id \(raw_id=\?\).*jobs_deidentified \(deidentified_id=\?\)/],
      ['isOutput', () => journal.isOutput('out-1'), /jobs_deidentified \(deidentified_id=\?\)/],
      ['identifyRaw', () => journal.identifyRaw('h', 'raw-x'), /jobs_sop_uid_hash \(sop_uid_hash=\?\)/],
      ['due', () => journal.due(Date.now(), 500), /jobs_state_updated \(state=\?\)/],
      ['byState', () => journal.byState('QUARANTINED', 1000), /jobs_state_updated \(state=\?\)/],
      ['oldestUnfinished', () => journal.oldestUnfinished(), /jobs_state_updated \(state=\?\)/],
      ['donePerMinute', () => journal.donePerMinute(10), /jobs_state_updated \(state=\? AND updated_at>\?\)/],
      ['pruneFinished', () => journal.pruneFinished(30), /jobs_state_updated \(state=\? AND updated_at<\?\)/],
      ['instancesPerAlias', () => journal.instancesPerAlias(['DPHALIAS1']), /jobs_alias_state \(alias_id=\? AND state=\?\)/],
      ['recent(search)', () => journal.recent('DPHALIAS1', 50), /jobs_alias_prefix \(alias_id>\? AND alias_id<\?\).*jobs_new_sop_prefix \(new_sop_instance_uid>\? AND new_sop_instance_uid<\?\)/],
      ['counts', () => journal.counts(), /^SCAN state_counts$/],
      // newest first by the primary key, stopping at the limit: reads `limit` rows whatever the size
      ['recent', () => journal.recent('', 50), /^SCAN jobs$/],
    ];
    for (const [name, call, index] of expected) {
      const plan = await planOf(db, call);
      expect(plan, name).to.match(index);
      if (name !== 'recent') expect(plan, name).to.not.match(/\bSCAN jobs\b/);
    }
    // by state it would read every DONE job to find the one of this raw instance
    expect(await planOf(db, () => journal.twinOf(journal.get(inPacs)!))).to.not.match(/jobs_state/);
    journal.close();
  });

  it('counts() kept by triggers equals a count of the rows through inserts, moves, retention and another writer', () => {
    const { journal } = journalWithJobs();
    const file = journal.file;
    const rowCounts = () => {
      const db = new Database(file, { readonly: true });
      const c = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
      for (const r of db.prepare('SELECT state, count(*) AS n FROM jobs GROUP BY state').all() as { state: JobState; n: number }[]) c[r.state] = r.n;
      db.close();
      return c;
    };
    expect(journal.counts()).to.deep.equal(rowCounts()).and.include({ DONE: 4, QUARANTINED: 1, IN_PACS: 1 });
    const other = new Database(file);
    other.prepare(`UPDATE jobs SET state = 'PURGED' WHERE state = 'QUARANTINED'`).run();
    other.prepare(`UPDATE jobs SET updated_at = '2000-01-01T00:00:00.000Z' WHERE state IN ('DONE', 'PURGED')`).run();
    other.close();
    expect(journal.pruneFinished(30)).to.equal(5);
    const id = journal.adopted({ ...newJob(9), rawId: 'raw-9' });
    journal.transition(id, 'IN_PACS', 'REJECTED', 'x', 'other');
    expect(journal.counts()).to.deep.equal(rowCounts()).and.include({ DONE: 0, PURGED: 0, REJECTED: 1, IN_PACS: 1 });
    journal.close();
  });

  it('a journal of the previous schema gets the indexes and its counts on open, and loses the indexes they replace', () => {
    const file = path.join(dir, 'journal.sqlite');
    const first = new Journal(file, KEY);
    for (let n = 0; n < 3; n++) first.received(newJob(n));
    first.close();
    // back to what the previous version left: its two indexes, no counts table, no triggers
    const db = new Database(file);
    db.exec(`DROP TRIGGER jobs_count_insert; DROP TRIGGER jobs_count_delete; DROP TRIGGER jobs_count_move; DROP TABLE state_counts;
      DROP INDEX jobs_state_updated; DROP INDEX jobs_alias_state; DROP INDEX jobs_alias_prefix; DROP INDEX jobs_new_sop_prefix;
      CREATE INDEX jobs_state ON jobs (state); CREATE INDEX jobs_new_sop_instance ON jobs (new_sop_instance_uid);`);
    db.prepare(`INSERT INTO jobs (sop_uid_hash, sop_class_uid, transfer_syntax_uid, calling_aet, bytes, state, received_at, updated_at) VALUES ('h', '1', '1', 'M', 1, 'DONE', 'x', 'x')`).run();
    db.close();

    const journal = new Journal(file, KEY);
    expect(journal.counts()).to.include({ RECEIVED: 3, DONE: 1 });
    journal.received(newJob(7));
    expect(journal.counts()).to.include({ RECEIVED: 4, DONE: 1 });
    const names = (connectionOf(journal).prepare(`SELECT name FROM sqlite_schema WHERE type IN ('index', 'trigger') AND tbl_name = 'jobs'`).all() as { name: string }[]).map((r) => r.name);
    expect(names).to.include.members(['jobs_state_updated', 'jobs_alias_state', 'jobs_alias_prefix', 'jobs_new_sop_prefix', 'jobs_count_insert', 'jobs_count_delete', 'jobs_count_move']);
    expect(names).to.not.include('jobs_state');
    expect(names).to.not.include('jobs_new_sop_instance');
    journal.close();
  });

  it('the SQLite crosswalk finds patients and studies by key, and searches aliases by prefix through an index', async () => {
    const store = new SqliteCrosswalk(path.join(dir, 'crosswalk.sqlite'), {
      siteKey: KEY, sealer: new Sealer(Buffer.alloc(32, 6)), matchKey: 'id', aliasPattern: 'random', aliasPrefix: 'DPH', dateOffsetMinDays: -3650, dateOffsetMaxDays: -365,
    });
    const person = { patientId: 'P1', issuerOfPatientId: 'H', name: 'Real^Name', sex: 'F', birthDate: '19700101' };
    const alias = await store.patient(person);
    await store.study(alias, { studyInstanceUid: '1.2.3', accessionNumber: 'A1' });
    const db = connectionOf(store);
    const expected: [string, () => unknown, RegExp][] = [
      ['patient (existing)', () => store.patient(person), /USING INDEX sqlite_autoindex_patients_1 \(match_hash=\?\)|USING PRIMARY KEY \(match_hash=\?\)/],
      ['study (existing)', () => store.study(alias, { studyInstanceUid: '1.2.3', accessionNumber: 'A1' }), /PRIMARY KEY \(match_hash=\?\)|sqlite_autoindex_studies_1 \(match_hash=\?\)/],
      ['listStudies', () => store.listStudies(alias.aliasId), /studies_alias \(alias_id=\?\)/],
      ['listPatients(search)', () => store.listPatients({ search: alias.aliasId, limit: 50 }), /patients_alias_prefix \(alias_id>\? AND alias_id<\?\)/],
    ];
    for (const [name, call, index] of expected) {
      const plan = await planOf(db, call);
      expect(plan, name).to.match(index);
      expect(plan, name).to.not.match(/(^|\| )SCAN (patients|studies)\b/);
    }
    await store.close();
  });

  it("durably(): the writes of one event-loop turn commit in one transaction, one that throws fails alone, and none is visible before its promise settles", async () => {
    const file = path.join(dir, 'journal.sqlite');
    const journal = new Journal(file, KEY);
    const db = connectionOf(journal);
    // count the top-level transactions (commits) the batch runs
    let commits = 0;
    const transaction = db.transaction.bind(db);
    db.transaction = ((fn: (...a: unknown[]) => unknown) => {
      const t = transaction(fn);
      return Object.assign((...a: unknown[]) => {
        if (!db.inTransaction) commits++;
        return t(...a);
      }, t);
    }) as typeof db.transaction;
    const other = new Database(file, { readonly: true });
    const rows = () => (other.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;
    const writes = [0, 1, 2].map((n) => journal.durably(() => journal.received(newJob(n))));
    const failing = journal.durably(() => journal.transition(999, 'IN_PACS', 'DONE'));
    expect(rows(), 'nothing is written before the turn ends').to.equal(0);
    const ids = await Promise.all(writes);
    const failure = await failing.then(() => undefined, (e: Error) => e);
    expect(commits, 'one commit for the four writes').to.equal(1);
    expect(failure, 'the transition of a job that does not exist fails').to.be.instanceOf(Error);
    expect(rows(), 'the other three are committed').to.equal(3);
    expect(ids.map((id) => journal.get(id)?.state)).to.deep.equal(['RECEIVED', 'RECEIVED', 'RECEIVED']);
    // a write asked for after the commit goes in the next one
    await journal.durably(() => journal.inPacs(ids[0]!, 'raw-0'));
    expect(commits).to.equal(2);
    expect(journal.get(ids[0]!)?.state).to.equal('IN_PACS');
    other.close();
    journal.close();
  });
});
