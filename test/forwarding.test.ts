// End to end against real Orthanc servers and DCMTK: what a modality sends arrives in the PACS byte for byte.
// "What it sends" is recorded by a bit-preserving capture that receives the same instances from the same sender
// (see support/capture.ts for why the sender's own file is not the reference).
import { expect } from 'chai';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { splitPart10 } from '../src/dicom/part10.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { generateStudies } from '../tools/synth/generate.js';
import { startCapture, type Capture } from './support/capture.js';
import { echoscu, run, storescu } from './support/dcmtk.js';
import { datasetBytes, datasetOf, sharedDicomFiles } from './support/files.js';
import { startStack, type TestStack } from './support/stack.js';
import { makeVariants } from './support/variants.js';

describe('forwarding: modality → middleman → PACS on real Orthanc servers', function () {
  this.timeout(300_000);
  let stack: TestStack;
  let capture: Capture;

  before(async () => {
    capture = await startCapture(path.join(process.env.TMPDIR ?? '/tmp', `dphiant-capture-${process.pid}`));
    // forwarding only (pipeline off): the raw copies stay in the PACS to be compared
    stack = await startStack({ modality: true, modalityPeers: { capture: { AET: capture.aet, Host: '127.0.0.1', Port: capture.port } }, env: { DPHIANT_PIPELINE_ENABLED: 'false' } });
  });
  after(async () => {
    await stack?.stop();
    await capture?.stop();
  });

  /** The PACS holds each instance with the data set bytes and transfer syntax the sender put on the wire. */
  async function expectInPacsAsSent(sopInstanceUids: string[]): Promise<void> {
    for (const uid of sopInstanceUids) {
      const sent = capture.received(uid);
      const instance = (await stack.pacsRest.lookup(uid)).find((r) => r.Type === 'Instance');
      expect(instance, `${uid} is in the PACS`).to.exist;
      const stored = datasetBytes(await stack.pacsRest.instanceFile(instance!.ID));
      expect(stored.ts, `${uid}: transfer syntax`).to.equal(sent.ts);
      expect(stored.bytes.length, `${uid}: data set length`).to.equal(sent.bytes.length);
      expect(stored.bytes.equals(sent.bytes), `${uid}: data set bytes identical`).to.equal(true);
    }
  }

  async function viaModality(files: string[]): Promise<string[]> {
    const ids: string[] = [];
    const uids: string[] = [];
    for (const f of files) {
      const id = (await stack.modalityRest!.upload(readFileSync(f))).ID;
      ids.push(id);
      // the data set's own UID: some real files carry another one in their file meta
      uids.push(String((await stack.modalityRest!.instanceTags(id)).SOPInstanceUID));
    }
    expect((await stack.modalityRest!.storeToModality('capture', ids)).FailedInstancesCount).to.equal(0);
    expect((await stack.modalityRest!.storeToModality('middleman', ids)).FailedInstancesCount).to.equal(0);
    return uids;
  }

  async function viaStorescu(files: string[], transferSyntax?: string): Promise<string[]> {
    const toCapture = await storescu(files, { port: capture.port, calledAet: capture.aet, transferSyntax });
    expect(toCapture.code, toCapture.stderr).to.equal(0);
    const toMiddleman = await storescu(files, { port: stack.mm.port, transferSyntax });
    expect(toMiddleman.code, toMiddleman.stdout + toMiddleman.stderr).to.equal(0);
    return files.map((f) => datasetOf(f).sopInstanceUid);
  }

  it('answers C-ECHO from echoscu', async () => {
    const r = await echoscu({ port: stack.mm.port });
    expect(r.code, r.stderr).to.equal(0);
  });

  it('forwards what the modality sends through /modalities/middleman/store, byte for byte', async () => {
    const manifest = await generateStudies({ outDir: path.join(stack.work, 'synth-modality'), patients: 4, studiesPerPatient: 1, seriesPerStudy: 2, instancesPerSeries: 3, rows: 64, cols: 64, seed: 7 });
    const files = manifest.instances.map((i) => i.path);
    const before = (await stack.pacsRest.statistics()).CountInstances;
    const uids = await viaModality(files);
    expect((await stack.pacsRest.statistics()).CountInstances - before, 'instances added to the PACS').to.equal(files.length);
    await expectInPacsAsSent(uids);
  });

  it('forwards what storescu sends, byte for byte, and journals every instance IN_PACS', async () => {
    const manifest = await generateStudies({ outDir: path.join(stack.work, 'synth-storescu'), patients: 2, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 5, rows: 64, cols: 64, seed: 8 });
    const files = manifest.instances.map((i) => i.path);
    const inPacsBefore = stack.mm.journal.counts().IN_PACS;
    const before = (await stack.pacsRest.statistics()).CountInstances;
    const uids = await viaStorescu(files);
    expect((await stack.pacsRest.statistics()).CountInstances - before).to.equal(files.length);
    expect(stack.mm.journal.counts().IN_PACS - inPacsBefore).to.equal(files.length);
    await expectInPacsAsSent(uids);
  });

  describe('every transfer syntax the SCP accepts passes through as sent (synthetic files made with DCMTK)', () => {
    let variants: Record<string, string> = {};
    before(async () => {
      const dir = path.join(stack.work, 'variants');
      mkdirSync(dir, { recursive: true });
      variants = await makeVariants(dir);
      // the variants are copies of one instance: give each its own SOP Instance UID so the PACS keeps them all
      for (const file of Object.values(variants)) {
        const r = await run('dcmodify', ['-nb', '-gin', file]);
        expect(r.code, r.stderr).to.equal(0);
      }
    });
    const expected = [
      TS.ImplicitVRLittleEndian, TS.ExplicitVRLittleEndian, TS.ExplicitVRBigEndian, TS.DeflatedExplicitVRLittleEndian,
      TS.JPEGBaseline, TS.JPEGExtended, TS.JPEGLosslessSV1, TS.JPEGLSLossless, TS.JPEGLSNearLossless, TS.RLELossless,
    ];
    for (const ts of expected) {
      it(`storescu → middleman → PACS keeps ${ts}`, async () => {
        const file = variants[ts];
        expect(file, `a variant in ${ts}`).to.be.a('string');
        expect(splitPart10(readFileSync(file!)).transferSyntaxUid).to.equal(ts);
        const uids = await viaStorescu([file!], ts);
        expect(capture.received(uids[0]!).ts, 'sent in its own transfer syntax').to.equal(ts);
        await expectInPacsAsSent(uids);
      });
    }
  });

  describe('every file of ../shared/data/dicom passes through unchanged, in its own transfer syntax', () => {
    const files = sharedDicomFiles();
    if (files.length === 0) it.skip('../shared/data/dicom is absent in this clone');
    for (const f of files) {
      it(`${path.basename(f)}, sent by the modality`, async () => {
        const uids = await viaModality([f]);
        expect(capture.received(uids[0]!).ts, 'sent in its own transfer syntax').to.equal(splitPart10(readFileSync(f)).transferSyntaxUid);
        await expectInPacsAsSent(uids);
      });
    }
  });
});
