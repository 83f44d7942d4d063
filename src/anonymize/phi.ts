// The identifying values of one instance, read from its input: the patient's identity (for the crosswalk) and
// the "needles" the verification gate (gate.ts) and the engine's redaction look for in every value of the output.
// Needles come from every identifying value at any depth, not only the patient's: other people's names, IDs,
// dates, UIDs, addresses, telephone numbers and institutions.
import type { DicomElement, ParsedDataset } from '../dicom/walker.js';
import { keywordOf } from '../dicom/dictionary.js';
import { stringValues, topLevelString, walkWithCharset } from '../dicom/values.js';
import { isStandardUid } from '../dicom/uid-registry.js';
import type { PatientIdentity } from '../dicom/identity.js';
import type { Profile } from './profile.js';
import { redactPatterns, xOut } from './patterns.js';

export type NeedleKind =
  | 'patient name'
  | 'person name'
  | 'id'
  | 'accession'
  | 'date'
  | 'birth date'
  | 'uid'
  | 'address'
  | 'telephone'
  | 'institution';

export interface Needle {
  kind: NeedleKind;
  /** Lower-cased text to find: as whole tokens, or anywhere when `inside`; UIDs by the UID boundary rule. */
  text: string;
  /** May match inside larger tokens (IDs with letters and digits or 6+ digits; words of scripts without spaces). */
  inside?: boolean;
}

const PATIENT_NAME = 0x00100010;
const PATIENT_ID = 0x00100020;
const OTHER_PATIENT_IDS = 0x00101000;
const ACCESSION_NUMBER = 0x00080050;
const BIRTH_DATE = 0x00100030;
/** The engine's dummy date (engine.ts DUMMY): not an identifying value of the input. */
const DUMMY_DATE = '19000101';
/** Values longer than this are not one identifying value (a name, an ID, a date): not read for needles. */
const MAX_NEEDLE_VALUE = 64 * 1024;

/** The patient's identity from the top level of the data set. */
export function identityOf(ds: ParsedDataset): PatientIdentity {
  const top = (tag: number) => topLevelString(ds, tag);
  return {
    patientId: top(PATIENT_ID),
    issuerOfPatientId: top(0x00100021),
    name: top(PATIENT_NAME),
    sex: top(0x00100040).toUpperCase(),
    birthDate: top(BIRTH_DATE),
    studyInstanceUid: top(0x0020000d),
  };
}

// ---- which elements give needles ----

type Source = { kind: NeedleKind; how: 'name' | 'id' | 'date' | 'uid' | 'phrase' };

const ID_VRS = new Set(['LO', 'SH', 'UC', 'ST', 'LT']);
const PHRASE_VRS = new Set(['LO', 'SH', 'UC', 'ST', 'LT', 'UT']);
const ID_KEYWORD = /(?:ID|Id|IDs|Number|Numbers|Identifier)$/;

/** VRs that can hold a name, ID, date, UID, address, telephone number or institution. */
const SOURCE_VRS = new Set(['PN', 'DA', 'DT', 'UI', ...PHRASE_VRS]);
/** Per VR, per tag: what an element holds (null: nothing identifying). */
const sources = new Map<string, Map<number, Source | null>>();

/** What kind of identifying value an element of this tag and VR holds, or null; by VR, then by keyword. */
function sourceOf(tag: number, vr: string): Source | null {
  if (!SOURCE_VRS.has(vr)) return null;
  let byTag = sources.get(vr);
  if (!byTag) sources.set(vr, (byTag = new Map()));
  let s = byTag.get(tag);
  if (s !== undefined) return s;
  s = null;
  const keyword = keywordOf(tag) ?? '';
  if (vr === 'PN') s = { kind: tag >>> 16 === 0x0010 ? 'patient name' : 'person name', how: 'name' }; // group 0010: the patient's own and relatives' names
  else if (vr === 'DA' || vr === 'DT') s = { kind: tag === BIRTH_DATE ? 'birth date' : 'date', how: 'date' };
  else if (vr === 'UI') s = { kind: 'uid', how: 'uid' };
  else if (PHRASE_VRS.has(vr) && keyword.includes('Telephone')) s = { kind: 'telephone', how: 'phrase' };
  else if (PHRASE_VRS.has(vr) && keyword.includes('Address')) s = { kind: 'address', how: 'phrase' };
  else if (PHRASE_VRS.has(vr) && /InstitutionName|InstitutionalDepartmentName/.test(keyword)) s = { kind: 'institution', how: 'phrase' };
  else if (tag === ACCESSION_NUMBER) s = { kind: 'accession', how: 'id' };
  else if (tag === PATIENT_ID || tag === OTHER_PATIENT_IDS || (ID_VRS.has(vr) && ID_KEYWORD.test(keyword))) s = { kind: 'id', how: 'id' };
  byTag.set(tag, s);
  return s;
}

/** Which kind a needle found twice keeps: the one that says most about the patient. */
const PRIORITY: NeedleKind[] = ['patient name', 'birth date', 'accession', 'id', 'uid', 'address', 'telephone', 'institution', 'person name', 'date'];

/** Letters of scripts written without spaces between words: their words match anywhere, at any length. */
const NO_SPACE_SCRIPT = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;
/** Prefixes and suffixes that name no one (Dr, Jr, MD): as needles they would redact every title and modality. */
const HONORIFICS = new Set(['dr', 'mr', 'mrs', 'ms', 'mx', 'miss', 'prof', 'sir', 'dame', 'rev', 'jr', 'sr', 'ii', 'iii', 'iv', 'md', 'phd', 'do', 'rn', 'np', 'pa', 'dds', 'dmd', 'mbbs', 'frcr', 'frcp', 'esq']);
const EDGE_PUNCTUATION = /^[^\p{L}\p{N}\p{M}]+|[^\p{L}\p{N}\p{M}]+$/gu;

/** Length in characters (code points), as VR limits and name lengths count. */
export const length = (s: string) => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

/** Words of a person name: of every component group (alphabetic, ideographic, phonetic) and every component. */
function nameWords(pn: string, out: (word: string, inside: boolean) => void): void {
  for (const group of pn.split('=')) {
    group.split('^').slice(0, 5).forEach((component, i) => {
      for (const raw of component.split(/[\s,]+/)) {
        const word = raw.replace(EDGE_PUNCTUATION, '');
        if (!word || (i >= 3 && HONORIFICS.has(word.toLowerCase().replace(/\./g, '')))) continue;
        if (NO_SPACE_SCRIPT.test(word)) {
          out(word, true);
          continue;
        }
        if (length(word) >= 2) out(word, false);
        // Smith-Jones is also written Jones
        if (/[-'’]/.test(word)) for (const part of word.split(/[-'’]+/)) if (length(part) >= 2) out(part, false);
      }
    });
  }
}

const MONTHS = ['january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september', 'october', 'november', 'december'];

/**
 * A date in DA and the forms machines and people write it in. The birth date also in words (5 April 1967): it is
 * the date people quote; any date in words is a shape the redaction's patterns take out anyway (patterns.ts).
 */
function dateForms(da: string, inWords: boolean): string[] {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(da.trim());
  if (!m) return [];
  const [, y, mo, d] = m as unknown as [string, string, string, string];
  const forms = [`${y}${mo}${d}`, `${y}-${mo}-${d}`, `${y}/${mo}/${d}`, `${y}.${mo}.${d}`, `${d}/${mo}/${y}`, `${mo}/${d}/${y}`, `${d}.${mo}.${y}`, `${d}-${mo}-${y}`];
  const month = MONTHS[Number(mo) - 1];
  if (inWords && month) {
    const dn = String(Number(d));
    const mn = String(Number(mo));
    forms.push(`${mo}-${d}-${y}`, `${dn}/${mn}/${y}`, `${mn}/${dn}/${y}`, `${dn} ${month} ${y}`, `${month} ${dn}, ${y}`, `${month} ${dn} ${y}`, `${d}-${month.slice(0, 3)}-${y}`, `${dn} ${month.slice(0, 3)} ${y}`, `${month.slice(0, 3)} ${dn}, ${y}`);
  }
  return forms;
}

/** The 8-digit dates of a DA value (a range gives two) or the date part of a DT value. */
function datesOf(value: string, vr: string): string[] {
  if (vr === 'DT') {
    const m = /^\d{8}/.exec(value.trim());
    return m ? [m[0]] : [];
  }
  return value.split('-').map((v) => v.trim()).filter((v) => /^\d{8}$/.test(v));
}

/** An ID that identifies also as part of a longer token: 3+ characters with letters and digits, or 6+ digits. */
function idMatchesInside(id: string): boolean {
  const digits = id.replace(/\D+/g, '').length;
  return digits >= 6 || (length(id) >= 3 && digits > 0 && /\p{L}/u.test(id));
}

/**
 * Every identifying value of the input, at any depth (items decoded with their own character set), as needles:
 * person names (words of 2+ characters; words of Han, kana and Hangul at any length, anywhere), IDs (of 3+
 * characters), dates (every DA, the date of every DT, in the forms people write), UIDs (except the standard's
 * registry), addresses, telephone numbers and institutions. Values the profile keeps as they are are wanted in the
 * output, so they give no needles. Deduplicated: one needle per text.
 */
export function phiNeedles(ds: ParsedDataset, profile: Profile): Needle[] {
  const byText = new Map<string, Needle>();
  const add = (kind: NeedleKind, t: string, inside: boolean) => {
    const had = byText.get(t);
    if (!had) {
      byText.set(t, inside ? { kind, text: t, inside } : { kind, text: t });
      return;
    }
    if (PRIORITY.indexOf(kind) < PRIORITY.indexOf(had.kind)) had.kind = kind;
    if (inside) had.inside = true;
  };
  walkWithCharset(ds, (el: DicomElement, _path, charset) => {
    if (el.items || el.fragments || el.valueEnd - el.valueStart > MAX_NEEDLE_VALUE || el.valueEnd === el.valueStart) return;
    // (an element written as UN of a known text attribute has its dictionary VR already: walker.ts)
    const vr = el.vr;
    const source = sourceOf(el.tag, vr);
    // a "default": "keep" profile keeps everything on purpose: the gate then reports what it would have rejected
    if (!source || (!profile.keepsEverything && profile.keepsOriginal(el.tag, vr))) return;
    for (const value of stringValues(ds, el, charset)) {
      if (source.how === 'uid') {
        // (stringValues trims UI values) a UID needle matters only where it is compared or met in text as a UID
        if (!isStandardUid(value)) add('uid', value, false);
        continue;
      }
      for (const n of needlesOfValue(source, vr, value)) add(n.kind, n.text, n.inside === true);
    }
  });
  return [...byText.values()];
}

// Names, dates and IDs repeat from instance to instance of a patient and study: their needles are remembered
// (bounded), so each instance pays only for what is new in it.
const valueNeedles = new Map<Source, Map<string, Needle[]>>();
let valueNeedlesSize = 0;
const VALUE_NEEDLES_MAX = 20_000;

/** The needles of one value of a name, ID, date or phrase element (lower-cased, trimmed, non-empty). */
function needlesOfValue(source: Source, vr: string, value: string): Needle[] {
  // a Source stands for one VR and tag (sourceOf): the value alone is the key within it
  let byValue = valueNeedles.get(source);
  if (!byValue) valueNeedles.set(source, (byValue = new Map()));
  let out = byValue.get(value);
  if (out) return out;
  out = [];
  const push = (text: string, inside: boolean) => {
    const t = text.trim().toLowerCase();
    if (t) out!.push(inside ? { kind: source.kind, text: t, inside } : { kind: source.kind, text: t });
  };
  switch (source.how) {
    case 'name':
      nameWords(value, push);
      break;
    case 'id': {
      const id = value.trim();
      if (length(id) >= 3) push(id, idMatchesInside(id));
      break;
    }
    case 'date':
      for (const da of datesOf(value, vr)) if (da !== DUMMY_DATE) for (const form of dateForms(da, source.kind === 'birth date')) push(form, false);
      break;
    case 'phrase':
      if (length(value.trim()) >= 3) push(value.replace(/\s+/g, ' '), false);
      break;
  }
  if (++valueNeedlesSize > VALUE_NEEDLES_MAX) {
    valueNeedles.clear();
    valueNeedlesSize = 0;
  }
  byValue.set(value, out);
  return out;
}

// ---- matching ----

const WORD = /[\p{L}\p{N}\p{M}]/u;
const TOKENS = /[\p{L}\p{N}\p{M}]+/gu;
const ASCII = /^[\x00-\x7f]*$/;
const ASCII_TOKENS = /[A-Za-z0-9]+/g;
/** A UID in text: digits and dots not preceded by a digit or a dot, as far as ".digit" continues. */
const UID_RUN = /(?<![\d.])\d+(?:\.\d+)+/g;

interface Compiled {
  /** Needles matched as whole tokens, by their first token and where in the needle that token starts. */
  byFirstToken: Map<string, { needle: Needle; offset: number }[]>;
  inside: Needle[];
  uids: Map<string, Needle>;
  size: number;
}

const compiledSets = new WeakMap<readonly Needle[], Compiled>();

/** The needles arranged for one pass over a value; cached per array (the engine passes the same one per instance). */
function compileNeedles(needles: readonly Needle[]): Compiled {
  const had = compiledSets.get(needles);
  if (had && had.size === needles.length) return had;
  const c: Compiled = { byFirstToken: new Map(), inside: [], uids: new Map(), size: needles.length };
  for (const n of needles) {
    if (!n.text) continue;
    if (n.kind === 'uid') c.uids.set(n.text, n);
    else if (n.inside) c.inside.push(n);
    else {
      TOKENS.lastIndex = 0;
      const first = TOKENS.exec(n.text);
      if (!first) continue; // punctuation only: nothing a boundary could delimit
      const list = c.byFirstToken.get(first[0]);
      const entry = { needle: n, offset: first.index };
      if (list) list.push(entry);
      else c.byFirstToken.set(first[0], [entry]);
    }
  }
  compiledSets.set(needles, c);
  return c;
}

function codePointBefore(s: string, i: number): string {
  if (i <= 0) return '';
  const lo = s.charCodeAt(i - 1);
  return i >= 2 && lo >= 0xdc00 && lo <= 0xdfff ? s.slice(i - 2, i) : s[i - 1]!;
}

function isBoundedToken(hay: string, start: number, end: number): boolean {
  const before = codePointBefore(hay, start);
  const after = end < hay.length ? String.fromCodePoint(hay.codePointAt(end)!) : '';
  return !(before && WORD.test(before)) && !(after && WORD.test(after));
}

export interface MatchOptions {
  /** Let `inside` needles match inside larger tokens (default true); false: whole tokens only. */
  inside?: boolean;
}

/**
 * Every occurrence of the needles in `hay` (already lower-cased): calls `found` with its range and needle. One pass
 * over the tokens of `hay` for whole-token needles, one over its digit-and-dot runs for UIDs, indexOf for the few
 * needles that match inside tokens.
 */
export function matchNeedles(hay: string, needles: readonly Needle[], found: (start: number, end: number, needle: Needle) => void, opts: MatchOptions = {}): void {
  const c = compileNeedles(needles);
  if (c.byFirstToken.size) {
    // most values are ASCII, where a token is [a-z0-9]+ and the Unicode-aware regex costs several times more
    const tokens = ASCII.test(hay) ? ASCII_TOKENS : TOKENS;
    tokens.lastIndex = 0;
    for (let m = tokens.exec(hay); m; m = tokens.exec(hay)) {
      const list = c.byFirstToken.get(m[0]);
      if (!list) continue;
      for (const { needle, offset } of list) {
        const start = m.index - offset;
        const end = start + needle.text.length;
        if (offset === 0 && end === m.index + m[0].length) found(start, end, needle);
        else if (start >= 0 && hay.startsWith(needle.text, start) && isBoundedToken(hay, start, end)) found(start, end, needle);
      }
    }
  }
  if (c.uids.size && /\d\.\d/.test(hay)) {
    UID_RUN.lastIndex = 0;
    for (let m = UID_RUN.exec(hay); m; m = UID_RUN.exec(hay)) {
      const needle = c.uids.get(m[0]);
      if (needle) found(m.index, m.index + m[0].length, needle);
    }
  }
  const inside = opts.inside ?? true;
  for (const needle of c.inside) {
    for (let i = hay.indexOf(needle.text); i >= 0; i = hay.indexOf(needle.text, i + 1)) {
      if (inside || isBoundedToken(hay, i, i + needle.text.length)) found(i, i + needle.text.length, needle);
    }
  }
}

/** The UID needle equal to `uid` (a UI value), if any. */
export function uidNeedle(uid: string, needles: readonly Needle[]): Needle | undefined {
  return compileNeedles(needles).uids.get(uid);
}

/** `text` lower-cased, and where each of its code units came from when lower-casing changed lengths (İ → i̇). */
function lowerWithOrigin(text: string): { lower: string; origin?: number[] } {
  const lower = text.toLowerCase();
  if (lower.length === text.length) return { lower };
  let out = '';
  const origin: number[] = [];
  for (let i = 0; i < text.length; ) {
    const cp = String.fromCodePoint(text.codePointAt(i)!);
    const l = cp.toLowerCase();
    out += l;
    for (let k = 0; k < l.length; k++) origin.push(i);
    i += cp.length;
  }
  origin.push(text.length);
  return { lower: out, origin };
}

/** Replaces every occurrence of the needles by X characters of the same length (in characters: VR limits hold). */
export function redactNeedles(text: string, needles: readonly Needle[]): string {
  if (needles.length === 0 || text === '') return text;
  const { lower, origin } = lowerWithOrigin(text);
  let covered: Uint8Array | undefined;
  matchNeedles(lower, needles, (start, end) => {
    covered ??= new Uint8Array(text.length);
    const s = origin ? origin[start]! : start;
    const e = origin ? origin[end]! : end;
    covered.fill(1, s, e);
  });
  if (!covered) return text;
  let out = '';
  let run = '';
  for (let i = 0; i < text.length; ) {
    const cp = String.fromCodePoint(text.codePointAt(i)!);
    if (covered[i]) run += cp;
    else {
      if (run) (out += xOut(run)), (run = '');
      out += cp;
    }
    i += cp.length;
  }
  return run ? out + xOut(run) : out;
}

/**
 * Free text with the instance's identifying values (needles) and the shapes of identifying values (patterns.ts:
 * dates, telephone numbers, e-mail, URLs and hosts, ID-like tokens, titled names) replaced by X characters.
 * Same length in characters as `text`.
 */
export function redact(text: string, needles: readonly Needle[]): string {
  return redactPatterns(redactNeedles(text, needles));
}

export { redactPatterns };
