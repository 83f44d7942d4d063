// Burned-in text, start to finish, for one instance: the risk gate, the site's masks, OCR, and the lossless
// cleaning. The pipeline and `dphiant anonymize` both reach it through deidentify.ts, so both clean alike.
// OCR runs in a child process (ocr.ts): the event loop only waits for it.
import { DEFAULT_CONFIG, type Config } from '../../config/index.js';
import { topLevelString } from '../../dicom/values.js';
import type { ParsedDataset } from '../../dicom/walker.js';
import { matchNeedles, type Needle } from '../phi.js';
import { initCodecs } from './codecs.js';
import { canClean, cleanPixelData, decodeFrames, imageGeometry, toGrey } from './frames.js';
import { findText, ocrAvailable, type OcrWord } from './ocr.js';
import { assessRisk } from './risk.js';
import { loadBurnedInSite, meets, type BurnedInSite } from './site.js';
import { PixelRiskError, type Box, type CleanedPixels } from './types.js';

/** The anonymize.pixels settings (documented in src/config/index.ts, where their defaults are). */
export type PixelSettings = Config['anonymize']['pixels'];
export const DEFAULT_PIXEL_SETTINGS: PixelSettings = DEFAULT_CONFIG.anonymize.pixels;

/** The settings with the site file read: plain data, so it crosses into worker threads. */
export interface PixelPolicy {
  settings: PixelSettings;
  site: BurnedInSite;
}

export function pixelPolicy(settings: Partial<PixelSettings> = {}): PixelPolicy {
  const s = { ...DEFAULT_PIXEL_SETTINGS, ...settings };
  return { settings: s, site: loadBurnedInSite(s.siteFile) };
}

let defaults: PixelPolicy | undefined;
/** The shipped policy (gate on, OCR on, the shipped masks and rules), read once. */
export const defaultPixelPolicy = (): PixelPolicy => (defaults ??= pixelPolicy());

export type PixelOutcome =
  /** Not at risk (or the gate is off): the pixel data passes byte for byte. */
  | { kind: 'not at risk' }
  /** At risk, examined, nothing to blank: the pixel data passes byte for byte. */
  | { kind: 'no text found'; why: string[] }
  | { kind: 'cleaned'; why: string[]; pixels: CleanedPixels; masks: string[]; ocrWords: number };

const MODALITY = 0x00080060;
const PIXEL_DATA = 0x7fe00010;
/** Numbers of up to three digits with a unit, and frame counters: depth, gain, frequency, "12/30". Longer digit runs (IDs, dates) are never left. */
const HARMLESS_NUMBER = /^\d{1,3}([.,]\d{1,2})?(CM|MM|MHZ|HZ|KHZ|DB|%|FPS|BPM|S|MS)?$|^\d{1,3}\/\d{1,3}$/;

/** A word OCR read that may stay: on the allow-list of its modality or of all, or a harmless number, and never a value of this patient. */
function mayStay(text: string, allow: ReadonlySet<string>, needles: readonly Needle[]): boolean {
  const word = text.toUpperCase().replace(/^[.,:;()[\]]+|[.,:;()[\]]+$/g, '');
  if (!word || !(allow.has(word) || HARMLESS_NUMBER.test(word))) return false;
  let phi = false;
  matchNeedles(text.toLowerCase(), needles, () => (phi = true));
  return !phi;
}

/**
 * The boxes to blank for OCR's words, each with a margin: boxes are tight around the ink, and the margin takes the
 * glyphs' edges, a stroke OCR cut off, and a glyph it skipped between two words ("DOE" "^" "JOHN": half a glyph
 * height each side covers one glyph).
 */
export function textBoxes(words: readonly Box[]): Box[] {
  return words.map((b) => {
    const mx = Math.max(4, Math.ceil(b.h * 0.5));
    const my = Math.max(2, Math.ceil(b.h * 0.25));
    return { x: Math.max(0, b.x - mx), y: Math.max(0, b.y - my), w: b.w + 2 * mx, h: b.h + 2 * my };
  });
}

/** Frames OCR reads: all, or `n` evenly spaced with the first and the last. */
export function framesToRead(frames: number, n: number): number[] {
  if (frames <= n) return [...Array(frames).keys()];
  return [...new Set([...Array(n).keys()].map((i) => Math.round((i * (frames - 1)) / (n - 1))))];
}

/**
 * Makes the pixels of an at-risk instance safe, or throws PixelRiskError naming the step (the caller quarantines
 * or rejects). `needles` are this patient's identifying values: OCR words holding one are always blanked.
 */
export async function cleanBurnedInText(ds: ParsedDataset, sopClassUid: string, policy: PixelPolicy, needles: readonly Needle[]): Promise<PixelOutcome> {
  const { settings, site } = policy;
  if (settings.gate === 'off') return { kind: 'not at risk' };
  const verdict = assessRisk(ds, sopClassUid, site);
  if (!verdict.atRisk) return { kind: 'not at risk' };
  if (verdict.document) throw new PixelRiskError('document', 'an encapsulated document passes only where a site rule allows it (allow-document)');
  if (!ds.elements.some((e) => e.tag === PIXEL_DATA)) return { kind: 'no text found', why: verdict.why };
  if (!canClean(ds.transferSyntaxUid)) throw new PixelRiskError('codec', `no lossless codec for transfer syntax ${ds.transferSyntaxUid}`);
  const geometry = imageGeometry(ds);

  const masks = site.masks.filter((m) => meets(ds, m.when, sopClassUid));
  const regions = masks.flatMap((m) => m.regions);
  const cleaned = (perFrame: Box[][], decoded: ReturnType<typeof decodeFrames>, ocrWords: number): PixelOutcome => ({
    kind: 'cleaned',
    why: verdict.why,
    pixels: cleanPixelData(ds, perFrame, decoded),
    masks: masks.map((m) => m.name),
    ocrWords,
  });
  if (settings.ocr === 'off') {
    if (masks.length === 0) throw new PixelRiskError('mask', 'no mask matches and OCR is off');
    await initCodecs();
    return cleaned(Array.from({ length: geometry.frames }, () => regions), decodeFrames(ds), 0);
  }
  const engine = await ocrAvailable({ command: settings.ocrCommand, timeoutMs: settings.ocrTimeoutMs });
  if (!engine.ok) throw new PixelRiskError('ocr', 'the OCR engine is not available');
  await initCodecs();
  const decoded = decodeFrames(ds);
  const read = framesToRead(geometry.frames, settings.ocrFrames);
  const words = await findText(read.map((f) => toGrey(decoded, f)), { command: settings.ocrCommand, timeoutMs: settings.ocrTimeoutMs });
  const modality = topLevelString(ds, MODALITY).trim().toUpperCase();
  const allow = new Set([...(site.allowWords['*'] ?? []), ...(site.allowWords[modality] ?? [])]);
  const blank: OcrWord[] = words.filter((w) => !mayStay(w.text, allow, needles));
  let perFrame: Box[][];
  if (read.length === geometry.frames) {
    perFrame = read.map((_, i) => [...regions, ...textBoxes(blank.filter((w) => w.frame === i).map((w) => w.box))]);
  } else {
    const union = [...regions, ...textBoxes(blank.map((w) => w.box))];
    perFrame = Array.from({ length: geometry.frames }, () => union);
  }
  if (perFrame.every((b) => b.length === 0)) {
    if (verdict.declared) throw new PixelRiskError('ocr', 'Burned In Annotation is YES but no mask or OCR located the text');
    return { kind: 'no text found', why: verdict.why };
  }
  return cleaned(perFrame, decoded, blank.length);
}

/** What `dphiant profile show` lists of the policy: settings, what is at risk, masks, rules, words OCR may leave. */
export function describePixelPolicy(policy: PixelPolicy): { what: string; name: string; detail: string }[] {
  const { settings: s, site } = policy;
  const when = (w: Record<string, unknown>) => Object.entries(w).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(', ');
  return [
    { what: 'setting', name: 'gate', detail: s.gate },
    { what: 'setting', name: 'ocr', detail: s.ocr === 'off' ? 'off (masks only)' : `${s.ocr} (${s.ocrCommand}), ${s.ocrFrames} frames per instance at most` },
    { what: 'setting', name: 'files', detail: site.sources.map((f) => f.replace(/^.*\/(src\/anonymize\/data\/)/, '$1')).join(', ') },
    ...Object.entries(site.sopClasses).map(([uid, name]) => ({ what: 'at risk', name: `SOP class ${name}`, detail: uid })),
    { what: 'at risk', name: 'Modality', detail: site.modalities.join(', ') },
    { what: 'at risk', name: 'Burned In Annotation', detail: 'YES' },
    ...site.masks.map((m) => ({ what: 'mask', name: m.name, detail: `when ${when(m.when)}: blank ${m.regions.map((r) => `${r.w}x${r.h}+${r.x}+${r.y}`).join(', ')}` })),
    ...site.rules.map((r) => ({ what: 'rule', name: r.name, detail: `when ${when(r.when)}: ${r.then}` })),
    ...Object.entries(site.allowWords).map(([m, words]) => ({ what: 'OCR may leave', name: m === '*' ? 'every modality' : m, detail: words.join(' ') })),
    { what: 'OCR may leave', name: 'numbers', detail: 'up to 3 digits with a unit (5.0 MHZ, 12 CM), frame counters (12/30); never a value of the patient' },
  ];
}
