// A small dictionary-free DICOM encoder: the elements the de-identification engine writes, the file meta group of
// its output, and whole files for the synthetic generator (tools/synth) and the tests. The caller gives every
// element's VR; the encoder only lays bytes out (PS3.5 §7).
import { deflateRawSync } from 'node:zlib';
import { encodingOf, type ElementEncoding, type Encoding } from './transfer-syntax.js';
import { DPHIANT_IMPLEMENTATION_CLASS_UID, DPHIANT_IMPLEMENTATION_VERSION } from './uid.js';
import { CHARSET_VRS, LONG_HEADER_VRS, STRING_VRS } from './vr.js';
import { formatTag } from './dictionary.js';

/** Encapsulated pixel data: basic offset table item, one item per fragment, sequence delimiter. */
export interface Fragments {
  offsetTable?: Uint8Array;
  fragments: Uint8Array[];
}
export type Item = Element[];
export type Value = string | string[] | number | number[] | bigint[] | Uint8Array | Item[] | Fragments;
export interface Element {
  /** 0xGGGGEEEE */
  tag: number;
  vr: string;
  /**
   * Text VRs: string(s) or number(s) (joined with "\"). Binary numeric VRs: number(s), bigint[] for SV/UV.
   * A Uint8Array is written as is; for multi-byte binary VRs (OW, OL, US, …) it is taken as little-endian
   * and byte-swapped in big-endian syntaxes. SQ: Item[]. Encapsulated pixel data: Fragments.
   */
  value?: Value;
  /** SQ only: undefined length with delimiters, for the sequence and its items. */
  undefinedLength?: boolean;
}

export interface EncodeOptions {
  /** How strings of charset-dependent VRs (PN, LO, SH, ST, LT, UC, UT) become bytes. Default latin1. */
  charset?: 'latin1' | 'utf8';
}

export function tag(group: number, element: number): number {
  return ((group << 16) | (element & 0xffff)) >>> 0;
}

export const Tags = {
  SOPClassUID: 0x00080016,
  SOPInstanceUID: 0x00080018,
  PixelData: 0x7fe00010,
  Item: 0xfffee000,
  ItemDelimitationItem: 0xfffee00d,
  SequenceDelimitationItem: 0xfffee0dd,
} as const;

const UNDEFINED = 0xffffffff;
/** Binary VRs and the size of the unit that is byte-swapped in big endian (AT: group and element separately). */
const UNIT_SIZE: Record<string, number> = {
  OB: 1, UN: 1, OW: 2, US: 2, SS: 2, AT: 2, OL: 4, OF: 4, UL: 4, SL: 4, FL: 4, OD: 8, OV: 8, FD: 8, SV: 8, UV: 8,
};

interface Ctx extends Encoding {
  charset: 'latin1' | 'utf8';
}

/** Byte chunks of an encoding plus their total length, so defined lengths are known before concatenation. */
class Chunks {
  readonly parts: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array): void {
    this.parts.push(b);
    this.length += b.length;
  }
  append(other: Chunks): void {
    for (const p of other.parts) this.parts.push(p);
    this.length += other.length;
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}

function isFragments(v: Value | undefined): v is Fragments {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && !Array.isArray(v) && 'fragments' in v;
}

/** The two VR characters (a string write is a slow path for two bytes, and headers are written per element). */
function writeVr(b: Buffer, vr: string): void {
  b[4] = vr.charCodeAt(0);
  b[5] = vr.charCodeAt(1);
}

function elementHeader(t: number, vr: string, length: number, ctx: Ctx): Buffer {
  const explicit = ctx.explicitVR && (t >>> 16) !== 0xfffe;
  const long = !explicit || LONG_HEADER_VRS.has(vr);
  const b = Buffer.alloc(explicit && long ? 12 : 8);
  const le = ctx.littleEndian;
  if (le) {
    b.writeUInt16LE(t >>> 16, 0);
    b.writeUInt16LE(t & 0xffff, 2);
  } else {
    b.writeUInt16BE(t >>> 16, 0);
    b.writeUInt16BE(t & 0xffff, 2);
  }
  if (!explicit) {
    if (le) b.writeUInt32LE(length, 4);
    else b.writeUInt32BE(length, 4);
  } else if (long) {
    writeVr(b, vr);
    if (le) b.writeUInt32LE(length, 8);
    else b.writeUInt32BE(length, 8);
  } else {
    if (length > 0xffff) throw new Error(`${formatTag(t)} ${vr}: value of ${length} bytes does not fit a 16-bit length`);
    writeVr(b, vr);
    if (le) b.writeUInt16LE(length, 6);
    else b.writeUInt16BE(length, 6);
  }
  return b;
}

function swapped(bytes: Uint8Array, unit: number): Buffer {
  const b = Buffer.from(bytes); // copy: never swap the caller's bytes in place
  if (unit === 2) b.swap16();
  else if (unit === 4) b.swap32();
  else if (unit === 8) b.swap64();
  return b;
}

function numbersToBytes(vr: string, value: number | number[] | bigint[], le: boolean): Buffer {
  const list: (number | bigint)[] = Array.isArray(value) ? value : [value];
  const unit = UNIT_SIZE[vr];
  if (unit === undefined || unit === 1) throw new Error(`numbers are not a valid value for VR ${vr}`);
  const b = Buffer.alloc(list.length * (vr === 'AT' ? 4 : unit));
  list.forEach((n, i) => {
    switch (vr) {
      case 'US': case 'OW': le ? b.writeUInt16LE(Number(n), i * 2) : b.writeUInt16BE(Number(n), i * 2); break;
      case 'SS': le ? b.writeInt16LE(Number(n), i * 2) : b.writeInt16BE(Number(n), i * 2); break;
      case 'UL': case 'OL': le ? b.writeUInt32LE(Number(n), i * 4) : b.writeUInt32BE(Number(n), i * 4); break;
      case 'SL': le ? b.writeInt32LE(Number(n), i * 4) : b.writeInt32BE(Number(n), i * 4); break;
      case 'FL': case 'OF': le ? b.writeFloatLE(Number(n), i * 4) : b.writeFloatBE(Number(n), i * 4); break;
      case 'FD': case 'OD': le ? b.writeDoubleLE(Number(n), i * 8) : b.writeDoubleBE(Number(n), i * 8); break;
      case 'SV': le ? b.writeBigInt64LE(BigInt(n), i * 8) : b.writeBigInt64BE(BigInt(n), i * 8); break;
      case 'UV': case 'OV': le ? b.writeBigUInt64LE(BigInt(n), i * 8) : b.writeBigUInt64BE(BigInt(n), i * 8); break;
      case 'AT': {
        const t = Number(n) >>> 0;
        if (le) { b.writeUInt16LE(t >>> 16, i * 4); b.writeUInt16LE(t & 0xffff, i * 4 + 2); }
        else { b.writeUInt16BE(t >>> 16, i * 4); b.writeUInt16BE(t & 0xffff, i * 4 + 2); }
        break;
      }
      default: throw new Error(`numbers are not a valid value for VR ${vr}`);
    }
  });
  return b;
}

/** A DS value of at most 16 characters (PS3.5 Table 6.2-1), losing precision only when it must. */
function formatDS(n: number): string {
  if (!Number.isFinite(n)) throw new Error(`DS cannot hold ${n}`);
  let s = String(n);
  for (let p = 16; s.length > 16 && p > 0; p--) s = String(Number(n.toPrecision(p)));
  if (s.length > 16) s = n.toExponential(16 - (n < 0 ? 8 : 7));
  return s;
}

function textOf(vr: string, v: string | number): string {
  if (typeof v === 'string') return v;
  if (vr === 'DS') return formatDS(v);
  if (vr === 'IS' && !Number.isInteger(v)) throw new Error(`IS cannot hold ${v}`);
  return String(v);
}

/** The value bytes of a non-sequence element, padded to even length. */
function valueBytes(el: Element, ctx: Ctx): Uint8Array {
  const { vr, value } = el;
  let bytes: Uint8Array;
  let pad = 0x00;
  if (value === undefined) return new Uint8Array(0);
  if (STRING_VRS.has(vr)) {
    pad = vr === 'UI' ? 0x00 : 0x20;
    if (value instanceof Uint8Array) bytes = value;
    else if (typeof value === 'string' || typeof value === 'number') bytes = Buffer.from(textOf(vr, value), CHARSET_VRS.has(vr) ? ctx.charset : 'latin1');
    else if (Array.isArray(value) && value.every((v) => typeof v === 'string' || typeof v === 'number'))
      bytes = Buffer.from((value as (string | number)[]).map((v) => textOf(vr, v)).join('\\'), CHARSET_VRS.has(vr) ? ctx.charset : 'latin1');
    else throw new Error(`${formatTag(el.tag)} ${vr}: expected text`);
  } else if (vr in UNIT_SIZE) {
    if (value instanceof Uint8Array) {
      const unit = UNIT_SIZE[vr]!;
      if (unit > 1 && value.length % unit !== 0) throw new Error(`${formatTag(el.tag)} ${vr}: ${value.length} bytes is not a multiple of ${unit}`);
      bytes = ctx.littleEndian || unit === 1 ? value : swapped(value, unit);
    } else if (typeof value === 'number' || (Array.isArray(value) && value.every((v) => typeof v === 'number' || typeof v === 'bigint'))) {
      bytes = numbersToBytes(vr, value as number | number[] | bigint[], ctx.littleEndian);
    } else throw new Error(`${formatTag(el.tag)} ${vr}: expected numbers or bytes`);
  } else {
    throw new Error(`${formatTag(el.tag)}: unsupported VR ${JSON.stringify(vr)}`);
  }
  if (bytes.length % 2 === 0) return bytes;
  const padded = Buffer.alloc(bytes.length + 1, pad);
  padded.set(bytes);
  return padded;
}

function encodeFragments(el: Element, f: Fragments, ctx: Ctx, out: Chunks): void {
  if (!ctx.encapsulated) throw new Error(`${formatTag(el.tag)}: encapsulated pixel data needs an encapsulated transfer syntax`);
  out.push(elementHeader(el.tag, el.vr, UNDEFINED, ctx));
  for (const frag of [f.offsetTable ?? new Uint8Array(0), ...f.fragments]) {
    const len = frag.length + (frag.length % 2);
    out.push(elementHeader(Tags.Item, '', len, ctx));
    out.push(frag);
    if (len !== frag.length) out.push(new Uint8Array(1));
  }
  out.push(elementHeader(Tags.SequenceDelimitationItem, '', 0, ctx));
}

function encodeSequence(el: Element, ctx: Ctx, out: Chunks): void {
  const items = (el.value ?? []) as Item[];
  if (!Array.isArray(items) || !items.every(Array.isArray)) throw new Error(`${formatTag(el.tag)} SQ: expected an array of items`);
  const body = new Chunks();
  for (const item of items) {
    const content = encodeElements(item, ctx);
    body.push(elementHeader(Tags.Item, '', el.undefinedLength ? UNDEFINED : content.length, ctx));
    body.append(content);
    if (el.undefinedLength) body.push(elementHeader(Tags.ItemDelimitationItem, '', 0, ctx));
  }
  if (el.undefinedLength) body.push(elementHeader(Tags.SequenceDelimitationItem, '', 0, ctx));
  out.push(elementHeader(el.tag, 'SQ', el.undefinedLength ? UNDEFINED : body.length, ctx));
  out.append(body);
}

function encodeElements(elements: Element[], ctx: Ctx, topLevel = false): Chunks {
  const out = new Chunks();
  const sorted = [...elements].sort((a, b) => (a.tag >>> 0) - (b.tag >>> 0));
  for (let i = 0; i < sorted.length; i++) {
    const el = sorted[i]!;
    if (i > 0 && sorted[i - 1]!.tag >>> 0 === el.tag >>> 0) throw new Error(`duplicate element ${formatTag(el.tag)}`);
    if (el.undefinedLength && el.vr !== 'SQ') throw new Error(`${formatTag(el.tag)} ${el.vr}: only sequences take undefinedLength`);
    if (el.vr === 'SQ') encodeSequence(el, ctx, out);
    else if (isFragments(el.value)) encodeFragments(el, el.value, ctx, out);
    else {
      if (topLevel && ctx.encapsulated && el.tag >>> 0 === Tags.PixelData)
        throw new Error('native pixel data in an encapsulated transfer syntax: give Fragments');
      const v = valueBytes(el, ctx);
      out.push(elementHeader(el.tag, el.vr, v.length, ctx));
      out.push(v);
    }
  }
  return out;
}

function contextFor(tsUid: string, opts?: EncodeOptions): Ctx {
  return { ...encodingOf(tsUid), charset: opts?.charset ?? 'latin1' };
}

/** The data set (no preamble, no meta group) in the given transfer syntax; deflated syntaxes are raw-deflated. */
export function encodeDataset(elements: Element[], tsUid: string, opts?: EncodeOptions): Buffer {
  const ctx = contextFor(tsUid, opts);
  if (elements.some((e) => e.tag >>> 16 === 0x0002)) throw new Error('file meta elements (0002,xxxx) do not belong in the data set');
  const plain = encodeElements(elements, ctx, true).toBuffer();
  if (!ctx.deflated) return plain;
  const deflated = deflateRawSync(plain);
  // PS3.5 A.5: an odd-length deflate stream gets one trailing NUL
  return deflated.length % 2 === 0 ? deflated : Buffer.concat([deflated, Buffer.alloc(1)]);
}

export interface FileMetaOptions {
  sopClassUid: string;
  sopInstanceUid: string;
  tsUid: string;
  implementationClassUid?: string;
  implementationVersionName?: string;
  sourceAet?: string;
}

/** 128-byte preamble, "DICM" and the file meta group (explicit VR LE) with its group length. */
export function encodeFileMeta(opts: FileMetaOptions): Buffer {
  const els: Element[] = [
    { tag: 0x00020001, vr: 'OB', value: Uint8Array.of(0, 1) },
    { tag: 0x00020002, vr: 'UI', value: opts.sopClassUid },
    { tag: 0x00020003, vr: 'UI', value: opts.sopInstanceUid },
    { tag: 0x00020010, vr: 'UI', value: opts.tsUid },
    { tag: 0x00020012, vr: 'UI', value: opts.implementationClassUid ?? DPHIANT_IMPLEMENTATION_CLASS_UID },
    { tag: 0x00020013, vr: 'SH', value: opts.implementationVersionName ?? DPHIANT_IMPLEMENTATION_VERSION },
  ];
  if (opts.sourceAet) els.push({ tag: 0x00020016, vr: 'AE', value: opts.sourceAet });
  const ctx = contextFor('1.2.840.10008.1.2.1');
  const body = encodeElements(els, ctx).toBuffer();
  const groupLength = encodeElements([{ tag: 0x00020000, vr: 'UL', value: body.length }], ctx).toBuffer();
  const head = Buffer.alloc(132);
  head.write('DICM', 128, 'latin1');
  return Buffer.concat([head, groupLength, body]);
}

function stringValue(elements: Element[], t: number, name: string): string {
  const v = elements.find((e) => e.tag >>> 0 === t)?.value;
  if (typeof v !== 'string' || v === '') throw new Error(`${name} ${formatTag(t)} is required as a string`);
  return v;
}

export type Part10Options = EncodeOptions & Pick<FileMetaOptions, 'implementationClassUid' | 'implementationVersionName' | 'sourceAet'>;

/** A complete DICOM file: meta group (SOP class/instance taken from the elements) + data set. */
export function part10(elements: Element[], tsUid: string, opts?: Part10Options): Buffer {
  const meta = encodeFileMeta({
    ...opts,
    sopClassUid: stringValue(elements, Tags.SOPClassUID, 'SOPClassUID'),
    sopInstanceUid: stringValue(elements, Tags.SOPInstanceUID, 'SOPInstanceUID'),
    tsUid,
  });
  return Buffer.concat([meta, encodeDataset(elements, tsUid, opts)]);
}

// encapsulated: an edit may write encapsulated Pixel Data (Fragments); the caller knows its data set's syntax
function editContext(e: ElementEncoding): Ctx {
  return { explicitVR: e.explicitVR, littleEndian: e.littleEndian, deflated: false, encapsulated: true, charset: 'latin1' };
}

/** The encoded bytes of these elements (sorted by tag), as chunks to hand to a vectored write. Text given as bytes is written as is. */
export function encodeElementChunks(elements: Element[], encoding: ElementEncoding): Uint8Array[] {
  return encodeElements(elements, editContext(encoding)).parts;
}

/** An element, item or delimiter header. */
export function encodeHeader(tag: number, vr: string, length: number, encoding: ElementEncoding): Buffer {
  return elementHeader(tag, vr, length, editContext(encoding));
}
