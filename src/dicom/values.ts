// Element values read from a ParsedDataset without copying its buffer, and the inverse for text: Specific
// Character Set (0008,0005) decoding (PS3.5 6.1, PS3.3 C.12.1.1.2) and encoding of replacement strings.
import type { DicomElement, ParsedDataset } from './walker.js';
import { TextDecoder } from 'node:util';
import { formatTag } from './dictionary.js';
import { CHARSET_VRS } from './vr.js';

const SPECIFIC_CHARACTER_SET = 0x00080005;
/** VRs whose text follows Specific Character Set; the others use the default repertoire. */
/** Single-valued text VRs: a backslash is text, not a value separator. */
const SINGLE_VALUED = new Set(['LT', 'ST', 'UT', 'UR']);
/** VRs whose leading spaces are not significant either. */
const TRIM_BOTH = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'TM', 'UI']);

/** The value bytes (a view of the buffer, not a copy). */
export function rawValue(ds: ParsedDataset, el: DicomElement): Buffer {
  return ds.buffer.subarray(el.valueStart, el.valueEnd);
}

const charsetCache = new WeakMap<ParsedDataset, string[]>();

/** The values of the top-level Specific Character Set (the first may be empty: default repertoire); [] if absent. */
export function specificCharacterSet(ds: ParsedDataset): string[] {
  let cs = charsetCache.get(ds);
  if (!cs) charsetCache.set(ds, (cs = itemCharset(ds, ds.elements, [])));
  return cs;
}

/**
 * The character set of an item's values: its own Specific Character Set when it has one (PS3.5 6.1.2.5.2: it then
 * applies to that item and the items it contains), else the enclosing one.
 */
export function itemCharset(ds: ParsedDataset, elements: DicomElement[], inherited: string[]): string[] {
  const el = elements.find((e) => e.tag === SPECIFIC_CHARACTER_SET);
  if (!el || el.items || el.fragments) return inherited;
  const cs = rawValue(ds, el).toString('latin1').split('\\').map((v) => v.trim().replace(/\0+$/, ''));
  return cs.length === 1 && cs[0] === '' ? [] : cs;
}

// ---- decoding ----

/** TextDecoder labels of the single-byte and multi-byte terms used without code extensions. */
const SINGLE: Record<string, string> = {
  'ISO_IR 101': 'iso-8859-2', 'ISO_IR 109': 'iso-8859-3', 'ISO_IR 110': 'iso-8859-4', 'ISO_IR 144': 'iso-8859-5',
  'ISO_IR 127': 'iso-8859-6', 'ISO_IR 126': 'iso-8859-7', 'ISO_IR 138': 'iso-8859-8', 'ISO_IR 148': 'iso-8859-9',
  'ISO_IR 203': 'iso-8859-15', 'ISO_IR 166': 'windows-874', 'ISO_IR 13': 'shift_jis', 'ISO_IR 192': 'utf-8',
  GB18030: 'gb18030', GBK: 'gbk',
};

type G0 = 'ascii' | 'jisx0208' | 'jisx0212';
/** G1: a TextDecoder label, 'latin1', 'katakana' (JIS X 0201) or null (none designated). */
type G1 = string | null;
interface State { g0: G0; g1: G1 }

/** Escape sequences (the bytes after ESC) and what they designate. */
const ESCAPES: [string, Partial<State>][] = [
  ['(B', { g0: 'ascii' }], ['(J', { g0: 'ascii' }], // JIS X 0201 romaji: read as ASCII
  ['$B', { g0: 'jisx0208' }], ['$@', { g0: 'jisx0208' }], ['$(D', { g0: 'jisx0212' }],
  [')I', { g1: 'katakana' }], ['$)C', { g1: 'euc-kr' }], ['$)A', { g1: 'gb18030' }],
  ['-A', { g1: 'latin1' }], ['-B', { g1: 'iso-8859-2' }], ['-C', { g1: 'iso-8859-3' }], ['-D', { g1: 'iso-8859-4' }],
  ['-L', { g1: 'iso-8859-5' }], ['-G', { g1: 'iso-8859-6' }], ['-F', { g1: 'iso-8859-7' }], ['-H', { g1: 'iso-8859-8' }],
  ['-M', { g1: 'iso-8859-9' }], ['-b', { g1: 'iso-8859-15' }], ['-T', { g1: 'windows-874' }],
];

/** The G0/G1 sets a defined term designates initially (PS3.3 Table C.12-3/C.12-4). */
function initialState(term: string | undefined): State {
  const t = (term ?? '').replace('ISO 2022 IR ', 'ISO_IR ');
  if (t === 'ISO_IR 100') return { g0: 'ascii', g1: 'latin1' };
  if (t === 'ISO_IR 13') return { g0: 'ascii', g1: 'katakana' };
  if (t === 'ISO_IR 87') return { g0: 'jisx0208', g1: null };
  if (t === 'ISO_IR 159') return { g0: 'jisx0212', g1: null };
  if (t === 'ISO_IR 149') return { g0: 'ascii', g1: 'euc-kr' };
  if (t === 'ISO_IR 58') return { g0: 'ascii', g1: 'gb18030' };
  const label = SINGLE[t];
  return { g0: 'ascii', g1: label && label !== 'utf-8' && label !== 'shift_jis' ? label : null };
}

const decoders = new Map<string, TextDecoder | null>();
function decoder(label: string): TextDecoder | null {
  let d = decoders.get(label);
  if (d === undefined) {
    try {
      d = new TextDecoder(label);
    } catch {
      d = null; // not supported by this Node build: latin1 fallback
    }
    decoders.set(label, d);
  }
  return d;
}

function decodeWith(label: string | null, bytes: Uint8Array): string {
  if (label === null || label === 'latin1') return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
  const d = decoder(label);
  return d ? d.decode(bytes) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
}

/** Bytes in one G0/G1 state. JIS sets go through EUC-JP, which WHATWG decoders support (ISO-2022-JP lacks JIS X 0212). */
function decodeSegment(seg: Uint8Array, s: State): string {
  if (seg.length === 0) return '';
  if (s.g0 === 'ascii' && s.g1 !== 'katakana') return decodeWith(s.g1, seg);
  const euc: number[] = [];
  for (let i = 0; i < seg.length; i++) {
    const x = seg[i]!;
    if (s.g0 !== 'ascii' && x >= 0x21 && x <= 0x7e && i + 1 < seg.length) {
      if (s.g0 === 'jisx0212') euc.push(0x8f);
      euc.push(x | 0x80, seg[++i]! | 0x80);
    } else if (x >= 0xa1 && x <= 0xdf && s.g1 === 'katakana') {
      euc.push(0x8e, x);
    } else {
      euc.push(x);
    }
  }
  return decodeWith('euc-jp', Uint8Array.from(euc));
}

/** ISO 2022 code extensions: escape sequences switch G0/G1; delimiters return to the initial designations. */
function decodeIso2022(bytes: Uint8Array, charset: string[], isPN: boolean): string {
  const initial = initialState(charset[0]);
  let s: State = { ...initial };
  let out = '';
  let from = 0;
  let i = 0;
  while (i < bytes.length) {
    const x = bytes[i]!;
    if (x === 0x1b) {
      const esc = ESCAPES.find(([seq]) => seq.split('').every((ch, k) => bytes[i + 1 + k] === ch.charCodeAt(0)));
      if (esc) {
        out += decodeSegment(bytes.subarray(from, i), s);
        s = { ...s, ...esc[1] };
        i += 1 + esc[0].length;
        from = i;
        continue;
      }
    }
    if (s.g0 !== 'ascii' && x >= 0x21 && x <= 0x7e) {
      i += 2; // a two-byte character: its bytes are no delimiters
      continue;
    }
    i++;
    const delimiter = x === 0x5c || x === 0x0d || x === 0x0a || x === 0x09 || x === 0x0c || (isPN && (x === 0x5e || x === 0x3d));
    if (delimiter && (s.g0 !== initial.g0 || s.g1 !== initial.g1)) {
      out += decodeSegment(bytes.subarray(from, i), s);
      s = { ...initial };
      from = i;
    }
  }
  return out + decodeSegment(bytes.subarray(from, Math.min(i, bytes.length)), s);
}

/** Decodes text bytes of a VR with the given Specific Character Set values. */
export function decodeText(bytes: Uint8Array, vr: string, charset: string[]): string {
  if (!CHARSET_VRS.has(vr) || charset.length === 0) return decodeWith(null, bytes);
  if (charset.length > 1 || charset.some((t) => t.startsWith('ISO 2022'))) return decodeIso2022(bytes, charset, vr === 'PN');
  const term = charset[0]!;
  if (term === 'ISO_IR 100' || term === 'ISO_IR 6' || term === '') return decodeWith(null, bytes);
  return decodeWith(SINGLE[term] ?? null, bytes);
}

function trimEnd(s: string): string {
  let e = s.length;
  while (e > 0 && (s.charCodeAt(e - 1) === 0x20 || s.charCodeAt(e - 1) === 0)) e--;
  return e === s.length ? s : s.slice(0, e);
}

/** The whole value as text (backslashes kept), trailing spaces and NULs removed. Charset: default the data set's. */
export function stringValue(ds: ParsedDataset, el: DicomElement, charset?: string[]): string {
  if (el.items || el.fragments) throw new Error(`${formatTag(el.tag)} is a sequence or encapsulated data, not text`);
  return trimEnd(decodeText(rawValue(ds, el), el.vr, charset ?? specificCharacterSet(ds)));
}

/** The text of a top-level element: '' when it is absent, a sequence or encapsulated data. */
export function topLevelString(ds: ParsedDataset, tag: number, charset?: string[]): string {
  const el = ds.elements.find((e) => e.tag === tag);
  return el && !el.items && !el.fragments ? stringValue(ds, el, charset) : '';
}

/** The values of a text element ([] when empty), split on backslash except for LT, ST, UT and UR. */
export function stringValues(ds: ParsedDataset, el: DicomElement, charset?: string[]): string[] {
  const text = stringValue(ds, el, charset);
  if (text === '') return [];
  const values = SINGLE_VALUED.has(el.vr) ? [text] : text.split('\\');
  return values.map((v) => (TRIM_BOTH.has(el.vr) ? trimEnd(v).trim() : trimEnd(v)));
}

/** Numbers of a binary numeric element (in the element's byte order) or of an IS/DS string. AT gives tags. */
export function numberValues(ds: ParsedDataset, el: DicomElement): number[] {
  const vr = el.vr;
  if (vr === 'IS' || vr === 'DS') {
    return stringValues(ds, el).map((v) => {
      const n = v === '' ? NaN : Number(v);
      if (Number.isNaN(n)) throw new Error(`${formatTag(el.tag)} ${vr}: ${JSON.stringify(v)} is not a number`);
      return n;
    });
  }
  const b = ds.buffer;
  const le = el.encoding.littleEndian;
  const size = { US: 2, SS: 2, OW: 2, UL: 4, SL: 4, OL: 4, FL: 4, OF: 4, FD: 8, OD: 8, AT: 4 }[vr];
  if (size === undefined) throw new Error(`${formatTag(el.tag)}: numberValues does not read VR ${vr}`);
  const out: number[] = [];
  for (let p = el.valueStart; p + size <= el.valueEnd; p += size) {
    switch (vr) {
      case 'US': case 'OW': out.push(le ? b.readUInt16LE(p) : b.readUInt16BE(p)); break;
      case 'SS': out.push(le ? b.readInt16LE(p) : b.readInt16BE(p)); break;
      case 'UL': case 'OL': out.push(le ? b.readUInt32LE(p) : b.readUInt32BE(p)); break;
      case 'SL': out.push(le ? b.readInt32LE(p) : b.readInt32BE(p)); break;
      case 'FL': case 'OF': out.push(le ? b.readFloatLE(p) : b.readFloatBE(p)); break;
      case 'FD': case 'OD': out.push(le ? b.readDoubleLE(p) : b.readDoubleBE(p)); break;
      case 'AT': out.push(le ? ((b.readUInt16LE(p) << 16) | b.readUInt16LE(p + 2)) >>> 0 : b.readUInt32BE(p)); break;
    }
  }
  return out;
}

// ---- encoding ----

const encodeMaps = new Map<string, Map<number, number>>();
/** Code point → byte for a single-byte character set, built from its decoder (0xA0-0xFF; below is ASCII). */
function singleByteMap(label: string): Map<number, number> | undefined {
  let m = encodeMaps.get(label);
  if (!m) {
    const d = decoder(label);
    if (!d) return undefined;
    m = new Map();
    for (let x = 0xa0; x <= 0xff; x++) {
      const ch = d.decode(Uint8Array.of(x));
      if (ch !== '\ufffd') m.set(ch.codePointAt(0)!, x);
    }
    encodeMaps.set(label, m);
  }
  return m;
}

/**
 * A value that the data set's Specific Character Set cannot represent: no retry changes that. The message names
 * the character set and the value's length, never the value (it may be a name).
 */
export class CharsetError extends Error {
  /** What the journal, the quarantine and `dphiant anonymize` say about such an instance. */
  static readonly REASON = "value not encodable in the data set's character set";

  constructor(
    readonly characters: number,
    readonly charset: string,
    message: string,
  ) {
    super(message);
    this.name = 'CharsetError';
  }
}

/**
 * Text → bytes in the given Specific Character Set (no padding). ISO 2022 sets: only what the initial designation
 * of the first value holds (ASCII, or an ISO 8859 upper half), as no escape sequences are written. Throws
 * CharsetError when the text cannot be represented.
 */
export function encodeString(text: string, charset: string[]): Buffer {
  const name = charset.length ? charset.join('\\') : 'default repertoire';
  const term = charset.length > 1 || charset.some((t) => t.startsWith('ISO 2022')) ? (charset[0] ?? '').replace('ISO 2022 IR ', 'ISO_IR ') : (charset[0] ?? '');
  if (charset.length <= 1 && term === 'ISO_IR 192') return Buffer.from(text, 'utf8');
  if (/^[\x00-\x7f]*$/.test(text)) return Buffer.from(text, 'latin1');
  const fail = (): never => {
    const characters = [...text].length;
    throw new CharsetError(characters, name, `cannot encode a value of ${characters} characters in Specific Character Set ${name}: only ${term === '' || term === 'ISO_IR 6' ? 'ASCII' : 'its single-byte repertoire'} can be written`);
  };
  if (term === 'ISO_IR 100') {
    if (/[^\x00-\xff]/.test(text)) fail();
    return Buffer.from(text, 'latin1');
  }
  const label = initialState(term).g1;
  if (!label || label === 'katakana' || label === 'euc-kr' || label === 'gb18030') return fail();
  const map = singleByteMap(label);
  if (!map) return fail();
  const out: number[] = [];
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x80) out.push(cp);
    else {
      const x = map.get(cp);
      if (x === undefined) fail();
      out.push(x!);
    }
  }
  return Buffer.from(out);
}

// ---- walking with character sets ----

/**
 * Like `walk` in walker.ts, and with the character set each element's text is in: an item's own Specific Character
 * Set when it has one, else the enclosing one (top level: specificCharacterSet). `path` is reused: copy it to keep it.
 */
export function walkWithCharset(ds: ParsedDataset, visit: (el: DicomElement, path: DicomElement[], charset: string[]) => void | 'skip'): void {
  const path: DicomElement[] = [];
  const visitAll = (elements: DicomElement[], charset: string[]): void => {
    for (const el of elements) {
      if (visit(el, path, charset) === 'skip' || !el.items) continue;
      path.push(el);
      for (const item of el.items) visitAll(item.elements, itemCharset(ds, item.elements, charset));
      path.pop();
    }
  };
  visitAll(ds.elements, specificCharacterSet(ds));
}
