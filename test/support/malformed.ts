// Deterministic malformed C-STORE data sets for the fault test, made from valid synthetic instances, and an
// independent reference reader (PS3.5 §7, written here without the project's walker) that decides whether a data
// set is malformed for the C-STORE request that carries it. Every case is drawn until the reference finds it
// malformed, so a case the middleman accepts as fine is a middleman bug, not a lucky mutation.
// Case i of seed s is the same whether it is made alone (malformedCase) or in a batch.
import { createHash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { encodeDataset, type Element } from '../../src/dicom/writer.js';
import { TS } from '../../src/dicom/transfer-syntax.js';
import { generateElements, CT_IMAGE_STORAGE, MR_IMAGE_STORAGE } from '../../tools/synth/generate.js';
import { Rng } from '../../tools/synth/rng.js';

export const KINDS = {
  truncated: 180,
  'length-past-end': 140,
  'garbage-whole': 100,
  'garbage-region': 120,
  'wrong-vr': 120,
  'deep-nesting': 60,
  'length-4gb': 100,
  'uid-mismatch': 80,
  'private-garbage': 100,
} as const;
export type Kind = keyof typeof KINDS;

export interface MalformedCase {
  index: number;
  kind: Kind;
  /** What exactly was done, e.g. "explicit VR replaced by 0x7569 ('ui')". */
  variant: string;
  bytes: Buffer;
  sopClassUid: string;
  /** The request's SOP Instance UID: unique per case. */
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** Why the reference reader finds it malformed. */
  verdict: string;
  /** Draws the reference found still valid before this one (re-drawn). */
  redraws: number;
}

// ---------------------------------------------------------------- PRNG


// ---------------------------------------------------------------- the reference reader

const VRS = new Set('AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(' '));
const LONG_VRS = new Set('OB OD OF OL OV OW SQ SV UC UN UR UT UV'.split(' '));
const SHORT_VRS = [...VRS].filter((v) => !LONG_VRS.has(v));
const UNDEFINED = 0xffffffff;
const ITEM = 0xfffee000;
const ITEM_DELIMITER = 0xfffee00d;
const SEQUENCE_DELIMITER = 0xfffee0dd;
/** Deeper than any IOD nests (PS3.3 nests a handful of levels): a nesting bomb, refused by policy. */
export const REFERENCE_MAX_DEPTH = 128;

export class Malformed extends Error {
  constructor(
    why: string,
    readonly offset: number,
  ) {
    super(`${why} at ${offset}`);
  }
}

interface Enc {
  explicit: boolean;
  le: boolean;
}
export interface RefElement {
  tag: number;
  vr: string;
  enc: Enc;
  start: number;
  valueStart: number;
  /** Offset of the length field. */
  lengthAt: number;
  length: number;
  end: number;
  depth: number;
  items?: RefItem[];
}
export interface RefItem {
  start: number;
  length: number;
  end: number;
  elements: RefElement[];
}

const hex = (t: number) => (t >>> 0).toString(16).padStart(8, '0');

class Reader {
  constructor(readonly b: Buffer) {}
  u16(p: number, le: boolean) {
    return le ? this.b.readUInt16LE(p) : this.b.readUInt16BE(p);
  }
  u32(p: number, le: boolean) {
    return le ? this.b.readUInt32LE(p) : this.b.readUInt32BE(p);
  }
  tag(p: number, le: boolean) {
    return ((this.u16(p, le) << 16) | this.u16(p + 2, le)) >>> 0;
  }

  /** Elements in [pos, end); with `delimited`, up to and including an item delimitation item. Returns the end. */
  elements(pos: number, end: number, depth: number, delimited: boolean, enc: Enc, out: RefElement[]): number {
    if (depth > REFERENCE_MAX_DEPTH) throw new Malformed(`nesting deeper than ${REFERENCE_MAX_DEPTH}`, pos);
    for (;;) {
      if (!delimited && pos === end) return pos;
      if (end - pos < 8) throw new Malformed(delimited ? 'item without item delimitation item' : 'truncated element header', pos);
      const tag = this.tag(pos, enc.le);
      if (tag >>> 16 === 0xfffe) {
        if (delimited && tag === ITEM_DELIMITER) return pos + 8;
        throw new Malformed(`(${hex(tag)}) where an element was expected`, pos);
      }
      let vr = '';
      let lengthAt: number;
      let length: number;
      let valueStart: number;
      if (enc.explicit) {
        vr = this.b.toString('latin1', pos + 4, pos + 6);
        if (!VRS.has(vr)) throw new Malformed(`invalid VR of (${hex(tag)})`, pos + 4);
        if (LONG_VRS.has(vr)) {
          if (end - pos < 12) throw new Malformed('truncated long element header', pos);
          lengthAt = pos + 8;
          length = this.u32(lengthAt, enc.le);
          valueStart = pos + 12;
        } else {
          lengthAt = pos + 6;
          length = this.u16(lengthAt, enc.le);
          valueStart = pos + 8;
        }
      } else {
        lengthAt = pos + 4;
        length = this.u32(lengthAt, enc.le);
        valueStart = pos + 8;
      }
      const el: RefElement = { tag, vr, enc, start: pos, valueStart, lengthAt, length, end: 0, depth };
      if (length === UNDEFINED) {
        // PS3.5 7.1.2 / CP-246: only sequences (and UN holding one, in implicit VR LE) have undefined length here;
        // the native syntaxes this reader serves have no encapsulated pixel data
        let inner: Enc;
        if (!enc.explicit || vr === 'SQ') inner = enc;
        else if (vr === 'UN') inner = { explicit: false, le: true };
        else throw new Malformed(`undefined length on VR ${vr}`, pos);
        el.items = [];
        el.end = this.items(valueStart, end, depth + 1, true, inner, el.items);
      } else {
        if (length > end - valueStart) throw new Malformed(`value of (${hex(tag)}) runs past its container`, pos);
        el.end = valueStart + length;
        if (enc.explicit && vr === 'SQ') {
          el.items = [];
          this.items(valueStart, el.end, depth + 1, false, enc, el.items);
        }
      }
      out.push(el);
      pos = el.end;
    }
  }

  items(pos: number, end: number, depth: number, delimited: boolean, enc: Enc, out: RefItem[]): number {
    for (;;) {
      if (!delimited && pos === end) return pos;
      if (end - pos < 8) throw new Malformed(delimited ? 'sequence without sequence delimitation item' : 'truncated item header', pos);
      const tag = this.tag(pos, enc.le);
      const length = this.u32(pos + 4, enc.le);
      if (tag === SEQUENCE_DELIMITER) {
        if (delimited) return pos + 8;
        throw new Malformed('sequence delimiter in a sequence of defined length', pos);
      }
      if (tag !== ITEM) throw new Malformed(`(${hex(tag)}) where an item was expected`, pos);
      const item: RefItem = { start: pos, length, end: 0, elements: [] };
      if (length === UNDEFINED) item.end = this.elements(pos + 8, end, depth, true, enc, item.elements);
      else {
        if (length > end - pos - 8) throw new Malformed('item runs past its sequence', pos);
        item.end = this.elements(pos + 8, pos + 8 + length, depth, false, enc, item.elements);
      }
      out.push(item);
      pos = item.end;
    }
  }
}

function encodingOfTs(ts: string): Enc & { deflated: boolean } {
  switch (ts) {
    case TS.ImplicitVRLittleEndian:
      return { explicit: false, le: true, deflated: false };
    case TS.ExplicitVRLittleEndian:
      return { explicit: true, le: true, deflated: false };
    case TS.ExplicitVRBigEndian:
      return { explicit: true, le: false, deflated: false };
    case TS.DeflatedExplicitVRLittleEndian:
      return { explicit: true, le: true, deflated: true };
    default:
      throw new Error(`the reference reads native syntaxes only, not ${ts}`);
  }
}

/** Every top-level element (and, below, what it holds) of a data set; throws Malformed. */
export function referenceParse(bytes: Buffer, ts: string): { buffer: Buffer; elements: RefElement[] } {
  const e = encodingOfTs(ts);
  let buffer = bytes;
  if (e.deflated) {
    try {
      buffer = inflateRawSync(bytes);
    } catch (err) {
      throw new Malformed(`deflate stream does not inflate (${(err as Error).message})`, 0);
    }
  }
  const elements: RefElement[] = [];
  new Reader(buffer).elements(0, buffer.length, 0, false, e, elements);
  return { buffer, elements };
}

/** Why this data set is malformed for a C-STORE request naming these UIDs, or null when it is fine. */
export function referenceVerdict(bytes: Buffer, ts: string, sopClassUid: string, sopInstanceUid: string): string | null {
  let parsed;
  try {
    parsed = referenceParse(bytes, ts);
  } catch (e) {
    if (e instanceof Malformed) return e.message;
    throw e;
  }
  const value = (tag: number): string | undefined => {
    const el = parsed.elements.find((x) => x.tag === tag);
    if (!el || el.items) return undefined;
    return parsed.buffer.toString('latin1', el.valueStart, el.end).replace(/[\0 ]+$/, '');
  };
  if (value(0x00080018) !== sopInstanceUid) return 'SOP Instance UID of the data set differs from the request';
  if (value(0x00080016) !== sopClassUid) return 'SOP Class UID of the data set differs from the request';
  return null;
}

// ---------------------------------------------------------------- building blocks

/** The request UID of case i: 2.25 and 128 bits of SHA-256, unique per (seed, index). */
export function caseUid(seed: number, index: number): string {
  return '2.25.' + BigInt('0x' + createHash('sha256').update(`dphiant malformed|${seed}|${index}`).digest('hex').slice(0, 32)).toString();
}

function header(tag: number, vr: string, length: number, enc: Enc): Buffer {
  const explicit = enc.explicit && tag >>> 16 !== 0xfffe;
  const long = !explicit || LONG_VRS.has(vr) || !VRS.has(vr);
  const b = Buffer.alloc(explicit && long ? 12 : 8);
  const w16 = (v: number, p: number) => (enc.le ? b.writeUInt16LE(v, p) : b.writeUInt16BE(v, p));
  const w32 = (v: number, p: number) => (enc.le ? b.writeUInt32LE(v >>> 0, p) : b.writeUInt32BE(v >>> 0, p));
  w16(tag >>> 16, 0);
  w16(tag & 0xffff, 2);
  if (!explicit) w32(length, 4);
  else {
    b.write(vr.padEnd(2).slice(0, 2), 4, 'latin1');
    if (long) w32(length, 8);
    else w16(length, 6);
  }
  return b;
}

/** The base elements with this SOP Instance UID, sorted, split around `tag` and encoded; raw bytes go in between. */
function withInserted(els: Element[], ts: string, tag: number, raw: Buffer): Buffer {
  const enc = encodingOfTs(ts);
  const plainTs = enc.deflated ? TS.ExplicitVRLittleEndian : ts;
  const before = els.filter((e) => e.tag >>> 0 < tag);
  const after = els.filter((e) => e.tag >>> 0 > tag);
  const plain = Buffer.concat([encodeDataset(before, plainTs), raw, encodeDataset(after, plainTs)]);
  return enc.deflated ? deflated(plain) : plain;
}

function deflated(plain: Buffer): Buffer {
  const d = deflateRawSync(plain);
  return d.length % 2 ? Buffer.concat([d, Buffer.alloc(1)]) : d;
}

function flatten(elements: RefElement[], out: RefElement[] = []): RefElement[] {
  for (const el of elements) {
    out.push(el);
    for (const item of el.items ?? []) flatten(item.elements, out);
  }
  return out;
}
function allItems(elements: RefElement[]): RefItem[] {
  return flatten(elements).flatMap((e) => e.items ?? []);
}

function writeLength(b: Buffer, el: { lengthAt: number; enc: Enc }, long: boolean, value: number): void {
  if (long) (el.enc.le ? b.writeUInt32LE(value >>> 0, el.lengthAt) : b.writeUInt32BE(value >>> 0, el.lengthAt));
  else el.enc.le ? b.writeUInt16LE(value, el.lengthAt) : b.writeUInt16BE(value, el.lengthAt);
}
const isLongHeader = (el: RefElement) => !el.enc.explicit || LONG_VRS.has(el.vr);

const TS_NAME: Record<string, string> = {
  [TS.ExplicitVRLittleEndian]: 'explicit VR LE',
  [TS.ImplicitVRLittleEndian]: 'implicit VR LE',
  [TS.ExplicitVRBigEndian]: 'explicit VR BE',
  [TS.DeflatedExplicitVRLittleEndian]: 'deflated explicit VR LE',
};

interface Draft {
  bytes: Buffer;
  variant: string;
  ts: string;
  sopClassUid?: string;
}

interface Base {
  els: Element[];
  sopClassUid: string;
  uid: string;
}

/** A valid synthetic instance carrying the case's SOP Instance UID. */
function baseFor(seed: number, index: number, r: Rng): Base {
  const els = generateElements({ seed: seed + (index % 17), prefix: 'BAD', patientIndex: index % 23, instanceIndex: index % 5, rows: 16, cols: 16, bitsAllocated: r.pick([8, 16] as const) });
  const uid = caseUid(seed, index);
  const sop = els.find((e) => e.tag === 0x00080018)!;
  sop.value = uid;
  return { els, sopClassUid: String(els.find((e) => e.tag === 0x00080016)!.value), uid };
}

function encodeBase(b: Base, ts: string): Buffer {
  return encodingOfTs(ts).deflated ? deflated(encodeDataset(b.els, TS.ExplicitVRLittleEndian)) : encodeDataset(b.els, ts);
}

const NATIVE = [TS.ExplicitVRLittleEndian, TS.ImplicitVRLittleEndian, TS.ExplicitVRBigEndian] as const;

/** Random bytes whose first tag is neither an item nor a sequence delimiter (so they cannot start a sequence body). */
function garbageNotItem(r: Rng, n: number): Buffer {
  const g = r.bytes(n);
  if (n >= 2 && g[0] === 0xfe && g[1] === 0xff) g[0] = 0x42;
  return g;
}

// ---------------------------------------------------------------- the mutations

type Mutation = (r: Rng, b: Base) => Draft;

const truncated: Mutation = (r, b) => {
  const ts = r.next() < 0.65 ? TS.ExplicitVRLittleEndian : r.pick([TS.ImplicitVRLittleEndian, TS.ExplicitVRBigEndian, TS.DeflatedExplicitVRLittleEndian]);
  if (ts === TS.DeflatedExplicitVRLittleEndian) {
    const stream = deflateRawSync(encodeDataset(b.els, TS.ExplicitVRLittleEndian));
    const cut = r.int(1, stream.length - 1);
    return { bytes: stream.subarray(0, cut), variant: `deflate stream of ${stream.length} bytes cut to ${cut}`, ts };
  }
  const full = encodeBase(b, ts);
  const cut = r.int(1, full.length - 1);
  return { bytes: full.subarray(0, cut), variant: `${TS_NAME[ts]} data set of ${full.length} bytes cut to ${cut}`, ts };
};

const lengthPastEnd: Mutation = (r, b) => {
  const ts = r.next() < 0.7 ? TS.ExplicitVRLittleEndian : r.pick([TS.ImplicitVRLittleEndian, TS.ExplicitVRBigEndian]);
  const bytes = Buffer.from(encodeBase(b, ts));
  const { elements } = referenceParse(bytes, ts);
  const where = r.pick(['top-level element', 'nested element', 'item'] as const);
  if (where === 'item') {
    const items = allItems(elements).filter((i) => i.length !== UNDEFINED);
    if (items.length) {
      const it = r.pick(items);
      const len = bytes.length - it.start - 8 + r.int(1, 1 << r.int(1, 20));
      const le = encodingOfTs(ts).le;
      le ? bytes.writeUInt32LE(len, it.start + 4) : bytes.writeUInt32BE(len, it.start + 4);
      return { bytes, variant: `${TS_NAME[ts]}: item at ${it.start} declares ${len} bytes, ${len - (bytes.length - it.start - 8)} past the end`, ts };
    }
  }
  const pool = flatten(elements).filter((e) => (where === 'nested element' ? e.depth > 0 : e.depth === 0) && e.length !== UNDEFINED);
  const el = r.pick(pool.length ? pool : flatten(elements).filter((e) => e.length !== UNDEFINED));
  const long = isLongHeader(el);
  const room = bytes.length - el.valueStart;
  const len = long ? room + r.int(1, 1 << r.int(1, 24)) : Math.min(0xffff, room + r.int(1, 64));
  writeLength(bytes, el, long, len);
  return { bytes, variant: `${TS_NAME[ts]}: ${where} (${hex(el.tag)}) ${el.vr || 'implicit'} at depth ${el.depth} declares ${len} bytes, ${room} left`, ts };
};

const garbageWhole: Mutation = (r, b) => {
  const ts = r.pick([...NATIVE, TS.DeflatedExplicitVRLittleEndian]);
  const n = r.int(1, r.pick([16, 512, 8192]));
  const how = r.pick(['random bytes', 'random bytes after a valid first element', 'zeros', '0xFF bytes', 'printable text'] as const);
  let bytes: Buffer;
  switch (how) {
    case 'random bytes':
      bytes = r.bytes(n);
      break;
    case 'random bytes after a valid first element':
      bytes = Buffer.concat([encodeDataset([b.els[0]!], encodingOfTs(ts).deflated ? TS.ExplicitVRLittleEndian : ts), r.bytes(n)]);
      break;
    case 'zeros':
      bytes = Buffer.alloc(n);
      break;
    case '0xFF bytes':
      bytes = Buffer.alloc(n, 0xff);
      break;
    case 'printable text':
      bytes = Buffer.from(Array.from({ length: n }, () => r.int(0x20, 0x7e)));
      break;
  }
  return { bytes, variant: `${how}, ${bytes.length} bytes, sent as ${TS_NAME[ts]}`, ts };
};

const garbageRegion: Mutation = (r, b) => {
  const ts = r.next() < 0.75 ? TS.ExplicitVRLittleEndian : r.pick([TS.ImplicitVRLittleEndian, TS.ExplicitVRBigEndian]);
  const bytes = Buffer.from(encodeBase(b, ts));
  const { elements } = referenceParse(bytes, ts);
  const targets = [...flatten(elements).map((e) => ({ at: e.start, what: `element (${hex(e.tag)}) at depth ${e.depth}` })), ...allItems(elements).map((i) => ({ at: i.start, what: 'item header' }))];
  const t = r.pick(targets);
  const start = Math.min(bytes.length - 1, t.at + r.int(0, 7));
  const n = Math.min(bytes.length - start, r.int(1, 48));
  for (let i = 0; i < n; i++) bytes[start + i] = bytes[start + i]! ^ r.int(1, 255);
  return { bytes, variant: `${TS_NAME[ts]}: ${n} random bytes over the ${t.what}, from ${start}`, ts };
};

const wrongVr: Mutation = (r, b) => {
  const ts = r.next() < 0.8 ? TS.ExplicitVRLittleEndian : TS.ExplicitVRBigEndian;
  const bytes = Buffer.from(encodeBase(b, ts));
  const { elements } = referenceParse(bytes, ts);
  const el = r.pick(flatten(elements));
  let vr: Buffer;
  let how: string;
  const choice = r.pick(['invalid code', 'lowercase', 'other header form', 'other header form'] as const);
  if (choice === 'invalid code') {
    do vr = r.next() < 0.5 ? r.bytes(2) : Buffer.from(String.fromCharCode(r.int(65, 90), r.int(65, 90)), 'latin1');
    while (VRS.has(vr.toString('latin1')));
    how = 'an invalid VR code';
  } else if (choice === 'lowercase') {
    vr = Buffer.from(el.vr.toLowerCase(), 'latin1');
    how = 'its VR in lowercase';
  } else {
    vr = Buffer.from(LONG_VRS.has(el.vr) ? r.pick(SHORT_VRS) : r.pick([...LONG_VRS]), 'latin1');
    how = `a VR of the other header form`;
  }
  vr.copy(bytes, el.start + 4);
  return { bytes, variant: `${TS_NAME[ts]}: (${hex(el.tag)}) ${el.vr} at depth ${el.depth} written with ${how}, 0x${vr.toString('hex')}`, ts };
};

/** A ContentSequence chain `depth` levels deep, innermost item holding one element; `lengths` undefined or defined. */
function chain(depth: number, enc: Enc, defined: boolean, leafTag = 0x0040a730, leafVr = 'SQ'): Buffer {
  let inner = Buffer.concat([header(0x0040a040, 'CS', 4, enc), Buffer.from('TEXT')]);
  for (let level = 0; level < depth; level++) {
    if (defined) {
      const item = Buffer.concat([header(ITEM, '', inner.length, enc), inner]);
      inner = Buffer.concat([header(leafTag, leafVr, item.length, enc), item]);
    } else {
      inner = Buffer.concat([
        header(leafTag, leafVr, UNDEFINED, enc),
        header(ITEM, '', UNDEFINED, enc),
        inner,
        header(ITEM_DELIMITER, '', 0, enc),
        header(SEQUENCE_DELIMITER, '', 0, enc),
      ]);
    }
  }
  return inner;
}

const deepNesting: Mutation = (r, b) => {
  const how = r.pick(['well-formed undefined-length chain', 'chain without delimiters', 'chain missing one delimiter', 'defined-length chain', 'UN chain (implicit inside)', 'implicit VR chain', '5,000-deep chain'] as const);
  const depth = how === '5,000-deep chain' ? 5000 : 1000;
  const ts = how === 'implicit VR chain' ? TS.ImplicitVRLittleEndian : TS.ExplicitVRLittleEndian;
  const enc = encodingOfTs(ts);
  let raw: Buffer;
  let tag = 0x0040a730;
  switch (how) {
    case 'well-formed undefined-length chain':
    case 'implicit VR chain':
    case '5,000-deep chain':
      raw = chain(depth, enc, false);
      break;
    case 'chain without delimiters': {
      const full = chain(depth, enc, false);
      raw = full.subarray(0, full.length - 16 * depth); // every delimiter is at the end
      break;
    }
    case 'chain missing one delimiter': {
      const full = chain(depth, enc, false);
      const k = r.int(0, 2 * depth - 1); // which of the 2×depth trailing delimiters
      const at = full.length - 16 * depth + 8 * k;
      raw = Buffer.concat([full.subarray(0, at), full.subarray(at + 8)]);
      break;
    }
    case 'defined-length chain':
      raw = chain(depth, enc, true);
      break;
    case 'UN chain (implicit inside)': {
      // (0011,1001) UN of undefined length whose items hold the same private tag, implicit VR, undefined length
      tag = 0x00111001;
      const implicit = { explicit: false, le: true };
      let inner = Buffer.concat([header(0x00111002, '', 4, implicit), Buffer.from('DEEP')]);
      for (let level = 1; level < depth; level++) {
        inner = Buffer.concat([header(tag, '', UNDEFINED, implicit), header(ITEM, '', UNDEFINED, implicit), inner, header(ITEM_DELIMITER, '', 0, implicit), header(SEQUENCE_DELIMITER, '', 0, implicit)]);
      }
      raw = Buffer.concat([
        header(0x00110010, 'LO', 10, enc),
        Buffer.from('DEEP CORP '),
        header(tag, 'UN', UNDEFINED, enc),
        header(ITEM, '', UNDEFINED, implicit),
        inner,
        header(ITEM_DELIMITER, '', 0, implicit),
        header(SEQUENCE_DELIMITER, '', 0, implicit),
      ]);
      tag = 0x00110010;
      break;
    }
  }
  return { bytes: withInserted(b.els, ts, tag, raw), variant: `${how}, ${depth} levels, ${TS_NAME[ts]}`, ts };
};

const length4gb: Mutation = (r, b) => {
  const huge = r.pick([0xfffffffe, 0xfffffff0]);
  const where = r.pick(['PixelData', 'UN element', 'sequence of defined length', 'item of defined length', 'implicit VR element', 'appended private element', 'inserted UT element'] as const);
  const ts = where === 'implicit VR element' ? TS.ImplicitVRLittleEndian : r.next() < 0.8 ? TS.ExplicitVRLittleEndian : TS.ExplicitVRBigEndian;
  const enc = encodingOfTs(ts);
  const name = `0x${huge.toString(16).toUpperCase()}`;
  if (where === 'appended private element' || where === 'inserted UT element') {
    const tail = r.bytes(r.int(0, 64) * 2);
    const raw =
      where === 'appended private element'
        ? Buffer.concat([header(0x7fe10010, 'LO', 12, enc), Buffer.from('GIGANTIC CO '), header(0x7fe11001, r.pick(['OB', 'UN', 'OW']), huge, enc), tail])
        : Buffer.concat([header(0x00204000, 'UT', huge, enc), tail]);
    const tag = where === 'appended private element' ? 0x7fe10010 : 0x00204000;
    return { bytes: withInserted(b.els, ts, tag, raw), variant: `${where} declaring ${name} with ${tail.length} bytes behind, ${TS_NAME[ts]}`, ts };
  }
  const bytes = Buffer.from(encodeBase(b, ts));
  const { elements } = referenceParse(bytes, ts);
  const flat = flatten(elements);
  if (where === 'item of defined length') {
    const it = r.pick(allItems(elements).filter((i) => i.length !== UNDEFINED));
    enc.le ? bytes.writeUInt32LE(huge, it.start + 4) : bytes.writeUInt32BE(huge, it.start + 4);
    return { bytes, variant: `item at ${it.start} declaring ${name}, ${TS_NAME[ts]}`, ts };
  }
  const pool =
    where === 'PixelData'
      ? flat.filter((e) => e.tag === 0x7fe00010)
      : where === 'UN element'
        ? flat.filter((e) => e.vr === 'UN')
        : where === 'sequence of defined length'
          ? flat.filter((e) => e.vr === 'SQ' && e.length !== UNDEFINED)
          : flat.filter((e) => e.depth === 0);
  const el = r.pick(pool);
  writeLength(bytes, el, true, huge);
  return { bytes, variant: `${where} (${hex(el.tag)}) at depth ${el.depth} declaring ${name}, ${TS_NAME[ts]}`, ts };
};

const uidMismatch: Mutation = (r, b) => {
  const ts = r.pick([TS.ExplicitVRLittleEndian, TS.ImplicitVRLittleEndian, TS.ExplicitVRBigEndian, TS.DeflatedExplicitVRLittleEndian]);
  const how = r.pick(['another SOP Instance UID', 'SOP Instance UID one digit off', 'SOP Instance UID with a digit more', 'no SOP Instance UID', 'SOP Instance UID only inside a sequence', 'another SOP Class UID'] as const);
  const els = b.els.map((e) => ({ ...e }));
  const sop = els.find((e) => e.tag === 0x00080018)!;
  let sopClassUid: string | undefined;
  switch (how) {
    case 'another SOP Instance UID':
      sop.value = caseUid(r.int(1, 1e9), r.int(0, 1e6));
      break;
    case 'SOP Instance UID one digit off': {
      const last = Number(b.uid.at(-1));
      sop.value = b.uid.slice(0, -1) + String((last + r.int(1, 9)) % 10);
      break;
    }
    case 'SOP Instance UID with a digit more':
      sop.value = b.uid + String(r.int(0, 9));
      break;
    case 'no SOP Instance UID':
      els.splice(els.indexOf(sop), 1);
      break;
    case 'SOP Instance UID only inside a sequence': {
      els.splice(els.indexOf(sop), 1);
      const ref = els.find((e) => e.tag === 0x00081120)!; // ReferencedPatientSequence
      ref.value = [[...(ref.value as Element[][])[0]!, { tag: 0x00080018, vr: 'UI', value: b.uid }]];
      break;
    }
    case 'another SOP Class UID':
      sopClassUid = b.sopClassUid === CT_IMAGE_STORAGE ? MR_IMAGE_STORAGE : CT_IMAGE_STORAGE;
      break;
  }
  return { bytes: encodeBase({ ...b, els }, ts), variant: `${how}, otherwise valid, ${TS_NAME[ts]}`, ts, sopClassUid };
};

const privateGarbage: Mutation = (r, b) => {
  const ts = r.next() < 0.8 ? TS.ExplicitVRLittleEndian : TS.ExplicitVRBigEndian;
  const enc = encodingOfTs(ts);
  const implicit = { explicit: false, le: true };
  const creator = Buffer.concat([header(0x00110010, 'LO', 12, enc), Buffer.from('GARBAGE CORP')]);
  const g = (n: number) => garbageNotItem(r, n);
  const n = r.int(1, 400) * 2;
  const how = r.pick([
    'UN of undefined length holding garbage',
    'UN of undefined length whose item holds garbage implicit elements',
    'UN of undefined length without its sequence delimiter',
    'private SQ of defined length holding garbage',
    'private element with an invalid VR and garbage',
    'private UN whose length runs past the end',
    'private element of undefined length with VR OB',
    'private OB of undefined length holding items, as only encapsulated Pixel Data may',
  ] as const);
  let raw: Buffer;
  switch (how) {
    case 'UN of undefined length holding garbage':
      raw = Buffer.concat([creator, header(0x00111001, 'UN', UNDEFINED, enc), g(n)]);
      break;
    case 'UN of undefined length whose item holds garbage implicit elements': {
      const body = Buffer.concat(Array.from({ length: r.int(1, 6) }, () => Buffer.concat([header(0x00111000 + r.int(0x10, 0xff), '', r.int(0, 0xffffffe) * 2, implicit), r.bytes(r.int(0, 16) * 2)])));
      raw = Buffer.concat([creator, header(0x00111001, 'UN', UNDEFINED, enc), header(ITEM, '', UNDEFINED, implicit), body, header(ITEM_DELIMITER, '', 0, implicit), header(SEQUENCE_DELIMITER, '', 0, implicit)]);
      break;
    }
    case 'UN of undefined length without its sequence delimiter':
      raw = Buffer.concat([creator, header(0x00111001, 'UN', UNDEFINED, enc), header(ITEM, '', UNDEFINED, implicit), header(0x00111002, '', 4, implicit), Buffer.from('ABCD'), header(ITEM_DELIMITER, '', 0, implicit)]);
      break;
    case 'private SQ of defined length holding garbage':
      raw = Buffer.concat([creator, header(0x00111001, 'SQ', n, enc), g(n)]);
      break;
    case 'private element with an invalid VR and garbage': {
      let vr: string;
      do vr = String.fromCharCode(r.int(0x21, 0x7e), r.int(0x21, 0x7e));
      while (VRS.has(vr));
      raw = Buffer.concat([creator, header(0x00111001, 'LO', n, enc), g(n)]);
      raw.write(vr, creator.length + 4, 'latin1');
      break;
    }
    case 'private UN whose length runs past the end': {
      const rest = encodeDataset(b.els.filter((e) => e.tag >>> 0 > 0x00111001), ts).length;
      raw = Buffer.concat([creator, header(0x00111001, 'UN', n + rest + r.int(1, 5000) * 2, enc), g(n)]);
      break;
    }
    case 'private element of undefined length with VR OB':
      raw = Buffer.concat([creator, header(0x00111001, 'OB', UNDEFINED, enc), g(n)]);
      break;
    case 'private OB of undefined length holding items, as only encapsulated Pixel Data may':
      // PS3.5 7.1.2 and A.4: outside encapsulated Pixel Data, OB has a defined length
      raw = Buffer.concat([creator, header(0x00111001, 'OB', UNDEFINED, enc), header(ITEM, '', n, enc), r.bytes(n), header(SEQUENCE_DELIMITER, '', 0, enc)]);
      break;
  }
  return { bytes: withInserted(b.els, ts, 0x00110010, raw), variant: `${how}, ${TS_NAME[ts]}`, ts };
};

const MUTATIONS: Record<Kind, Mutation> = {
  truncated,
  'length-past-end': lengthPastEnd,
  'garbage-whole': garbageWhole,
  'garbage-region': garbageRegion,
  'wrong-vr': wrongVr,
  'deep-nesting': deepNesting,
  'length-4gb': length4gb,
  'uid-mismatch': uidMismatch,
  'private-garbage': privateGarbage,
};

/** The kinds of cases 0..count-1, in proportion to KINDS, shuffled by the seed so they interleave. */
function kindPlan(seed: number, count: number): Kind[] {
  const total = Object.values(KINDS).reduce((a, b) => a + b, 0);
  const plan: Kind[] = [];
  for (const [k, n] of Object.entries(KINDS) as [Kind, number][]) for (let i = 0; i < Math.round((n * count) / total); i++) plan.push(k);
  while (plan.length < count) plan.push('truncated');
  plan.length = count;
  const r = new Rng(`plan|${seed}`);
  for (let i = plan.length - 1; i > 0; i--) {
    const j = r.int(0, i);
    [plan[i], plan[j]] = [plan[j]!, plan[i]!];
  }
  return plan;
}

const planCache = new Map<string, Kind[]>();

/** Case `index` of `count` for this seed. */
export function malformedCase(seed: number, index: number, count = 1000): MalformedCase {
  const key = `${seed}|${count}`;
  let plan = planCache.get(key);
  if (!plan) planCache.set(key, (plan = kindPlan(seed, count)));
  const kind = plan[index]!;
  const r = new Rng(`case|${seed}|${index}`);
  const base = baseFor(seed, index, r);
  for (let redraws = 0; redraws < 100; redraws++) {
    const d = MUTATIONS[kind](r, base);
    const sopClassUid = d.sopClassUid ?? base.sopClassUid;
    const verdict = referenceVerdict(d.bytes, d.ts, sopClassUid, base.uid);
    if (verdict) return { index, kind, variant: d.variant, bytes: d.bytes, sopClassUid, sopInstanceUid: base.uid, transferSyntaxUid: d.ts, verdict, redraws };
  }
  throw new Error(`case ${index} (${kind}) of seed ${seed}: 100 draws were all valid`);
}

export function malformedCases(seed: number, count = 1000): MalformedCase[] {
  return Array.from({ length: count }, (_, i) => malformedCase(seed, i, count));
}

/** The unmutated base of case `index` in a transfer syntax: what the reference must find valid (a sanity check). */
export function validBase(seed: number, index: number, ts: string): { bytes: Buffer; sopClassUid: string; sopInstanceUid: string } {
  const b = baseFor(seed, index, new Rng(`case|${seed}|${index}`));
  return { bytes: encodeBase(b, ts), sopClassUid: b.sopClassUid, sopInstanceUid: b.uid };
}
