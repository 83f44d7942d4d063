// Burned-in text end to end: synthetic ultrasound and secondary captures with a patient's name, ID and birth date
// drawn into their pixels, through `dphiant anonymize` and through the pipeline into a real Orthanc PACS. OCR of
// what comes out reads none of the drawn values, only pixels where text was drawn changed, an image that cannot be
// cleaned is held back, and a CT without text keeps its pixel data byte for byte.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadBurnedInSite, meets } from '../src/anonymize/pixels/site.js';
import { ocrAvailable } from '../src/anonymize/pixels/ocr.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { rawValue, topLevelString } from '../src/dicom/values.js';
import { parseFile, type ParsedDataset } from '../src/dicom/walker.js';
import { part10, type Element } from '../src/dicom/writer.js';
import { generateStudies } from '../tools/synth/generate.js';
import { changedPixels, decodeFile, grown, methodCodes, secretsRead, writeCorpus, type CorpusFile } from './support/burned-in.js';
import { dphiant } from './support/cli.js';
import { storescu } from './support/dcmtk.js';
import { waitUntilSettled } from './support/pipeline.js';
import { startStack, type TestStack } from './support/stack.js';

const PIXEL_DATA = 0x7fe00010;

/** Where cleaning may change pixels: around every drawn text, and the masks the site file applies to the input. */
function allowedRegions(c: CorpusFile): (frame: number) => ReturnType<typeof grown>[] {
  const input = parseFile(readFileSync(c.path)).dataset;
  const masks = loadBurnedInSite().masks.filter((m) => meets(input, m.when, topLevelString(input, 0x00080016))).flatMap((m) => m.regions);
  return (f) => [...masks, ...c.drawn.filter((d) => d.frame === f).map((d) => grown(d.box))];
}

/**
 * Every check of one cleaned output against its input; returns what OCR read of the input (the recall line) and the
 * pixels blanked away from drawn text (OCR's false positives: a blanked patch of image, not a leak).
 */
async function expectClean(c: CorpusFile, output: Buffer): Promise<{ read: number; falseBlank: number; total: number; harmless: number; kept: number }> {
  const out = parseFile(output).dataset;
  expect(topLevelString(out, 0x00280301).trim(), `${c.name}: Burned In Annotation`).to.equal('NO');
  expect(methodCodes(out), `${c.name}: Deidentification Method Code Sequence`).to.include('113101');
  expect(out.transferSyntaxUid, `${c.name}: a lossless input keeps its transfer syntax`).to.equal(parseFile(readFileSync(c.path)).dataset.transferSyntaxUid);
  expect((await secretsRead(output, c.secrets)).map((s) => s.text), `${c.name}: drawn values OCR still reads`).to.deep.equal([]);
  const changed = changedPixels(await decodeFile(readFileSync(c.path)), await decodeFile(output), allowedRegions(c));
  expect(changed.notBlank, `${c.name}: changed pixels that are not blanked`).to.equal(0);
  expect(changed.inside, `${c.name}: pixels blanked`).to.be.greaterThan(0);
  expect(changed.outside / changed.total, `${c.name}: share of pixels blanked away from the drawn text`).to.be.below(0.01);
  // the allow-list at work: depth, frequency and side markers OCR read right stay (one it misread is blanked: safe)
  const before = await decodeFile(readFileSync(c.path));
  const after = await decodeFile(output);
  const harmless = c.drawn.filter((d) => !c.secrets.includes(d));
  const kept = harmless.filter((d) => changedPixels(before, after, (f) => (f === d.frame ? [d.box] : [])).inside === 0).length;
  return { read: (await secretsRead(readFileSync(c.path), c.secrets)).length, falseBlank: changed.outside, total: changed.total, harmless: harmless.length, kept };
}

/** A Secondary Capture holding an encapsulated PDF (Encapsulated PDF Storage), as a scanner sends one. */
function encapsulatedPdf(): Buffer {
  const els: Element[] = [
    { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.104.1' },
    { tag: 0x00080018, vr: 'UI', value: '2.25.4401' },
    { tag: 0x00080060, vr: 'CS', value: 'DOC' },
    { tag: 0x00100010, vr: 'PN', value: 'DOE^JOHN' },
    { tag: 0x00100020, vr: 'LO', value: 'MRN7654321' },
    { tag: 0x0020000d, vr: 'UI', value: '2.25.4402' },
    { tag: 0x0020000e, vr: 'UI', value: '2.25.4403' },
    { tag: 0x00420011, vr: 'OB', value: Buffer.from('%PDF-1.4\n% DOE JOHN MRN7654321\n%%EOF\n') },
    { tag: 0x00420012, vr: 'LO', value: 'application/pdf' },
  ];
  return part10(els, TS.ExplicitVRLittleEndian);
}

describe('burned-in text: OCR finds it, cleaning removes it', function () {
  this.timeout(600_000);
  let work: string;
  let corpus: CorpusFile[];
  let ct: string;

  before(async function () {
    const engine = await ocrAvailable();
    if (!engine.ok) {
      console.log(`      skipped: tesseract does not run here (${engine.reason}); scripts/install-deps.sh installs tesseract-ocr`);
      this.skip();
    }
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-burned-in-'));
    mkdirSync(path.join(work, 'in'));
    corpus = await writeCorpus(path.join(work, 'in'));
    const m = await generateStudies({ outDir: path.join(work, 'ct'), patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 1, rows: 64, cols: 64, seed: 7 });
    ct = path.join(work, 'in', 'ct.dcm');
    writeFileSync(ct, readFileSync(m.instances[0]!.path));
  });

  it('`dphiant anonymize`: every at-risk image comes out cleaned, a CT without text byte for byte', async () => {
    const out = path.join(work, 'out');
    const r = await dphiant(['anonymize', path.join(work, 'in'), '--out', out, '--jobs', '2'], { DPHIANT_DATA_DIR: path.join(work, 'data') });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.match(new RegExp(`files ${corpus.length + 1}, de-identified ${corpus.length + 1}, rejected 0`));
    let readInInput = 0;
    let secrets = 0;
    let falseBlank = 0;
    let total = 0;
    let harmless = 0;
    let kept = 0;
    for (const c of corpus) {
      const r = await expectClean(c, readFileSync(path.join(out, 'in', c.name)));
      readInInput += r.read;
      falseBlank += r.falseBlank;
      total += r.total;
      harmless += r.harmless;
      kept += r.kept;
      secrets += c.secrets.length;
    }
    // the same OCR reads the drawn values in the inputs: the check above could fail
    console.log(`      ${corpus.length} at-risk images, ${secrets} drawn values; OCR read ${readInInput} of them in the inputs and 0 in the outputs; ${((100 * falseBlank) / total).toFixed(3)}% of pixels blanked away from drawn text; ${kept} of ${harmless} allow-listed words left as they were`);
    expect(kept / harmless, 'allow-listed words left').to.be.greaterThan(0.5);
    expect(readInInput / secrets).to.be.greaterThan(0.8);
    const before = parseFile(readFileSync(ct)).dataset;
    const after = parseFile(readFileSync(path.join(out, 'in', 'ct.dcm'))).dataset;
    const pixels = (ds: ParsedDataset) => rawValue(ds, ds.elements.find((e) => e.tag === PIXEL_DATA)!);
    expect(Buffer.compare(pixels(before), pixels(after)), 'CT pixel data').to.equal(0);
    expect(methodCodes(after)).to.not.include('113101');
  });

  it('`dphiant anonymize`: JPEG baseline and JPEG-LS near-lossless come out lossless, no second lossy generation', async function () {
    const native = corpus.find((c) => c.spec.kind === 'US' && c.spec.encoding === 'native' && c.spec.frames === 1)!;
    const dir = path.join(work, 'lossy');
    mkdirSync(dir, { recursive: true });
    const baseline = path.join(dir, 'baseline.dcm');
    const nearLossless = path.join(dir, 'near-lossless.dcm');
    execFileSync('dcmcjpeg', ['+eb', native.path, baseline]);
    execFileSync('dcmcjpls', ['+en', '+md', '2', native.path, nearLossless]);
    const out = path.join(work, 'lossy-out');
    const r = await dphiant(['anonymize', dir, '--out', out], { DPHIANT_DATA_DIR: path.join(work, 'data') });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    for (const name of ['baseline.dcm', 'near-lossless.dcm']) {
      const output = readFileSync(path.join(out, 'lossy', name));
      const ds = parseFile(output).dataset;
      expect([TS.JPEGLosslessSV1, TS.JPEGLSLossless, TS.ExplicitVRLittleEndian, TS.RLELossless], `${name}: a lossless syntax`).to.include(ds.transferSyntaxUid);
      expect(topLevelString(ds, 0x00282110).trim(), `${name}: Lossy Image Compression stays true`).to.equal('01');
      expect((await secretsRead(output, native.secrets)).map((s) => s.text), name).to.deep.equal([]);
      // outside the text the lossless output equals the lossy input's own decoding
      const c = { ...native, path: path.join(dir, name) };
      const changed = changedPixels(await decodeFile(readFileSync(c.path)), await decodeFile(output), allowedRegions(c));
      expect(changed.notBlank, `${name}: changed pixels that are not blanked`).to.equal(0);
      expect(changed.outside / changed.total, name).to.be.below(0.01);
    }
  });

  it('`dphiant anonymize`: holds back what it cannot clean — OCR off without a mask, and an encapsulated PDF', async () => {
    const dir = path.join(work, 'held');
    mkdirSync(dir, { recursive: true });
    const sc = corpus.find((c) => c.spec.kind === 'SC')!;
    const us = corpus.find((c) => c.spec.kind === 'US' && c.spec.encoding === 'rle')!;
    writeFileSync(path.join(dir, 'sc.dcm'), readFileSync(sc.path));
    writeFileSync(path.join(dir, 'us.dcm'), readFileSync(us.path));
    writeFileSync(path.join(dir, 'report.dcm'), encapsulatedPdf());
    const out = path.join(work, 'held-out');
    const r = await dphiant(['anonymize', dir, '--out', out], { DPHIANT_DATA_DIR: path.join(work, 'data'), DPHIANT_ANONYMIZE_PIXELS_OCR: 'off' });
    expect(r.code).to.equal(1);
    expect(r.stdout).to.match(/de-identified 1, rejected 2/);
    expect(r.stdout).to.match(/rejected .*sc\.dcm: burned-in text \(mask\): no mask matches and OCR is off/);
    expect(r.stdout).to.match(/rejected .*report\.dcm: burned-in text \(document\)/);
    for (const secret of ['DOE', 'JOHN', 'MRN7654321', 'NG^LI', '4455667']) expect(r.stdout + r.stderr, 'no value in the report').to.not.include(secret);
    // the SynthSound mask covers the band where the ultrasound's demographics are drawn: cleaned without OCR
    const output = readFileSync(path.join(out, 'held', 'us.dcm'));
    expect(methodCodes(parseFile(output).dataset)).to.include('113101');
    expect((await secretsRead(output, us.secrets)).map((s) => s.text)).to.deep.equal([]);
  });
});

describe('burned-in text in the pipeline: what the PACS holds', function () {
  this.timeout(600_000);
  let work: string;
  let corpus: CorpusFile[];
  let stack: TestStack | undefined;

  before(async function () {
    const engine = await ocrAvailable();
    if (!engine.ok) {
      console.log(`      skipped: tesseract does not run here (${engine.reason}); scripts/install-deps.sh installs tesseract-ocr`);
      this.skip();
    }
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-burned-in-pipeline-'));
    corpus = await writeCorpus(work);
  });
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  /** Sends the files, one storescu per transfer syntax (it proposes exactly the files' syntax). */
  async function send(files: string[], port: number): Promise<void> {
    const bySyntax = new Map<string, string[]>();
    for (const f of files) {
      const ts = parseFile(readFileSync(f)).dataset.transferSyntaxUid;
      bySyntax.set(ts, [...(bySyntax.get(ts) ?? []), f]);
    }
    for (const [ts, group] of bySyntax) {
      const r = await storescu(group, { port, transferSyntax: ts });
      expect(r.code, r.stdout + r.stderr).to.equal(0);
    }
  }

  it('de-identifies every at-risk image before it reaches the archive: OCR of the PACS copies reads none of the drawn values', async () => {
    stack = await startStack({ env: { DPHIANT_PIPELINE_RECONCILE_INTERVAL_MS: '1000' } });
    const pdf = path.join(work, 'report.dcm');
    writeFileSync(pdf, encapsulatedPdf());
    await send([...corpus.map((c) => c.path), pdf], stack.mm.port);
    await waitUntilSettled(stack.mm.journal, 300_000);
    const counts = stack.mm.journal.counts();
    console.log(`      sent ${corpus.length + 1}: DONE ${counts.DONE}, QUARANTINED ${counts.QUARANTINED}`);
    expect(counts.DONE).to.equal(corpus.length);
    expect(counts.QUARANTINED, 'the PDF').to.equal(1);
    expect(stack.mm.journal.byState('QUARANTINED')[0]!.reason).to.match(/^burned-in text \(document\)/);
    expect(stack.mm.journal.byState('QUARANTINED')[0]!.reasonCode).to.equal('pixels');
    const ids = await stack.pacsRest.listInstances({});
    expect(ids, 'one de-identified copy per image, no raw copy').to.have.length(corpus.length);
    // each PACS copy matched to the image it came from, through the journal (keyed hash of the original UID → new UID)
    const journal = stack.mm.journal;
    const newUid = new Map(journal.byState('DONE').map((j) => [j.sopUidHash, j.newSopInstanceUid]));
    let checked = 0;
    for (const c of corpus) {
      const uid = newUid.get(journal.uidHash(c.sopInstanceUid));
      expect(uid, `${c.name} DONE`).to.be.a('string');
      const found = (await stack.pacsRest.lookup(uid!)).find((r) => r.Type === 'Instance');
      expect(found, `${c.name} in the PACS`).to.exist;
      const file = await stack.pacsRest.instanceFile(found!.ID);
      const ds = parseFile(file).dataset;
      expect(topLevelString(ds, 0x00120062).trim()).to.equal('YES');
      expect(methodCodes(ds), c.name).to.include('113101');
      expect((await secretsRead(file, c.secrets)).map((s) => s.text), `${c.name} as the PACS holds it`).to.deep.equal([]);
      checked++;
    }
    console.log(`      OCR of ${checked} PACS instances: none of the drawn values`);
  });

  it('quarantines an at-risk image it cannot clean (OCR off, no mask), and passes one a mask covers', async () => {
    stack = await startStack({ env: { DPHIANT_PIPELINE_RECONCILE_INTERVAL_MS: '1000', DPHIANT_ANONYMIZE_PIXELS_OCR: 'off' } });
    const sc = corpus.find((c) => c.spec.kind === 'SC')!;
    const us = corpus.find((c) => c.spec.kind === 'US' && c.spec.encoding === 'native')!;
    await send([sc.path, us.path], stack.mm.port);
    await waitUntilSettled(stack.mm.journal, 120_000);
    const counts = stack.mm.journal.counts();
    console.log(`      sent 2: DONE ${counts.DONE}, QUARANTINED ${counts.QUARANTINED}`);
    expect(counts).to.include({ DONE: 1, QUARANTINED: 1 });
    expect(stack.mm.journal.byState('QUARANTINED')[0]!).to.include({ reason: 'burned-in text (mask): no mask matches and OCR is off', reasonCode: 'pixels' });
    const ids = await stack.pacsRest.listInstances({});
    expect(ids).to.have.length(1);
    expect((await secretsRead(await stack.pacsRest.instanceFile(ids[0]!), us.secrets)).map((s) => s.text)).to.deep.equal([]);
  });
});
