// A byte-preserving DICOM data set reader: for every element at every depth, where its header, value and end are
// in the buffer, how it is encoded and what VR it has. It converts no value and copies no bytes, so an editor can
// rebuild a file from untouched slices plus its own changes. Rules: PS3.5 7 (data elements), 6.2.2 (UN).
import { inflateRawSync } from 'node:zlib';
import { isUsOrSs, formatTag, vrOf } from './dictionary.js';
import { splitPart10 } from './part10.js';
import { TS, encodingOf, type ElementEncoding } from './transfer-syntax.js';
import { LONG_HEADER_VRS, STRING_VRS } from './vr.js';

export interface DicomElement {
  /** (group << 16 | element) >>> 0 */
  tag: number;
  /**
   * The VR the value is read as. Explicit VR: as written, except that a UN of a tag the dictionary knows is read as
   * that attribute (PS3.5 6.2.2, CP-246): a sequence becomes 'SQ' when its value parses as implicit VR LE items, a
   * text or numeric-string VR replaces UN; binary VRs stay UN (see writtenVr). Implicit VR: from the dictionary,
   * 'UN' if unknown, 'SQ' for an undefined-length value made of items.
   */
  vr: string;
  /**
   * 'UN' exactly when the header said UN and `vr` is something else; the header bytes (start..valueStart) still
   * say UN, and a sequence's items are implicit VR LE whatever `encoding` says.
   */
  writtenVr?: 'UN';
  /** How this element's header is encoded (the items of a sequence written as UN are implicit VR LE, CP-246). */
  encoding: ElementEncoding;
  /** Offset of the first header byte in ParsedDataset.buffer. */
  start: number;
  valueStart: number;
  /** Declared value length; 0xFFFFFFFF for undefined length. */
  length: number;
  /** After the value; for undefined length, before the sequence delimitation item. */
  valueEnd: number;
  /** After the whole element, delimitation item included. */
  end: number;
  /** SQ (also a UN read as one, see writtenVr), and any other UN of undefined length (read as a sequence, vr UN). */
  items?: DicomItem[];
  /** Encapsulated pixel data: the value ranges of its items (basic offset table first). */
  fragments?: { start: number; end: number }[];
  /** 0 at top level. */
  depth: number;
}

export interface DicomItem {
  start: number;
  valueStart: number;
  length: number;
  /** Before the item delimitation item for undefined length. */
  valueEnd: number;
  end: number;
  elements: DicomElement[];
}

export interface ParsedDataset {
  /** The data set bytes all offsets refer to (inflated for the deflated transfer syntax). */
  buffer: Buffer;
  transferSyntaxUid: string;
  encoding: ElementEncoding;
  deflated: boolean;
  elements: DicomElement[];
}

export class DicomParseError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} (at offset ${offset})`);
    this.name = 'DicomParseError';
    this.offset = offset;
  }
}

export interface ParseOptions {
  /** Deepest element depth allowed (top level is 0); default 64. */
  maxDepth?: number;
  /** Largest size a deflated data set may inflate to (a few MB of deflate can claim gigabytes); default 1 GiB. */
  maxInflatedBytes?: number;
}

const EXPLICIT_LE: ElementEncoding = Object.freeze({ explicitVR: true, littleEndian: true });
const EXPLICIT_BE: ElementEncoding = Object.freeze({ explicitVR: true, littleEndian: false });
const IMPLICIT_LE: ElementEncoding = Object.freeze({ explicitVR: false, littleEndian: true });

const UNDEFINED = 0xffffffff;
const ITEM = 0xfffee000;
const ITEM_DELIMITER = 0xfffee00d;
const SEQUENCE_DELIMITER = 0xfffee0dd;
const PIXEL_DATA = 0x7fe00010;
const PIXEL_REPRESENTATION = 0x00280103;

// VR by its two bytes, so the walk never decodes a string; LONG marks the 12-byte header form.
const VR_BY_CODE: (string | undefined)[] = new Array(65536);
const LONG = new Uint8Array(65536);
for (const vr of 'AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(' ')) {
  const code = (vr.charCodeAt(0) << 8) | vr.charCodeAt(1);
  VR_BY_CODE[code] = vr;
  if (LONG_HEADER_VRS.has(vr)) LONG[code] = 1;
}

interface Ctx {
  b: Buffer;
  maxDepth: number;
  encapsulated: boolean;
  /** Out parameter: where the last list of elements/items stopped. */
  pos: number;
}

function u16(b: Buffer, p: number, le: boolean): number {
  return le ? b[p]! | (b[p + 1]! << 8) : (b[p]! << 8) | b[p + 1]!;
}
function u32(b: Buffer, p: number, le: boolean): number {
  return le
    ? (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0
    : ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
}
function tagAt(b: Buffer, p: number, le: boolean): number {
  return ((u16(b, p, le) << 16) | u16(b, p + 2, le)) >>> 0;
}

/** VR of an implicit-VR element; US-or-SS attributes follow the Pixel Representation in scope. */
function implicitVr(tag: number, pixelRepresentation: number): string {
  const vr = vrOf(tag);
  if (vr === undefined) return 'UN';
  if (vr === 'US' && pixelRepresentation === 1 && isUsOrSs(tag)) return 'SS';
  return vr;
}

/**
 * Elements from `pos` up to `end` (a defined-length container), or up to an item delimitation item when `delimited`
 * (an undefined-length item: `end` then only bounds the search). Sets c.pos to where it stopped.
 */
function readElements(c: Ctx, enc: ElementEncoding, pos: number, end: number, depth: number, delimited: boolean, pr: number): DicomElement[] {
  if (depth > c.maxDepth) throw new DicomParseError(`nesting deeper than ${c.maxDepth} levels`, pos);
  const b = c.b;
  const le = enc.littleEndian;
  const elements: DicomElement[] = [];
  for (;;) {
    if (pos === end && !delimited) break;
    if (end - pos < 8) {
      throw new DicomParseError(
        delimited ? `item of undefined length has no item delimitation item before ${end}` : `truncated element header: ${end - pos} bytes before the end of its container at ${end}`,
        pos,
      );
    }
    const start = pos;
    const tag = tagAt(b, pos, le);
    if (tag >>> 16 === 0xfffe) {
      if (delimited && tag === ITEM_DELIMITER) break;
      throw new DicomParseError(`unexpected ${formatTag(tag)} where a data element was expected`, pos);
    }
    let vr: string;
    let length: number;
    let valueStart: number;
    if (enc.explicitVR) {
      const code = (b[pos + 4]! << 8) | b[pos + 5]!;
      const v = VR_BY_CODE[code];
      if (v === undefined) throw new DicomParseError(`element ${formatTag(tag)} has an invalid VR 0x${code.toString(16).padStart(4, '0')}`, pos + 4);
      vr = v;
      if (LONG[code]) {
        if (end - pos < 12) throw new DicomParseError(`truncated element header of ${formatTag(tag)}`, pos);
        length = u32(b, pos + 8, le);
        valueStart = pos + 12;
      } else {
        length = u16(b, pos + 6, le);
        valueStart = pos + 8;
      }
    } else {
      length = u32(b, pos + 4, le);
      valueStart = pos + 8;
      vr = implicitVr(tag, pr);
    }

    const el: DicomElement = { tag, vr, encoding: enc, start, valueStart, length, valueEnd: 0, end: 0, depth };
    if (length === UNDEFINED) {
      readUndefinedLength(c, el, end, pr);
    } else {
      const valueEnd = valueStart + length;
      if (valueEnd > end) {
        throw new DicomParseError(`element ${formatTag(tag)} ${vr}: value of ${length} bytes runs past the end of its container at ${end}`, start);
      }
      el.valueEnd = el.end = valueEnd;
      if (vr === 'SQ') el.items = readItems(c, enc, valueStart, valueEnd, depth + 1, false, pr);
      else if (vr === 'UN' && enc.explicitVR) readDefinedLengthUn(c, el, pr);
      else if (tag === PIXEL_REPRESENTATION && length === 2 && !enc.explicitVR) pr = u16(b, valueStart, le);
    }
    elements.push(el);
    pos = el.end;
  }
  c.pos = pos;
  return elements;
}

/**
 * A UN of defined length in an explicit VR data set, read as what the dictionary says it is. A sequence is tried
 * as implicit VR LE items (CP-246); when that fails the value stays an opaque UN, as the writer may have put
 * anything there and the data set around it is still sound.
 */
function readDefinedLengthUn(c: Ctx, el: DicomElement, pr: number): void {
  const dictionaryVr = vrOf(el.tag);
  if (dictionaryVr === 'SQ') {
    let items: DicomItem[];
    try {
      items = readItems(c, IMPLICIT_LE, el.valueStart, el.valueEnd, el.depth + 1, false, pr);
    } catch (e) {
      if (e instanceof DicomParseError) return;
      throw e;
    }
    el.items = items;
    el.vr = 'SQ';
    el.writtenVr = 'UN';
  } else if (dictionaryVr !== undefined && STRING_VRS.has(dictionaryVr)) {
    el.vr = dictionaryVr;
    el.writtenVr = 'UN';
  }
}

/** An element of undefined length: a sequence (SQ, UN per CP-246, implicit items) or encapsulated pixel data. */
function readUndefinedLength(c: Ctx, el: DicomElement, end: number, pr: number): void {
  const b = c.b;
  const enc = el.encoding;
  const p = el.valueStart;
  // what the value starts with, read in the byte order its items would use
  const first = end - p >= 4 ? tagAt(b, p, enc.littleEndian) : 0;
  const startsWithItem = first === ITEM || first === SEQUENCE_DELIMITER;
  let sequence: ElementEncoding | undefined;
  let fragments = false;
  if (enc.explicitVR) {
    if (el.vr === 'SQ') sequence = enc;
    else if (el.vr === 'UN') {
      sequence = IMPLICIT_LE;
      if (vrOf(el.tag) === 'SQ') {
        el.vr = 'SQ';
        el.writtenVr = 'UN';
      }
    }
    // PS3.5 A.4: of all OB/OW values, only Pixel Data may be encapsulated (undefined length); any other one is malformed
    else if ((el.vr === 'OB' || el.vr === 'OW') && el.tag === PIXEL_DATA && (c.encapsulated || startsWithItem)) fragments = true;
  } else if (el.tag === PIXEL_DATA && startsWithItem) {
    fragments = true;
  } else if (el.vr === 'SQ' || startsWithItem) {
    el.vr = 'SQ';
    sequence = enc;
  }
  if (sequence) {
    el.items = readItems(c, sequence, p, end, el.depth + 1, true, pr);
  } else if (fragments) {
    el.fragments = readFragments(c, enc, p, end);
  } else {
    throw new DicomParseError(`element ${formatTag(el.tag)} ${el.vr} has an undefined length, which only sequences and encapsulated data may have`, el.start);
  }
  el.valueEnd = c.pos;
  el.end = c.pos + 8;
}

/** Items of a sequence: up to `end` (defined length) or up to the sequence delimitation item (`delimited`). */
function readItems(c: Ctx, enc: ElementEncoding, pos: number, end: number, depth: number, delimited: boolean, pr: number): DicomItem[] {
  const b = c.b;
  const le = enc.littleEndian;
  const items: DicomItem[] = [];
  for (;;) {
    if (pos === end && !delimited) break;
    if (end - pos < 8) {
      throw new DicomParseError(
        delimited ? `sequence of undefined length has no sequence delimitation item before ${end}` : `truncated item header: ${end - pos} bytes before the end of its sequence at ${end}`,
        pos,
      );
    }
    const tag = tagAt(b, pos, le);
    const length = u32(b, pos + 4, le);
    if (tag === SEQUENCE_DELIMITER) {
      if (delimited) break;
      throw new DicomParseError('sequence delimitation item in a sequence of defined length', pos);
    }
    if (tag !== ITEM) throw new DicomParseError(`expected an item (FFFE,E000) in a sequence, found ${formatTag(tag)}`, pos);
    const valueStart = pos + 8;
    let item: DicomItem;
    if (length === UNDEFINED) {
      const elements = readElements(c, enc, valueStart, end, depth, true, pr);
      item = { start: pos, valueStart, length, valueEnd: c.pos, end: c.pos + 8, elements };
    } else {
      if (length > end - valueStart) throw new DicomParseError(`item of ${length} bytes runs past the end of its sequence at ${end}`, pos);
      const elements = readElements(c, enc, valueStart, valueStart + length, depth, false, pr);
      item = { start: pos, valueStart, length, valueEnd: valueStart + length, end: valueStart + length, elements };
    }
    items.push(item);
    pos = item.end;
  }
  c.pos = pos;
  return items;
}

/** Items of encapsulated data up to the sequence delimitation item; their bytes are skipped, never scanned. */
function readFragments(c: Ctx, enc: ElementEncoding, pos: number, end: number): { start: number; end: number }[] {
  const b = c.b;
  const le = enc.littleEndian;
  const fragments: { start: number; end: number }[] = [];
  for (;;) {
    if (end - pos < 8) throw new DicomParseError(`encapsulated data has no sequence delimitation item before ${end}`, pos);
    const tag = tagAt(b, pos, le);
    const length = u32(b, pos + 4, le);
    if (tag === SEQUENCE_DELIMITER) break;
    if (tag !== ITEM) throw new DicomParseError(`expected an item (FFFE,E000) in encapsulated data, found ${formatTag(tag)}`, pos);
    if (length === UNDEFINED) throw new DicomParseError('item of encapsulated data with undefined length', pos);
    if (length > end - pos - 8) throw new DicomParseError(`fragment of ${length} bytes runs past the end of its container at ${end}`, pos);
    fragments.push({ start: pos + 8, end: pos + 8 + length });
    pos += 8 + length;
  }
  c.pos = pos;
  return fragments;
}

/** Parses a data set (the bytes after the file meta group, or a DIMSE data set) in the given transfer syntax. */
export function parseDataset(data: Buffer, transferSyntaxUid: string, opts: ParseOptions = {}): ParsedDataset {
  const ts = encodingOf(transferSyntaxUid);
  let buffer = data;
  if (ts.deflated) {
    try {
      buffer = inflateRawSync(data, { maxOutputLength: opts.maxInflatedBytes ?? 1024 ** 3 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
        throw new DicomParseError(`deflated data set inflates past ${opts.maxInflatedBytes ?? 1024 ** 3} bytes`, 0);
      throw new DicomParseError(`deflated data set does not inflate: ${(e as Error).message}`, 0);
    }
  }
  const encoding = !ts.explicitVR ? IMPLICIT_LE : ts.littleEndian ? EXPLICIT_LE : EXPLICIT_BE;
  const c: Ctx = { b: buffer, maxDepth: opts.maxDepth ?? 64, encapsulated: ts.encapsulated, pos: 0 };
  let elements: DicomElement[];
  try {
    elements = readElements(c, encoding, 0, buffer.length, 0, false, 0);
  } catch (e) {
    // only reachable with a huge maxDepth: the recursion is bounded by it
    if (e instanceof RangeError) throw new DicomParseError(`nesting too deep to parse (${e.message})`, 0);
    throw e;
  }
  return { buffer, transferSyntaxUid, encoding, deflated: ts.deflated, elements };
}

/** A PS3.10 file: its meta group (explicit VR LE, offsets from the byte after "DICM") and its data set. */
export function parseFile(file: Buffer, opts?: ParseOptions): { meta: ParsedDataset; dataset: ParsedDataset } {
  const p = splitPart10(file);
  return {
    meta: parseDataset(p.meta.subarray(132), TS.ExplicitVRLittleEndian, opts),
    dataset: parseDataset(p.dataset, p.transferSyntaxUid, opts),
  };
}

/**
 * Visits every element depth-first in file order, descending into items unless the visitor returns 'skip'.
 * `path` holds the enclosing sequence elements, outermost first; it is reused, so copy it to keep it.
 */
export function walk(ds: ParsedDataset, visit: (el: DicomElement, path: DicomElement[]) => void | 'skip'): void {
  const path: DicomElement[] = [];
  const visitAll = (elements: DicomElement[]): void => {
    for (const el of elements) {
      if (visit(el, path) === 'skip' || !el.items) continue;
      path.push(el);
      for (const item of el.items) visitAll(item.elements);
      path.pop();
    }
  };
  visitAll(ds.elements);
}
