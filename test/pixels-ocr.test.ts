// OCR of burned-in text with the real tesseract engine on synthetic US and SC captures whose drawn text is known,
// and the synthetic files themselves (our walker and DCMTK's dcmdump read them in every encoding).
import { expect } from 'chai';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Context, NativeCodecs, initCodecs } from '../src/anonymize/pixels/codecs.js';
import { DEFAULT_OCR, findText, ocrAvailable, type OcrWord } from '../src/anonymize/pixels/ocr.js';
import { PixelRiskError, type Box, type GreyImage } from '../src/anonymize/pixels/types.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { parseFile } from '../src/dicom/walker.js';
import { burnedInFile, type BurnedInEncoding, type BurnedInSpec } from '../tools/synth/burned-in.js';
import { drawText, textSize } from '../tools/synth/font.js';
import { dcmdump } from './support/variants.js';

/** The frames of a burned-in file as grey images (luma for RGB), decoded here: our pixel module is not used. */
function greyFrames(file: Buffer): GreyImage[] {
  const { dataset } = parseFile(file);
  const num = (tag: number): number => {
    const el = dataset.elements.find((e) => e.tag === tag)!;
    const raw = dataset.buffer.subarray(el.valueStart, el.valueEnd);
    return el.vr === 'US' ? raw.readUInt16LE(0) : Number(raw.toString('latin1').trim());
  };
  const rows = num(0x00280010), cols = num(0x00280011), spp = num(0x00280002);
  const frames = dataset.elements.some((e) => e.tag === 0x00280008) ? num(0x00280008) : 1;
  const px = dataset.elements.find((e) => e.tag === 0x7fe00010)!;
  const frameBytes = rows * cols * spp;
  const decoded: Uint8Array[] = [];
  if (px.fragments) {
    for (const frag of px.fragments.slice(1)) { // one fragment per frame after the basic offset table
      const ctx = new Context({
        width: cols, height: rows, bitsAllocated: 8, bitsStored: 8, samplesPerPixel: spp, pixelRepresentation: 0, planarConfiguration: 0,
        photometricInterpretation: spp === 3 ? 'RGB' : 'MONOCHROME2', encodedBuffer: dataset.buffer.subarray(frag.start, frag.end),
      });
      const out = dataset.transferSyntaxUid === TS.RLELossless ? NativeCodecs.decodeRle(ctx) : NativeCodecs.decodeJpeg(ctx);
      decoded.push(out.getDecodedBuffer()!.subarray(0, frameBytes));
    }
  } else {
    for (let f = 0; f < frames; f++) decoded.push(dataset.buffer.subarray(px.valueStart + f * frameBytes, px.valueStart + (f + 1) * frameBytes));
  }
  expect(decoded).to.have.length(frames);
  return decoded.map((d) => {
    const g = new Uint8Array(rows * cols);
    for (let i = 0; i < g.length; i++) g[i] = spp === 1 ? d[i]! : Math.round(0.299 * d[3 * i]! + 0.587 * d[3 * i + 1]! + 0.114 * d[3 * i + 2]!);
    return { width: cols, height: rows, pixels: g };
  });
}

const overlaps = (a: Box, b: Box): boolean => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

/** Share of the drawn box's pixels under some found box of the same frame (what blanking the words would hide). */
function coverage(drawn: { frame: number; box: Box }, words: OcrWord[]): number {
  const mine = words.filter((w) => w.frame === drawn.frame && overlaps(w.box, drawn.box));
  let covered = 0;
  for (let y = drawn.box.y; y < drawn.box.y + drawn.box.h; y++) {
    for (let x = drawn.box.x; x < drawn.box.x + drawn.box.w; x++) {
      if (mine.some((w) => x >= w.box.x && x < w.box.x + w.box.w && y >= w.box.y && y < w.box.y + w.box.h)) covered++;
    }
  }
  return covered / (drawn.box.w * drawn.box.h);
}

const NAMES = ['NG^LI', 'DOE^JOHN', 'KOWALSKI^ANDREAS', 'OBRIEN^MARY', 'LI^WEI', 'SMITH^ANNA^M', 'MULLER^JURGEN', 'GARCIA^SOFIA',
  'NOVAK^JAN', 'ROSSI^MARCO', 'ANDERSEN^HELEN', 'WU^KIM', 'DUBOIS^CLAIRE', 'COSTA^LUCAS', 'BROWN^SAM', 'MARTIN^ELENA'];
const ENCODINGS: BurnedInEncoding[] = ['native', 'rle', 'jpegLossless'];

/** 32 files: US and SC, grey and RGB, 14 and 21 px glyphs, 1 frame (24) or 4 frames (8), all three encodings. */
function recallSet(): BurnedInSpec[] {
  return Array.from({ length: 32 }, (_, i) => ({
    kind: i % 2 ? 'SC' : 'US',
    frames: i % 4 === 3 ? 4 : 1,
    encoding: ENCODINGS[i % 3]!,
    rgb: i % 4 === 0 || i % 8 === 3,
    scale: (i >> 1) % 2 ? 3 : 2,
    patient: {
      name: NAMES[i % NAMES.length]!,
      id: ['MRN', 'P', ''][i % 3]! + String(1_000_000 + i * 7919).slice(0, 5 + (i % 4)),
      birthDate: `${1935 + ((i * 13) % 70)}${String((i % 12) + 1).padStart(2, '0')}${String((i % 27) + 1).padStart(2, '0')}`,
    },
    allowWords: ['5.0 MHZ', 'L', '12 CM'],
    seed: 100 + i,
  }));
}

describe('burned-in text OCR (tesseract)', function () {
  let scratch: string;
  /** An executable shell script standing in for the engine where the real one cannot show the case. */
  const script = (name: string, body: string): string => {
    const file = path.join(scratch, name);
    writeFileSync(file, `#!/bin/sh\n${body}\n`);
    chmodSync(file, 0o755);
    return file;
  };

  before(async function () {
    const engine = await ocrAvailable();
    if (!engine.ok) {
      console.log(`      tesseract is not available here (${engine.reason}): OCR tests skipped (scripts/install-deps.sh installs it)`);
      this.skip();
    }
    console.log(`      tesseract ${engine.version}`);
    await initCodecs();
    scratch = mkdtempSync(path.join(tmpdir(), 'dphiant-ocr-'));
  });
  after(() => { if (scratch) rmSync(scratch, { recursive: true, force: true }); });

  it('finds every drawn patient value (name, ID, birth date) on ≥ 30 US and SC images, on the frame it was drawn on', async function () {
    let drawnValues = 0, found = 0, covered95 = 0, images = 0, ms = 0, wrongFrame = 0;
    let coverSum = 0;
    for (const spec of recallSet()) {
      const { file, drawn } = await burnedInFile(spec);
      const frames = greyFrames(file);
      const started = performance.now();
      const words = await findText(frames);
      ms += performance.now() - started;
      images += frames.length;
      const { name, id, birthDate } = spec.patient;
      for (const d of drawn.filter((x) => [name, id, birthDate].includes(x.text))) {
        drawnValues++;
        if (words.some((w) => w.frame === d.frame && overlaps(w.box, d.box))) found++;
        // a word on another frame at this place would be the mapping gone wrong (the ID moves between frames)
        else if (words.some((w) => w.frame !== d.frame && overlaps(w.box, d.box))) wrongFrame++;
        const c = coverage(d, words);
        coverSum += c;
        if (c >= 0.95) covered95++;
      }
      for (const w of words) {
        expect(w.frame).to.be.within(0, frames.length - 1);
        expect(w.box.x + w.box.w).to.be.at.most(frames[w.frame]!.width);
        expect(w.box.y + w.box.h).to.be.at.most(frames[w.frame]!.height);
      }
    }
    const recall = found / drawnValues;
    console.log(`      ${images} images (640×480): recall ${found}/${drawnValues} = ${recall.toFixed(3)}, drawn boxes ≥95% covered ${covered95}/${drawnValues}, ` +
      `mean coverage ${(coverSum / drawnValues).toFixed(3)}, found only on another frame ${wrongFrame}, ${(ms / images).toFixed(0)} ms per image (one core)`);
    expect(images).to.be.at.least(30);
    expect(wrongFrame).to.equal(0);
    // measured 1.000 recall and 0.98 mean coverage (tesseract 5.3.0): floors with margin
    expect(recall).to.be.at.least(0.95);
    expect(coverSum / drawnValues).to.be.at.least(0.9);
  });

  it('finds text drawn inside the image too (over the US speckle, on the SC panel), and prints what it misses: faint text', async () => {
    const TEXTS = ['NG^LI', 'MRN4471', '19820311', 'DOE^JOHN', 'P889012', 'KOWALSKI^ANDREAS'];
    const lines: string[] = [];
    const rate = async (kind: 'US' | 'SC', ink: number, scale: number): Promise<number> => {
      let hits = 0;
      for (const [i, text] of TEXTS.entries()) {
        const made = await burnedInFile({ kind, frames: 1, encoding: 'native', patient: { name: 'A', id: 'B', birthDate: 'C' }, scale: 2, seed: i });
        const [image] = greyFrames(made.file);
        const at = { x: 200 - i * 5, y: 200 + i * 20, ...textSize(text, scale) };
        drawText(image!, text, at.x, at.y, scale, ink);
        if ((await findText([image!])).some((w) => overlaps(w.box, at))) hits++;
      }
      lines.push(`${kind} ink ${ink} ${7 * scale} px: ${hits}/${TEXTS.length}`);
      return hits / TEXTS.length;
    };
    const inside = [await rate('US', 240, 2), await rate('US', 130, 2), await rate('US', 240, 1), await rate('SC', 120, 2), await rate('SC', 25, 1)];
    // measured 0/6: grey 160 on a ~205 panel, both above mid-grey, vanishes in the engine's global threshold
    await rate('SC', 160, 2);
    console.log(`      text inside the image (US speckle fan, SC panel): ${lines.join(', ')} (the last is a known miss: faint text)`);
    // measured 6/6 for each with the image and its negative stacked; over the speckle the image alone gave 1/8–3/8
    for (const r of inside) expect(r).to.be.at.least(0.8);
  });

  it('puts each word on its own frame: text drawn only on the middle of three frames is found there alone', async () => {
    const blank = (): GreyImage => ({ width: 320, height: 120, pixels: new Uint8Array(320 * 120).fill(20) });
    const frames = [blank(), blank(), blank()];
    drawText(frames[1]!, 'DOE^JOHN', 30, 50, 3, 235);
    const words = await findText(frames);
    expect(words.length).to.be.greaterThan(0);
    expect(words.every((w) => w.frame === 1)).to.equal(true);
    expect(words.some((w) => overlaps(w.box, { x: 30, y: 50, w: 141, h: 21 }))).to.equal(true);
  });

  it('reads more frames than one page holds (the engine stops at 32767 rows) in the same call, each word on its frame', async () => {
    // 34 frames and their negatives are 34 × 2 × 504 rows: two TIFF pages
    const frames = Array.from({ length: 34 }, (): GreyImage => ({ width: 640, height: 480, pixels: new Uint8Array(640 * 480).fill(20) }));
    drawText(frames[2]!, 'MRN1234567', 40, 30, 3, 235);
    drawText(frames[33]!, 'DOE^JOHN', 300, 400, 3, 235);
    const started = performance.now();
    const words = await findText(frames);
    console.log(`      34 frames on two pages: ${words.length} words in ${(performance.now() - started).toFixed(0)} ms`);
    expect([...new Set(words.map((w) => w.frame))].sort((a, b) => a - b)).to.deep.equal([2, 33]);
    expect(words.some((w) => w.frame === 2 && overlaps(w.box, { x: 40, y: 30, w: 177, h: 21 }))).to.equal(true);
    expect(words.some((w) => w.frame === 33 && overlaps(w.box, { x: 300, y: 400, w: 141, h: 21 }))).to.equal(true);
  });

  it('splits a box that crosses a frame boundary into both frames, in each frame\'s pixels', async () => {
    // the real engine never reads across the blank band, so a stand-in prints one word over it. The sheet of two
    // 100-row frames ('both': each image, then its negative, 24 rows of band between) has frame 0's negative at
    // rows 124..223 and frame 1 at rows 248..347: a word on rows 210..259 is both frames'.
    const header = 'level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext';
    const fake = script('fake-tesseract', `cat >/dev/null\nprintf '${header}\\n5\\t1\\t1\\t1\\t1\\t1\\t10\\t210\\t50\\t50\\t91.5\\tWORD\\n'`);
    const img = (): GreyImage => ({ width: 200, height: 100, pixels: new Uint8Array(200 * 100) });
    const words = await findText([img(), img()], { ...DEFAULT_OCR, command: fake });
    expect(words.map((w) => [w.frame, w.box])).to.deep.equal([[0, { x: 10, y: 86, w: 50, h: 14 }], [1, { x: 10, y: 0, w: 50, h: 12 }]]);
    expect(words[0]!.confidence).to.equal(91.5);
  });

  it('finds no words on a blank image, and says how long one call takes', async () => {
    const started = performance.now();
    const words = await findText([{ width: 640, height: 480, pixels: new Uint8Array(640 * 480) }]);
    console.log(`      blank 640×480: ${words.length} words in ${(performance.now() - started).toFixed(0)} ms (mostly the engine's start-up)`);
    expect(words).to.deep.equal([]);
  });

  it('throws PixelRiskError (ocr) when the command fails, is missing or writes no TSV, with no recognised text in the message', async () => {
    const image = [{ width: 64, height: 64, pixels: new Uint8Array(64 * 64) }];
    const failing = await findText(image, { ...DEFAULT_OCR, command: '/bin/false' }).catch((e: unknown) => e);
    expect(failing).to.be.instanceOf(PixelRiskError);
    expect((failing as PixelRiskError).step).to.equal('ocr');
    expect((failing as Error).message).to.match(/exited with status 1/);
    const missing = await findText(image, { ...DEFAULT_OCR, command: path.join(scratch, 'no-such-engine') }).catch((e: unknown) => e);
    expect(missing).to.be.instanceOf(PixelRiskError);
    expect((missing as Error).message).to.match(/not installed/);
    const garbage = await findText(image, { ...DEFAULT_OCR, command: script('garbage', 'cat >/dev/null; echo "DOE^JOHN was here"') }).catch((e: unknown) => e);
    expect(garbage).to.be.instanceOf(PixelRiskError);
    expect((garbage as Error).message).not.to.contain('DOE');
    expect(await ocrAvailable({ ...DEFAULT_OCR, command: path.join(scratch, 'no-such-engine') })).to.include({ ok: false });
  });

  it('kills the engine when the call times out', async () => {
    const pidFile = path.join(scratch, 'pid');
    const slow = script('slow', `echo $$ > ${pidFile}\nexec sleep 60`);
    const started = performance.now();
    const err = await findText([{ width: 64, height: 64, pixels: new Uint8Array(64 * 64) }], { command: slow, timeoutMs: 500 }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(PixelRiskError);
    expect((err as Error).message).to.match(/did not finish within 500 ms/);
    expect(performance.now() - started).to.be.below(5_000);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(() => process.kill(pid, 0)).to.throw(/ESRCH/);
    // the real engine too: four frames cannot be read in 50 ms
    const frames = greyFrames((await burnedInFile(recallSet()[3]!)).file);
    const real = await findText(frames, { ...DEFAULT_OCR, timeoutMs: 50 }).catch((e: unknown) => e);
    expect(real).to.be.instanceOf(PixelRiskError);
  });
});

describe('synthetic burned-in files', () => {
  let scratch: string;
  before(() => { scratch = mkdtempSync(path.join(tmpdir(), 'dphiant-burned-in-')); });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  for (const encoding of ENCODINGS) {
    it(`${encoding}: our walker and dcmdump read US and SC files (1 and 4 frames, grey and RGB) with the header values and the same pixels`, async () => {
      await initCodecs();
      const patient = { name: 'NG^LI', id: 'MRN7654321', birthDate: '19790203' };
      for (const [kind, frames, rgb] of [['US', 1, false], ['US', 4, true], ['SC', 1, false], ['SC', 4, false]] as const) {
        const spec: BurnedInSpec = { kind, frames, encoding, rgb, patient, allowWords: ['12 CM'], burnedInAnnotation: 'YES', seed: 7 };
        const made = await burnedInFile(spec);
        const { meta, dataset } = parseFile(made.file);
        expect(dataset.transferSyntaxUid).to.equal(made.transferSyntaxUid);
        expect(meta.elements.some((e) => e.tag === 0x00020010)).to.equal(true);
        const file = path.join(scratch, `${encoding}-${kind}-${frames}.dcm`);
        writeFileSync(file, made.file);
        const dump = await dcmdump(file);
        expect(dump.code, dump.stderr).to.equal(0);
        expect(dump.stderr).to.equal('');
        expect(dump.stdout).to.contain('[NG^LI]').and.contain('[MRN7654321]').and.contain('[19790203]');
        expect(dump.stdout).to.contain('(0028,0301) CS [YES]').and.contain('[DPHIANT SYNTH]');
        expect(dump.stdout).to.contain(kind === 'US' ? '[SynthSound 1]' : '[SynthCapture]');
        if (frames > 1) expect(dump.stdout).to.match(/\(0028,0008\) IS \[4\]/);
        // lossless: the decoded frames equal the native file's
        const native = greyFrames((await burnedInFile({ ...spec, encoding: 'native' })).file);
        const mine = greyFrames(made.file);
        expect(mine.map((f) => Buffer.from(f.pixels).equals(Buffer.from(native[mine.indexOf(f)]!.pixels)))).to.deep.equal(Array(frames).fill(true));
        expect(made.drawn.filter((d) => d.text === patient.id)).to.have.length(frames);
      }
      expect(existsSync(scratch)).to.equal(true);
    });
  }

  it('is deterministic for a seed and gives SOP classes by kind and frame count', async () => {
    const patient = { name: 'DOE^JOHN', id: 'MRN1234567', birthDate: '19650412' };
    const a = await burnedInFile({ kind: 'US', frames: 2, encoding: 'native', patient, seed: 3 });
    const b = await burnedInFile({ kind: 'US', frames: 2, encoding: 'native', patient, seed: 3 });
    expect(a.file.equals(b.file)).to.equal(true);
    expect(a.sopClassUid).to.equal('1.2.840.10008.5.1.4.1.1.3.1');
    expect((await burnedInFile({ kind: 'US', frames: 1, encoding: 'native', patient })).sopClassUid).to.equal('1.2.840.10008.5.1.4.1.1.6.1');
    expect((await burnedInFile({ kind: 'SC', frames: 1, encoding: 'native', patient })).sopClassUid).to.equal('1.2.840.10008.5.1.4.1.1.7');
    expect((await burnedInFile({ kind: 'SC', frames: 3, encoding: 'native', patient })).sopClassUid).to.equal('1.2.840.10008.5.1.4.1.1.7.2');
    // the ID moves between frames, the name does not
    const ids = a.drawn.filter((d) => d.text === patient.id).map((d) => d.box);
    const names = a.drawn.filter((d) => d.text === patient.name).map((d) => d.box);
    expect(names[0]).to.deep.equal(names[1]);
    expect(ids[0]).not.to.deep.equal(ids[1]);
  });
});
