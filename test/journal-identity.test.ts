// What the journal keeps of an instance, and how the pipeline finds its raw copy: a keyed hash of the original
// SOP Instance UID and the raw copy's Orthanc ID, never the UIDs themselves; the raw copy is that
// ID, so with Retain UIDs the de-identified copy, which has the same UID, is never taken for it.
import { expect } from 'chai';
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { generateElements, generateStudies, type Manifest } from '../tools/synth/generate.js';
import { part10 } from '../src/dicom/writer.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { loadKeys } from '../src/crosswalk/open.js';
import { Journal, journalPath } from '../src/pipeline/journal.js';
import { Quarantine, quarantineDir } from '../src/pipeline/quarantine.js';
import { keyedHash } from '../src/anonymize/keyed.js';
import { storescu } from './support/dcmtk.js';
import { startTestMiddleman } from './support/middleman.js';
import { startStack, type TestStack } from './support/stack.js';
import { pacsInventory, waitUntilSettled } from './support/pipeline.js';

/** Every regular file under `dir`, however deep. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(p) : e.isFile() ? [p] : [];
  });
}

/** What identifies the instances sent: their original UIDs, and their patients' IDs and names. */
interface Needles {
  uids: string[];
  patientIds: string[];
  names: string[];
}
const allNeedles = (n: Needles) => [...n.uids, ...n.patientIds, ...n.names];

function needlesOf(manifest: Manifest): Needles {
  return {
    uids: [...new Set(manifest.instances.flatMap((i) => [i.sopInstanceUid, i.studyInstanceUid, i.seriesInstanceUid]))],
    patientIds: manifest.patients.map((p) => p.patientId),
    names: manifest.patients.map((p) => p.name),
  };
}

interface Search {
  files: number;
  bytes: number;
  /** "file: value" for every value found in a file. */
  hits: string[];
}

/**
 * Searches the bytes of `files` for each value, as UTF-8 and as Latin-1 (a name with an umlaut is written either
 * way: JSON logs in UTF-8, data sets in their character set).
 */
function search(files: string[], values: string[], root: string): Search {
  const encoded = values.map((v) => ({ v, forms: [...new Map([Buffer.from(v, 'utf8'), Buffer.from(v, 'latin1')].map((b) => [b.toString('hex'), b])).values()] }));
  let bytes = 0;
  const hits = files.flatMap((f) => {
    const data = readFileSync(f);
    bytes += data.length;
    return encoded.filter(({ forms }) => forms.some((b) => data.includes(b))).map(({ v }) => `${path.relative(root, f)}: ${v}`);
  });
  return { files: files.length, bytes, hits };
}

describe('journal: the data directory and the log hold none of the original UIDs, patient IDs or names after a pipeline run', function () {
  this.timeout(300_000);
  let stack: TestStack;
  let manifest: Manifest;
  let logDir: string;
  let logFile: string;
  let dataDir: string;
  /** The instance the gate quarantines: the patient ID planted in Manufacturer, which the engine keeps as it is. */
  let leaky: { file: string; needles: Needles };
  let needles: Needles;
  /** The data directory searched while the middleman runs (the SQLite -wal and -shm files exist then). */
  let whileRunning: { files: string[]; result: Search };
  let quarantinedJob: number;

  before(async () => {
    logDir = mkdtempSync(path.join(tmpdir(), 'dphiant-log-'));
    logFile = path.join(logDir, 'middleman.log');
    stack = await startStack({ logFile });
    dataDir = stack.mm.config.dataDir;
    manifest = await generateStudies({ outDir: path.join(stack.work, 'in'), patients: 3, studiesPerPatient: 2, seriesPerStudy: 1, instancesPerSeries: 2, rows: 16, cols: 16, seed: 811 });
    const els = generateElements({ rows: 8, cols: 8, seed: 813, patientIndex: 40 });
    const value = (tag: number) => String(els.find((e) => e.tag === tag)!.value);
    els.find((e) => e.tag === 0x00080070)!.value = `scanner ${value(0x00100020)}`;
    leaky = {
      file: path.join(stack.work, 'leaky', 'leaky.dcm'),
      needles: { uids: [value(0x00080018), value(0x0020000d), value(0x0020000e)], patientIds: [value(0x00100020)], names: [value(0x00100010)] },
    };
    mkdirSync(path.dirname(leaky.file));
    writeFileSync(leaky.file, part10(els, TS.ExplicitVRLittleEndian));
    const sent = needlesOf(manifest);
    needles = { uids: [...sent.uids, ...leaky.needles.uids], patientIds: [...sent.patientIds, ...leaky.needles.patientIds], names: [...sent.names, ...leaky.needles.names] };

    const r = await storescu([...manifest.instances.map((i) => i.path), leaky.file], { port: stack.mm.port });
    expect(r.code, r.stderr).to.equal(0);
    await waitUntilSettled(stack.mm.journal, 120_000);
    const counts = stack.mm.journal.counts();
    console.log(`      sent ${manifest.instances.length + 1}, DONE ${counts.DONE}, QUARANTINED ${counts.QUARANTINED}, REJECTED ${counts.REJECTED}`);
    quarantinedJob = stack.mm.journal.byState('QUARANTINED')[0]?.id ?? 0;
    const files = filesUnder(dataDir);
    whileRunning = { files, result: search(files, allNeedles(needles), dataDir) };
    await stack.stop(); // the journal's WAL and the log are complete only once the middleman has stopped
  });
  after(() => rmSync(logDir, { recursive: true, force: true }));

  it('finishes every instance, quarantines the leaky one, and no file under the data directory (journal, crosswalk and their -wal/-shm, quarantine, spool) nor the debug log contains an original UID, patient ID or name', () => {
    const journal = new Journal(journalPath(dataDir), loadKeys(stack.mm.config, () => undefined).site);
    try {
      expect(journal.counts()).to.include({ DONE: manifest.instances.length, QUARANTINED: 1, REJECTED: 0 });
    } finally {
      journal.close();
    }
    const rel = (files: string[]) => files.map((f) => path.relative(dataDir, f));
    expect(rel(whileRunning.files), 'searched while running').to.include.members(['journal.sqlite', 'journal.sqlite-wal', 'journal.sqlite-shm', 'crosswalk.sqlite', 'crosswalk.sqlite-wal', 'crosswalk.sqlite-shm', `quarantine/${quarantinedJob}.dcm.sealed`]);
    expect(existsSync(path.join(dataDir, 'spool')), 'the spool directory exists').to.equal(true);
    const log = readFileSync(logFile, 'utf8');
    expect(log, 'the log says what happened').to.contain('de-identified in the PACS');
    // the log (written at debug level, though nothing in the product logs below info today) names the quarantined
    // job and its reason: the gate's finding is in it, without the value
    expect(log, 'the log names the quarantine').to.match(new RegExp(`"job":${quarantinedJob},"uid":"[0-9a-f]{12}","reason":"verification: id in Manufacturer[^"]*"[^\\n]*"msg":"quarantined"`));

    const after = [...filesUnder(dataDir), logFile];
    const afterStop = search(after, allNeedles(needles), dataDir);
    const spool = after.filter((f) => path.relative(dataDir, f).startsWith('spool'));
    const quarantined = after.filter((f) => path.relative(dataDir, f).startsWith('quarantine'));
    console.log(
      `      looked for ${needles.uids.length} UIDs, ${needles.patientIds.length} patient IDs and ${needles.names.length} names; ` +
        `searched ${whileRunning.result.files} files (${whileRunning.result.bytes} bytes) while running, then ${afterStop.files} files (${afterStop.bytes} bytes) ` +
        `after the stop, the log included (${statSync(logFile).size} bytes), quarantine ${quarantined.length} file(s), spool ${spool.length} file(s): ` +
        `${whileRunning.result.hits.length + afterStop.hits.length} found`,
    );
    expect(whileRunning.result.hits, 'found while running').to.deep.equal([]);
    expect(afterStop.hits, 'found after the stop').to.deep.equal([]);
  });

  it('finds every one of those values in the input files with the same search, and in the quarantined instance once unsealed', () => {
    const inputs = [...manifest.instances.map((i) => i.path), leaky.file];
    const root = stack.work;
    const values = allNeedles(needles);
    const found = new Set(search(inputs, values, root).hits.map((h) => h.slice(h.indexOf(': ') + 2)));
    expect(values.filter((v) => !found.has(v)), 'values the search did not find in the input').to.deep.equal([]);
    // the sealed file holds the instance (its UIDs and patient appear once it is opened): the search above saw
    // ciphertext, not a file without them
    const quarantine = new Quarantine(quarantineDir(dataDir), loadKeys(stack.mm.config, () => undefined).crosswalk);
    const opened = path.join(stack.work, 'unsealed.dcm');
    writeFileSync(opened, quarantine.get(quarantinedJob));
    try {
      const hits = search([opened], allNeedles(leaky.needles), root).hits.map((h) => h.slice(h.indexOf(': ') + 2));
      expect(hits.sort()).to.deep.equal(allNeedles(leaky.needles).sort());
    } finally {
      rmSync(opened);
    }
  });

  it('keeps the data directory 0700 and the journal files 0600', () => {
    expect(statSync(dataDir).mode & 0o777).to.equal(0o700);
    for (const f of readdirSync(dataDir).filter((n) => n.startsWith('journal.sqlite'))) expect(statSync(path.join(dataDir, f)).mode & 0o777, f).to.equal(0o600);
  });
});

// Both ways ingest learns the raw copy's Orthanc ID: computed from a data set it parsed, or, for one larger than
// pipeline.handoffMaxInstanceBytes (0 here: none is parsed), asked of the PACS once after the forward. The worker
// fetches every raw copy back from the PACS (no hand-off): that is where a look-up by UID finds the wrong copy.
for (const variant of <{ name: string; env: Record<string, string> }[]>[
  { name: 'parsed before forwarding', env: { DPHIANT_PIPELINE_HANDOFF_MAX_BYTES: '0' } },
  { name: 'not parsed before forwarding', env: { DPHIANT_PIPELINE_HANDOFF_MAX_INSTANCE_BYTES: '0' } },
]) {
  describe(`pipeline with Retain UIDs, instances ${variant.name}: one de-identified copy each, none raw`, function () {
    this.timeout(300_000);
    let stack: TestStack;
    let manifest: Manifest;

    before(async () => {
      stack = await startStack({ env: { DPHIANT_ANONYMIZE_RETAIN_UIDS: 'true', ...variant.env } });
      manifest = await generateStudies({ outDir: path.join(stack.work, 'in'), patients: 2, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 3, rows: 16, cols: 16, seed: 812 });
    });
    after(async () => {
      await stack?.stop();
    });

    /** The PACS's instances; each must be de-identified, under the original SOP Instance UID, once. */
    async function expectOneDeidentifiedCopyEach(): Promise<string[]> {
      const inv = await pacsInventory(stack.pacsRest);
      expect(inv.instances.filter((i) => i.identityRemoved !== 'YES'), 'raw copies left').to.deep.equal([]);
      expect(inv.instances.map((i) => i.sopInstanceUid).sort(), 'one copy per instance, UIDs retained').to.deep.equal(manifest.instances.map((i) => i.sopInstanceUid).sort());
      expect(inv.patients.map((p) => p.patientId).every((id) => /^DPH/.test(id)), 'filed under aliases').to.equal(true);
      return inv.instances.map((i) => i.id).sort();
    }

    /** The first send (the first test's; a later test run alone under --grep makes it here). */
    let firstSend: Promise<void> | undefined;
    const sendOnce = () =>
      (firstSend ??= (async () => {
        const r = await storescu(manifest.instances.map((i) => i.path), { port: stack.mm.port });
        expect(r.code, r.stderr).to.equal(0);
        await waitUntilSettled(stack.mm.journal, 120_000);
      })());

    it('ends every instance DONE', async () => {
      await sendOnce();
      const counts = stack.mm.journal.counts();
      expect(counts).to.include({ DONE: manifest.instances.length, QUARANTINED: 0, REJECTED: 0 });
      await expectOneDeidentifiedCopyEach();
    });

    it('sent again, ends DONE with the same de-identified copies and no duplicate (the raw copy is not the de-identified one)', async () => {
      await sendOnce();
      const before = await expectOneDeidentifiedCopyEach();
      const aliasesBefore = (await stack.mm.crosswalk.listPatients({ limit: 1000 })).total;
      const r = await storescu(manifest.instances.map((i) => i.path), { port: stack.mm.port });
      expect(r.code, r.stderr).to.equal(0);
      await waitUntilSettled(stack.mm.journal, 120_000);
      expect(stack.mm.journal.counts()).to.include({ DONE: 2 * manifest.instances.length, QUARANTINED: 0, REJECTED: 0 });
      expect(await expectOneDeidentifiedCopyEach(), 'the same copies as after the first send').to.deep.equal(before);
      expect((await stack.mm.crosswalk.listPatients({ limit: 1000 })).total, 'no alias made of an alias').to.equal(aliasesBefore);
    });
  });
}

describe('journal: a journal written with plaintext SOP Instance UIDs', function () {
  it('is migrated when opened: the UIDs become keyed hashes, and no byte of the files holds them', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-journal-'));
    try {
      const file = path.join(dir, 'journal.sqlite');
      const uid = '1.2.826.0.1.3680043.9.7777.' + Date.now();
      // the schema before the UIDs were hashed
      const old = new Database(file);
      old.pragma('journal_mode = WAL');
      old.exec(`CREATE TABLE jobs (id INTEGER PRIMARY KEY, sop_instance_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL, transfer_syntax_uid TEXT NOT NULL,
        calling_aet TEXT NOT NULL, bytes INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT, received_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL DEFAULT 0, alias_id TEXT, new_sop_instance_uid TEXT, deidentified_id TEXT);
        CREATE INDEX jobs_sop_instance ON jobs (sop_instance_uid);`);
      old.prepare(`INSERT INTO jobs (sop_instance_uid, sop_class_uid, transfer_syntax_uid, calling_aet, bytes, state, received_at, updated_at) VALUES (?, '1.2', '1.2', 'MOD', 1, 'IN_PACS', 'x', 'x')`).run(uid);
      old.close();
      const key = randomBytes(32);
      const warnings: string[] = [];
      const journal = new Journal(file, key, (m) => warnings.push(m));
      const job = journal.byState('IN_PACS')[0]!;
      expect(job.sopUidHash).to.equal(keyedHash(key, uid));
      expect(job.rawId).to.equal(null);
      expect(warnings.join('\n')).to.match(/keyed hashes/);
      journal.close();
      for (const f of filesUnder(dir)) expect(readFileSync(f).toString('latin1'), path.basename(f)).not.to.contain(uid);
      for (const f of filesUnder(dir)) expect(statSync(f).mode & 0o077, `${path.basename(f)} mode`).to.equal(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('journal retention (pipeline.retainFinishedDays): finished jobs past the limit are deleted, the others kept', function () {
  this.timeout(120_000);
  const DAY = 86_400_000;

  /**
   * A journal in `dir` with one job per case, `updated_at` set back by `ageDays`; each finished job's alias is a
   * marker (DPHRETAIN<id>) to look for in the files once the job is deleted.
   */
  function seed(dir: string, cases: { state: 'DONE' | 'REJECTED' | 'PURGED' | 'QUARANTINED' | 'IN_PACS' | 'DEIDENTIFIED' | 'RECEIVED'; ageDays: number }[]) {
    const file = journalPath(dir);
    const journal = new Journal(file, randomBytes(32));
    const ids = cases.map(({ state }, k) => {
      const id = journal.received({ sopInstanceUid: `1.2.826.0.1.3680043.9.7778.${k}`, rawId: `raw-${k}`, sopClassUid: '1.2', transferSyntaxUid: '1.2', callingAet: 'MOD', bytes: 1 });
      if (state === 'RECEIVED') return id;
      if (state === 'REJECTED') return journal.transition(id, 'RECEIVED', 'REJECTED', 'refused'), id;
      journal.inPacs(id, `raw-${k}`);
      if (state === 'IN_PACS') return id;
      if (state === 'QUARANTINED' || state === 'PURGED') {
        journal.transition(id, 'IN_PACS', 'QUARANTINED', 'verification: test');
        if (state === 'PURGED') journal.transition(id, 'QUARANTINED', 'PURGED', 'purged by test');
        return id;
      }
      journal.deidentified(id, { aliasId: `DPHRETAIN${id}`, newSopInstanceUid: `2.25.${id}`, newStudyInstanceUid: `2.25.1${id}`, deidentifiedId: `deid-${id}` });
      if (state === 'DONE') journal.transition(id, 'DEIDENTIFIED', 'DONE');
      return id;
    });
    journal.close();
    const db = new Database(file);
    const age = db.prepare('UPDATE jobs SET updated_at = ?, received_at = ? WHERE id = ?');
    cases.forEach(({ ageDays }, k) => {
      const at = new Date(Date.now() - ageDays * DAY).toISOString();
      age.run(at, at, ids[k]);
    });
    db.close();
    return ids;
  }
  const CASES = [
    { state: 'DONE', ageDays: 40 },
    { state: 'DONE', ageDays: 29 },
    { state: 'REJECTED', ageDays: 31 },
    { state: 'REJECTED', ageDays: 1 },
    { state: 'PURGED', ageDays: 365 },
    { state: 'QUARANTINED', ageDays: 400 },
    { state: 'IN_PACS', ageDays: 100 },
    { state: 'DEIDENTIFIED', ageDays: 100 },
    { state: 'RECEIVED', ageDays: 100 },
  ] as const;
  const expectedLeft = ['DONE 29', 'REJECTED 1', 'QUARANTINED 400', 'IN_PACS 100', 'DEIDENTIFIED 100', 'RECEIVED 100'];
  const left = (journal: Journal, ids: number[]) => ids.flatMap((id, k) => (journal.get(id) ? [`${CASES[k]!.state} ${CASES[k]!.ageDays}`] : []));

  it('pruneFinished(30) deletes DONE, REJECTED and PURGED jobs last changed over 30 days ago, from the files too; keeps younger ones, QUARANTINED and unfinished jobs of any age', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-retain-'));
    try {
      const ids = seed(dir, [...CASES]);
      const journal = new Journal(journalPath(dir), randomBytes(32));
      try {
        const deleted = journal.pruneFinished(30);
        console.log(`      ${CASES.length} jobs, ${deleted} deleted: ${CASES.length - deleted} left (${left(journal, ids).join(', ')})`);
        expect(deleted).to.equal(CASES.length - expectedLeft.length);
        expect(left(journal, ids)).to.deep.equal(expectedLeft);
        expect(journal.pruneFinished(30), 'a second prune has nothing to do').to.equal(0);
        // secure_delete and the checkpoint: the deleted DONE job's alias is in no byte of the journal's files
        const oldDone = `DPHRETAIN${ids[0]}`;
        const kept = `DPHRETAIN${ids[1]}`;
        const bytes = () => filesUnder(dir).map((f) => readFileSync(f).toString('latin1')).join('\n');
        expect(bytes(), 'the kept job is in the files (the search sees them)').to.contain(kept);
        expect(bytes(), 'the deleted job is not').not.to.contain(oldDone);
      } finally {
        journal.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the middleman prunes at start-up with the default of 30 days, and keeps everything with 0', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'dphiant-retain-mm-'));
    // finished and quarantined jobs only: unfinished ones would send the worker to the PACS for raw copies that are not there
    const cases = CASES.filter((c) => ['DONE', 'REJECTED', 'PURGED', 'QUARANTINED'].includes(c.state));
    const ids = seed(dataDir, [...cases]);
    const stack = await startStack({ env: { DPHIANT_DATA_DIR: dataDir, DPHIANT_PIPELINE_RETAIN_FINISHED_DAYS: '0' } });
    let keepAll: Promise<void> | undefined;
    try {
      try {
        expect(ids.filter((id) => stack.mm.journal.get(id)), 'retainFinishedDays 0: every job kept').to.have.length(cases.length);
      } finally {
        await (keepAll = stack.mm.close());
      }
      const mm = await startTestMiddleman({ DPHIANT_DATA_DIR: dataDir, DPHIANT_PACS_PORT: String(stack.pacs.dicomPort), DPHIANT_PACS_URL: stack.pacs.httpUrl });
      try {
        expect(mm.config.pipeline.retainFinishedDays, 'the default').to.equal(30);
        const kept = ids.flatMap((id, k) => (mm.journal.get(id) ? [`${cases[k]!.state} ${cases[k]!.ageDays}`] : []));
        console.log(`      ${cases.length} jobs seeded; after a start with the default: ${kept.join(', ')}`);
        expect(kept).to.deep.equal(['DONE 29', 'REJECTED 1', 'QUARANTINED 400']);
      } finally {
        await mm.close();
      }
    } finally {
      if (!keepAll) await stack.mm.close();
      await stack.pacs.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('journal: a finished job keeps only a keyed hash of its raw copy\'s Orthanc ID', () => {
  it('drops the Orthanc ID at DONE, still recognises a second send of the same instance as its twin, and migrates old rows', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-journal-'));
    try {
      const file = path.join(dir, 'journal.sqlite');
      const key = randomBytes(32);
      const rawId = 'aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee';
      const journal = new Journal(file, key);
      const first = journal.received({ sopInstanceUid: '1.2.3', rawId, sopClassUid: '1.2', transferSyntaxUid: '1.2', callingAet: 'MOD', bytes: 1 });
      journal.inPacs(first, rawId);
      journal.deidentified(first, { aliasId: 'DPHX', newSopInstanceUid: '2.25.1', newStudyInstanceUid: '2.25.2', deidentifiedId: 'out-id' });
      journal.transition(first, 'DEIDENTIFIED', 'DONE');
      expect(journal.get(first)!.rawId, 'a DONE job no longer names its raw copy').to.equal(null);
      const second = journal.received({ sopInstanceUid: '1.2.3', rawId, sopClassUid: '1.2', transferSyntaxUid: '1.2', callingAet: 'MOD', bytes: 1 });
      journal.inPacs(second, rawId);
      expect(journal.twinOf(journal.get(second)!)?.id, 'the same content is recognised by the keyed hash').to.equal(first);
      const other = journal.received({ sopInstanceUid: '1.2.3', rawId: 'ffffffff-bbbbbbbb-cccccccc-dddddddd-eeeeeeee', sopClassUid: '1.2', transferSyntaxUid: '1.2', callingAet: 'MOD', bytes: 1 });
      journal.inPacs(other, 'ffffffff-bbbbbbbb-cccccccc-dddddddd-eeeeeeee');
      expect(journal.twinOf(journal.get(other)!), 'other content under the same UID is no twin').to.equal(undefined);
      journal.close();
      // a journal of the previous layout: a DONE row that still holds its raw ID in plaintext
      const db = new Database(file);
      db.prepare(`UPDATE jobs SET raw_id = ?, raw_key = NULL WHERE id = ?`).run(rawId, first);
      db.close();
      const warnings: string[] = [];
      const reopened = new Journal(file, key, (m) => warnings.push(m));
      expect(reopened.get(first)!.rawId).to.equal(null);
      expect(warnings.join('\n')).to.match(/raw Orthanc IDs of finished jobs/);
      expect(reopened.twinOf(reopened.get(second)!)?.id).to.equal(first);
      reopened.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
