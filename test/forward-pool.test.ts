// The pool of open associations to the PACS (src/scu/pool.ts, issue 13): forwards reuse associations, at most
// pacs.maxAssociations at once, byte for byte; an association the PACS closed while idle never costs the sender a
// failure; idle ones are released after pacs.idleTimeoutMs, all of them when the middleman stops. Associations are
// counted by a TCP proxy between the middleman and the PACS (test/support/association-proxy.ts): connections,
// A-ASSOCIATE-RQ, A-RELEASE-RQ, A-ABORT, the most open at once.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ReceivedInstance } from '../src/dicom/c-store.js';
import { splitPart10 } from '../src/dicom/part10.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { AssociationPool } from '../src/scu/pool.js';
import type { PacsTarget } from '../src/scu/store.js';
import { generateOne, generateStudies } from '../tools/synth/generate.js';
import { startOrthanc, type OrthancProcess } from '../tools/devstack/orthanc.js';
import { DevOrthanc } from '../tools/devstack/orthanc-rest.js';
import { startAssociationProxy, type AssociationProxy } from './support/association-proxy.js';
import { startCapture, type Capture } from './support/capture.js';
import { storescu, type RunResult } from './support/dcmtk.js';
import { datasetBytes } from './support/files.js';
import { startTestMiddleman, type TestMiddleman } from './support/middleman.js';
import { freePorts } from './support/ports.js';

/** What the proxy counted, for the test's printed numbers. */
const counted = (p: AssociationProxy) =>
  `connections ${p.connections}, A-ASSOCIATE-RQ ${p.associateRequests}, A-RELEASE-RQ ${p.releaseRequests}, A-ABORT ${p.aborts}, most open at once ${p.peakOpen}, open now ${p.open}`;

/** Statuses storescu -v reports, counted: {"Success": 20}. */
function responses(r: RunResult): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of (r.stdout + r.stderr).matchAll(/Received Store Response \(([^)]*)\)/g)) out[m[1]!] = (out[m[1]!] ?? 0) + 1;
  return out;
}

/** A spool file holding a generated instance's data set, as the SCP leaves it for the SCU. */
function spooled(dir: string, part10: Buffer, transferSyntaxUid?: string): ReceivedInstance {
  const p = splitPart10(part10);
  const spoolPath = path.join(dir, `${p.sopInstanceUid}.ds`);
  writeFileSync(spoolPath, p.dataset);
  return { sopClassUid: p.sopClassUid, sopInstanceUid: p.sopInstanceUid, transferSyntaxUid: transferSyntaxUid ?? p.transferSyntaxUid, callingAet: 'MODALITY', spoolPath, bytes: p.dataset.length };
}

describe('association pool: the pool itself, against DCMTK storescp', function () {
  this.timeout(120_000);
  let dir: string;
  let capture: Capture;
  let proxy: AssociationProxy;
  let pool: AssociationPool | undefined;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'dphiant-pool-'))));
  afterEach(async () => {
    await pool?.close();
    pool = undefined;
    await proxy?.close();
    await capture?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const target = (port: number, aet: string): PacsTarget => ({ host: '127.0.0.1', port, aet, callingAet: 'DPHIANT', connectTimeoutMs: 5000, noProgressTimeoutMs: 10_000, storeTimeoutMs: 30_000 });

  it('one association carries every instance of a SOP class; another class at a cap of 1 first releases the idle one', async () => {
    capture = await startCapture(path.join(dir, 'capture'));
    proxy = await startAssociationProxy({ port: capture.port });
    pool = new AssociationPool(target(proxy.port, capture.aet), { maxAssociations: 1, idleTimeoutMs: 60_000 });
    let k = 0;
    const ct = () => spooled(dir, generateOne({ rows: 16, cols: 16, modalities: ['CT'], instanceIndex: k++ }));
    const mr = () => spooled(dir, generateOne({ rows: 16, cols: 16, modalities: ['MR'], instanceIndex: k++ }));
    const order = [ct(), ct(), ct(), mr(), mr(), ct()];
    expect(new Set(order.map((i) => i.sopClassUid)).size, 'two SOP classes').to.equal(2);
    const outcomes = [];
    for (const inst of order) outcomes.push(await pool.store(inst));
    const during = { ...proxy };
    await pool.close();
    await proxy.untilNoneOpen(5000);
    console.log(`      6 instances CT CT CT MR MR CT, cap 1: ${counted(proxy)}; outcomes ${JSON.stringify(outcomes.map((o) => o.kind))}`);
    expect(outcomes).to.deep.equal(order.map(() => ({ kind: 'answered', status: 0 })));
    for (const inst of order) expect(capture.received(inst.sopInstanceUid).bytes.equals(readFileSync(inst.spoolPath)), 'byte for byte').to.equal(true);
    expect(during.associateRequests, 'CT, then MR, then CT again').to.equal(3);
    expect(during.releaseRequests, 'the idle one released to make room, twice').to.equal(2);
    expect(proxy.peakOpen).to.equal(1);
    expect(proxy.releaseRequests, 'close() released the last').to.equal(3);
    expect(proxy.aborts).to.equal(0);
  });

  it('20 forwards at once over a cap of 2: two associations, the others wait for a free one', async () => {
    capture = await startCapture(path.join(dir, 'capture'), 'CAPTURE', { fork: true });
    proxy = await startAssociationProxy({ port: capture.port });
    pool = new AssociationPool(target(proxy.port, capture.aet), { maxAssociations: 2, idleTimeoutMs: 60_000 });
    const instances = Array.from({ length: 20 }, (_, k) => spooled(dir, generateOne({ rows: 64, cols: 64, modalities: ['CT'], instanceIndex: k })));
    const outcomes = await Promise.all(instances.map((i) => pool!.store(i)));
    console.log(`      20 at once, cap 2: ${counted(proxy)}; answered ${outcomes.filter((o) => o.kind === 'answered' && o.status === 0).length}; others ${JSON.stringify(outcomes.filter((o) => o.kind !== 'answered' || o.status !== 0 || o.retried))}`);
    expect(outcomes.every((o) => o.kind === 'answered' && o.status === 0 && !o.retried)).to.equal(true);
    expect(proxy.associateRequests).to.equal(2);
    expect(proxy.peakOpen).to.equal(2);
    expect(pool.size).to.equal(2);
  });

  it('a refused transfer syntax is answered by the association that holds the refusal; what it accepted still goes over it', async () => {
    capture = await startCapture(path.join(dir, 'capture'), 'CAPTURE', { accept: 'uncompressed' });
    proxy = await startAssociationProxy({ port: capture.port });
    pool = new AssociationPool(target(proxy.port, capture.aet), { maxAssociations: 4, idleTimeoutMs: 60_000 });
    const jpeg = (k: number) => spooled(dir, generateOne({ rows: 16, cols: 16, modalities: ['CT'], instanceIndex: 100 + k }), TS.JPEGBaseline);
    const plain = spooled(dir, generateOne({ rows: 16, cols: 16, modalities: ['CT'], instanceIndex: 200 }));
    const first = await pool.store(jpeg(1));
    const second = await pool.store(jpeg(2));
    const third = await pool.store(plain);
    console.log(`      JPEG, JPEG, explicit LE to a peer taking uncompressed only: ${JSON.stringify([first, second, third])}; ${counted(proxy)}`);
    expect([first, second]).to.deep.equal([{ kind: 'not-accepted' }, { kind: 'not-accepted' }]);
    expect(third).to.deep.equal({ kind: 'answered', status: 0 });
    expect(proxy.associateRequests, 'one association for all three').to.equal(1);
  });

  it('a reused association reset when it is next used: the instance goes on a fresh one, and the retry is not spent', async () => {
    capture = await startCapture(path.join(dir, 'capture'));
    proxy = await startAssociationProxy({ port: capture.port });
    pool = new AssociationPool(target(proxy.port, capture.aet), { maxAssociations: 1, idleTimeoutMs: 60_000 });
    const inst = (k: number) => spooled(dir, generateOne({ rows: 16, cols: 16, modalities: ['CT'], instanceIndex: 300 + k }));
    const before = await pool.store(inst(1));
    expect(proxy.cutOnNextSend()).to.equal(1);
    const after = await pool.store(inst(2));
    console.log(`      before ${JSON.stringify(before)}, after the reset ${JSON.stringify(after)}; cut ${proxy.cut}; ${counted(proxy)}`);
    expect(before).to.deep.equal({ kind: 'answered', status: 0 });
    expect(after).to.deep.equal({ kind: 'answered', status: 0, retried: 'reused association lost' });
    expect(proxy.cut).to.equal(1);
    expect(proxy.associateRequests).to.equal(2);
  });
});

describe('association pool: the middleman forwarding to a real Orthanc PACS', function () {
  this.timeout(600_000);
  let work: string;
  let pacs: OrthancProcess;
  let pacsRest: DevOrthanc;
  let capture: Capture;
  let mm: TestMiddleman | undefined;
  let proxy: AssociationProxy | undefined;

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-forward-pool-'));
    const [http, dicom] = (await freePorts(2)) as [number, number];
    pacs = await startOrthanc({ role: 'pacs', workDir: path.join(work, 'pacs'), httpPort: http, dicomPort: dicom, middleman: { aet: 'DPHIANT', host: '127.0.0.1', port: 1 } });
    pacsRest = new DevOrthanc({ url: pacs.httpUrl, username: 'demo', password: 'demo' });
    capture = await startCapture(path.join(work, 'capture'));
  });
  afterEach(async () => {
    await mm?.close();
    mm = undefined;
    await proxy?.close();
    proxy = undefined;
  });
  after(async () => {
    await capture?.stop();
    await pacs?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /** A middleman (pipeline off: raw copies stay to be compared) forwarding through a counting proxy to `to`. */
  async function middleman(settings: Record<string, string>, to: OrthancProcess = pacs, logFile?: string): Promise<{ mm: TestMiddleman; proxy: AssociationProxy }> {
    proxy = await startAssociationProxy({ port: to.dicomPort });
    mm = await startTestMiddleman({ DPHIANT_PACS_PORT: String(proxy.port), DPHIANT_PACS_URL: to.httpUrl, DPHIANT_PIPELINE_ENABLED: 'false', ...settings }, undefined, logFile);
    return { mm, proxy };
  }

  async function instances(name: string, count: number, seed: number): Promise<{ files: string[]; uids: string[] }> {
    const m = await generateStudies({ outDir: path.join(work, name), patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: count, rows: 128, cols: 128, modalities: ['CT'], seed });
    return { files: m.instances.map((i) => i.path), uids: m.instances.map((i) => i.sopInstanceUid) };
  }

  it('60 instances from 4 storescu at once over a cap of 2: 2 associations, every instance in the PACS byte for byte', async () => {
    const s = await middleman({ DPHIANT_PACS_MAX_ASSOCIATIONS: '2', DPHIANT_PACS_IDLE_TIMEOUT_MS: '60000' });
    const { files, uids } = await instances('cap', 60, 1301);
    const toCapture = await storescu(files, { port: capture.port, calledAet: capture.aet });
    expect(toCapture.code, toCapture.stderr).to.equal(0);
    const runs = await Promise.all([0, 1, 2, 3].map((k) => storescu(files.slice(k * 15, (k + 1) * 15), { port: s.mm.port, timeoutMs: 300_000 })));
    let identical = 0;
    for (const uid of uids) {
      const instance = (await pacsRest.lookup(uid)).find((r) => r.Type === 'Instance');
      if (!instance) continue;
      const stored = datasetBytes(await pacsRest.instanceFile(instance.ID));
      const sent = capture.received(uid);
      if (stored.ts === sent.ts && stored.bytes.equals(sent.bytes)) identical++;
    }
    const counts = s.mm.journal.counts();
    console.log(
      `      sent 60 (4 senders), in PACS IN_PACS ${counts.IN_PACS}, byte-identical ${identical}, rejected ${counts.REJECTED}, lost ${60 - identical}; ` +
        `${counted(s.proxy)}; retries ${s.mm.metrics.counter('dphiant_forward_retries_total')}`,
    );
    runs.forEach((r, k) => expect(responses(r), `storescu #${k}`).to.deep.equal({ Success: 15 }));
    expect(identical).to.equal(60);
    expect(counts.IN_PACS).to.equal(60);
    expect(s.proxy.associateRequests, 'associations opened').to.equal(2);
    expect(s.proxy.connections).to.equal(2);
    expect(s.proxy.peakOpen).to.be.at.most(2);
    expect(s.proxy.open, 'kept open for the next instances').to.equal(2);
  });

  it('idle associations are released after pacs.idleTimeoutMs (A-RELEASE-RQ, no connection left)', async () => {
    const idleMs = 1000;
    const s = await middleman({ DPHIANT_PACS_MAX_ASSOCIATIONS: '4', DPHIANT_PACS_IDLE_TIMEOUT_MS: String(idleMs) });
    const { files } = await instances('idle', 20, 1302);
    const runs = await Promise.all([0, 1].map((k) => storescu(files.slice(k * 10, (k + 1) * 10), { port: s.mm.port })));
    const openAfterSend = s.proxy.open;
    const sentAt = Date.now();
    await s.proxy.untilNoneOpen(idleMs + 3000);
    const releasedAfter = Date.now() - sentAt;
    console.log(`      sent 20 (2 senders); open right after ${openAfterSend}, none open ${releasedAfter} ms later (idle timeout ${idleMs} ms); ${counted(s.proxy)}`);
    runs.forEach((r) => expect(responses(r)).to.deep.equal({ Success: 10 }));
    expect(openAfterSend, 'still open right after the last instance').to.be.at.least(1);
    expect(releasedAfter, 'not before the idle timeout').to.be.at.least(idleMs - 100);
    expect(s.proxy.releaseRequests, 'each released, none aborted').to.equal(s.proxy.associateRequests);
    expect(s.proxy.aborts).to.equal(0);
    expect(s.proxy.associateRequests).to.be.within(1, 2);
  });

  it("the middleman's close() releases every association (A-RELEASE-RQ each, no connection left)", async () => {
    const s = await middleman({ DPHIANT_PACS_MAX_ASSOCIATIONS: '4', DPHIANT_PACS_IDLE_TIMEOUT_MS: '60000' });
    const { files } = await instances('close', 30, 1303);
    const runs = await Promise.all([0, 1, 2].map((k) => storescu(files.slice(k * 10, (k + 1) * 10), { port: s.mm.port })));
    const openBefore = s.proxy.open;
    const started = Date.now();
    await s.mm.close();
    mm = undefined; // closed here, not again after the test
    const closeMs = Date.now() - started;
    await s.proxy.untilNoneOpen(1000);
    console.log(`      sent 30 (3 senders); open before close() ${openBefore}; close() took ${closeMs} ms; ${counted(s.proxy)}`);
    runs.forEach((r) => expect(responses(r)).to.deep.equal({ Success: 10 }));
    expect(openBefore).to.be.within(1, 3);
    expect(s.proxy.releaseRequests).to.equal(openBefore);
    expect(s.proxy.aborts).to.equal(0);
    expect(closeMs).to.be.below(3000);
  });

  it('associations the PACS closed while idle (its DicomScpTimeout, 1 s here): the next instances go on fresh ones, all succeed', async () => {
    const [http, dicom] = (await freePorts(2)) as [number, number];
    const impatient = await startOrthanc({
      role: 'pacs',
      workDir: path.join(work, 'impatient'),
      httpPort: http,
      dicomPort: dicom,
      middleman: { aet: 'DPHIANT', host: '127.0.0.1', port: 1 },
      configOverrides: { DicomScpTimeout: 1 },
    });
    try {
      const s = await middleman({ DPHIANT_PACS_MAX_ASSOCIATIONS: '4', DPHIANT_PACS_IDLE_TIMEOUT_MS: '60000' }, impatient);
      const { files } = await instances('impatient', 20, 1304);
      const first = await storescu(files.slice(0, 10), { port: s.mm.port });
      const openAfterFirst = s.proxy.open;
      await s.proxy.untilNoneOpen(10_000); // the PACS closes them; the pool sees it
      const second = await storescu(files.slice(10), { port: s.mm.port });
      const stored = (await new DevOrthanc({ url: impatient.httpUrl, username: 'demo', password: 'demo' }).statistics()).CountInstances;
      const counts = s.mm.journal.counts();
      console.log(
        `      sent 10, idle past the PACS's timeout (open ${openAfterFirst} → 0), sent 10 more: storescu heard ${JSON.stringify(responses(first))}, ${JSON.stringify(responses(second))}; ` +
          `in PACS ${stored}, rejected ${counts.REJECTED}, lost ${20 - stored}; ${counted(s.proxy)}; retries ${s.mm.metrics.counter('dphiant_forward_retries_total')}`,
      );
      expect(responses(first)).to.deep.equal({ Success: 10 });
      expect(responses(second), 'the sender never hears of it').to.deep.equal({ Success: 10 });
      expect(openAfterFirst).to.equal(1);
      expect(stored).to.equal(20);
      expect(counts.REJECTED).to.equal(0);
      expect(s.proxy.associateRequests, 'one fresh association for the second run').to.equal(2);
    } finally {
      await mm?.close();
      mm = undefined;
      await impatient.stop();
    }
  });

  it('an association found reset when next used (the PACS closed it, the close not yet seen): the sender still hears success', async () => {
    const logFile = path.join(work, 'reset.log');
    const s = await middleman({ DPHIANT_PACS_MAX_ASSOCIATIONS: '4', DPHIANT_PACS_IDLE_TIMEOUT_MS: '60000' }, pacs, logFile);
    const { files } = await instances('reset', 10, 1305);
    const first = await storescu(files.slice(0, 5), { port: s.mm.port });
    const armed = s.proxy.cutOnNextSend();
    const second = await storescu(files.slice(5), { port: s.mm.port });
    const retries = s.mm.metrics.counter('dphiant_forward_retries_total');
    const why = readFileSync(logFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg?: string; first?: string })
      .filter((l) => l.msg === 'forward retried on a fresh association')
      .map((l) => l.first);
    const counts = s.mm.journal.counts();
    console.log(
      `      sent 5, reset ${armed} idle association(s), sent 5 more: storescu heard ${JSON.stringify(responses(first))}, ${JSON.stringify(responses(second))}; ` +
        `IN_PACS ${counts.IN_PACS}, rejected ${counts.REJECTED}; retries ${retries} (${why.join(', ')}); ${counted(s.proxy)}`,
    );
    expect(armed).to.equal(1);
    expect(responses(second), 'the sender never hears of it').to.deep.equal({ Success: 5 });
    expect(counts.IN_PACS).to.equal(10);
    expect(counts.REJECTED).to.equal(0);
    expect(retries).to.equal(1);
    expect(why).to.deep.equal(['reused association lost']);
    expect(s.proxy.associateRequests).to.equal(2);
  });
});
