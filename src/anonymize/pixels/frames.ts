// Pixel frames for burned-in text cleaning: the Image Pixel attributes, every frame decoded to native samples,
// a grey image for OCR, and the pixel data written back with boxes blanked. Native data is changed in place (only
// the bytes of blanked pixels differ); encapsulated data is decoded, blanked and re-encoded losslessly, in the same
// transfer syntax when it is lossless, else in JPEG Lossless SV1 (a second lossy generation would alter every pixel).
import type { DicomElement, ParsedDataset } from '../../dicom/walker.js';
import { numberValues, rawValue, topLevelString } from '../../dicom/values.js';
import { encodeElementChunks, type Element } from '../../dicom/writer.js';
import { TS } from '../../dicom/transfer-syntax.js';
import { Context, NativeCodecs, codecsReady, type CodecContext } from './codecs.js';
import { PixelRiskError, type Box, type CleanedPixels, type GreyImage, type ImageGeometry } from './types.js';

const PIXEL_DATA = 0x7fe00010;
const FLOAT_PIXEL_DATA = 0x7fe00008;
const DOUBLE_FLOAT_PIXEL_DATA = 0x7fe00009;
const EXTENDED_OFFSET_TABLE = 0x7fe00001;
const EXTENDED_OFFSET_TABLE_LENGTHS = 0x7fe00002;
const SAMPLES_PER_PIXEL = 0x00280002;
const PHOTOMETRIC = 0x00280004;
const PLANAR_CONFIGURATION = 0x00280006;
const NUMBER_OF_FRAMES = 0x00280008;
const ROWS = 0x00280010;
const COLUMNS = 0x00280011;
const BITS_ALLOCATED = 0x00280100;
const BITS_STORED = 0x00280101;
const PIXEL_REPRESENTATION = 0x00280103;
const RED_DESCRIPTOR = 0x00281101;
const RED_DATA = 0x00281201;

/** The lossless syntax lossy inputs are re-encoded in: the most widely decoded one, and libjpeg-turbo writes it
 * for grey 8–16 bits and RGB 8 bits without a colour transform. */
export const LOSSLESS_OUTPUT_SYNTAX = TS.JPEGLosslessSV1;

type Codec = 'Rle' | 'Jpeg' | 'JpegLs' | 'Jpeg2000';
interface Syntax {
  codec: Codec;
  /** The syntax cleaned frames are written in. */
  output: string;
}

const NATIVE = new Set<string>([TS.ImplicitVRLittleEndian, TS.ExplicitVRLittleEndian, TS.ExplicitVRBigEndian, TS.DeflatedExplicitVRLittleEndian]);
// HTJ2K and JPEG XL round-trip losslessly in dcmjs-codecs 0.0.8, but the SCP does not accept them (the walker
// cannot parse them), so they are not listed; MPEG/HEVC video has no decoder here.
const ENCAPSULATED: Record<string, Syntax> = {
  [TS.RLELossless]: { codec: 'Rle', output: TS.RLELossless },
  // process 14 with selection value 1 is a valid .57 stream too, so .57 stays .57
  [TS.JPEGLossless]: { codec: 'Jpeg', output: TS.JPEGLossless },
  [TS.JPEGLosslessSV1]: { codec: 'Jpeg', output: TS.JPEGLosslessSV1 },
  [TS.JPEGLSLossless]: { codec: 'JpegLs', output: TS.JPEGLSLossless },
  [TS.JPEG2000Lossless]: { codec: 'Jpeg2000', output: TS.JPEG2000Lossless },
  [TS.JPEGBaseline]: { codec: 'Jpeg', output: LOSSLESS_OUTPUT_SYNTAX },
  [TS.JPEGExtended]: { codec: 'Jpeg', output: LOSSLESS_OUTPUT_SYNTAX },
  [TS.JPEGLSNearLossless]: { codec: 'JpegLs', output: LOSSLESS_OUTPUT_SYNTAX },
  [TS.JPEG2000]: { codec: 'Jpeg2000', output: LOSSLESS_OUTPUT_SYNTAX },
};

/** Transfer syntaxes whose pixel data this module can decode and write back losslessly. */
export function canClean(transferSyntaxUid: string): boolean {
  return NATIVE.has(transferSyntaxUid) || transferSyntaxUid in ENCAPSULATED;
}

const fail = (message: string): never => {
  throw new PixelRiskError('codec', message);
};

function topLevel(ds: ParsedDataset, tag: number): DicomElement | undefined {
  return ds.elements.find((e) => e.tag === tag);
}

/** A US attribute, also when written as UN (read in the element's byte order). */
function usValue(ds: ParsedDataset, tag: number): number | undefined {
  const el = topLevel(ds, tag);
  if (!el || el.items || el.fragments || el.valueEnd - el.valueStart < 2) return undefined;
  if (el.vr === 'UN' || el.vr === 'OB') return el.encoding.littleEndian ? ds.buffer.readUInt16LE(el.valueStart) : ds.buffer.readUInt16BE(el.valueStart);
  return numberValues(ds, el)[0];
}

function isColour(g: ImageGeometry): boolean {
  return g.samplesPerPixel > 1;
}

/** Image Pixel attributes at top level; throws PixelRiskError('codec', …) for pixel data it cannot handle. */
export function imageGeometry(ds: ParsedDataset): ImageGeometry {
  if (!canClean(ds.transferSyntaxUid)) fail(`no codec for transfer syntax ${ds.transferSyntaxUid}`);
  const pixel = topLevel(ds, PIXEL_DATA);
  if (!pixel) fail(topLevel(ds, FLOAT_PIXEL_DATA) || topLevel(ds, DOUBLE_FLOAT_PIXEL_DATA) ? 'float pixel data' : 'no pixel data');
  const rows = usValue(ds, ROWS) ?? 0;
  const columns = usValue(ds, COLUMNS) ?? 0;
  const samplesPerPixel = usValue(ds, SAMPLES_PER_PIXEL) ?? 1;
  const bitsAllocated = usValue(ds, BITS_ALLOCATED) ?? 0;
  const bitsStored = usValue(ds, BITS_STORED) ?? bitsAllocated;
  const pixelRepresentation = usValue(ds, PIXEL_REPRESENTATION) ?? 0;
  const planarConfiguration = samplesPerPixel > 1 ? (usValue(ds, PLANAR_CONFIGURATION) ?? 0) : 0;
  const photometric = topLevelString(ds, PHOTOMETRIC, []).trim() || (samplesPerPixel === 1 ? 'MONOCHROME2' : 'RGB');
  const framesText = topLevelString(ds, NUMBER_OF_FRAMES, []).trim();
  const frames = framesText === '' ? 1 : Number(framesText);
  if (rows <= 0 || columns <= 0) fail(`image of ${rows}×${columns} pixels`);
  if (!Number.isInteger(frames) || frames < 1) fail('invalid number of frames');
  if (bitsAllocated !== 8 && bitsAllocated !== 16) fail(`bits allocated ${bitsAllocated}`);
  if (bitsStored < 1 || bitsStored > bitsAllocated) fail(`bits stored ${bitsStored} of ${bitsAllocated}`);
  if (samplesPerPixel !== 1 && samplesPerPixel !== 3) fail(`${samplesPerPixel} samples per pixel`);
  if (planarConfiguration !== 0 && planarConfiguration !== 1) fail(`planar configuration ${planarConfiguration}`);
  const g: ImageGeometry = { rows, columns, samplesPerPixel, bitsAllocated, bitsStored, pixelRepresentation, planarConfiguration, photometric, frames };
  if (NATIVE.has(ds.transferSyntaxUid)) {
    // sub-sampled colour has two samples per pixel stored: boxes cannot be mapped onto bytes pixel by pixel
    if (/^YBR_(FULL|PARTIAL)_42/.test(photometric)) fail(`native ${photometric}`);
    if (pixel!.fragments) fail('encapsulated pixel data in a native transfer syntax');
    if (pixel!.valueEnd - pixel!.valueStart < frames * frameBytes(g)) fail(`pixel data shorter than ${frames} frames`);
  } else {
    if (!pixel!.fragments) fail('native pixel data in an encapsulated transfer syntax');
    // the codecs read colour as 8-bit samples, and 8 stored bits in 16 allocated as one byte per sample
    if (isColour(g) && bitsAllocated !== 8) fail(`colour with ${bitsAllocated} bits allocated`);
    if (bitsAllocated === 16 && bitsStored <= 8) fail(`bits stored ${bitsStored} of 16 in compressed data`);
  }
  return g;
}

function frameBytes(g: ImageGeometry): number {
  return g.rows * g.columns * g.samplesPerPixel * (g.bitsAllocated / 8);
}

// ---- frames of encapsulated data ----

function u32le(b: Uint8Array, p: number): number {
  return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;
}

/** Starts of frames (indices into `items`) given byte offsets measured from the first item's header. */
function groupByOffsets(items: { start: number; end: number }[], offsets: number[], frames: number): number[] | undefined {
  if (offsets.length !== frames) return undefined;
  const base = items[0]!.start - 8;
  const starts = offsets.map((o) => items.findIndex((it) => it.start - 8 - base === o));
  return starts.every((s, i) => s >= 0 && (i === 0 ? s === 0 : s > starts[i - 1]!)) ? starts : undefined;
}

/** Where each frame's bytes are: the item indices of its fragments. Throws when the frames cannot be split. */
function frameItems(ds: ParsedDataset, el: DicomElement, g: ImageGeometry, codec: Codec): { start: number; end: number }[][] {
  const items = el.fragments!.slice(1);
  if (items.length === 0) fail('no fragments');
  const frames = g.frames;
  let starts: number[] | undefined;
  if (frames === 1) starts = [0];
  else if (items.length === frames) starts = items.map((_, i) => i);
  else {
    const bot = el.fragments![0]!;
    if (bot.end - bot.start >= 4 * frames) {
      const offsets = Array.from({ length: (bot.end - bot.start) / 4 }, (_, i) => u32le(ds.buffer, bot.start + 4 * i));
      starts = groupByOffsets(items, offsets, frames);
    }
    const eot = topLevel(ds, EXTENDED_OFFSET_TABLE);
    if (!starts && eot && !eot.items && !eot.fragments) {
      const raw = rawValue(ds, eot);
      const offsets = Array.from({ length: raw.length / 8 }, (_, i) => Number(raw.readBigUInt64LE(8 * i)));
      starts = groupByOffsets(items, offsets, frames);
    }
    if (!starts && codec !== 'Rle') {
      // the JPEG family: a frame begins at a fragment that starts a code stream (SOI, or SOC+SIZ for JPEG 2000)
      const begins = items
        .map((it, i) => ({ it, i }))
        .filter(({ it }) => {
          const b = ds.buffer;
          if (it.end - it.start < 4 || b[it.start] !== 0xff) return false;
          return codec === 'Jpeg2000' ? b[it.start + 1] === 0x4f && b[it.start + 2] === 0xff && b[it.start + 3] === 0x51 : b[it.start + 1] === 0xd8;
        })
        .map(({ i }) => i);
      if (begins.length === frames && begins[0] === 0) starts = begins;
    }
  }
  if (!starts) fail('frames cannot be split');
  return starts!.map((s, f) => items.slice(s, f + 1 < starts!.length ? starts![f + 1] : items.length));
}

function concatItems(ds: ParsedDataset, items: { start: number; end: number }[]): Uint8Array {
  if (items.length === 1) return ds.buffer.subarray(items[0]!.start, items[0]!.end);
  return Buffer.concat(items.map((it) => ds.buffer.subarray(it.start, it.end)));
}

// ---- decoding ----

export interface DecodedFrames {
  /** The decoded samples' geometry: planar configuration 0, and the photometric of the decoded samples (RGB for
   * colour JPEG baseline/extended and for JPEG 2000 YBR_RCT/YBR_ICT); otherwise the header's. */
  geometry: ImageGeometry;
  frames: Uint8Array[];
  /** PALETTE COLOR: the grey level of each palette index (minus the first mapped value), from the LUTs. */
  paletteGrey?: { first: number; grey: Uint8Array };
}

function codecContext(g: ImageGeometry, photometric: string, buffer: Uint8Array, encoded: boolean): CodecContext {
  return new Context({
    width: g.columns,
    height: g.rows,
    bitsAllocated: g.bitsAllocated,
    bitsStored: g.bitsStored,
    samplesPerPixel: g.samplesPerPixel,
    pixelRepresentation: g.pixelRepresentation,
    planarConfiguration: 0,
    // the codecs reject photometrics they do not list; the decoders only look at it for colour conversion
    photometricInterpretation: KNOWN_PHOTOMETRIC.has(photometric) ? photometric : g.samplesPerPixel === 1 ? 'MONOCHROME2' : 'RGB',
    ...(encoded ? { encodedBuffer: buffer } : { decodedBuffer: buffer }),
  });
}
const KNOWN_PHOTOMETRIC = new Set(['MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR', 'RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_PARTIAL_422', 'YBR_PARTIAL_420', 'YBR_ICT', 'YBR_RCT']);

/** Planar (RRR…GGG…BBB…) to interleaved, or back. */
function replane(src: Uint8Array, g: ImageGeometry, toInterleaved: boolean): Uint8Array {
  const bps = g.bitsAllocated / 8;
  const n = g.rows * g.columns;
  const out = new Uint8Array(n * 3 * bps);
  for (let p = 0; p < n; p++) {
    for (let s = 0; s < 3; s++) {
      const planar = (s * n + p) * bps;
      const inter = (p * 3 + s) * bps;
      for (let k = 0; k < bps; k++) {
        if (toInterleaved) out[inter + k] = src[planar + k]!;
        else out[planar + k] = src[inter + k]!;
      }
    }
  }
  return out;
}

/** Whether a JPEG-LS stream codes its components in separate scans (interleave mode none): CharLS then writes planes. */
function jpegLsPlanar(stream: Uint8Array): boolean {
  for (let p = 2; p + 4 < stream.length; ) {
    if (stream[p] !== 0xff) return false;
    const marker = stream[p + 1]!;
    if (marker === 0xda) return stream[p + 4] === 1; // SOS: Ns
    p += 2 + ((stream[p + 2]! << 8) | stream[p + 3]!);
  }
  return false;
}

const LOSSY_JPEG = new Set<string>([TS.JPEGBaseline, TS.JPEGExtended]);

function decodeOne(codec: Codec, tsUid: string, g: ImageGeometry, stream: Uint8Array): { samples: Uint8Array; photometric: string } {
  let out: CodecContext;
  try {
    const ctx = codecContext(g, g.photometric, stream, true);
    // lossy JPEG colour is YCbCr in the stream: decoded to RGB; lossless JPEG keeps its samples as coded
    if (codec === 'Rle') out = NativeCodecs.decodeRle(ctx);
    else if (codec === 'Jpeg') out = NativeCodecs.decodeJpeg(ctx, { convertColorspaceToRgb: LOSSY_JPEG.has(tsUid) && isColour(g) });
    else if (codec === 'JpegLs') out = NativeCodecs.decodeJpegLs(ctx);
    else out = NativeCodecs.decodeJpeg2000(ctx);
  } catch {
    return fail(`decoder failed (${tsUid})`);
  }
  let samples = out.getDecodedBuffer()!;
  const expected = frameBytes(g);
  if (samples.length < expected) fail(`decoded frame of ${samples.length} bytes, expected ${expected}`);
  if (samples.length > expected) samples = samples.subarray(0, expected);
  let photometric = g.photometric;
  if (isColour(g)) {
    if (codec === 'JpegLs' && jpegLsPlanar(stream)) samples = replane(samples, g, true);
    if (codec === 'Jpeg' && LOSSY_JPEG.has(tsUid)) photometric = 'RGB';
    // OpenJPEG undoes the reversible or irreversible component transform
    if (codec === 'Jpeg2000' && (photometric === 'YBR_RCT' || photometric === 'YBR_ICT')) photometric = 'RGB';
  }
  return { samples, photometric };
}

/** Every frame as native little-endian samples, interleaved (planar 0) for colour. Needs `await initCodecs()`. */
export function decodeFrames(ds: ParsedDataset): DecodedFrames {
  const g = imageGeometry(ds);
  const el = topLevel(ds, PIXEL_DATA)!;
  const size = frameBytes(g);
  const frames: Uint8Array[] = [];
  if (NATIVE.has(ds.transferSyntaxUid)) {
    const swap = !el.encoding.littleEndian && g.bitsAllocated === 16;
    for (let f = 0; f < g.frames; f++) {
      let frame: Uint8Array = Uint8Array.from(ds.buffer.subarray(el.valueStart + f * size, el.valueStart + (f + 1) * size));
      if (swap) Buffer.from(frame.buffer, frame.byteOffset, frame.length).swap16();
      if (isColour(g) && g.planarConfiguration === 1) frame = replane(frame, g, true);
      frames.push(frame);
    }
    return withPalette(ds, { geometry: { ...g, planarConfiguration: 0 }, frames });
  }
  if (!codecsReady()) fail('codecs not initialised');
  const { codec } = ENCAPSULATED[ds.transferSyntaxUid]!;
  let photometric = g.photometric;
  for (const items of frameItems(ds, el, g, codec)) {
    const d = decodeOne(codec, ds.transferSyntaxUid, g, concatItems(ds, items));
    frames.push(d.samples);
    photometric = d.photometric;
  }
  return withPalette(ds, { geometry: { ...g, planarConfiguration: 0, photometric }, frames });
}

function withPalette(ds: ParsedDataset, d: DecodedFrames): DecodedFrames {
  if (d.geometry.photometric !== 'PALETTE COLOR' || d.geometry.samplesPerPixel !== 1) return d;
  const palette = paletteGrey(ds);
  return palette ? { ...d, paletteGrey: palette } : d;
}

// ---- grey image for OCR ----

/** The palette's three LUTs as one grey level per index (PS3.3 C.7.6.3.1.5), or undefined when they are unusable. */
function paletteGrey(ds: ParsedDataset): { first: number; grey: Uint8Array } | undefined {
  const channels: Float64Array[] = [];
  let first = 0;
  for (let c = 0; c < 3; c++) {
    const d = topLevel(ds, RED_DESCRIPTOR + c);
    const data = topLevel(ds, RED_DATA + c);
    if (!d || !data || d.items || data.items || d.fragments || data.fragments) return undefined;
    const raw = rawValue(ds, d);
    if (raw.length < 6) return undefined;
    const le = d.encoding.littleEndian;
    const at = (i: number): number => (le ? raw.readUInt16LE(2 * i) : raw.readUInt16BE(2 * i));
    const entries = at(0) === 0 ? 65536 : at(0);
    const bits = at(2) === 8 ? 8 : 16;
    const bytes = rawValue(ds, data);
    const dle = data.encoding.littleEndian;
    // 8-bit entries are one byte each only when the data is that short; else each sits in a 16-bit word
    const oneByte = bits === 8 && bytes.length < 2 * entries;
    const n = Math.min(entries, oneByte ? bytes.length : bytes.length >> 1);
    if (n === 0) return undefined;
    const max = bits === 8 ? 255 : 65535;
    const ch = new Float64Array(n);
    for (let i = 0; i < n; i++) ch[i] = (oneByte ? bytes[i]! : (dle ? bytes.readUInt16LE(2 * i) : bytes.readUInt16BE(2 * i)) & max) / max;
    channels.push(ch);
    first = at(1);
  }
  const n = Math.min(...channels.map((c) => c.length));
  const grey = new Uint8Array(n);
  for (let i = 0; i < n; i++) grey[i] = Math.round(255 * (0.299 * channels[0]![i]! + 0.587 * channels[1]![i]! + 0.114 * channels[2]![i]!));
  return { first, grey };
}

/** Stored sample value at sample index i (bits stored masked, sign extended when signed). */
function sampleReader(g: ImageGeometry, frame: Uint8Array): (i: number) => number {
  const mask = g.bitsStored >= 32 ? 0xffffffff : (1 << g.bitsStored) - 1;
  const sign = 1 << (g.bitsStored - 1);
  const signed = g.pixelRepresentation === 1;
  const raw = g.bitsAllocated === 16 ? (i: number) => frame[2 * i]! | (frame[2 * i + 1]! << 8) : (i: number) => frame[i]!;
  return (i) => {
    const v = raw(i) & mask;
    return signed && v & sign ? v - (mask + 1) : v;
  };
}

/** An 8-bit grey image of one decoded frame for OCR (luminance, min–max stretch, MONOCHROME1 inverted, palette). */
export function toGrey(decoded: DecodedFrames, frame: number): GreyImage {
  const g = decoded.geometry;
  const src = decoded.frames[frame];
  if (!src) throw new RangeError(`frame ${frame} of ${decoded.frames.length}`);
  const n = g.rows * g.columns;
  const spp = g.samplesPerPixel;
  const read = sampleReader(g, src);
  // one value per pixel: luminance for RGB, Y for YBR, the sample for grey and palette indices
  const value = new Float64Array(n);
  const rgb = spp === 3 && !g.photometric.startsWith('YBR_FULL') && !g.photometric.startsWith('YBR_PARTIAL');
  for (let p = 0; p < n; p++) value[p] = spp === 1 ? read(p) : rgb ? 0.299 * read(3 * p) + 0.587 * read(3 * p + 1) + 0.114 * read(3 * p + 2) : read(3 * p);
  const pixels = new Uint8Array(n);
  const palette = decoded.paletteGrey;
  if (palette) {
    const last = palette.grey.length - 1;
    for (let p = 0; p < n; p++) pixels[p] = palette.grey[Math.min(Math.max(value[p]! - palette.first, 0), last)]!;
  } else if (g.bitsStored <= 8 && g.pixelRepresentation === 0) {
    for (let p = 0; p < n; p++) pixels[p] = Math.round(value[p]!);
  } else {
    let min = Infinity;
    let max = -Infinity;
    for (let p = 0; p < n; p++) {
      if (value[p]! < min) min = value[p]!;
      if (value[p]! > max) max = value[p]!;
    }
    const scale = max > min ? 255 / (max - min) : 0;
    for (let p = 0; p < n; p++) pixels[p] = Math.round((value[p]! - min) * scale);
  }
  if (g.photometric === 'MONOCHROME1') for (let p = 0; p < n; p++) pixels[p] = 255 - pixels[p]!;
  return { width: g.columns, height: g.rows, pixels };
}

// ---- cleaning ----

interface Clipped {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** Boxes clipped to the frame; empty ones dropped. */
function clip(boxes: Box[] | undefined, g: ImageGeometry): Clipped[] {
  const out: Clipped[] = [];
  for (const b of boxes ?? []) {
    const x0 = Math.max(0, Math.floor(b.x));
    const y0 = Math.max(0, Math.floor(b.y));
    const x1 = Math.min(g.columns, Math.ceil(b.x + b.w));
    const y1 = Math.min(g.rows, Math.ceil(b.y + b.h));
    if (x1 > x0 && y1 > y0) out.push({ x0, y0, x1, y1 });
  }
  return out;
}

/** Zeroes the boxes in one frame laid out as `planar` (1: one plane per sample) starting at `offset` in `buf`. */
function blank(buf: Uint8Array, offset: number, g: ImageGeometry, planar: boolean, boxes: Clipped[]): void {
  const bps = g.bitsAllocated / 8;
  const planes = planar ? g.samplesPerPixel : 1;
  const pixelBytes = bps * (planar ? 1 : g.samplesPerPixel);
  const planeBytes = g.rows * g.columns * pixelBytes;
  for (const b of boxes) {
    for (let s = 0; s < planes; s++) {
      for (let y = b.y0; y < b.y1; y++) {
        const row = offset + s * planeBytes + y * g.columns * pixelBytes;
        buf.fill(0, row + b.x0 * pixelBytes, row + b.x1 * pixelBytes);
      }
    }
  }
}

function encodeOne(codec: Codec, g: ImageGeometry, photometric: string, samples: Uint8Array): Uint8Array {
  const ctx = codecContext(g, photometric, samples, false);
  try {
    switch (codec) {
      case 'Rle':
        return NativeCodecs.encodeRle(ctx).getEncodedBuffer()!;
      case 'Jpeg':
        return NativeCodecs.encodeJpeg(ctx, { lossy: false, predictor: 1, pointTransform: 0 }).getEncodedBuffer()!;
      case 'JpegLs':
        return NativeCodecs.encodeJpegLs(ctx, { lossy: false }).getEncodedBuffer()!;
      case 'Jpeg2000':
        // a reversible colour transform only where the header says so (YBR_RCT); RGB is coded as RGB
        return NativeCodecs.encodeJpeg2000(codecContext(g, photometric === 'YBR_RCT' ? 'RGB' : photometric, samples, false), {
          lossy: false,
          allowMct: photometric === 'YBR_RCT' ? 1 : 0,
        } as { lossy: boolean }).getEncodedBuffer()!;
    }
  } catch {
    return fail(`encoder failed (${codec})`);
  }
}

const CODEC_OF_OUTPUT: Record<string, Codec> = {
  [TS.RLELossless]: 'Rle',
  [TS.JPEGLossless]: 'Jpeg',
  [TS.JPEGLosslessSV1]: 'Jpeg',
  [TS.JPEGLSLossless]: 'JpegLs',
  [TS.JPEG2000Lossless]: 'Jpeg2000',
};

function cleanNative(ds: ParsedDataset, el: DicomElement, g: ImageGeometry, boxesPerFrame: Box[][]): CleanedPixels {
  const value = Uint8Array.from(ds.buffer.subarray(el.valueStart, el.valueEnd));
  const size = frameBytes(g);
  let boxes = 0;
  for (let f = 0; f < g.frames; f++) {
    const clipped = clip(boxesPerFrame[f], g);
    boxes += clipped.length;
    blank(value, f * size, g, isColour(g) && g.planarConfiguration === 1, clipped);
  }
  return { pixelData: [ds.buffer.subarray(el.start, el.valueStart), value], transferSyntaxUid: ds.transferSyntaxUid, attributes: [], boxes };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/**
 * Blanks boxes (boxesPerFrame[f] for frame f) and writes the pixel data back. `decoded` is what decodeFrames
 * returned (undefined for native data, or to decode here).
 */
export function cleanPixelData(ds: ParsedDataset, boxesPerFrame: Box[][], decoded?: DecodedFrames): CleanedPixels {
  const g = imageGeometry(ds);
  const el = topLevel(ds, PIXEL_DATA)!;
  if (NATIVE.has(ds.transferSyntaxUid)) return cleanNative(ds, el, g, boxesPerFrame);

  const syntax = ENCAPSULATED[ds.transferSyntaxUid]!;
  const sameSyntax = syntax.output === ds.transferSyntaxUid;
  const frameStreams = frameItems(ds, el, g, syntax.codec).map((items) => concatItems(ds, items));
  const d = decoded ?? decodeFrames(ds);
  if (d.frames.length !== g.frames) fail(`${d.frames.length} decoded frames for ${g.frames}`);
  const outCodec = CODEC_OF_OUTPUT[syntax.output]!;
  const dg = d.geometry;
  // same syntax: the header's photometric stays (a YBR_RCT JPEG 2000 is coded with the transform again)
  const photometric = sameSyntax ? g.photometric : dg.photometric;
  let boxes = 0;
  const fragments: Uint8Array[] = [];
  for (let f = 0; f < g.frames; f++) {
    const clipped = clip(boxesPerFrame[f], dg);
    boxes += clipped.length;
    if (clipped.length === 0 && sameSyntax) {
      fragments.push(frameStreams[f]!);
      continue;
    }
    const samples = Uint8Array.from(d.frames[f]!);
    blank(samples, 0, dg, false, clipped);
    const stream = encodeOne(outCodec, dg, photometric, samples);
    // the cleaned frame must decode to exactly the blanked samples, or nothing is written
    const check = decodeOne(outCodec, syntax.output, dg, stream).samples;
    if (!sameBytes(check, samples)) fail(`re-encoded frame is not lossless (${syntax.output})`);
    fragments.push(stream.length % 2 === 0 ? stream : Buffer.concat([stream, new Uint8Array(1)]));
  }

  // one fragment per frame: the basic offset table is rebuilt when the input had one, else left empty
  const bot = el.fragments![0]!;
  const offsets: number[] = [];
  let at = 0;
  for (const frag of fragments) {
    offsets.push(at);
    at += 8 + frag.length + (frag.length % 2);
  }
  let offsetTable = new Uint8Array(0);
  if (bot.end > bot.start) {
    offsetTable = new Uint8Array(4 * offsets.length);
    const view = new DataView(offsetTable.buffer);
    offsets.forEach((o, i) => view.setUint32(4 * i, o, true));
  }
  const attributes: Element[] = [];
  if (photometric !== g.photometric) attributes.push({ tag: PHOTOMETRIC, vr: 'CS', value: photometric });
  if (isColour(g) && !sameSyntax && usValue(ds, PLANAR_CONFIGURATION) !== 0) attributes.push({ tag: PLANAR_CONFIGURATION, vr: 'US', value: 0 });
  // an extended offset table must describe the new fragments
  if (topLevel(ds, EXTENDED_OFFSET_TABLE)) {
    attributes.push({ tag: EXTENDED_OFFSET_TABLE, vr: 'OV', value: offsets.map((o) => BigInt(o)) });
    attributes.push({ tag: EXTENDED_OFFSET_TABLE_LENGTHS, vr: 'OV', value: fragments.map((f) => BigInt(f.length)) });
  }
  const pixelData = encodeElementChunks([{ tag: PIXEL_DATA, vr: 'OB', value: { offsetTable, fragments } }], el.encoding);
  return { pixelData, transferSyntaxUid: syntax.output, attributes, boxes };
}
