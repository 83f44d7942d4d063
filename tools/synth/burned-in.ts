// Synthetic at-risk images: ultrasound and secondary captures whose pixels show the patient's name, ID and birth
// date (as modalities burn them in), with the ground truth of where each text was drawn, so OCR recall and the
// blanking of burned-in text can be measured on files that look like the real ones. All values are FAKE.
import { createHash } from 'node:crypto';
import { TS } from '../../src/dicom/transfer-syntax.js';
import { part10, type Element } from '../../src/dicom/writer.js';
import { Context, NativeCodecs, initCodecs } from '../../src/anonymize/pixels/codecs.js';
import type { Box, GreyImage } from '../../src/anonymize/pixels/types.js';
import { drawText, drawable, textSize } from './font.js';
import { Rng, uidFor } from './rng.js';

export const US_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.6.1';
export const US_MULTIFRAME_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.3.1';
export const SECONDARY_CAPTURE_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.7';
export const MULTIFRAME_GRAYSCALE_BYTE_SC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.7.2';
export const MULTIFRAME_TRUE_COLOR_SC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.7.4';

/** Ground truth: one drawn text on one frame (0-based), its box in frame pixels. */
export interface DrawnText {
  text: string;
  frame: number;
  box: Box;
}
export type BurnedInEncoding = 'native' | 'rle' | 'jpegLossless';
const TS_OF: Record<BurnedInEncoding, string> = {
  native: TS.ExplicitVRLittleEndian,
  rle: TS.RLELossless,
  jpegLossless: TS.JPEGLosslessSV1,
};

export interface BurnedInSpec {
  /** US: a fan of speckle, white text on dark; SC: a flat panel (a dose screen), dark text on light. */
  kind: 'US' | 'SC';
  /** 1: US Image Storage / Secondary Capture; more: US Multi-frame / Multi-frame Grayscale Byte (or True Color) SC. */
  frames: number;
  encoding: BurnedInEncoding;
  /** RGB, 3 samples interleaved; default 8-bit MONOCHROME2. */
  rgb?: boolean;
  rows?: number;
  columns?: number;
  /** Header values, also drawn into the pixels (uppercase letters, digits, ^ - / . : and space). */
  patient: { name: string; id: string; birthDate: string };
  /** Harmless overlay also drawn, e.g. ["5.0 MHZ", "L", "12 CM"]. */
  allowWords?: string[];
  /** Burned In Annotation (0028,0301), written only when given. */
  burnedInAnnotation?: 'YES' | 'NO';
  seed?: number;
  /** Glyph scale (font pixels 5×7): 2 → 14 px high, 3 → 21 px; default picked from the seed. */
  scale?: 2 | 3;
}

export interface BurnedInFile {
  file: Buffer;
  /** Every drawn text on every frame: the patient's values first, then the allow words. */
  drawn: DrawnText[];
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
}


function sopClassOf(spec: BurnedInSpec): string {
  if (spec.kind === 'US') return spec.frames > 1 ? US_MULTIFRAME_IMAGE_STORAGE : US_IMAGE_STORAGE;
  if (spec.frames === 1) return SECONDARY_CAPTURE_IMAGE_STORAGE;
  return spec.rgb ? MULTIFRAME_TRUE_COLOR_SC_IMAGE_STORAGE : MULTIFRAME_GRAYSCALE_BYTE_SC_IMAGE_STORAGE;
}

/** Ultrasound: black outside a sector from the top centre, attenuating speckle inside; frames differ in speckle. */
function usBackground(img: GreyImage, r: Rng, top: number): void {
  const cx = img.width / 2, apexY = top - 10;
  const radius = img.height - top - 10, half = (35 * Math.PI) / 180;
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const dx = x - cx, dy = y - apexY;
      const d = Math.hypot(dx, dy);
      const inside = dy > 0 && d < radius && Math.abs(Math.atan2(dx, dy)) < half;
      if (!inside) { img.pixels[y * img.width + x] = r.int(0, 6); continue; }
      // Rayleigh-like speckle, a brighter band half way (a "structure"), dimmer with depth
      const base = 60 + 50 * Math.exp(-(((d / radius - 0.55) * 8) ** 2));
      const speckle = Math.sqrt(-2 * Math.log(1 - r.next() * 0.999)) * 0.6;
      img.pixels[y * img.width + x] = Math.min(200, Math.round(base * speckle * (1 - 0.5 * (d / radius))));
    }
  }
}

/** Secondary capture: a light panel with a darker title band and table rules, as on a dose report screen. */
function scBackground(img: GreyImage, top: number): void {
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const rule = y > top && ((y - top) % 48 === 0 || x === Math.floor(img.width / 2));
      img.pixels[y * img.width + x] = y < top ? 235 : rule ? 150 : 215 - Math.floor((y / img.height) * 20);
    }
  }
}

interface Placed { text: string; x: number; y: number; jitter: boolean }

/** Where the texts go: patient values in the header band (name, then ID and birth date), allow words down the right. */
function layout(spec: BurnedInSpec, rows: number, cols: number, scale: number): { placed: Placed[]; band: number } {
  const h = textSize('X', scale).h;
  const margin = 12, gap = 10;
  const { name, id, birthDate } = spec.patient;
  const line2 = margin + h + gap;
  const placed: Placed[] = [
    { text: name, x: margin, y: margin, jitter: false },
    { text: id, x: margin, y: line2, jitter: true },
    { text: birthDate, x: Math.floor(cols / 2), y: line2, jitter: false },
  ];
  const band = line2 + h + margin;
  let y = band + 40;
  for (const word of spec.allowWords ?? []) {
    placed.push({ text: word, x: cols - margin - 8 - textSize(word, scale).w, y, jitter: false });
    y += h + 2 * gap;
  }
  for (const p of placed) {
    if (!drawable(p.text)) throw new Error('burned-in text may hold only A-Z 0-9 ^ - / . : and space');
    const { w } = textSize(p.text, scale);
    if (p.x < 0 || p.x + w + 8 > cols || p.y + h + 8 > rows) throw new Error(`a ${p.text.length}-character text does not fit a ${cols}×${rows} image at scale ${scale}`);
  }
  return { placed, band };
}

function encodeFrame(pixels: Uint8Array, rows: number, cols: number, rgb: boolean, encoding: BurnedInEncoding): Uint8Array {
  const ctx = new Context({
    width: cols, height: rows, bitsAllocated: 8, bitsStored: 8, samplesPerPixel: rgb ? 3 : 1, pixelRepresentation: 0,
    planarConfiguration: 0, photometricInterpretation: rgb ? 'RGB' : 'MONOCHROME2', decodedBuffer: pixels,
  });
  const out = encoding === 'rle' ? NativeCodecs.encodeRle(ctx) : NativeCodecs.encodeJpeg(ctx, { lossy: false });
  const bytes = out.getEncodedBuffer();
  if (!bytes?.length) throw new Error(`the ${encoding} encoder returned no data`);
  return bytes.length % 2 ? Uint8Array.from([...bytes, 0]) : bytes;
}

/** Grey to interleaved RGB; the text in a warm tint (US overlays are often coloured), its luminance kept high. */
function toRgb(grey: Uint8Array, textMask: Uint8Array): Uint8Array {
  const out = new Uint8Array(grey.length * 3);
  for (let i = 0; i < grey.length; i++) {
    const v = grey[i]!;
    if (textMask[i]) { out[i * 3] = v; out[i * 3 + 1] = v; out[i * 3 + 2] = Math.round(v * 0.55); }
    else { out[i * 3] = v; out[i * 3 + 1] = v; out[i * 3 + 2] = v; }
  }
  return out;
}

/**
 * A PS3.10 file whose every frame shows the patient's name, ID and birth date in a header band (the ID moves a few
 * pixels between frames) and the allow words elsewhere, with where each was drawn. Async: RLE and JPEG frames are
 * encoded with dcmjs-codecs, whose WebAssembly loads once.
 */
export async function burnedInFile(spec: BurnedInSpec): Promise<BurnedInFile> {
  if (!Number.isInteger(spec.frames) || spec.frames < 1) throw new Error('frames must be a positive integer');
  if (spec.encoding !== 'native') await initCodecs();
  const rows = spec.rows ?? 480, cols = spec.columns ?? 640, rgb = spec.rgb ?? false;
  const seed = spec.seed ?? 1;
  const key = ['burned-in', seed, spec.kind, spec.frames, spec.patient.id].join('|');
  const r = new Rng(key);
  const scale = spec.scale ?? (r.next() < 0.5 ? 2 : 3);
  const { placed, band } = layout(spec, rows, cols, scale);
  const ink = spec.kind === 'US' ? 240 : 25;

  const drawn: DrawnText[] = [];
  const frames: Uint8Array[] = [];
  for (let f = 0; f < spec.frames; f++) {
    const img: GreyImage = { width: cols, height: rows, pixels: new Uint8Array(rows * cols) };
    if (spec.kind === 'US') usBackground(img, r, band); else scBackground(img, band);
    const mask: GreyImage = { width: cols, height: rows, pixels: new Uint8Array(rows * cols) };
    for (const p of placed) {
      const x = p.x + (p.jitter && f > 0 ? r.int(0, 4) : 0), y = p.y + (p.jitter && f > 0 ? r.int(0, 3) : 0);
      drawText(img, p.text, x, y, scale, ink);
      drawText(mask, p.text, x, y, scale, 1);
      drawn.push({ text: p.text, frame: f, box: { x, y, ...textSize(p.text, scale) } });
    }
    frames.push(rgb ? toRgb(img.pixels, mask.pixels) : img.pixels);
  }

  const sopClassUid = sopClassOf(spec);
  const sopInstanceUid = uidFor(key + '|instance');
  const tsUid = TS_OF[spec.encoding];
  const pixelData: Element = spec.encoding === 'native'
    ? { tag: 0x7fe00010, vr: 'OB', value: Buffer.concat(frames) }
    : { tag: 0x7fe00010, vr: 'OB', value: { fragments: frames.map((fr) => encodeFrame(fr, rows, cols, rgb, spec.encoding)) } };
  const file = part10([...headerElements(spec, key, sopClassUid, sopInstanceUid, rows, cols, rgb), pixelData], tsUid);
  return { file, drawn, sopClassUid, sopInstanceUid, transferSyntaxUid: tsUid };
}

function headerElements(spec: BurnedInSpec, key: string, sopClassUid: string, sopInstanceUid: string, rows: number, cols: number, rgb: boolean): Element[] {
  const us = spec.kind === 'US';
  const studyDate = '20240517', studyTime = '101500';
  const els: Element[] = [
    { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 100' },
    { tag: 0x00080008, vr: 'CS', value: us ? ['ORIGINAL', 'PRIMARY'] : ['DERIVED', 'SECONDARY'] },
    { tag: 0x00080016, vr: 'UI', value: sopClassUid },
    { tag: 0x00080018, vr: 'UI', value: sopInstanceUid },
    { tag: 0x00080020, vr: 'DA', value: studyDate },
    { tag: 0x00080030, vr: 'TM', value: studyTime },
    { tag: 0x00080050, vr: 'SH', value: 'ACC' + createHash('sha256').update(key).digest('hex').slice(0, 8).toUpperCase() },
    { tag: 0x00080060, vr: 'CS', value: us ? 'US' : 'OT' },
    { tag: 0x00080070, vr: 'LO', value: 'DPHIANT SYNTH' },
    { tag: 0x00080090, vr: 'PN', value: '' },
    { tag: 0x00081090, vr: 'LO', value: us ? 'SynthSound 1' : 'SynthCapture' },
    { tag: 0x00100010, vr: 'PN', value: spec.patient.name },
    { tag: 0x00100020, vr: 'LO', value: spec.patient.id },
    { tag: 0x00100030, vr: 'DA', value: spec.patient.birthDate },
    { tag: 0x00100040, vr: 'CS', value: '' },
    { tag: 0x0020000d, vr: 'UI', value: uidFor(key + '|study') },
    { tag: 0x0020000e, vr: 'UI', value: uidFor(key + '|series') },
    { tag: 0x00200010, vr: 'SH', value: '1' },
    { tag: 0x00200011, vr: 'IS', value: 1 },
    { tag: 0x00200013, vr: 'IS', value: 1 },
    { tag: 0x00200020, vr: 'CS', value: '' },
    { tag: 0x00280002, vr: 'US', value: rgb ? 3 : 1 },
    { tag: 0x00280004, vr: 'CS', value: rgb ? 'RGB' : 'MONOCHROME2' },
    { tag: 0x00280010, vr: 'US', value: rows },
    { tag: 0x00280011, vr: 'US', value: cols },
    { tag: 0x00280100, vr: 'US', value: 8 },
    { tag: 0x00280101, vr: 'US', value: 8 },
    { tag: 0x00280102, vr: 'US', value: 7 },
    { tag: 0x00280103, vr: 'US', value: 0 },
  ];
  if (!us) els.push({ tag: 0x00080064, vr: 'CS', value: 'WSD' }); // Conversion Type: workstation
  if (rgb) els.push({ tag: 0x00280006, vr: 'US', value: 0 });
  if (spec.frames > 1) {
    els.push({ tag: 0x00280008, vr: 'IS', value: spec.frames });
    if (us) els.push({ tag: 0x00181063, vr: 'DS', value: 33.3 }, { tag: 0x00280009, vr: 'AT', value: 0x00181063 });
    else els.push({ tag: 0x00280009, vr: 'AT', value: 0x00182002 }, { tag: 0x00182002, vr: 'SH', value: Array.from({ length: spec.frames }, (_, i) => `F${i + 1}`) });
  }
  if (us) els.push({ tag: 0x00282110, vr: 'CS', value: '00' });
  if (spec.burnedInAnnotation) els.push({ tag: 0x00280301, vr: 'CS', value: spec.burnedInAnnotation });
  return els;
}
