// `dphiant anonymize` over the real sample files of ../shared/data/dicom (or, in a clone without ../shared, over
// DCMTK copies of a synthetic instance in every transfer syntax) after PHI was planted in each where Table E.1-1
// does not look: unlisted PN, UI, DA and UR attributes, an SR Content Sequence with free text, a sequence written as
// UN (explicit VR files), an issuer sequence. Nothing planted may survive, every file must be de-identified (none
// rejected), and every output must read in dcmdump with its transfer syntax and pixel data unchanged — unless burned-in
// text was found and cleaned (113101), as in the real ultrasound OBXXXX1A_rle.dcm, whose header band holds a date.
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { splitPart10 } from '../src/dicom/part10.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { parseFile } from '../src/dicom/walker.js';
import { topLevelString } from '../src/dicom/values.js';
import { LOSSLESS_OUTPUT_SYNTAX } from '../src/anonymize/pixels/frames.js';
import { pixelsCleaned } from './support/burned-in.js';
import type { Element } from '../src/dicom/writer.js';
import { dphiant } from './support/cli.js';
import { datasetBytes, sharedDicomFiles } from './support/files.js';
import { unSequence, plant } from './support/plant.js';
import { dcmdump, makeVariants } from './support/variants.js';

const PLANTED_UID = '1.2.826.0.1.3680043.2.1125.9.4242';
/** Lossy inputs: cleaned, they are re-encoded once, losslessly. */
const LOSSY = new Set<string>([TS.JPEGBaseline, TS.JPEGExtended, TS.JPEGLSNearLossless, TS.JPEG2000]);
const PLANTED = ['Okafor', 'Chidi', 'Wu^Kai', 'Mercy General', 'mercy-hospital', '555-0199', PLANTED_UID, '20230405', 'Ng^Li'];
const SR_TEXT = 'Ms Ng seen 2023-04-05 by Dr Okafor at Mercy General Hospital; callback 555-0199';

/** What is planted in every file; the UN sequence only where the header has VRs. */
function plantedElements(explicitVR: boolean): Element[] {
  const inner: Element[] = [
    { tag: 0x00081150, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.2' },
    { tag: 0x00081155, vr: 'UI', value: PLANTED_UID },
    { tag: 0x00100010, vr: 'PN', value: 'Ng^Li' },
  ];
  return [
    { tag: 0x00081190, vr: 'UR', value: `https://pacs.mercy-hospital.example.org/wado/${PLANTED_UID}` },
    { tag: 0x00100024, vr: 'SQ', value: [[{ tag: 0x00400032, vr: 'UT', value: 'mercy-hospital.example.org' }, { tag: 0x00400033, vr: 'CS', value: 'DNS' }]] },
    { tag: 0x00140102, vr: 'DA', value: '20230405' },
    { tag: 0x00140104, vr: 'PN', value: 'Wu^Kai' },
    { tag: 0x00200242, vr: 'UI', value: PLANTED_UID },
    explicitVR ? unSequence(0x0008114a, [inner]) : { tag: 0x0008114a, vr: 'SQ', value: [inner] },
    {
      tag: 0x0040a730, vr: 'SQ', value: [[
        { tag: 0x0040a010, vr: 'CS', value: 'CONTAINS' },
        { tag: 0x0040a040, vr: 'CS', value: 'TEXT' },
        { tag: 0x0040a160, vr: 'UT', value: SR_TEXT },
      ], [
        { tag: 0x0040a010, vr: 'CS', value: 'HAS OBS CONTEXT' },
        { tag: 0x0040a040, vr: 'CS', value: 'PNAME' },
        { tag: 0x0040a123, vr: 'PN', value: 'Okafor^Chidi' },
      ]],
    },
  ];
}

function found(file: Buffer): string[] {
  const hay = Buffer.concat([splitPart10(file).meta, datasetBytes(file).bytes]);
  const texts = [hay.toString('latin1').toLowerCase(), hay.toString('utf8').toLowerCase()];
  return PLANTED.filter((p) => texts.some((t) => t.includes(p.toLowerCase())));
}

function pixelElement(file: Buffer): Buffer | null {
  const { dataset } = parseFile(file);
  const el = dataset.elements.find((e) => e.tag === 0x7fe00010);
  return el ? Buffer.from(dataset.buffer.subarray(el.start, el.end)) : null;
}

describe('dphiant anonymize over real files with PHI planted outside Table E.1-1', function () {
  this.timeout(300_000);
  let work: string;
  const inputs: { name: string; file: Buffer }[] = [];

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-planted-'));
    let sources = sharedDicomFiles().map((f) => ({ name: path.basename(f), file: readFileSync(f) }));
    if (sources.length === 0) {
      const variants = await makeVariants(path.join(work, 'variants'));
      sources = Object.entries(variants).map(([name, f]) => ({ name: `${name}.dcm`, file: readFileSync(f) }));
    }
    mkdirSync(path.join(work, 'in'));
    for (const s of sources) {
      const ts = splitPart10(s.file).transferSyntaxUid;
      const planted = plant(s.file, plantedElements(ts !== TS.ImplicitVRLittleEndian));
      writeFileSync(path.join(work, 'in', s.name), planted);
      inputs.push({ name: s.name, file: planted });
    }
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('every planted file holds every planted value and still reads in dcmdump', async () => {
    expect(inputs.length).to.be.at.least(10);
    for (const i of inputs) {
      expect(found(i.file), `${i.name}: planted values in the input`).to.deep.equal(PLANTED);
      const r = await dcmdump(path.join(work, 'in', i.name));
      expect(r.code, `${i.name}: dcmdump of the planted input: ${r.stderr.slice(0, 300)}`).to.equal(0);
    }
  });

  it('de-identifies every file (none rejected), leaves nothing planted, and keeps dcmdump, the transfer syntax and the pixel data', async () => {
    const r = await dphiant(['anonymize', path.join(work, 'in'), '--out', path.join(work, 'out')], { DPHIANT_DATA_DIR: path.join(work, 'data') });
    expect(r.code, `anonymize exit code; stdout: ${r.stdout.slice(-1500)} stderr: ${r.stderr.slice(-800)}`).to.equal(0);
    const outDir = path.join(work, 'out', 'in'); // the mirror layout keeps the input folder's name
    const outputs = readdirSync(outDir).sort();
    expect(outputs).to.deep.equal(inputs.map((i) => i.name).sort());
    const cleaned: string[] = [];
    for (const i of inputs) {
      const outPath = path.join(outDir, i.name);
      const out = readFileSync(outPath);
      expect(found(out), `${i.name}: planted values in the output`).to.deep.equal([]);
      const dump = await dcmdump(outPath);
      expect(dump.code, `${i.name}: dcmdump of the output: ${dump.stderr.slice(0, 300)}`).to.equal(0);
      expect(dump.stderr, `${i.name}: dcmdump warnings`).to.not.match(/error|warn/i);
      const outDs = parseFile(out).dataset;
      if (pixelsCleaned(outDs)) {
        // burned-in text found and blanked: the pixel data changed, losslessly (a lossy input re-encoded once, losslessly)
        cleaned.push(i.name);
        expect(topLevelString(outDs, 0x00280301).trim(), `${i.name}: Burned In Annotation after cleaning`).to.equal('NO');
        const ts = splitPart10(i.file).transferSyntaxUid;
        expect(splitPart10(out).transferSyntaxUid, `${i.name}: transfer syntax`).to.equal(LOSSY.has(ts) ? LOSSLESS_OUTPUT_SYNTAX : ts);
        continue;
      }
      expect(splitPart10(out).transferSyntaxUid, `${i.name}: transfer syntax`).to.equal(splitPart10(i.file).transferSyntaxUid);
      const pixels = pixelElement(i.file);
      if (pixels) expect(pixelElement(out)!.equals(pixels), `${i.name}: pixel data byte for byte`).to.equal(true);
    }
    console.log(`      burned-in text cleaned in ${cleaned.length ? cleaned.join(', ') : 'no file'}; every other pixel data byte for byte`);
  });
});
