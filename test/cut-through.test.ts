// Cut-through forwarding (src/scu/store.ts cutThrough, src/dicom/dimse.ts ArrivingData, issue 13): the C-STORE to
// the PACS starts at the data set's first fragment and carries the fragments as they are pushed (in blocks of
// ARRIVING_WRITE_BLOCK), the last held back until commit(); an abort() before it leaves the PACS nothing; fragments
// the socket cannot take go from the spool at commit(); an association lost while the data set arrives costs the
// sender nothing. Against DCMTK's bit-preserving storescp, through a TCP proxy that counts what goes to it; and
// through the middleman to Orthanc, with a sender that goes in the middle of its data set.
import { expect } from 'chai';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ReceivedInstance } from '../src/dicom/c-store.js';
import { splitPart10 } from '../src/dicom/part10.js';
import { ARRIVING_WRITE_BLOCK } from '../src/dicom/dimse.js';
import { AssociationPool } from '../src/scu/pool.js';
import type { PacsTarget } from '../src/scu/store.js';
import { generateOne } from '../tools/synth/generate.js';
import { startOrthanc, type OrthancProcess } from '../tools/devstack/orthanc.js';
import { DevOrthanc } from '../tools/devstack/orthanc-rest.js';
import { startAssociationProxy, type AssociationProxy } from './support/association-proxy.js';
import { startCapture, type Capture } from './support/capture.js';
import { storescu } from './support/dcmtk.js';
import { startTestMiddleman, type TestMiddleman } from './support/middleman.js';
import { waitUntilSettled } from './support/pipeline.js';
import { freePorts } from './support/ports.js';

/**
 * A generated instance's data set in a spool file, and the same bytes cut into `fragment`-byte pieces as the SCP
 * receives them, the first the short one (so the last, the one held back, is a whole `fragment`).
 */
function arriving(dir: string, part10: Buffer, fragment: number): { inst: ReceivedInstance; fragments: Buffer[] } {
  const p = splitPart10(part10);
  const spoolPath = path.join(dir, `${p.sopInstanceUid}.ds`);
  writeFileSync(spoolPath, p.dataset);
  const fragments: Buffer[] = [];
  for (let end = p.dataset.length; end > 0; end -= fragment) fragments.unshift(p.dataset.subarray(Math.max(0, end - fragment), end));
  return {
    inst: { sopClassUid: p.sopClassUid, sopInstanceUid: p.sopInstanceUid, transferSyntaxUid: p.transferSyntaxUid, callingAet: 'MODALITY', spoolPath, bytes: p.dataset.length },
    fragments,
  };
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('cut-through forwarding, against DCMTK storescp', function () {
  this.timeout(120_000);
  let dir: string;
  let capture: Capture;
  let proxy: AssociationProxy;
  let pool: AssociationPool;
  const target = (port: number, aet: string): PacsTarget => ({ host: '127.0.0.1', port, aet, callingAet: 'DPHIANT', connectTimeoutMs: 5000, noProgressTimeoutMs: 10_000, storeTimeoutMs: 30_000 });
  // storescp -B writes a data set to its file as it arrives, and removes the file when the association is aborted
  const stored = () => readdirSync(path.join(dir, 'capture')).length;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'dphiant-cut-'));
    capture = await startCapture(path.join(dir, 'capture'), 'CAPTURE', { maxPdu: 65536 });
    proxy = await startAssociationProxy({ port: capture.port });
    pool = new AssociationPool(target(proxy.port, capture.aet), { maxAssociations: 2, idleTimeoutMs: 60_000 });
  });
  afterEach(async () => {
    await pool.close();
    await proxy.close();
    await capture.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends the fragments while they arrive, the last only at commit(); the PACS stores it byte for byte', async () => {
    const { inst, fragments } = arriving(dir, generateOne({ rows: 1024, cols: 1024, modalities: ['CT'] }), 16_384);
    const ct = pool.begin(inst);
    const half = Math.floor(fragments.length / 2);
    for (const f of fragments.slice(0, half)) ct.push(f);
    /** What is sure to be on its way once `pushed` bytes were: all but the held fragment and a block. */
    const sure = (pushed: number) => pushed - 16_384 - ARRIVING_WRITE_BLOCK;
    const halfBytes = fragments.slice(0, half).reduce((n, f) => n + f.length, 0);
    await until('the first half on its way to the PACS', () => proxy.bytesFromCallers >= sure(halfBytes));
    const beforeRest = proxy.bytesFromCallers;
    for (const f of fragments.slice(half)) ct.push(f);
    await until('all but the held fragment and a block', () => proxy.bytesFromCallers >= sure(inst.bytes));
    await new Promise((r) => setTimeout(r, 300));
    const beforeCommit = proxy.bytesFromCallers;
    const outcome = await ct.commit(inst);
    console.log(`      ${inst.bytes} bytes in ${fragments.length} fragments: ${beforeRest} bytes at the PACS with half pushed, ${beforeCommit} before commit(), ${proxy.bytesFromCallers} after; outcome ${JSON.stringify(outcome)}`);
    expect(outcome).to.deep.equal({ kind: 'answered', status: 0 });
    expect(beforeRest, 'the first half went on before the rest arrived').to.be.at.least(sure(halfBytes));
    // with the association, the command and the PDU headers, all but a 16 KiB fragment is under the data set's size
    expect(beforeCommit, 'the last fragment held back').to.be.lessThan(inst.bytes);
    expect(capture.received(inst.sopInstanceUid).bytes.equals(readFileSync(inst.spoolPath)), 'byte for byte').to.equal(true);
    expect(proxy.associateRequests).to.equal(1);
    expect(proxy.aborts).to.equal(0);
  });

  it('abort() before the last fragment: an A-ABORT, the PACS stores nothing, the next instance goes on a fresh association', async () => {
    const first = arriving(dir, generateOne({ rows: 1024, cols: 1024, modalities: ['CT'], instanceIndex: 1 }), 16_384);
    const ct = pool.begin(first.inst);
    const half = Math.floor(first.fragments.length / 2);
    for (const f of first.fragments.slice(0, half)) ct.push(f);
    await until('the first half on its way', () => proxy.bytesFromCallers >= half * 16_384 - 16_384 - ARRIVING_WRITE_BLOCK);
    for (const f of first.fragments.slice(half)) ct.push(f);
    await until('the rest on its way', () => proxy.bytesFromCallers >= first.inst.bytes - 16_384 - ARRIVING_WRITE_BLOCK);
    const atAbort = proxy.bytesFromCallers;
    ct.abort();
    await until('the A-ABORT', () => proxy.aborts === 1);
    const second = arriving(dir, generateOne({ rows: 256, cols: 256, modalities: ['CT'], instanceIndex: 2 }), 16_384);
    const next = pool.begin(second.inst);
    for (const f of second.fragments) next.push(f);
    const outcome = await next.commit(second.inst);
    await new Promise((r) => setTimeout(r, 300));
    console.log(`      aborted with ${atAbort} bytes sent for a data set of ${first.inst.bytes}: A-ABORT ${proxy.aborts}, A-ASSOCIATE-RQ ${proxy.associateRequests}; the PACS holds ${stored()} file(s); next outcome ${JSON.stringify(outcome)}`);
    expect(outcome).to.deep.equal({ kind: 'answered', status: 0 });
    expect(stored(), 'only the second').to.equal(1);
    expect(() => capture.received(first.inst.sopInstanceUid)).to.throw(/no instance/);
    expect(capture.received(second.inst.sopInstanceUid).bytes.equals(readFileSync(second.inst.spoolPath))).to.equal(true);
    expect(proxy.associateRequests).to.equal(2);
  });

  it('more than the socket takes at once (8 MiB pushed in one go): the rest goes from the spool at commit(), byte for byte', async () => {
    const { inst, fragments } = arriving(dir, generateOne({ rows: 2048, cols: 2048, modalities: ['CT'], instanceIndex: 3 }), 65_536);
    const ct = pool.begin(inst);
    const firstBlock = Math.ceil(ARRIVING_WRITE_BLOCK / 65_536) + 2;
    for (const f of fragments.slice(0, firstBlock)) ct.push(f);
    await until('the first block sent', () => proxy.bytesFromCallers > ARRIVING_WRITE_BLOCK);
    await new Promise((r) => setTimeout(r, 200));
    const first = proxy.bytesFromCallers;
    for (const f of fragments.slice(firstBlock)) ct.push(f);
    const beforeCommit = proxy.bytesFromCallers;
    const outcome = await ct.commit(inst);
    console.log(`      ${inst.bytes} bytes: ${first} at the PACS with the first block pushed, ${beforeCommit} once the rest was pushed at once, before commit(); outcome ${JSON.stringify(outcome)}`);
    expect(outcome).to.deep.equal({ kind: 'answered', status: 0 });
    expect(capture.received(inst.sopInstanceUid).bytes.equals(readFileSync(inst.spoolPath)), 'byte for byte').to.equal(true);
    expect(proxy.aborts).to.equal(0);
  });

  it('every fragment pushed before any association is open (12 MiB): sent from the spool at commit(), byte for byte', async () => {
    const { inst, fragments } = arriving(dir, generateOne({ rows: 2048, cols: 3072, modalities: ['CT'], instanceIndex: 4 }), 65_536);
    const ct = pool.begin(inst);
    for (const f of fragments) ct.push(f); // synchronously: the association cannot be open yet
    const outcome = await ct.commit(inst);
    expect(outcome).to.deep.equal({ kind: 'answered', status: 0 });
    expect(capture.received(inst.sopInstanceUid).bytes.equals(readFileSync(inst.spoolPath)), 'byte for byte').to.equal(true);
  });

  it('the association is cut while the data set arrives: commit() sends it again from the spool on a fresh one, success', async () => {
    const { inst, fragments } = arriving(dir, generateOne({ rows: 1024, cols: 1024, modalities: ['CT'], instanceIndex: 5 }), 16_384);
    const ct = pool.begin(inst);
    const half = Math.floor(fragments.length / 2);
    for (const f of fragments.slice(0, half)) ct.push(f);
    await until('the first block on its way', () => proxy.bytesFromCallers >= ARRIVING_WRITE_BLOCK);
    expect(proxy.cutOnNextSend()).to.equal(1);
    for (const f of fragments.slice(half)) ct.push(f);
    await until('the cut', () => proxy.cut === 1);
    const outcome = await ct.commit(inst);
    console.log(`      cut after half of ${inst.bytes} bytes: outcome ${JSON.stringify(outcome)}, A-ASSOCIATE-RQ ${proxy.associateRequests}`);
    expect(outcome.kind).to.equal('answered');
    expect(outcome.kind === 'answered' && outcome.status).to.equal(0);
    expect(capture.received(inst.sopInstanceUid).bytes.equals(readFileSync(inst.spoolPath)), 'byte for byte').to.equal(true);
    expect(proxy.associateRequests).to.equal(2);
  });
});

describe('cut-through forwarding: a sender that goes while its data set arrives, through the middleman to Orthanc', function () {
  this.timeout(120_000);
  let work: string;
  let pacs: OrthancProcess;
  let proxy: AssociationProxy;
  let mm: TestMiddleman;
  let modality: AssociationPool;
  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-cut-mm-'));
    const [http, dicom] = (await freePorts(2)) as [number, number];
    pacs = await startOrthanc({ role: 'pacs', workDir: path.join(work, 'pacs'), httpPort: http, dicomPort: dicom, middleman: { aet: 'DPHIANT', host: '127.0.0.1', port: 1 } });
    proxy = await startAssociationProxy({ port: pacs.dicomPort });
    mm = await startTestMiddleman({ DPHIANT_PACS_PORT: String(proxy.port), DPHIANT_PACS_URL: pacs.httpUrl });
    // the modality: DPHIANT's own SCU, which can stop in the middle of a data set
    modality = new AssociationPool({ host: '127.0.0.1', port: mm.port, aet: 'DPHIANT', callingAet: 'MODALITY', connectTimeoutMs: 5000, noProgressTimeoutMs: 30_000, storeTimeoutMs: 60_000 }, { maxAssociations: 1, idleTimeoutMs: 0 });
  });
  after(async () => {
    await modality?.close();
    await mm?.close();
    await proxy?.close();
    await pacs?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('the middleman aborts its C-STORE to the PACS: the PACS keeps nothing, the journal records nothing, the next instance is de-identified', async () => {
    const { inst, fragments } = arriving(work, generateOne({ rows: 1024, cols: 1024, modalities: ['CT'], instanceIndex: 7 }), 16_384);
    const sending = modality.begin(inst);
    for (const f of fragments.slice(0, Math.floor(fragments.length / 2))) sending.push(f);
    // the middleman passes it on while it arrives: half of a 2 MB data set is more than one write block
    await until('the middleman forwarding the first half', () => proxy.bytesFromCallers > ARRIVING_WRITE_BLOCK);
    const forwarded = proxy.bytesFromCallers;
    sending.abort(); // the modality's A-ABORT, mid data set
    await until("the middleman's A-ABORT to the PACS", () => proxy.aborts === 1);
    const held = await new DevOrthanc({ url: pacs.httpUrl, username: 'demo', password: 'demo' }).statistics();
    const jobsAfterAbort = Object.values(mm.journal.counts()).reduce((a, b) => a + b, 0);
    const next = path.join(work, 'next.dcm');
    writeFileSync(next, generateOne({ rows: 64, cols: 64, modalities: ['CT'], instanceIndex: 8 }));
    const r = await storescu([next], { port: mm.port, callingAet: 'MODALITY', calledAet: 'DPHIANT' });
    await waitUntilSettled(mm.journal, 60_000);
    const counts = mm.journal.counts();
    console.log(`      ${forwarded} bytes forwarded of a ${inst.bytes}-byte data set when its sender aborted; A-ABORT to the PACS ${proxy.aborts}; PACS instances then ${held.CountInstances}, jobs ${jobsAfterAbort}; next instance: storescu exit ${r.code}, journal ${JSON.stringify(counts)}`);
    expect(held.CountInstances, 'the PACS keeps nothing of the aborted one').to.equal(0);
    expect(jobsAfterAbort, 'nothing journalled for a data set that never arrived whole').to.equal(0);
    expect(r.code).to.equal(0);
    expect(counts.DONE).to.equal(1);
    expect((await new DevOrthanc({ url: pacs.httpUrl, username: 'demo', password: 'demo' }).statistics()).CountInstances).to.equal(1);
  });
});
