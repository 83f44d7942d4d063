// Whether the journal and the crosswalk keep their speed as they fill (issue 13, item 5), measured in one run (not
// asserted here; test/journal-scale.test.ts checks the plans): a journal of 1,000 and one of 100,000 finished jobs,
// a SQLite crosswalk of 1,000 and one of 100,000 patients, each operation timed on both in alternating rounds,
// printed side by side with the ratio: ≈1.00 when the cost does not grow with the table (on a loaded machine the
// sub-millisecond reads scatter by ±30% or so); a cost that grows with the table shows as ≤ 0.1. The filling is
// direct SQL inserts into the stores' own schemas, in one transaction (100,000 durable API calls would take
// minutes); the measured operations all go through the public API. Each op's query plans are read from SQLite as it
// runs (test/support/query-plans.ts) and printed under the rates: SCAN reads a whole table or index.
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { keyedHash } from '../src/anonymize/keyed.js';
import { randomAliasId } from '../src/crosswalk/aliases.js';
import { Sealer } from '../src/crosswalk/crypto.js';
import { SqliteCrosswalk } from '../src/crosswalk/sqlite.js';
import { newPatientRecord, newStudyRecord, patientMatchHash, studyMatchHash, type CrosswalkSettings, type PatientRecord, type StudyRecord } from '../src/crosswalk/store.js';
import { Journal, type Job } from '../src/pipeline/journal.js';
import { connectionOf, queryPlans, type PlannedQuery } from '../test/support/query-plans.js';

const SIZES = [1_000, 100_000] as const;
/** Instances per patient alias in the journal, the same at both sizes, so a per-alias query has the same work. */
const PER_ALIAS = 20;
/** Jobs in other states, the same number at both sizes: what an operator or the worker has in hand. */
const QUARANTINED = 20;
const IN_PACS = 50;
const DAY = 86_400_000;

const siteKey = Buffer.alloc(32, 7);
const cwSettings: CrosswalkSettings = {
  siteKey: Buffer.alloc(32, 1),
  sealer: new Sealer(Buffer.alloc(32, 2)),
  matchKey: 'id',
  aliasPattern: 'random',
  aliasPrefix: 'DPH',
  dateOffsetMinDays: -3650,
  dateOffsetMaxDays: -365,
};

/** An Orthanc-style ID (SHA-1 in five groups of eight) of `s`. */
const orthancId = (s: string) => createHash('sha1').update(s).digest('hex').slice(0, 40).match(/.{8}/g)!.join('-');
const identity = (i: number) => ({ patientId: `SCALE-${i}`, issuerOfPatientId: 'H', name: `Scale^${i}`, sex: i % 2 ? 'M' : 'F', birthDate: '19800101' });

interface Op<S> {
  name: string;
  run: (s: S) => unknown;
  /** Rounds last this long: the durable writes are slower and noisier than the reads. */
  budgetMs?: number;
}

interface Filled<S> {
  size: number;
  store: S;
}

/**
 * Times every op on each store in short alternating rounds (A B B A …: the machine's drift and the other processes
 * hit both alike); ops/s per size and op, the median of its rounds, so a burst of load on this shared machine moves
 * one round, not the figure.
 */
async function measure<S>(stores: Filled<S>[], ops: Op<S>[]): Promise<Map<string, number[]>> {
  const rates = new Map<string, number[]>();
  const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
  for (const op of ops) {
    const rounds: number[][] = stores.map(() => []);
    const budget = BigInt((op.budgetMs ?? 40) * 1e6);
    for (let round = 0; round < 12; round++) {
      for (const k of round % 2 ? [...stores.keys()].reverse() : stores.keys()) {
        const t0 = process.hrtime.bigint();
        let n = 0;
        let t = t0;
        while (t - t0 < budget || n < 3) {
          await op.run(stores[k]!.store);
          n++;
          t = process.hrtime.bigint();
        }
        rounds[k]!.push(n / (Number(t - t0) / 1e9));
      }
    }
    rates.set(op.name, rounds.map(median));
  }
  return rates;
}

function table(title: string, sizes: readonly number[], unit: string, rates: Map<string, number[]>): string[] {
  const width = Math.max(...[...rates.keys()].map((k) => k.length));
  const head = sizes.map((s) => `at ${s.toLocaleString('en')}`.padStart(14)).join('');
  const lines = [title, `  ${''.padEnd(width)}${head}   ratio ${sizes.at(-1)!.toLocaleString('en')} / ${sizes[0]!.toLocaleString('en')}   (${unit})`];
  for (const [name, r] of rates) {
    lines.push(`  ${name.padEnd(width)}${r.map((v) => v.toFixed(0).padStart(14)).join('')}   ${(r.at(-1)! / r[0]!).toFixed(2).padStart(5)}`);
  }
  return lines;
}

/** Each op's query plans on `store` (what SQLite reads: SCAN = a whole table or index, SEARCH = a range of one). */
async function planLines<S>(title: string, ops: Op<S>[], db: Parameters<typeof queryPlans>[0], store: S): Promise<string[]> {
  const width = Math.max(...ops.map((o) => o.name.length));
  const lines = [`  query plans at ${title} (EXPLAIN QUERY PLAN of each statement as it ran):`];
  for (const op of ops) {
    const plans: PlannedQuery[] = await queryPlans(db, () => op.run(store));
    lines.push(`    ${op.name.padEnd(width)}  ${plans.map((p) => p.plan.join(' | ')).join(' || ')}`);
  }
  return lines;
}

// ---- journal ----

interface JournalUnderTest {
  journal: Journal;
  aliases: string[];
  outputs: string[];
  newUids: string[];
  live: Job[];
  serial: number;
}

/** A journal of `size` DONE jobs (days old, inside any retention), QUARANTINED and IN_PACS jobs as constants. */
function fillJournal(file: string, size: number): JournalUnderTest {
  const journal = new Journal(file, siteKey);
  const db = new Database(file);
  const insert = db.prepare(
    `INSERT INTO jobs (sop_uid_hash, raw_id, raw_key, sop_class_uid, transfer_syntax_uid, calling_aet, bytes, state, reason, reason_code,
       received_at, updated_at, attempts, next_attempt_at, alias_id, new_sop_instance_uid, deidentified_id)
     VALUES (@hash, @rawId, @rawKey, '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1', 'MODALITY', 524288, @state, @reason, @code,
       @at, @at, 0, 0, @alias, @newUid, @output)`,
  );
  const aliases: string[] = [];
  const outputs: string[] = [];
  const newUids: string[] = [];
  const now = Date.now();
  db.transaction(() => {
    const rows = size + QUARANTINED + IN_PACS;
    for (let i = 0; i < rows; i++) {
      const uid = `1.2.826.0.1.3680043.10.${size}.${i}`;
      const raw = orthancId(`raw ${size} ${i}`);
      const state = i < size ? 'DONE' : i < size + QUARANTINED ? 'QUARANTINED' : 'IN_PACS';
      if (i % PER_ALIAS === 0) aliases.push(randomAliasId('DPH'));
      const done = state === 'DONE';
      const row = {
        hash: keyedHash(siteKey, uid),
        rawId: state === 'IN_PACS' ? raw : null,
        rawKey: state === 'IN_PACS' ? null : keyedHash(siteKey, raw),
        state,
        reason: state === 'QUARANTINED' ? 'verification gate hit' : null,
        code: state === 'QUARANTINED' ? 'gate-hit' : null,
        // the finished jobs are one to seven days old: outside the dashboard's last ten minutes, inside retention
        at: new Date(now - DAY - Math.floor((i / rows) * 6 * DAY)).toISOString(),
        alias: done ? aliases.at(-1)! : null,
        newUid: done ? `2.25.${size}${String(i).padStart(9, '0')}` : null,
        output: done ? orthancId(`output ${size} ${i}`) : null,
      };
      insert.run(row);
      if (done) {
        outputs.push(row.output!);
        newUids.push(row.newUid!);
      }
    }
  })();
  db.close();
  return { journal, aliases, outputs, newUids, live: journal.byState('IN_PACS', IN_PACS), serial: 0 };
}

/** One instance through the states the pipeline moves it through, each a durable write. */
function instanceCycle(j: JournalUnderTest): void {
  const n = j.serial++;
  const raw = orthancId(`cycle ${j.journal.file} ${n}`);
  const id = j.journal.received({ sopInstanceUid: `1.2.826.0.1.3680043.11.${n}`, sopClassUid: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxUid: '1.2.840.10008.1.2.1', callingAet: 'MODALITY', bytes: 524288 });
  j.journal.inPacs(id, raw);
  j.journal.deidentified(id, { aliasId: j.aliases[n % j.aliases.length]!, newSopInstanceUid: `2.25.9${n}`, newStudyInstanceUid: `2.25.8${n % 10}`, deidentifiedId: orthancId(`cycle output ${n}`) });
  j.journal.transition(id, 'DEIDENTIFIED', 'DONE');
}

const pick = <T>(list: T[], n: number) => list[(n * 7919) % list.length]!;

function journalOps(): Op<JournalUnderTest>[] {
  let n = 0;
  return [
    { name: 'received → IN_PACS → DEIDENTIFIED → DONE', run: instanceCycle, budgetMs: 200 },
    { name: 'due(now, 500)', run: (j) => j.journal.due(Date.now(), 500) },
    { name: 'twinOf(an IN_PACS job)', run: (j) => j.journal.twinOf(pick(j.live, n++)) },
    { name: 'knows(an output)', run: (j) => j.journal.knows(pick(j.outputs, n++)) },
    { name: 'knows(an unknown ID)', run: (j) => j.journal.knows(orthancId(`unknown ${n++}`)) },
    { name: 'isOutput(an output)', run: (j) => j.journal.isOutput(pick(j.outputs, n++)) },
    { name: 'byState(IN_PACS) (reconciler)', run: (j) => j.journal.byState('IN_PACS', 100_000) },
    { name: 'counts() (backlog, /metrics, summary)', run: (j) => j.journal.counts() },
    { name: 'oldestUnfinished() (summary)', run: (j) => j.journal.oldestUnfinished() },
    { name: 'donePerMinute(10) (summary)', run: (j) => j.journal.donePerMinute(10) },
    { name: 'recent() (/api/jobs)', run: (j) => j.journal.recent('', 50) },
    { name: 'recent(an alias) (/api/jobs search)', run: (j) => j.journal.recent(pick(j.aliases, n++), 50) },
    { name: 'recent(a new UID) (/api/jobs search)', run: (j) => j.journal.recent(pick(j.newUids, n++), 50) },
    { name: "recent('DPH'), every alias matches", run: (j) => j.journal.recent('DPH', 50) },
    { name: "byState('QUARANTINED') (/api/quarantine)", run: (j) => j.journal.byState('QUARANTINED', 1000) },
    { name: 'instancesPerAlias(50) (/api/patients)', run: (j) => j.journal.instancesPerAlias(Array.from({ length: 50 }, () => pick(j.aliases, n++))) },
    { name: 'pruneFinished(30) (retention, hourly)', run: (j) => j.journal.pruneFinished(30) },
  ];
}

// ---- crosswalk ----

interface CrosswalkUnderTest {
  store: SqliteCrosswalk;
  size: number;
  aliases: string[];
}

/** A SQLite crosswalk of `size` patients with one study each, sealed as the store seals them. */
async function fillCrosswalk(file: string, size: number): Promise<CrosswalkUnderTest> {
  new SqliteCrosswalk(file, cwSettings).close();
  const patients: PatientRecord[] = [];
  const studies: StudyRecord[] = [];
  for (let i = 0; i < size; i++) {
    const p = await newPatientRecord(cwSettings, identity(i), patientMatchHash(cwSettings, identity(i)), async () => i + 1);
    patients.push(p);
    studies.push(newStudyRecord(cwSettings, p.aliasId, { studyInstanceUid: `1.2.3.${i}`, accessionNumber: `A${i}` }, studyMatchHash(cwSettings, p.aliasId, `1.2.3.${i}`)));
  }
  const db = new Database(file);
  const addPatient = db.prepare(`INSERT INTO patients (match_hash, alias_id, alias_name, alias_sex, date_offset, phi, created_at) VALUES (@matchHash, @aliasId, @aliasName, @aliasSex, @dateOffset, @phi, @createdAt)`);
  const addStudy = db.prepare(`INSERT INTO studies (match_hash, alias_id, accession_alias, phi, created_at) VALUES (@matchHash, @aliasId, @accessionAlias, @phi, @createdAt)`);
  db.transaction(() => {
    for (const p of patients) addPatient.run(p);
    for (const s of studies) addStudy.run(s);
  })();
  db.close();
  return { store: new SqliteCrosswalk(file, cwSettings), size, aliases: patients.map((p) => p.aliasId) };
}

function crosswalkOps(): Op<CrosswalkUnderTest>[] {
  let n = 0;
  return [
    { name: 'patient() of an existing patient', run: (c) => c.store.patient(identity((n++ * 7919) % c.size)) },
    { name: 'study() of an existing study', run: (c) => { const i = (n++ * 7919) % c.size; return c.store.study({ aliasId: c.aliases[i]!, aliasName: '', dateOffsetDays: 0, created: false }, { studyInstanceUid: `1.2.3.${i}`, accessionNumber: `A${i}` }); } },
    { name: 'listPatients(limit 1) (summary, /readyz)', run: (c) => c.store.listPatients({ limit: 1 }) },
    { name: 'listPatients() first page (/api/patients)', run: (c) => c.store.listPatients({ limit: 50 }) },
    { name: 'listPatients(an alias) (/api/patients search)', run: (c) => c.store.listPatients({ search: pick(c.aliases, n++), limit: 50 }) },
    { name: 'listStudies(an alias)', run: (c) => c.store.listStudies(pick(c.aliases, n++)) },
  ];
}

export async function benchJournalScale(): Promise<string[]> {
  const work = mkdtempSync(path.join(tmpdir(), 'dphiant-bench-scale-'));
  const lines: string[] = [];
  try {
    let t = process.hrtime.bigint();
    const journals = SIZES.map((size) => ({ size, store: fillJournal(path.join(work, `journal-${size}.sqlite`), size) }));
    const fillSec = Number(process.hrtime.bigint() - t) / 1e9;
    const ops = journalOps();
    const big = journals.at(-1)!.store;
    lines.push(
      ...table(`journal at ${SIZES.map((s) => s.toLocaleString('en')).join(' and ')} finished jobs (${PER_ALIAS} per alias, ${QUARANTINED} QUARANTINED, ${IN_PACS} IN_PACS; filled by SQL in ${fillSec.toFixed(1)} s):`, SIZES, 'operations/s', await measure(journals, ops)),
      ...(await planLines(`${SIZES.at(-1)!.toLocaleString('en')} jobs`, ops, connectionOf(big.journal), big)),
    );
    for (const j of journals) j.store.journal.close();

    t = process.hrtime.bigint();
    const crosswalks: Filled<CrosswalkUnderTest>[] = [];
    for (const size of SIZES) crosswalks.push({ size, store: await fillCrosswalk(path.join(work, `crosswalk-${size}.sqlite`), size) });
    const cwFillSec = Number(process.hrtime.bigint() - t) / 1e9;
    const cwOps = crosswalkOps();
    const bigCw = crosswalks.at(-1)!.store;
    lines.push(
      ...table(`SQLite crosswalk at ${SIZES.map((s) => s.toLocaleString('en')).join(' and ')} patients (one study each; filled by SQL in ${cwFillSec.toFixed(1)} s):`, SIZES, 'operations/s', await measure(crosswalks, cwOps)),
      ...(await planLines(`${SIZES.at(-1)!.toLocaleString('en')} patients`, cwOps, connectionOf(bigCw.store), bigCw)),
    );
    for (const c of crosswalks) await c.store.store.close();
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return lines;
}
