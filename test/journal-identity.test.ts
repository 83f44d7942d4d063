// What the journal keeps of an instance, and how the pipeline finds its raw copy: a keyed hash of the original
// SOP Instance UID and the raw copy's Orthanc ID, never the UIDs themselves (invariant 12); the raw copy is that
// ID, so with Retain UIDs the de-identified copy, which has the same UID, is never taken for it.
import { expect } from 'chai';
import Database from 'better-sqlite3';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { generateStudies, type Manifest } from '../src/synth/generate.js';
import { Journal } from '../src/pipeline/journal.js';
import { keyedHash } from '../src/anonymize/keyed.js';
import { storescu } from './support/dcmtk.js';
import { startStack, type TestStack } from './support/stack.js';
import { pacsInventory, waitUntilSettled } from './support/pipeline.js';

/** Every regular file under `dir`, however deep. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(p) : e.isFile() ? [p] : [];
  });
}

/** The original SOP, study and series UIDs of the instances sent. */
function originalUids(manifest: Manifest): string[] {
  return [...new Set(manifest.instances.flatMap((i) => [i.sopInstanceUid, i.studyInstanceUid, i.seriesInstanceUid]))];
}

describe('journal: the data directory and the log hold none of the original UIDs after a pipeline run', function () {
  this.timeout(300_000);
  let stack: TestStack;
  let manifest: Manifest;
  let logDir: string;

  before(async () => {
    logDir = mkdtempSync(path.join(tmpdir(), 'dphiant-log-'));
    stack = await startStack({ logFile: path.join(logDir, 'middleman.log') });
    manifest = await generateStudies({ outDir: path.join(stack.work, 'in'), patients: 3, studiesPerPatient: 2, seriesPerStudy: 1, instancesPerSeries: 2, rows: 16, cols: 16, seed: 811 });
    const r = await storescu(manifest.instances.map((i) => i.path), { port: stack.mm.port });
    expect(r.code, r.stderr).to.equal(0);
    await waitUntilSettled(stack.mm.journal, 120_000);
    await stack.stop(); // the journal's WAL and the log are complete only once the middleman has stopped
  });
  after(() => rmSync(logDir, { recursive: true, force: true }));

  it('finishes every instance, and no file under the data directory nor the log contains an original UID', () => {
    const dataDir = stack.mm.config.dataDir;
    const files = [...filesUnder(dataDir), path.join(logDir, 'middleman.log')];
    expect(files.map((f) => path.relative(dataDir, f))).to.include.members(['journal.sqlite', 'crosswalk.sqlite']);
    expect(readFileSync(path.join(logDir, 'middleman.log'), 'utf8'), 'the log says what happened').to.contain('de-identified in the PACS');
    const uids = originalUids(manifest);
    const found = files.flatMap((f) => {
      const text = readFileSync(f).toString('latin1');
      return uids.filter((u) => text.includes(u)).map((u) => `${path.basename(f)}: ${u}`);
    });
    expect(found).to.deep.equal([]);
  });

  it('keeps the data directory 0700 and the journal files 0600', () => {
    const dataDir = stack.mm.config.dataDir;
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

    it('ends every instance DONE', async () => {
      const r = await storescu(manifest.instances.map((i) => i.path), { port: stack.mm.port });
      expect(r.code, r.stderr).to.equal(0);
      await waitUntilSettled(stack.mm.journal, 120_000);
      const counts = stack.mm.journal.counts();
      expect(counts).to.include({ DONE: manifest.instances.length, QUARANTINED: 0, REJECTED: 0 });
      await expectOneDeidentifiedCopyEach();
    });

    it('sent again, ends DONE with the same de-identified copies and no duplicate (the raw copy is not the de-identified one)', async () => {
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
      journal.deidentified(first, { aliasId: 'DPHX', newSopInstanceUid: '2.25.1', deidentifiedId: 'out-id' });
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
