// Burned-in text checks shared by the anonymize and pipeline tests: a corpus of synthetic at-risk images with known
// text, what OCR still reads of that text, and which pixels changed outside where text was drawn.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { initCodecs } from '../../src/anonymize/pixels/codecs.js';
import { decodeFrames, toGrey, type DecodedFrames } from '../../src/anonymize/pixels/frames.js';
import { findText } from '../../src/anonymize/pixels/ocr.js';
import type { Box } from '../../src/anonymize/pixels/types.js';
import { stringValue } from '../../src/dicom/values.js';
import { parseFile, type ParsedDataset } from '../../src/dicom/walker.js';
import { burnedInFile, type BurnedInSpec, type DrawnText } from '../../tools/synth/burned-in.js';

export interface CorpusFile {
  name: string;
  path: string;
  spec: BurnedInSpec;
  /** Where text was drawn: the patient's values and the harmless overlay. */
  drawn: DrawnText[];
  /** The patient's values as drawn (what must not survive). */
  secrets: DrawnText[];
  sopInstanceUid: string;
}

const PATIENTS = [
  { name: 'DOE^JOHN', id: 'MRN7654321', birthDate: '19650412' },
  { name: 'NG^LI', id: '4455667', birthDate: '19900101' },
  { name: 'OKONKWO^CHIAMAKA', id: 'PT-20931', birthDate: '19781130' },
  { name: 'MUELLER^ANNA MARIA', id: 'H0099812', birthDate: '20010707' },
];

/** US and SC, native, RLE and JPEG lossless, single- and multi-frame: one file each, patients in turn. */
export async function writeCorpus(dir: string): Promise<CorpusFile[]> {
  const out: CorpusFile[] = [];
  let n = 0;
  for (const kind of ['US', 'SC'] as const)
    for (const encoding of ['native', 'rle', 'jpegLossless'] as const)
      for (const frames of [1, 3]) {
        const patient = PATIENTS[n % PATIENTS.length]!;
        const spec: BurnedInSpec = { kind, frames, encoding, rgb: kind === 'US' && n % 4 === 1, patient, allowWords: kind === 'US' ? ['5.0 MHZ', 'L', '12 CM'] : undefined, seed: 100 + n };
        const made = await burnedInFile(spec);
        const name = `${kind}-${encoding}-${frames}f.dcm`;
        const file = path.join(dir, name);
        writeFileSync(file, made.file);
        const allowed = new Set(spec.allowWords ?? []);
        out.push({ name, path: file, spec, drawn: made.drawn, secrets: made.drawn.filter((d) => !allowed.has(d.text)), sopInstanceUid: made.sopInstanceUid });
        n++;
      }
  return out;
}

const norm = (s: string) => s.toUpperCase().replace(/[^A-Z0-9]/g, '');
/** The parts of a drawn value that identify: the whole value and its words of three or more characters. */
const partsOf = (text: string) => [norm(text), ...text.split(/[\^ ,\-/.]+/).map(norm)].filter((p) => p.length >= 3);

export async function decodeFile(file: Buffer): Promise<DecodedFrames> {
  await initCodecs();
  return decodeFrames(parseFile(file).dataset);
}

const overlaps = (a: Box, b: Box) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

/**
 * The drawn secrets OCR finds in the file: a secret counts when OCR finds any word where it was drawn (same frame,
 * boxes overlapping), whatever it read it as, or reads one of its parts anywhere.
 */
export async function secretsRead(file: Buffer, secrets: DrawnText[]): Promise<DrawnText[]> {
  const decoded = await decodeFile(file);
  const words = await findText(decoded.frames.map((_, f) => toGrey(decoded, f)));
  const read = words.map((w) => norm(w.text)).filter((w) => w.length >= 3);
  return secrets.filter(
    (s) => words.some((w) => w.frame === s.frame && overlaps(w.box, s.box)) || partsOf(s.text).some((p) => read.some((w) => w.includes(p) || (w.length >= 4 && p.includes(w)))),
  );
}

const inside = (x: number, y: number, b: Box) => x >= b.x && x < b.x + b.w && y >= b.y && y < b.y + b.h;

/** A drawn box with room for the cleaning's margin. */
export function grown(b: Box): Box {
  const m = Math.ceil(b.h * 0.5) + 4;
  return { x: b.x - m, y: b.y - m, w: b.w + 2 * m, h: b.h + 2 * m };
}

/**
 * Pixels (all frames) that differ between the two decodings outside `allowed[frame]` and inside them, of `total`;
 * `notBlank` counts changed pixels whose new value is not 0 (cleaning only blanks).
 */
export function changedPixels(before: DecodedFrames, after: DecodedFrames, allowed: (frame: number) => Box[]): { outside: number; inside: number; notBlank: number; total: number } {
  const g = before.geometry;
  const bytesPerPixel = (g.bitsAllocated / 8) * g.samplesPerPixel;
  let outside = 0;
  let insideCount = 0;
  let notBlank = 0;
  before.frames.forEach((frame, f) => {
    const other = after.frames[f]!;
    const boxes = allowed(f);
    for (let y = 0; y < g.rows; y++)
      for (let x = 0; x < g.columns; x++) {
        const at = (y * g.columns + x) * bytesPerPixel;
        let same = true;
        for (let i = 0; i < bytesPerPixel; i++) if (frame[at + i] !== other[at + i]) same = false;
        if (same) continue;
        for (let i = 0; i < bytesPerPixel; i++) if (other[at + i] !== 0) (notBlank++, (i = bytesPerPixel));
        if (boxes.some((b) => inside(x, y, b))) insideCount++;
        else outside++;
      }
  });
  return { outside, inside: insideCount, notBlank, total: g.rows * g.columns * before.frames.length };
}

/** The code values of the output's Deidentification Method Code Sequence (0012,0064). */
export function methodCodes(ds: ParsedDataset): string[] {
  const seq = ds.elements.find((e) => e.tag === 0x00120064);
  return (seq?.items ?? []).map((item) => stringValue(ds, item.elements.find((e) => e.tag === 0x00080100)!).trim());
}

/** Whether DPHIANT cleaned burned-in text from this output (113101, Clean Pixel Data Option): then, and only then, its pixel data may differ. */
export const pixelsCleaned = (ds: ParsedDataset): boolean => methodCodes(ds).includes('113101');
