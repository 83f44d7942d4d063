// Failure codes (src/reasons.ts): the README lists exactly them; each family is produced where the failure happens
// (real PACS, real sockets, the real SCP) and reaches the sender's status, the journal and the metrics; a journal of
// before the codes is migrated once.
import { expect } from 'chai';
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { findUp } from '../src/paths.js';
import { REASONS, REASON_CODES, networkFailure, type ReasonCode } from '../src/reasons.js';
import { REFUSAL_STATUS, Status } from '../src/dicom/c-store.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { encodeDataset } from '../src/dicom/writer.js';
import { generateElements } from '../tools/synth/generate.js';
import { createLogger } from '../src/log.js';
import { OrthancClient, OrthancHttpError } from '../src/pacs/orthanc.js';
import { Journal, legacyReasonCode } from '../src/pipeline/journal.js';
import { Reconciler } from '../src/pipeline/reconciler.js';
import { Ingest, replyFor } from '../src/pipeline/ingest.js';
import { Backpressure, DependencyHealth } from '../src/pipeline/health.js';
import { Metrics } from '../src/metrics.js';
import { storeInstance } from '../src/scu/store.js';
import { sendRawDataset } from './support/raw-scu.js';
import { startStack, type TestStack } from './support/stack.js';
import { freePorts } from './support/ports.js';

const hex = (n: number) => '0x' + n.toString(16).toUpperCase().padStart(4, '0');

/** The README's table of failure codes, as src/reasons.ts and src/dicom/c-store.ts define them. */
function reasonsTable(): string[] {
  const status = (code: ReasonCode) => {
    if (!(code in REFUSAL_STATUS)) return '—';
    const s = REFUSAL_STATUS[code as keyof typeof REFUSAL_STATUS];
    return s === null ? "the PACS's own" : `\`${hex(s)}\``;
  };
  return ['| code | meaning | C-STORE status |', '| --- | --- | --- |', ...REASON_CODES.map((c) => `| \`${c}\` | ${REASONS[c]} | ${status(c)} |`)];
}

describe('failure codes: the README table', () => {
  it('lists exactly the codes of src/reasons.ts, with their meanings and statuses', () => {
    const readme = readFileSync(findUp('README.md'), 'utf8').split('\n');
    const start = readme.indexOf('| code | meaning | C-STORE status |');
    expect(start, 'the table heading in README.md').to.be.greaterThan(-1);
    let end = start;
    while (readme[end]?.startsWith('|')) end++;
    const expected = reasonsTable();
    expect(readme.slice(start, end), `README.md's table should be:\n${expected.join('\n')}\n`).to.deep.equal(expected);
  });
});

describe('failure codes: a journal written before them', () => {
  it('is migrated once: each failure reason gets the code its text maps to, notes get none', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-codes-'));
    try {
      const file = path.join(dir, 'journal.sqlite');
      // the schema of the version before reason_code
      const old = new Database(file);
      old.exec(`CREATE TABLE jobs (id INTEGER PRIMARY KEY, sop_uid_hash TEXT NOT NULL, raw_id TEXT, raw_key TEXT, sop_class_uid TEXT NOT NULL,
        transfer_syntax_uid TEXT NOT NULL, calling_aet TEXT NOT NULL, bytes INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT,
        received_at TEXT NOT NULL, updated_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL DEFAULT 0,
        alias_id TEXT, new_sop_instance_uid TEXT, deidentified_id TEXT);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;`);
      const rows: [string, string | null, number, ReasonCode | null][] = [
        ['REJECTED', 'instance over the size limit (204800 bytes)', 0, 'too-large'],
        ['REJECTED', 'DPHIANT spool full', 0, 'spool-full'],
        ['REJECTED', 'PACS unavailable: ECONNREFUSED', 0, 'pacs-unavailable'],
        ['REJECTED', 'PACS unavailable: no progress (retried)', 0, 'pacs-timeout'],
        ['REJECTED', 'PACS answered 0xA701', 0, 'pacs-refused'],
        ['REJECTED', 'SOP Class UID differs from the C-STORE request', 0, 'sop-class-mismatch'],
        ['REJECTED', 'DPHIANT cannot reach the crosswalk', 0, 'backpressure'],
        ['REJECTED', 'not in the PACS after a restart; the sender was not told it was stored', 0, 'interrupted'],
        ['QUARANTINED', 'verification: id in Manufacturer', 1, 'gate-hit'],
        ['QUARANTINED', 'burned-in text (ocr): the OCR engine is not available', 1, 'pixels'],
        ['PURGED', 'purged by demo (web): unreadable data set: item length past the end', 1, 'malformed'],
        ['IN_PACS', 'Orthanc GET /instances/abc failed: HTTP 401 (Unauthorized)', 3, 'pacs-auth'],
        ['IN_PACS', 'Orthanc GET /instances/abc failed: no answer (timed out)', 2, 'pacs-timeout'],
        ['DEIDENTIFIED', 'crosswalk unavailable (MongoServerSelectionError)', 2, 'crosswalk-unavailable'],
        ['REJECTED', 'a reason no version wrote', 0, 'other'],
        ['IN_PACS', 'requeued', 0, null],
        ['DONE', 'same instance as job 1', 0, null],
        ['DONE', null, 0, null],
      ];
      const insert = old.prepare(`INSERT INTO jobs (sop_uid_hash, sop_class_uid, transfer_syntax_uid, calling_aet, bytes, state, reason, attempts, received_at, updated_at)
        VALUES ('h', '1.2', '1.2', 'MOD', 1, ?, ?, ?, 'x', 'x')`);
      for (const [state, reason, attempts] of rows) insert.run(state, reason, attempts);
      old.close();
      const key = randomBytes(32);
      const warnings: string[] = [];
      let journal = new Journal(file, key, (m) => warnings.push(m));
      const codes = () => rows.map((_, k) => journal.get(k + 1)!.reasonCode);
      console.log(`      migrated: ${rows.map(([state, , , code], k) => `${state} ${codes()[k]}${codes()[k] === code ? '' : ` (expected ${code})`}`).join(', ')}`);
      expect(codes()).to.deep.equal(rows.map((r) => r[3]));
      expect(warnings.join('\n')).to.match(/reason codes given to 15 jobs/);
      journal.close();
      // once: a second open changes nothing and says nothing
      warnings.length = 0;
      journal = new Journal(file, key, (m) => warnings.push(m));
      expect(codes()).to.deep.equal(rows.map((r) => r[3]));
      expect(warnings).to.deep.equal([]);
      journal.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('maps the reasons this version writes to their own codes (what an older journal holds is the same text)', () => {
    const current: [string, ReasonCode][] = [
      ['malformed data set at offset 132', 'malformed'],
      ['empty data set or no SOP Instance UID', 'malformed'],
      ['SOP Instance UID differs from the C-STORE request', 'sop-instance-mismatch'],
      ['DPHIANT journal unavailable', 'journal-unavailable'],
      ['DPHIANT internal error', 'internal'],
      ['DPHIANT spool: EIO', 'disk'],
      ['DPHIANT backlog over its bound', 'backpressure'],
      ['PACS refused SOP class or transfer syntax', 'pacs-unsupported'],
      ['PACS refused the de-identified instance: Orthanc POST /instances failed: HTTP 400', 'pacs-refused'],
      ['PACS stored the de-identified instance as x (Success), expected y', 'id-mismatch'],
      ["value not encodable in the data set's character set", 'charset'],
      ['the profile cannot apply: no such action', 'profile'],
      ['raw instance absent from the PACS; nothing to keep', 'raw-absent'],
      ['the raw copy in the PACS is not identified yet', 'raw-not-identified'],
      ['Orthanc POST /tools/bulk-delete failed: HTTP 500 (InternalError, OrthancStatus 1)', 'pacs-error'],
      ['sealing in the quarantine failed: ENOSPC', 'disk'],
    ];
    expect(current.map(([text]) => legacyReasonCode(text))).to.deep.equal(current.map((c) => c[1]));
  });
});

describe('failure codes: produced where the failure happens, answered and counted by code', function () {
  this.timeout(120_000);
  let stack: TestStack;
  const log = createLogger('silent');

  before(async function () {
    this.timeout(120_000);
    stack = await startStack();
  });
  after(async () => {
    await stack?.stop();
  });

  /** A data set for the raw SCU; `change` edits its elements first. */
  const dataset = (seed: number) => {
    const els = generateElements({ rows: 8, cols: 8, seed });
    const value = (tag: number) => String(els.find((e) => e.tag === tag)!.value);
    return { bytes: encodeDataset(els, TS.ExplicitVRLittleEndian), sopClassUid: value(0x00080016), sopInstanceUid: value(0x00080018) };
  };
  const rejected = (code: ReasonCode) => stack.mm.journal.byState('REJECTED', 100_000).filter((j) => j.reasonCode === code).length;
  const counted = (code: ReasonCode) => stack.mm.metrics.counter('dphiant_instances_rejected_total', { reason: code });

  it('refuses a data set that is not the instance its C-STORE names: sop-class-mismatch 0xA900, sop-instance-mismatch 0xC000, malformed 0xC000', async () => {
    const cases: [ReasonCode, number, Awaited<ReturnType<typeof sendRawDataset>>][] = [];
    const inPacs = async () => (await stack.pacsRest.statistics()).CountInstances;
    const before = await inPacs();
    const a = dataset(501);
    cases.push(['sop-class-mismatch', 0xa900, await sendRawDataset(a.bytes, { port: stack.mm.port, sopInstanceUid: a.sopInstanceUid, sopClassUid: '1.2.840.10008.5.1.4.1.1.4' })]);
    const b = dataset(502);
    cases.push(['sop-instance-mismatch', 0xc000, await sendRawDataset(b.bytes, { port: stack.mm.port, sopInstanceUid: `${b.sopInstanceUid}.9`, sopClassUid: b.sopClassUid })]);
    const c = dataset(503);
    cases.push(['malformed', 0xc000, await sendRawDataset(c.bytes.subarray(0, c.bytes.length - 100), { port: stack.mm.port, sopInstanceUid: c.sopInstanceUid, sopClassUid: c.sopClassUid })]);
    console.log(`      ${cases.map(([code, , o]) => `${code}: ${o.kind === 'answered' ? hex(o.status) : o.kind}, journalled ${rejected(code)}, counted ${counted(code)}`).join('; ')}; PACS instances before ${before}, after ${await inPacs()}`);
    // with cut-through each was on its way to the PACS while it arrived: aborted before its last fragment
    expect(await inPacs(), 'the PACS keeps nothing of them').to.equal(before);
    for (const [code, status, outcome] of cases) {
      expect(outcome, code).to.include({ kind: 'answered', status });
      expect(rejected(code), `${code} journalled`).to.equal(1);
      expect(counted(code), `${code} counted`).to.equal(1);
    }
    const text = await (await fetch(`http://127.0.0.1:${stack.mm.web.port}/metrics`)).text();
    expect(text).to.match(/^dphiant_instances_rejected_total\{reason="sop-class-mismatch"\} 1$/m);
  });

  it('classifies network failures of both PACS clients: pacs-unavailable (refused), pacs-timeout (silent)', async () => {
    const [closed] = await freePorts(1);
    // a peer that accepts the connection and never says anything
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const silentPort = (silent.address() as net.AddressInfo).port;
    try {
      const rest = async (port: number) => {
        try {
          await new OrthancClient({ url: `http://127.0.0.1:${port}`, timeoutMs: 500 }).system();
        } catch (e) {
          return e as OrthancHttpError;
        }
        throw new Error('answered');
      };
      const [refused, quiet] = [await rest(closed!), await rest(silentPort)];
      const d = dataset(504);
      const spool = path.join(stack.work, 'scu-ds');
      writeFileSync(spool, d.bytes);
      const inst = { sopClassUid: d.sopClassUid, sopInstanceUid: d.sopInstanceUid, transferSyntaxUid: TS.ExplicitVRLittleEndian, callingAet: 'X', spoolPath: spool, bytes: d.bytes.length };
      const target = (port: number) => ({ host: '127.0.0.1', port, aet: 'PACS', callingAet: 'DPHIANT', connectTimeoutMs: 500, noProgressTimeoutMs: 500, storeTimeoutMs: 3000 });
      const [scuRefused, scuSilent] = [await storeInstance(target(closed!), inst, { retry: false }), await storeInstance(target(silentPort), inst, { retry: false })];
      console.log(`      REST: refused ${refused.code} (${refused.message}), silent ${quiet.code} (${quiet.message}); DICOM: refused ${JSON.stringify(scuRefused)}, silent ${JSON.stringify(scuSilent)}`);
      expect(refused).to.include({ code: 'pacs-unavailable', status: 0 });
      expect(refused.message).to.contain('ECONNREFUSED');
      expect(quiet).to.include({ code: 'pacs-timeout', status: 0 });
      expect(scuRefused).to.deep.equal({ kind: 'unavailable', code: 'pacs-unavailable', reason: 'ECONNREFUSED' });
      expect(scuSilent).to.include({ kind: 'unavailable', code: 'pacs-timeout' });
      expect(networkFailure(Object.assign(new Error('x'), { name: 'TimeoutError' }))).to.deep.equal({ code: 'pacs-timeout', message: 'timeout' });
      // the sender's answer follows the code
      expect(replyFor(scuRefused)).to.deep.equal({ status: Status.OutOfResources, comment: 'PACS unavailable: ECONNREFUSED', code: 'pacs-unavailable' });
      expect(replyFor({ kind: 'answered', status: 0xa701 })).to.deep.equal({ status: 0xa701, comment: 'PACS answered 0xA701', code: 'pacs-refused' });
      expect(replyFor({ kind: 'answered', status: 0xb000 })).to.deep.equal({ status: 0xb000, comment: 'PACS answered 0xB000' });
      expect(replyFor({ kind: 'not-accepted' })).to.include({ status: Status.SopClassNotSupported, code: 'pacs-unsupported' });
    } finally {
      silent.close();
    }
  });

  it('classifies the REST API answers of the real PACS: pacs-auth (401), pacs-error (400 to a file that is no DICOM)', async () => {
    const wrong = new OrthancClient({ url: stack.pacs.httpUrl, username: 'demo', password: 'wrong' });
    const auth = await wrong.system().then(() => null, (e: OrthancHttpError) => e);
    const bad = await stack.pacsRest.upload(Buffer.from('not a DICOM file')).then(() => null, (e: OrthancHttpError) => e);
    console.log(`      wrong password: ${auth?.code} (${auth?.message}); not DICOM: ${bad?.code} (${bad?.message})`);
    expect(auth).to.include({ code: 'pacs-auth', status: 401 });
    expect(bad).to.include({ code: 'pacs-error', status: 400 });
  });

  it('journals a job the PACS does not hold after a restart as interrupted', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-codes-'));
    const journal = new Journal(path.join(dir, 'journal.sqlite'), randomBytes(32));
    try {
      const id = journal.received({ sopInstanceUid: '1.2.826.0.1.3680043.9.7779.1', rawId: 'aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee', sopClassUid: '1.2', transferSyntaxUid: '1.2', callingAet: 'MOD', bytes: 1 });
      const reconciler = new Reconciler(journal, stack.pacsRest, log, () => undefined, { callingAet: 'DPHIANT', adopt: 'own' });
      await reconciler.start(0);
      reconciler.stop();
      const job = journal.get(id)!;
      console.log(`      the job: ${job.state} ${job.reasonCode} (${job.reason})`);
      expect(job).to.include({ state: 'REJECTED', reasonCode: 'interrupted' });
    } finally {
      journal.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('failure codes: refusals of ingest before forwarding (backpressure, the journal)', () => {
  const log = createLogger('silent');
  const unreachable = { host: '127.0.0.1', port: 1, aet: 'PACS', callingAet: 'DPHIANT', connectTimeoutMs: 500, noProgressTimeoutMs: 500, storeTimeoutMs: 2000 };

  it('answers backpressure 0xA700 while the PACS REST API fails too long, and journal-unavailable 0x0110 when the journal cannot be written', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-codes-'));
    const journal = new Journal(path.join(dir, 'journal.sqlite'), randomBytes(32));
    let closed = false;
    try {
      const instance = (seed: number) => {
        const els = generateElements({ rows: 8, cols: 8, seed });
        const value = (tag: number) => String(els.find((e) => e.tag === tag)!.value);
        const bytes = encodeDataset(els, TS.ExplicitVRLittleEndian);
        const spoolPath = path.join(dir, `spool-${seed}`);
        writeFileSync(spoolPath, bytes);
        return { sopClassUid: value(0x00080016), sopInstanceUid: value(0x00080018), transferSyntaxUid: TS.ExplicitVRLittleEndian, callingAet: 'MOD', spoolPath, bytes: bytes.length };
      };
      const metrics = new Metrics();
      const health = new DependencyHealth();
      health.failed('pacs', 'pacs-unavailable', Date.now() - 120_000);
      const backpressure = new Backpressure(health, () => 0, { enabled: true, backpressureAfterMs: 60_000, maxBacklog: 0 });
      const refused = await new Ingest(journal, unreachable, log, { checkMaxBytes: 1 << 20, metrics, backpressure }).store(instance(601));
      const job = journal.byState('REJECTED')[0]!;
      journal.close(); // every write fails from here on
      closed = true;
      const noJournal = await new Ingest(journal, unreachable, log, { checkMaxBytes: 1 << 20, metrics }).store(instance(602));
      console.log(`      backpressure: ${hex(refused.status)} ${refused.code} "${refused.comment}", journalled ${job.reasonCode}; closed journal: ${hex(noJournal.status)} ${noJournal.code}`);
      expect(refused).to.deep.equal({ status: Status.OutOfResources, comment: 'DPHIANT cannot reach the PACS REST API', code: 'backpressure' });
      expect(job).to.include({ reasonCode: 'backpressure', reason: 'DPHIANT cannot reach the PACS REST API' });
      expect(noJournal).to.deep.equal({ status: Status.ProcessingFailure, comment: 'DPHIANT journal unavailable', code: 'journal-unavailable' });
      expect([metrics.counter('dphiant_instances_rejected_total', { reason: 'backpressure' }), metrics.counter('dphiant_instances_rejected_total', { reason: 'journal-unavailable' })]).to.deep.equal([1, 1]);
    } finally {
      if (!closed) journal.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
