// Ingest takes the raw copy's Orthanc ID it computes from the data set (src/pipeline/ingest.ts inspectDataset) without
// asking the PACS: it must be the ID a real Orthanc gives the same instance, for the Patient IDs users have — padded,
// with inner spaces, non-Latin in ISO_IR 100 and in UTF-8, empty. (Should one ever differ, the reconciler adopts the
// uncovered copy: test/reconciler.test.ts.)
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspectDataset } from '../src/pipeline/ingest.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { encodeDataset, part10 } from '../src/dicom/writer.js';
import { startOrthanc, type OrthancProcess } from '../tools/devstack/orthanc.js';
import { DevOrthanc } from '../tools/devstack/orthanc-rest.js';
import { generateElements } from '../tools/synth/generate.js';
import { freePorts } from './support/ports.js';

const CASES: { name: string; patientId: string; charset: 'ISO_IR 100' | 'ISO_IR 192' }[] = [
  { name: 'plain', patientId: 'PAT-0001', charset: 'ISO_IR 100' },
  { name: 'inner spaces', patientId: 'PAT 00 02', charset: 'ISO_IR 100' },
  { name: 'leading space', patientId: ' PAT3', charset: 'ISO_IR 100' },
  { name: 'trailing space (odd length padded)', patientId: 'PAT04 ', charset: 'ISO_IR 100' },
  { name: 'Latin-1', patientId: 'MÜLLER-ÄÖ5', charset: 'ISO_IR 100' },
  { name: 'UTF-8, non-Latin', patientId: '患者6-Ωμ', charset: 'ISO_IR 192' },
  { name: 'empty', patientId: '', charset: 'ISO_IR 100' },
];

describe('raw copy ID computed at ingest = the ID Orthanc gives it', function () {
  this.timeout(120_000);
  let work: string;
  let pacs: OrthancProcess;
  let rest: DevOrthanc;

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-rawid-'));
    const [http, dicom] = await freePorts(2);
    pacs = await startOrthanc({ role: 'pacs', workDir: path.join(work, 'pacs'), httpPort: http, dicomPort: dicom, middleman: { aet: 'DPHIANT', host: '127.0.0.1', port: 1 } });
    rest = new DevOrthanc({ url: pacs.httpUrl, ...pacs.auth });
  });
  after(async () => {
    await pacs?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (const [k, c] of CASES.entries()) {
    it(`Patient ID ${c.name}`, async () => {
      const els = generateElements({ rows: 4, cols: 4, seed: 950 + k, patientIndex: 60 + k });
      els.find((e) => e.tag === 0x00100020)!.value = c.patientId;
      els.find((e) => e.tag === 0x00080005)!.value = c.charset;
      const charset = c.charset === 'ISO_IR 192' ? 'utf8' : 'latin1';
      const value = (tag: number) => String(els.find((e) => e.tag === tag)!.value);
      const inst = { sopInstanceUid: value(0x00080018), sopClassUid: value(0x00080016), transferSyntaxUid: TS.ExplicitVRLittleEndian };
      const computed = inspectDataset(encodeDataset(els, TS.ExplicitVRLittleEndian, { charset }), inst as Parameters<typeof inspectDataset>[1]);
      const up = await rest.upload(part10(els, TS.ExplicitVRLittleEndian, { charset }));
      expect(up.Status).to.equal('Success');
      expect(computed).to.deep.equal({ rawId: up.ID });
    });
  }
});
