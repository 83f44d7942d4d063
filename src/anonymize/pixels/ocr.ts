// Finds burned-in words with the Tesseract command-line engine (Debian tesseract-ocr, English data): one child
// process per instance, its frames stacked into one image (pages of a TIFF when they are many) given on stdin and
// read back as TSV from stdout, so the pixels (which may show a patient's name) never touch the disk. Recognised text stays in memory: it is never
// logged nor put in an error message.
import { spawn } from 'node:child_process';
import { PixelRiskError, type Box, type GreyImage } from './types.js';

export interface OcrWord {
  /** Index of the image (frame) in the list given to findText. */
  frame: number;
  /** In that frame's pixels. */
  box: Box;
  /** What the engine read; for matching only, never to be logged. */
  text: string;
  /** The engine's confidence, 0..100. */
  confidence: number;
}

export interface OcrSettings {
  /** The tesseract program (a name on PATH or a path). */
  command: string;
  /** One call's limit; the child is killed when it is reached. */
  timeoutMs: number;
}

export const DEFAULT_OCR: OcrSettings = { command: 'tesseract', timeoutMs: 30_000 };

/**
 * How the images are prepared and read: exposed so a measurement can compare candidates, not a setting. The
 * defaults were measured on synthetic US and SC captures (tools/synth/burned-in.ts, 14 and 21 px glyphs, 32 images):
 * in the header band every candidate found every drawn value (a word box overlapping it); they differ in how much
 * of the text the boxes cover, in false positives, in cost, and above all on text inside the image. 'both' found
 * text over the US speckle 8/8 where the image alone ('none', 'auto') found 1/8–3/8, and put no box on the speckle
 * (the stacked negative gives the engine's global threshold a balanced histogram); enlarging ×2 covered less and
 * cost more, even for 7 px glyphs; psm 12, 6 and 3 were slower or missed; tesseract's adaptive threshold
 * (thresholding_method=1) read faint text but put a thousand boxes on the speckle. Faint text whose ink and
 * background are both on one side of mid-grey (grey 160 on 205) is not found.
 */
export interface OcrTuning {
  /** Tesseract page segmentation mode: 11 sparse text, 12 sparse text with orientation detection, 6 one block. */
  psm: number;
  /** Images whose larger side is at most this are enlarged ×2 by pixel replication; 0 never. */
  upscaleUpTo: number;
  /** 'none': as given; 'auto': invert images darker than mid-grey (the engine reads dark on light best);
   *  'both': each image and its negative, stacked in the same call, words of both kept. */
  invert: 'none' | 'auto' | 'both';
  /** Words at or below this confidence are dropped. -1 keeps all: true text was read at confidence 0 too, and a
   *  false positive only blanks pixels while a miss leaks. */
  minConfidence: number;
}

export const DEFAULT_TUNING: OcrTuning = { psm: 11, upscaleUpTo: 0, invert: 'both', minConfidence: -1 };

/** Rows of background between stacked images, so no text line joins two frames. */
const BAND = 24;

const availability = new Map<string, Promise<{ ok: true; version: string } | { ok: false; reason: string }>>();

/** Whether the engine runs here: `tesseract --version` once per command, cached. */
export function ocrAvailable(settings: OcrSettings = DEFAULT_OCR): Promise<{ ok: true; version: string } | { ok: false; reason: string }> {
  let known = availability.get(settings.command);
  if (!known) {
    known = run(settings, ['--version'], undefined).then(
      ({ stdout, stderr }) => {
        const version = /tesseract\s+v?(\d+\.\d+[\w.-]*)/i.exec(stdout + '\n' + stderr)?.[1];
        return version ? { ok: true as const, version } : { ok: false as const, reason: 'the command does not report a tesseract version' };
      },
      (e: unknown) => ({ ok: false as const, reason: e instanceof PixelRiskError ? e.message : 'the command could not be run' }),
    );
    availability.set(settings.command, known);
  }
  return known;
}

/**
 * Words found in the images (the frames of one instance), boxes in each frame's own pixels; a box crossing a frame
 * boundary is split into both. Throws PixelRiskError('ocr', …) on a missing engine, a non-zero exit, a timeout or
 * unparsable output.
 */
export async function findText(images: GreyImage[], settings: OcrSettings = DEFAULT_OCR, tuning: OcrTuning = DEFAULT_TUNING): Promise<OcrWord[]> {
  if (images.length === 0) return [];
  const sheets = stack(images, tuning);
  const args = ['stdin', 'stdout', '-l', 'eng', '--psm', String(tuning.psm), 'tsv'];
  const { stdout } = await run(settings, args, tiff(sheets));
  const words: OcrWord[] = [];
  const seen = new Set<string>();
  for (const w of parseTsv(stdout)) {
    if (w.confidence <= tuning.minConfidence) continue;
    const sheet = sheets[w.page - 1];
    if (!sheet) throw new PixelRiskError('ocr', `the engine reported page ${w.page} of ${sheets.length}`);
    for (const placed of sheet.places) {
      // sheet pixels → this frame's pixels (undo the enlargement, outwards so no edge pixel of a glyph is lost)
      const top = Math.max(w.top, placed.y), bottom = Math.min(w.top + w.height, placed.y + placed.image.height);
      if (bottom <= top) continue;
      const f = placed.scale;
      const img = images[placed.frame]!;
      const x0 = Math.max(0, Math.floor(w.left / f)), x1 = Math.min(img.width, Math.ceil((w.left + w.width) / f));
      const y0 = Math.max(0, Math.floor((top - placed.y) / f)), y1 = Math.min(img.height, Math.ceil((bottom - placed.y) / f));
      if (x1 <= x0 || y1 <= y0) continue;
      const box = { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
      // an image and its negative often give the same word: one box is enough
      const key = `${placed.frame} ${box.x} ${box.y} ${box.w} ${box.h}`;
      if (seen.has(key)) continue;
      seen.add(key);
      words.push({ frame: placed.frame, box, text: w.text, confidence: w.confidence });
    }
  }
  return words;
}

/** The engine refuses images of 32768 rows or more (Leptonica/Tesseract limit): longer stacks go on more pages. */
const MAX_SHEET_ROWS = 32_000;

/** One image on a page: which frame, where, enlarged or not, inverted or not. */
interface Placed { frame: number; image: GreyImage; y: number; scale: 1 | 2; negative: boolean }
interface Sheet { width: number; height: number; places: Placed[] }

/**
 * Where each image goes: one under another (each enlarged and inverted as tuned), BAND rows of background between
 * them, on as few pages as the engine's size limit allows; an image is never split between pages.
 */
function stack(images: GreyImage[], tuning: OcrTuning): Sheet[] {
  const sheets: Sheet[] = [{ width: 0, height: 0, places: [] }];
  const place = (frame: number, image: GreyImage, scale: 1 | 2, negative: boolean): void => {
    let sheet = sheets.at(-1)!;
    if (sheet.places.length > 0 && sheet.height + BAND + image.height > MAX_SHEET_ROWS) sheets.push(sheet = { width: 0, height: 0, places: [] });
    const y = sheet.places.length > 0 ? sheet.height + BAND : 0;
    sheet.places.push({ frame, image, y, scale, negative });
    sheet.height = y + image.height;
    sheet.width = Math.max(sheet.width, image.width);
  };
  for (const [frame, img] of images.entries()) {
    if (img.pixels.length !== img.width * img.height) throw new PixelRiskError('ocr', `image ${frame} has ${img.pixels.length} bytes for ${img.width}×${img.height}`);
    const scale = tuning.upscaleUpTo > 0 && Math.max(img.width, img.height) <= tuning.upscaleUpTo ? 2 : 1;
    if (img.width * scale > MAX_SHEET_ROWS || img.height * scale > MAX_SHEET_ROWS) throw new PixelRiskError('ocr', `image ${frame} (${img.width}×${img.height}) is larger than the engine reads`);
    const big = scale === 2 ? enlarge(img) : img;
    if (tuning.invert === 'both') { place(frame, big, scale, false); place(frame, big, scale, true); }
    else place(frame, big, scale, tuning.invert === 'auto' && mean(img) < 128);
  }
  return sheets;
}

function mean(img: GreyImage): number {
  let sum = 0;
  for (let i = 0; i < img.pixels.length; i += 7) sum += img.pixels[i]!;
  return sum / Math.ceil(img.pixels.length / 7);
}

/** ×2 by pixel replication (glyph edges stay sharp; the engine's own binarisation does the rest). */
function enlarge(img: GreyImage): GreyImage {
  const w = img.width * 2, out = new Uint8Array(w * img.height * 2);
  for (let y = 0; y < img.height; y++) {
    const row = out.subarray(y * 2 * w, (y * 2 + 1) * w);
    for (let x = 0; x < img.width; x++) row[2 * x] = row[2 * x + 1] = img.pixels[y * img.width + x]!;
    out.copyWithin((y * 2 + 1) * w, y * 2 * w, (y * 2 + 1) * w);
  }
  return { width: w, height: img.height * 2, pixels: out };
}

/**
 * The sheets as one uncompressed 8-bit grey multi-page baseline TIFF (little endian, one strip per page), written
 * straight from the images (no copy of a sheet or a negative is kept): the engine reads every page of a TIFF given
 * on stdin in the same run, where a PGM holds one image. Background and bands are white.
 */
function tiff(sheets: Sheet[]): Buffer {
  const ENTRIES = 9, IFD_BYTES = 2 + ENTRIES * 12 + 4;
  const pageBytes = (s: Sheet): number => s.width * s.height;
  const size = sheets.reduce((n, s) => n + pageBytes(s) + (pageBytes(s) % 2) + IFD_BYTES, 8);
  const out = Buffer.allocUnsafe(size);
  out.write('II', 0, 'latin1');
  out.writeUInt16LE(42, 2);
  let offset = 8, previousNext = 4; // where the offset of the next IFD goes: the header's, then each IFD's last word
  for (const sheet of sheets) {
    const strip = offset;
    out.fill(255, strip, strip + pageBytes(sheet));
    for (const p of sheet.places) {
      for (let row = 0; row < p.image.height; row++) {
        const src = p.image.pixels.subarray(row * p.image.width, (row + 1) * p.image.width);
        const at = strip + (p.y + row) * sheet.width;
        if (!p.negative) out.set(src, at);
        else for (let x = 0; x < src.length; x++) out[at + x] = 255 - src[x]!;
      }
    }
    offset += pageBytes(sheet);
    if (offset % 2) out[offset++] = 0; // IFDs start on a word boundary
    out.writeUInt32LE(offset, previousNext);
    out.writeUInt16LE(ENTRIES, offset);
    const entries: [tag: number, type: 3 | 4, value: number][] = [
      [256, 4, sheet.width], [257, 4, sheet.height], [258, 3, 8], [259, 3, 1], [262, 3, 1], // width, length, bits, no compression, black is zero
      [273, 4, strip], [277, 3, 1], [278, 4, sheet.height], [279, 4, pageBytes(sheet)], // strip offset, samples, rows per strip, strip bytes
    ];
    entries.forEach(([tag, type, value], i) => {
      const at = offset + 2 + i * 12;
      out.writeUInt16LE(tag, at);
      out.writeUInt16LE(type, at + 2);
      out.writeUInt32LE(1, at + 4);
      out.writeUInt32LE(0, at + 8);
      if (type === 3) out.writeUInt16LE(value, at + 8); else out.writeUInt32LE(value, at + 8);
    });
    previousNext = offset + 2 + ENTRIES * 12;
    out.writeUInt32LE(0, previousNext); // the last page's stays 0
    offset += IFD_BYTES;
  }
  return out;
}

interface TsvWord { page: number; left: number; top: number; width: number; height: number; confidence: number; text: string }

/** Tesseract's TSV: a header line, then level page_num block_num par_num line_num word_num left top width height conf text. */
function parseTsv(tsv: string): TsvWord[] {
  const lines = tsv.split('\n').filter((l) => l.trim() !== '');
  if (!lines[0]?.startsWith('level\t')) throw new PixelRiskError('ocr', 'the engine wrote no TSV header');
  const words: TsvWord[] = [];
  for (const [i, line] of lines.slice(1).entries()) {
    const cols = line.split('\t');
    const nums = cols.slice(0, 11).map(Number);
    if (cols.length < 11 || nums.some((n) => !Number.isFinite(n))) throw new PixelRiskError('ocr', `TSV line ${i + 2} is not parsable`);
    const text = cols.slice(11).join('\t').trim();
    if (nums[0] !== 5 || text === '') continue; // level 5 = word
    words.push({ page: nums[1]!, left: nums[6]!, top: nums[7]!, width: nums[8]!, height: nums[9]!, confidence: nums[10]!, text });
  }
  return words;
}

/** Runs the engine on one core with `input` on stdin; rejects (PixelRiskError 'ocr') unless it exits 0 in time. */
function run(settings: OcrSettings, args: string[], input: Buffer | undefined): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(settings.command, args, {
      env: { ...process.env, OMP_THREAD_LIMIT: '1' },
      stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [], err: Buffer[] = [];
    let failure: PixelRiskError | undefined;
    const timer = setTimeout(() => {
      failure = new PixelRiskError('ocr', `the engine did not finish within ${settings.timeoutMs} ms`);
      child.kill('SIGKILL');
    }, settings.timeoutMs);
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      failure ??= new PixelRiskError('ocr', e.code === 'ENOENT' ? 'the engine is not installed (command not found)' : `the engine could not be started (${e.code ?? 'error'})`);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (!failure && code !== 0) failure = new PixelRiskError('ocr', signal ? `the engine was ended by ${signal}` : `the engine exited with status ${code}`);
      if (failure) reject(failure);
      else resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    if (input && child.stdin) {
      child.stdin.on('error', () => undefined); // EPIPE when the engine exits early: its exit status tells why
      child.stdin.end(input);
    }
  });
}
