// The PS3.6 data dictionary as the walker and the engine need it: the VR of a tag (for implicit VR data sets)
// and keyword <-> tag. Source: dcmjs's DicomMetaDictionary, plus the keywords and VRs of the newer attributes of
// PS3.15 Table E.1-1 that dcmjs does not know yet (src/dicom/data/dictionary-supplement.json).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { findUp } from '../paths.js';

interface DcmjsEntry {
  tag: string;
  vr: string;
  name: string;
}
interface Entry {
  /** A single VR; dictionary alternatives already resolved to their implicit-VR default. */
  vr: string | undefined;
  keyword: string;
  /** 'US or SS' in the dictionary: the walker may choose SS from Pixel Representation. */
  usOrSs: boolean;
}

// dcmjs ships no type declarations; dcmjs-dimse already loads this CommonJS build, so the instance is shared.
const dcmjs = createRequire(import.meta.url)('dcmjs') as { data: { DicomMetaDictionary: { nameMap: Record<string, DcmjsEntry> } } };

/** dcmjs's codes for the dictionary's "X or Y" VRs, resolved as PS3.5 A.1 encodes them in implicit VR. */
const ALTERNATIVES: Record<string, string | undefined> = {
  ox: 'OW', // OB or OW
  xs: 'US', // US or SS
  lt: 'OW', // US or OW / US or SS or OW (LUT data)
  up: 'UL', // retired directory offsets
  na: undefined, // item and delimitation items
};

const byTag = new Map<number, Entry>();
const byKeyword = new Map<string, number>();

function add(tag: number, vr: string | null | undefined, keyword: string): void {
  const resolved = vr && vr in ALTERNATIVES ? ALTERNATIVES[vr] : (vr ?? undefined);
  byTag.set(tag, { vr: resolved, keyword, usOrSs: vr === 'xs' && !keyword.endsWith('Descriptor') });
  if (!byKeyword.has(keyword)) byKeyword.set(keyword, tag);
}

for (const e of Object.values(dcmjs.data.DicomMetaDictionary.nameMap)) {
  const m = /^\(([0-9A-F]{4}),([0-9A-F]{4})\)$/i.exec(e.tag);
  if (!m) continue;
  add(parseInt(m[1]! + m[2]!, 16) >>> 0, e.vr, e.name.replace(/^RETIRED_/, ''));
}

// newer attributes dcmjs does not know (their VR null where the table gives none): src/dicom/data/README.md
const supplement = JSON.parse(readFileSync(findUp('src/dicom/data/dictionary-supplement.json'), 'utf8')) as { attributes: { tag: string; keyword: string; vr: string | null }[] };
for (const row of supplement.attributes) {
  const tag = parseInt(row.tag, 16) >>> 0;
  if (!byTag.has(tag)) add(tag, row.vr ?? undefined, row.keyword);
}

/** Even groups 50xx, 60xx and 7Fxx repeat (curves, overlays, variable pixel data); the dictionary lists xx = 00. */
function lookup(tag: number): Entry | undefined {
  const direct = byTag.get(tag);
  if (direct) return direct;
  const group = tag >>> 16;
  const base = group & 0xff00;
  if ((group & 1) === 0 && (base === 0x5000 || base === 0x6000 || base === 0x7f00)) return byTag.get(((base << 16) | (tag & 0xffff)) >>> 0);
  return undefined;
}

export const isPrivateTag = (tag: number): boolean => ((tag >>> 16) & 1) === 1;
/** (gggg,0010-00FF) in an odd group. */
export const isPrivateCreator = (tag: number): boolean => isPrivateTag(tag) && (tag & 0xffff) >= 0x0010 && (tag & 0xffff) <= 0x00ff;

/**
 * The VR to read an implicit-VR element with, or undefined when the dictionary does not know it (the walker reads
 * those as UN). Group lengths are UL, Private Creators LO, other private elements have no dictionary VR.
 */
export function vrOf(tag: number): string | undefined {
  if ((tag & 0xffff) === 0) return 'UL';
  if (isPrivateTag(tag)) return isPrivateCreator(tag) ? 'LO' : undefined;
  return lookup(tag)?.vr;
}

/** True for the dictionary's "US or SS" attributes whose VR follows Pixel Representation (not LUT descriptors). */
export function isUsOrSs(tag: number): boolean {
  return lookup(tag)?.usOrSs ?? false;
}

/** The PS3.6 keyword (retired attributes without a "RETIRED_" prefix), or undefined. */
export function keywordOf(tag: number): string | undefined {
  if (isPrivateTag(tag)) return undefined;
  return lookup(tag)?.keyword;
}

/** The tag of a keyword (repeating groups: the xx = 00 tag, e.g. OverlayData → (6000,3000)), or undefined. */
export function tagOfKeyword(keyword: string): number | undefined {
  return byKeyword.get(keyword.startsWith('RETIRED_') ? keyword.slice(8) : keyword);
}

/** "(0010,0010)", "0010,0010", "00100010" (hex, any case) or a keyword → tag. Throws on anything else. */
export function parseTag(s: string): number {
  const t = s.trim();
  const m = /^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$/.exec(t);
  if (m && (t.startsWith('(') === t.endsWith(')'))) return parseInt(m[1]! + m[2]!, 16) >>> 0;
  const byName = tagOfKeyword(t);
  if (byName !== undefined) return byName;
  throw new Error(`not a DICOM tag or keyword: ${JSON.stringify(s)}`);
}

/** "(GGGG,EEEE)" in upper-case hex. */
export function formatTag(tag: number): string {
  const h = (tag >>> 0).toString(16).toUpperCase().padStart(8, '0');
  return `(${h.slice(0, 4)},${h.slice(4)})`;
}
