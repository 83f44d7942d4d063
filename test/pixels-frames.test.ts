// Pixel frames for burned-in text: decode, blank boxes, write back losslessly. Synthetic data sets are made with
// our writer and dcmjs-codecs encoders; the real sample files in ../shared/data/dicom are used when present.
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { TS } from '../src/dicom/transfer-syntax.js';
import { parseDataset, parseFile, type ParsedDataset } from '../src/dicom/walker.js';
import { encodeDataset, encodeElementChunks, type Element } from '../src/dicom/writer.js';
import { Context, NativeCodecs, initCodecs } from '../src/anonymize/pixels/codecs.js';
import { canClean, cleanPixelData, decodeFrames, imageGeometry, toGrey, LOSSLESS_OUTPUT_SYNTAX, type DecodedFrames } from '../src/anonymize/pixels/frames.js';
import { PixelRiskError, type Box, type CleanedPixels } from '../src/anonymize/pixels/types.js';

const PIXEL_DATA = 0x7fe00010;
const DATA_DIR = path.resolve('../shared/data/dicom');

interface Shape {
  rows: number;
  cols: number;
  frames: number;
  spp: 1 | 3;
  ba: 8 | 16;
  bs?: number;
  pr?: 0 | 1;
  planar?: 0 | 1;
  photometric?: string;
}

/** Deterministic samples, little endian, interleaved; signed values sign-extended to 16 bits. */
function samples(s: Shape, frame: number): Uint8Array {
  const bs = s.bs ?? s.ba;
  const n = s.rows * s.cols * s.spp;
  const out = new Uint8Array(n * (s.ba / 8));
  const view = new DataView(out.buffer);
  for (let i = 0; i < n; i++) {
    let v = ((i * 2654435761 + frame * 40503) >>> 7) & ((1 << bs) - 1);
    if (v === 0) v = 1; // no zero outside boxes, so a blanked pixel is told from a kept one
    if (s.ba === 16) {
      if (s.pr === 1 && v >= 1 << (bs - 1)) v -= 1 << bs;
      view.setInt16(2 * i, v, true);
    } else out[i] = v;
  }
  return out;
}

function interleavedToPlanar(buf: Uint8Array, s: Shape): Uint8Array {
  const n = s.rows * s.cols;
  const out = new Uint8Array(buf.length);
  for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) out[c * n + p] = buf[3 * p + c]!;
  return out;
}

function header(s: Shape): Element[] {
  return [
    { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' },
    { tag: 0x00080018, vr: 'UI', value: '1.2.3.4.5' },
    { tag: 0x00280002, vr: 'US', value: s.spp },
    { tag: 0x00280004, vr: 'CS', value: s.photometric ?? (s.spp === 3 ? 'RGB' : 'MONOCHROME2') },
    ...(s.spp === 3 ? [{ tag: 0x00280006, vr: 'US', value: s.planar ?? 0 }] : []),
    ...(s.frames > 1 ? [{ tag: 0x00280008, vr: 'IS', value: s.frames }] : []),
    { tag: 0x00280010, vr: 'US', value: s.rows },
    { tag: 0x00280011, vr: 'US', value: s.cols },
    { tag: 0x00280100, vr: 'US', value: s.ba },
    { tag: 0x00280101, vr: 'US', value: s.bs ?? s.ba },
    { tag: 0x00280102, vr: 'US', value: (s.bs ?? s.ba) - 1 },
    { tag: 0x00280103, vr: 'US', value: s.pr ?? 0 },
  ];
}

function nativeDataset(s: Shape, ts: string): { ds: ParsedDataset; frames: Uint8Array[] } {
  const frames = Array.from({ length: s.frames }, (_, f) => samples(s, f));
  const stored = frames.map((f) => (s.spp === 3 && s.planar === 1 ? interleavedToPlanar(f, s) : f));
  const bytes = encodeDataset([...header(s), { tag: PIXEL_DATA, vr: s.ba === 16 ? 'OW' : 'OB', value: Buffer.concat(stored) }], ts);
  return { ds: parseDataset(bytes, ts), frames };
}

function codecContext(s: Shape, buf: Uint8Array, encoded: boolean, photometric?: string) {
  return new Context({
    width: s.cols, height: s.rows, bitsAllocated: s.ba, bitsStored: s.bs ?? s.ba, samplesPerPixel: s.spp,
    pixelRepresentation: s.pr ?? 0, planarConfiguration: 0, photometricInterpretation: photometric ?? (s.spp === 3 ? 'RGB' : 'MONOCHROME2'),
    ...(encoded ? { encodedBuffer: buf } : { decodedBuffer: buf }),
  });
}

/** One frame encoded in a transfer syntax with the dcmjs-codecs encoders (lossy ones at their defaults). */
function encodeFrame(ts: string, s: Shape, frame: Uint8Array): Uint8Array {
  const ctx = codecContext(s, frame, false);
  const out = (() => {
    switch (ts) {
      case TS.RLELossless: return NativeCodecs.encodeRle(ctx);
      case TS.JPEGLossless: return NativeCodecs.encodeJpeg(ctx, { lossy: false, predictor: 6 });
      case TS.JPEGLosslessSV1: return NativeCodecs.encodeJpeg(ctx, { lossy: false, predictor: 1 });
      case TS.JPEGBaseline: case TS.JPEGExtended: return NativeCodecs.encodeJpeg(ctx, { lossy: true, quality: 80 });
      case TS.JPEGLSLossless: return NativeCodecs.encodeJpegLs(ctx, { lossy: false });
      case TS.JPEGLSNearLossless: return NativeCodecs.encodeJpegLs(ctx, { lossy: true, allowedLossyError: 3 });
      case TS.JPEG2000Lossless: return NativeCodecs.encodeJpeg2000(ctx, { lossy: false });
      case TS.JPEG2000: return NativeCodecs.encodeJpeg2000(ctx, { lossy: true, rate: 10 });
      default: throw new Error(ts);
    }
  })();
  const b = out.getEncodedBuffer()!;
  return b.length % 2 ? Buffer.concat([b, new Uint8Array(1)]) : b;
}

function encapsulatedDataset(s: Shape, ts: string, opts: { bot?: boolean; split?: number } = {}): { ds: ParsedDataset; frames: Uint8Array[]; streams: Uint8Array[] } {
  const frames = Array.from({ length: s.frames }, (_, f) => samples(s, f));
  const streams = frames.map((f) => encodeFrame(ts, s, f));
  // split: each frame's stream cut into this many fragments (even lengths)
  const fragments = streams.flatMap((st) => {
    const k = opts.split ?? 1;
    const step = Math.ceil(st.length / k / 2) * 2;
    return Array.from({ length: k }, (_, i) => st.subarray(i * step, Math.min(st.length, (i + 1) * step))).filter((x) => x.length > 0);
  });
  let offsetTable: Uint8Array | undefined;
  if (opts.bot) {
    offsetTable = new Uint8Array(4 * s.frames);
    let at = 0;
    const k = opts.split ?? 1;
    fragments.forEach((fr, i) => {
      if (i % k === 0) new DataView(offsetTable!.buffer).setUint32(4 * (i / k), at, true);
      at += 8 + fr.length;
    });
  }
  const photometric = s.photometric;
  const bytes = encodeDataset([...header({ ...s, photometric }), { tag: PIXEL_DATA, vr: 'OB', value: { offsetTable, fragments } }], ts);
  return { ds: parseDataset(bytes, ts), frames, streams };
}

/** The data set with the cleaned Pixel Data and changed attributes in place, parsed in the output syntax. */
function rebuild(ds: ParsedDataset, c: CleanedPixels): ParsedDataset {
  const chunks: Uint8Array[] = [];
  const enc = ds.elements[0]!.encoding;
  const extra = [...c.attributes].sort((a, b) => a.tag - b.tag);
  for (const el of ds.elements) {
    while (extra.length && extra[0]!.tag < el.tag) chunks.push(...encodeElementChunks([extra.shift()!], enc));
    if (extra.length && extra[0]!.tag === el.tag) {
      chunks.push(...encodeElementChunks([extra.shift()!], enc));
      continue;
    }
    if (el.tag === PIXEL_DATA) chunks.push(...c.pixelData);
    else chunks.push(ds.buffer.subarray(el.start, el.end));
  }
  for (const a of extra) chunks.push(...encodeElementChunks([a], enc));
  // the walker inflated a deflated data set: the rebuilt bytes are plain explicit VR LE
  const ts = c.transferSyntaxUid === TS.DeflatedExplicitVRLittleEndian ? TS.ExplicitVRLittleEndian : c.transferSyntaxUid;
  return parseDataset(Buffer.concat(chunks), ts);
}

/** The frame with the boxes (clipped) set to 0, computed independently of the module: pixel by pixel. */
function blanked(frame: Uint8Array, rows: number, cols: number, spp: number, ba: number, boxes: Box[]): Uint8Array {
  const out = Uint8Array.from(frame);
  const bps = ba / 8;
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < cols; x++) {
      if (!boxes.some((b) => x >= b.x && x < b.x + b.w && y >= b.y && y < b.y + b.h)) continue;
      for (let k = 0; k < spp * bps; k++) out[(y * cols + x) * spp * bps + k] = 0;
    }
  }
  return out;
}

function fragmentsOf(ds: ParsedDataset): Buffer[] {
  const el = ds.elements.find((e) => e.tag === PIXEL_DATA)!;
  return el.fragments!.map((f) => ds.buffer.subarray(f.start, f.end));
}

function expectSame(actual: Uint8Array, expected: Uint8Array, what: string): void {
  expect(actual.length, `${what}: length`).to.equal(expected.length);
  let diff = 0;
  for (let i = 0; i < expected.length; i++) if (actual[i] !== expected[i]) diff++;
  expect(diff, `${what}: bytes differing`).to.equal(0);
}

const name = (ts: string): string => Object.entries(TS).find(([, v]) => v === ts)?.[0] ?? ts;

describe('pixel frames: decode, blank, re-encode losslessly', function () {
  this.timeout(120000);
  before(async () => {
    await initCodecs();
  });

  describe('canClean', () => {
    it('is true for the native and the handled compressed syntaxes, false for MPEG-2, HTJ2K and unknown ones', () => {
      for (const ts of Object.values(TS)) expect(canClean(ts), name(ts)).to.equal(true);
      expect(canClean('1.2.840.10008.1.2.4.100')).to.equal(false);
      expect(canClean('1.2.840.10008.1.2.4.201')).to.equal(false);
      expect(canClean('1.2.840.10008.1.2.4.110')).to.equal(false);
      expect(canClean('1.2.3')).to.equal(false);
    });

    it('HTJ2K and JPEG XL do round-trip losslessly in dcmjs-codecs (excluded only because the SCP does not accept them)', () => {
      const s: Shape = { rows: 33, cols: 41, frames: 1, spp: 1, ba: 16, bs: 12 };
      const src = samples(s, 0);
      const pairs = [
        [NativeCodecs.encodeHtJpeg2000, NativeCodecs.decodeHtJpeg2000],
        [NativeCodecs.encodeJpegXl, NativeCodecs.decodeJpegXl],
      ] as const;
      for (const [enc, dec] of pairs) {
        const stream = enc.call(NativeCodecs, codecContext(s, src, false), { lossy: false }).getEncodedBuffer()!;
        expectSame(dec.call(NativeCodecs, codecContext(s, stream, true)).getDecodedBuffer()!, src, 'round trip');
      }
    });
  });

  describe('imageGeometry refuses what it cannot handle', () => {
    const refuse = (elements: Element[], ts: string, message: RegExp): void => {
      const ds = parseDataset(encodeDataset(elements, ts), ts);
      expect(() => imageGeometry(ds)).to.throw(PixelRiskError, message);
    };
    const s: Shape = { rows: 4, cols: 4, frames: 1, spp: 1, ba: 8 };
    it('no pixel data, float pixel data, bits allocated 12, short pixel data, unknown syntax', () => {
      refuse(header(s), TS.ExplicitVRLittleEndian, /no pixel data/);
      refuse([...header(s), { tag: 0x7fe00008, vr: 'OF', value: new Uint8Array(64) }], TS.ExplicitVRLittleEndian, /float pixel data/);
      refuse([...header(s).filter((e) => e.tag !== 0x00280100), { tag: 0x00280100, vr: 'US', value: 12 }, { tag: PIXEL_DATA, vr: 'OW', value: new Uint8Array(32) }], TS.ExplicitVRLittleEndian, /bits allocated 12/);
      refuse([...header(s), { tag: PIXEL_DATA, vr: 'OB', value: new Uint8Array(10) }], TS.ExplicitVRLittleEndian, /shorter/);
      const ds = nativeDataset(s, TS.ExplicitVRLittleEndian).ds;
      expect(() => imageGeometry({ ...ds, transferSyntaxUid: '1.2.840.10008.1.2.4.100' })).to.throw(PixelRiskError, /no codec/);
    });
  });

  describe('native syntaxes: only the bytes of blanked pixels change', () => {
    const shapes: [string, Shape][] = [
      ['8-bit grey, 1 frame', { rows: 20, cols: 31, frames: 1, spp: 1, ba: 8 }],
      ['16-bit grey 12 stored, 3 frames', { rows: 17, cols: 23, frames: 3, spp: 1, ba: 16, bs: 12 }],
      ['16-bit signed grey, 3 frames', { rows: 17, cols: 23, frames: 3, spp: 1, ba: 16, pr: 1 }],
      ['RGB 8-bit interleaved', { rows: 15, cols: 19, frames: 2, spp: 3, ba: 8, planar: 0 }],
      ['RGB 8-bit planar', { rows: 15, cols: 19, frames: 2, spp: 3, ba: 8, planar: 1 }],
    ];
    const syntaxes = [TS.ImplicitVRLittleEndian, TS.ExplicitVRLittleEndian, TS.ExplicitVRBigEndian, TS.DeflatedExplicitVRLittleEndian];
    for (const ts of syntaxes) {
      for (const [label, s] of shapes) {
        it(`${name(ts)}: ${label}`, () => {
          const { ds, frames } = nativeDataset(s, ts);
          const boxes: Box[][] = [[{ x: 2, y: 3, w: 5, h: 4 }, { x: s.cols - 3, y: s.rows - 2, w: 10, h: 10 }], [], [{ x: 0, y: 0, w: 1, h: 1 }]];
          const c = cleanPixelData(ds, boxes);
          expect(c.transferSyntaxUid).to.equal(ts);
          expect(c.attributes).to.deep.equal([]);
          expect(c.boxes).to.equal(s.frames === 1 ? 2 : s.frames === 2 ? 2 : 3);
          const el = ds.elements.find((e) => e.tag === PIXEL_DATA)!;
          expectSame(c.pixelData[0]!, ds.buffer.subarray(el.start, el.valueStart), 'header');
          // expected value: the stored bytes with the boxes' pixels zeroed, computed per pixel in the stored layout
          const clippedBoxes = boxes.map((bs) => bs.map((b) => ({ ...b })));
          const expected = Buffer.concat(
            frames.map((f, i) => {
              const bl = blanked(f, s.rows, s.cols, s.spp, s.ba, clippedBoxes[i] ?? []);
              const stored = s.spp === 3 && s.planar === 1 ? interleavedToPlanar(bl, s) : bl;
              return ts === TS.ExplicitVRBigEndian && s.ba === 16 ? Buffer.from(stored).swap16() : stored;
            }),
          );
          expectSame(c.pixelData[1]!, expected, 'value');
          // and decoding the rebuilt data set gives the blanked samples
          const out = decodeFrames(rebuild(ds, c));
          out.frames.forEach((f, i) => expectSame(f, blanked(frames[i]!, s.rows, s.cols, s.spp, s.ba, boxes[i] ?? []), `frame ${i}`));
        });
      }
    }
  });

  describe('lossless compressed syntaxes: re-encoded in the same syntax, unboxed frames untouched', () => {
    const lossless = [TS.RLELossless, TS.JPEGLossless, TS.JPEGLosslessSV1, TS.JPEGLSLossless, TS.JPEG2000Lossless];
    const shapes: [string, Shape][] = [
      ['8-bit grey, 1 frame', { rows: 24, cols: 30, frames: 1, spp: 1, ba: 8 }],
      ['16-bit grey 12 stored, 3 frames', { rows: 21, cols: 26, frames: 3, spp: 1, ba: 16, bs: 12 }],
      ['16-bit signed grey, 3 frames', { rows: 21, cols: 26, frames: 3, spp: 1, ba: 16, pr: 1 }],
      ['RGB 8-bit, 3 frames', { rows: 18, cols: 22, frames: 3, spp: 3, ba: 8 }],
    ];
    for (const ts of lossless) {
      for (const [label, s] of shapes) {
        for (const bot of [false, true]) {
          it(`${name(ts)}: ${label}${bot ? ', with basic offset table' : ''}`, () => {
            const { ds, frames, streams } = encapsulatedDataset(s, ts, { bot });
            const decoded = decodeFrames(ds);
            decoded.frames.forEach((f, i) => expectSame(f, frames[i]!, `decoded input frame ${i}`));
            const boxes: Box[][] = s.frames === 1 ? [[{ x: 3, y: 2, w: 7, h: 5 }]] : [[{ x: 3, y: 2, w: 7, h: 5 }], [], [{ x: -4, y: 10, w: 9, h: 40 }]];
            const c = cleanPixelData(ds, boxes, decoded);
            expect(c.transferSyntaxUid).to.equal(ts);
            expect(c.attributes).to.deep.equal([]);
            expect(c.boxes).to.equal(s.frames === 1 ? 1 : 2);
            const out = rebuild(ds, c);
            const frags = fragmentsOf(out);
            expect(frags.length - 1, 'one fragment per frame').to.equal(s.frames);
            expect(frags[0]!.length, 'offset table').to.equal(bot ? 4 * s.frames : 0);
            if (s.frames > 1) expectSame(frags[2]!, streams[1]!, 'unboxed frame fragment');
            decodeFrames(out).frames.forEach((f, i) => expectSame(f, blanked(frames[i]!, s.rows, s.cols, s.spp, s.ba, boxes[i] ?? []), `frame ${i}`));
          });
        }
      }
    }

    it('frames spread over several fragments are split with the offset table or at JPEG start markers; RLE without one is refused', () => {
      const s: Shape = { rows: 16, cols: 20, frames: 3, spp: 1, ba: 16, bs: 12 };
      for (const [ts, bot] of [[TS.JPEGLSLossless, true], [TS.JPEGLSLossless, false], [TS.JPEG2000Lossless, false], [TS.RLELossless, true]] as const) {
        const { ds, frames } = encapsulatedDataset(s, ts, { bot, split: 2 });
        expect(fragmentsOf(ds).length - 1).to.equal(6);
        const c = cleanPixelData(ds, [[], [{ x: 1, y: 1, w: 3, h: 3 }], []]);
        decodeFrames(rebuild(ds, c)).frames.forEach((f, i) => expectSame(f, blanked(frames[i]!, s.rows, s.cols, 1, 16, i === 1 ? [{ x: 1, y: 1, w: 3, h: 3 }] : []), `${name(ts)} frame ${i}`));
      }
      const { ds } = encapsulatedDataset(s, TS.RLELossless, { split: 2 });
      expect(() => decodeFrames(ds)).to.throw(PixelRiskError, /frames cannot be split/);
    });
  });

  describe('lossy syntaxes: decoded, blanked and written in the documented lossless syntax', () => {
    const cases: [string, Shape][] = [
      [TS.JPEGBaseline, { rows: 32, cols: 40, frames: 2, spp: 3, ba: 8, photometric: 'YBR_FULL' }],
      [TS.JPEGBaseline, { rows: 32, cols: 40, frames: 1, spp: 1, ba: 8 }],
      [TS.JPEGExtended, { rows: 32, cols: 40, frames: 1, spp: 1, ba: 8 }],
      [TS.JPEGLSNearLossless, { rows: 30, cols: 33, frames: 3, spp: 1, ba: 16, bs: 12 }],
      [TS.JPEGLSNearLossless, { rows: 30, cols: 33, frames: 1, spp: 3, ba: 8 }],
      [TS.JPEG2000, { rows: 30, cols: 33, frames: 2, spp: 1, ba: 16, pr: 1 }],
      [TS.JPEG2000, { rows: 30, cols: 33, frames: 1, spp: 3, ba: 8 }],
    ];
    for (const [ts, s] of cases) {
      it(`${name(ts)} ${s.spp === 3 ? 'colour' : `${s.ba}-bit grey`} ×${s.frames} → ${name(LOSSLESS_OUTPUT_SYNTAX)}`, () => {
        const { ds } = encapsulatedDataset(s, ts);
        const decoded = decodeFrames(ds);
        const boxes: Box[][] = [[{ x: 5, y: 6, w: 12, h: 7 }]];
        const c = cleanPixelData(ds, boxes, decoded);
        expect(c.transferSyntaxUid).to.equal(LOSSLESS_OUTPUT_SYNTAX);
        expect(c.boxes).to.equal(1);
        if (ts === TS.JPEGBaseline && s.spp === 3) expect(c.attributes).to.deep.include({ tag: 0x00280004, vr: 'CS', value: 'RGB' });
        else expect(c.attributes.map((a) => a.tag)).to.not.include(0x00280004);
        const out = rebuild(ds, c);
        expect(fragmentsOf(out).length - 1).to.equal(s.frames);
        decodeFrames(out).frames.forEach((f, i) => expectSame(f, blanked(decoded.frames[i]!, s.rows, s.cols, s.spp, s.ba, boxes[i] ?? []), `frame ${i}`));
      });
    }
  });

  describe('boxes and grey images', () => {
    it('boxes beyond the frame are clipped; boxes wholly outside are not counted', () => {
      const s: Shape = { rows: 10, cols: 12, frames: 1, spp: 1, ba: 16 };
      const { ds, frames } = nativeDataset(s, TS.ExplicitVRLittleEndian);
      const c = cleanPixelData(ds, [[{ x: 9, y: -3, w: 100, h: 6 }, { x: 50, y: 2, w: 3, h: 3 }, { x: 2, y: 2, w: 0, h: 5 }]]);
      expect(c.boxes).to.equal(1);
      expectSame(c.pixelData[1]!, blanked(frames[0]!, 10, 12, 1, 16, [{ x: 9, y: 0, w: 3, h: 3 }]), 'value');
    });

    it('toGrey stretches 16-bit (signed) min–max and inverts MONOCHROME1', () => {
      const g = { rows: 1, columns: 4, samplesPerPixel: 1, bitsAllocated: 16, bitsStored: 16, pixelRepresentation: 1, planarConfiguration: 0, photometric: 'MONOCHROME2', frames: 1 };
      const frame = new Uint8Array(8);
      const v = new DataView(frame.buffer);
      [-1000, 0, 1000, 3000].forEach((x, i) => v.setInt16(2 * i, x, true));
      const d: DecodedFrames = { geometry: g, frames: [frame] };
      expect(Array.from(toGrey(d, 0).pixels)).to.deep.equal([0, 64, 128, 255]);
      expect(Array.from(toGrey({ ...d, geometry: { ...g, photometric: 'MONOCHROME1' } }, 0).pixels)).to.deep.equal([255, 191, 127, 0]);
      const grey8: DecodedFrames = { geometry: { ...g, bitsAllocated: 8, bitsStored: 8, pixelRepresentation: 0, photometric: 'MONOCHROME1' }, frames: [Uint8Array.of(0, 10, 200, 255)] };
      expect(Array.from(toGrey(grey8, 0).pixels)).to.deep.equal([255, 245, 55, 0]);
      const rgb: DecodedFrames = { geometry: { ...g, columns: 2, samplesPerPixel: 3, bitsAllocated: 8, bitsStored: 8, pixelRepresentation: 0, photometric: 'RGB' }, frames: [Uint8Array.of(255, 255, 255, 255, 0, 0)] };
      expect(Array.from(toGrey(rgb, 0).pixels)).to.deep.equal([255, 76]);
    });
  });

  describe('real files (../shared/data/dicom)', function () {
    const files: [string, number][] = [['JPEG2000.dcm', 0], ['OBXXXX1A_rle.dcm', 0], ['sm_image_jpegls.dcm', 1], ['examples_ybr_color.dcm', 2], ['CT_small.dcm', 0]];
    before(function () {
      if (!existsSync(DATA_DIR)) {
        console.log(`real-file tests skipped: ${DATA_DIR} is absent`);
        this.skip();
      }
    });
    for (const [file, frame] of files) {
      it(`${file}: one box on frame ${frame}, the rest identical after decoding the output`, () => {
        const ds = parseFile(readFileSync(path.join(DATA_DIR, file))).dataset;
        const decoded = decodeFrames(ds);
        const g = decoded.geometry;
        const box: Box = { x: Math.floor(g.columns / 4), y: Math.floor(g.rows / 4), w: Math.ceil(g.columns / 3), h: Math.ceil(g.rows / 5) };
        const boxes: Box[][] = [];
        boxes[frame] = [box];
        const c = cleanPixelData(ds, boxes, decoded);
        const out = rebuild(ds, c);
        const after = decodeFrames(out);
        expect(after.frames.length).to.equal(g.frames);
        after.frames.forEach((f, i) => expectSame(f, blanked(decoded.frames[i]!, g.rows, g.columns, g.samplesPerPixel, g.bitsAllocated, i === frame ? [box] : []), `frame ${i}`));
        if (ds.transferSyntaxUid === c.transferSyntaxUid && g.frames > 1) {
          const before = fragmentsOf(ds);
          const other = frame === 0 ? 1 : 0;
          if (before.length - 1 === g.frames) expectSame(fragmentsOf(out)[other + 1]!, before[other + 1]!, 'unboxed frame fragment');
        }
        const grey = toGrey(decoded, frame);
        console.log(`      ${file}: ${name(ds.transferSyntaxUid)} → ${name(c.transferSyntaxUid)}, ${g.frames} frame(s) ${g.columns}×${g.rows} ${g.photometric}, attributes changed ${c.attributes.length}, grey range ${grey.pixels.reduce((a, b) => Math.min(a, b), 255)}–${grey.pixels.reduce((a, b) => Math.max(a, b), 0)}`);
        if (g.photometric === 'PALETTE COLOR') expect(decoded.paletteGrey, 'palette LUT read').to.not.equal(undefined);
      });
    }
  });

  describe('cost per frame (printed, not asserted)', () => {
    const measure = (label: string, s: Shape, ts: string): void => {
      const { ds } = encapsulatedDataset(s, ts);
      const runs = 5;
      const t0 = performance.now();
      for (let i = 0; i < runs; i++) cleanPixelData(ds, [[{ x: 10, y: 10, w: 200, h: 30 }]], decodeFrames(ds));
      console.log(`      ${label}: decode + clean ${((performance.now() - t0) / runs).toFixed(1)} ms per frame`);
    };
    it('640×480 RGB JPEG baseline and 512×512 16-bit RLE', () => {
      measure('640×480 RGB JPEG baseline → JPEG lossless SV1', { rows: 480, cols: 640, frames: 1, spp: 3, ba: 8, photometric: 'YBR_FULL' }, TS.JPEGBaseline);
      measure('512×512 16-bit RLE', { rows: 512, cols: 512, frames: 1, spp: 1, ba: 16, bs: 12 }, TS.RLELossless);
    });
  });
});
