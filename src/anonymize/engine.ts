// The de-identification engine: pure, no network, no database. Bytes + profile + crosswalk values + key in,
// byte chunks + report out. It edits the received encoding element by element: every element it does not change
// is passed on as a slice of the input (never re-encoded), changed and added elements are encoded in their
// neighbours' encoding, and the chunks go to a vectored write. Pixel data and the transfer syntax change only when
// burned-in text was cleaned (pixels/clean.ts).
import { deflateRawSync } from 'node:zlib';
import { encodeElementChunks, encodeFileMeta, encodeHeader, type Element } from '../dicom/writer.js';
import type { ElementEncoding } from '../dicom/transfer-syntax.js';
import type { DicomElement, DicomItem, ParsedDataset } from '../dicom/walker.js';
import { encodeString, itemCharset, specificCharacterSet, stringValue } from '../dicom/values.js';
import { isStandardUid } from '../dicom/uid-registry.js';
import { DPHIANT_IMPLEMENTATION_CLASS_UID, DPHIANT_IMPLEMENTATION_VERSION } from '../dicom/uid.js';
import { CHARSET_VRS } from '../dicom/vr.js';
import { shiftDateValue } from './dates.js';
import { keyedHash, remapUid } from './keyed.js';
import { redact, type Needle } from './phi.js';
import type { Action, Profile } from './profile.js';
import type { Within } from './safety.js';
import { confidentialityTable } from './table.js';
import type { CleanedPixels } from './pixels/types.js';

export interface Replacements {
  patientName: string;
  patientId: string;
  accessionNumber: string;
  /** Whole days added to dates (Modified Dates option). */
  dateOffsetDays: number;
}

export interface AnonymizeReport {
  /** Actions applied, by kind (removed, emptied, …), over all depths. */
  counts: Record<string, number>;
  /** Original UID → new UID, for every UID the engine replaced. */
  uids: Map<string, string>;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
}

export interface AnonymizeResult {
  /** The PS3.10 file: new file meta, then the data set; hand these to a vectored write. */
  chunks: Uint8Array[];
  byteLength: number;
  report: AnonymizeReport;
}

const MAX_LENGTH: Record<string, number> = { AE: 16, CS: 16, SH: 16, LO: 64, PN: 64, UI: 64, DA: 8, TM: 14, DT: 26, DS: 16, IS: 12, AS: 4 };

/** A non-empty value valid for each VR (action D). */
const DUMMY: Record<string, string | number> = {
  AE: 'ANONYMOUS', AS: '000Y', CS: 'ANONYMIZED', DA: '19000101', DS: '0', DT: '19000101000000', IS: '0',
  LO: 'ANONYMIZED', LT: 'ANONYMIZED', PN: 'ANONYMIZED', SH: 'ANONYMIZED', ST: 'ANONYMIZED', TM: '000000',
  UC: 'ANONYMIZED', UR: 'http://anonymized.invalid', UT: 'ANONYMIZED', US: 0, SS: 0, UL: 0, SL: 0, FL: 0, FD: 0,
};
/** Binary VRs without a number form above: zero bytes, as many as one value of the VR holds (OB/OW/UN: 2, even). */
const DUMMY_BYTES: Record<string, number> = { AT: 4, OF: 4, OL: 4, OD: 8, OV: 8, SV: 8, UV: 8 };

const DUMMY_TEXTS = new Set(Object.values(DUMMY).map(String));

/** A value the engine writes for action D. */
export function isDummyValue(text: string): boolean {
  return DUMMY_TEXTS.has(text);
}

const SOP_INSTANCE_UID = 0x00080018;
const PIXEL_DATA = 0x7fe00010;
const BURNED_IN_ANNOTATION = 0x00280301;
/** PS3.16 CID 7050: the pixel data was cleaned of burned-in text (not a column of Table E.1-1, so not in its data file). */
const CLEAN_PIXEL_DATA = { codeValue: '113101', codingSchemeDesignator: 'DCM', codeMeaning: 'Clean Pixel Data Option' };
const STUDY_INSTANCE_UID = 0x0020000d;
const SERIES_INSTANCE_UID = 0x0020000e;

interface Ctx {
  ds: ParsedDataset;
  profile: Profile;
  r: Replacements;
  key: Buffer;
  needles: Needle[];
  uids: Map<string, string>;
  counts: Record<string, number>;
  /** The cleaned Pixel Data element, written in place of the top-level one. */
  pixelData?: Uint8Array[];
}

/** Where a list of elements is: inside which kind of sequence (safety.ts), and the character set of its item. */
interface Scope {
  within: Within;
  charset: string[];
}

type Out = { chunks: Uint8Array[]; length: number };

function push(out: Out, c: Uint8Array): void {
  out.chunks.push(c);
  out.length += c.length;
}

function count(ctx: Ctx, what: string): void {
  ctx.counts[what] = (ctx.counts[what] ?? 0) + 1;
}

function slice(ctx: Ctx, start: number, end: number): Buffer {
  return ctx.ds.buffer.subarray(start, end);
}

/** A new value for a non-sequence element, or null to copy it as is. */
function newValue(el: DicomElement, action: Action, ctx: Ctx, scope: Scope): Element | null {
  const vr = el.vr;
  const text = () => stringValue(ctx.ds, el, scope.charset);
  const textElement = (value: string): Element => ({
    tag: el.tag,
    vr,
    value: CHARSET_VRS.has(vr) ? encodeString(value, scope.charset) : value,
  });
  switch (action.kind) {
    case 'empty':
      return { tag: el.tag, vr };
    case 'dummy': {
      const d = DUMMY[vr];
      if (vr === 'UI') return { tag: el.tag, vr, value: remapUid(ctx.key, `dummy:${text()}`) };
      if (d === undefined) return { tag: el.tag, vr, value: new Uint8Array(DUMMY_BYTES[vr] ?? 2) };
      return { tag: el.tag, vr, value: d };
    }
    case 'keep':
      return null;
    case 'uid': {
      if (vr !== 'UI') return { tag: el.tag, vr }; // U on a non-UID value: nothing to keep consistent, empty it
      const before = text();
      const values = before.split('\\').map((u) => {
        if (!u || isStandardUid(u)) return u; // SOP classes, transfer syntaxes, well-known frames name no patient
        let mapped = ctx.uids.get(u);
        if (!mapped) ctx.uids.set(u, (mapped = remapUid(ctx.key, u)));
        return mapped;
      });
      const after = values.join('\\');
      return after === before ? null : { tag: el.tag, vr, value: after };
    }
    case 'clean': {
      if ((vr === 'DA' || vr === 'DT') && ctx.profile.options.retainLongModifiedDates) {
        const shifted = shiftDateValue(vr, text(), ctx.r.dateOffsetDays);
        return { tag: el.tag, vr, value: shifted };
      }
      if (!CHARSET_VRS.has(vr)) return null;
      const before = text();
      const after = redact(before, ctx.needles);
      return after === before ? null : textElement(after);
    }
    case 'alias':
      return textElement(ctx.r[action.field]);
    case 'fixed':
      return textElement(action.value);
    case 'hash':
      return textElement(keyedHash(ctx.key, text(), MAX_LENGTH[vr] ?? 64));
    case 'remove':
    case 'safety':
      throw new Error(`${action.kind} has no value`);
  }
}

/** Content encoding of a sequence's items: a sequence written as UN holds implicit VR little endian (CP-246). */
function itemEncoding(el: DicomElement): ElementEncoding {
  return (el.writtenVr ?? el.vr) === 'UN' ? { explicitVR: false, littleEndian: true } : el.encoding;
}

/** Edits one sequence; returns null when nothing inside changed. */
function editSequence(el: DicomElement, ctx: Ctx, scope: Scope): Out | null {
  const items = el.items!;
  const edited = items.map((item) => editElements(item.elements, ctx, { within: scope.within, charset: itemCharset(ctx.ds, item.elements, scope.charset) }));
  if (edited.every((e) => e === null)) return null;
  const enc = itemEncoding(el);
  const body: Out = { chunks: [], length: 0 };
  items.forEach((item: DicomItem, i) => {
    const e = edited[i];
    if (!e) return push(body, slice(ctx, item.start, item.end));
    if (item.length === 0xffffffff) {
      push(body, slice(ctx, item.start, item.valueStart));
      e.chunks.forEach((c) => push(body, c));
      push(body, slice(ctx, item.valueEnd, item.end)); // item delimitation item
    } else {
      push(body, encodeHeader(0xfffee000, '', e.length, enc));
      e.chunks.forEach((c) => push(body, c));
    }
  });
  const out: Out = { chunks: [], length: 0 };
  if (el.length === 0xffffffff) {
    push(out, slice(ctx, el.start, el.valueStart));
    body.chunks.forEach((c) => push(out, c));
    push(out, slice(ctx, el.valueEnd, el.end)); // sequence delimitation item
  } else {
    push(out, encodeHeader(el.tag, el.writtenVr ?? el.vr, body.length, el.encoding));
    body.chunks.forEach((c) => push(out, c));
  }
  return out;
}

/** The kind of sequence its items are in: D replaces, C (Clean Structured Content) redacts; the stronger one holds. */
function withinOf(action: Action, outer: Within): Within {
  if (outer === 'replace' || action.kind === 'dummy') return 'replace';
  if (outer === 'redact' || action.kind === 'clean') return 'redact';
  return 'normal';
}

type Decision = { kind: 'copy' } | { kind: 'drop' } | { kind: 'replace'; out: Out };

function decide(el: DicomElement, rule: Action, ctx: Ctx, scope: Scope): Decision {
  const action = ctx.profile.actionOf(rule, el.tag, el.vr, scope.within);
  if (action.kind === 'remove') {
    count(ctx, 'removed');
    return { kind: 'drop' };
  }
  if (el.items) {
    if (action.kind === 'empty') {
      count(ctx, 'emptied');
      const out: Out = { chunks: [], length: 0 };
      push(out, encodeHeader(el.tag, el.writtenVr ?? el.vr, 0, el.encoding));
      return { kind: 'replace', out };
    }
    // every other action keeps the sequence and applies the rules to its items: D replaces their values, C redacts
    const out = editSequence(el, ctx, { within: withinOf(action, scope.within), charset: scope.charset });
    return out ? { kind: 'replace', out } : { kind: 'copy' };
  }
  if (el.tag === PIXEL_DATA && el.depth === 0 && ctx.pixelData) {
    count(ctx, 'pixels cleaned');
    return { kind: 'replace', out: { chunks: ctx.pixelData, length: ctx.pixelData.reduce((n, c) => n + c.length, 0) } };
  }
  if (el.fragments || el.tag === PIXEL_DATA) return { kind: 'copy' }; // pixel data passes through untouched unless cleaned
  const value = newValue(el, action, ctx, scope);
  if (value === null) {
    count(ctx, 'kept');
    return { kind: 'copy' };
  }
  count(ctx, action.kind === 'empty' ? 'emptied' : action.kind === 'dummy' ? 'dummied' : action.kind === 'uid' ? 'uids' : 'replaced');
  const chunks = encodeElementChunks([value], el.encoding);
  return { kind: 'replace', out: { chunks, length: chunks.reduce((n, c) => n + c.length, 0) } };
}

const isCreator = (tag: number) => (tag & 0xffff) >= 0x0010 && (tag & 0xffff) <= 0x00ff;
const blockOf = (tag: number) => `${tag >>> 16}:${(tag >>> 8) & 0xff}`;
const creatorBlock = (tag: number) => `${tag >>> 16}:${tag & 0xff}`;

/**
 * Edits one list of elements (the data set or an item). Returns null when nothing changed, so unchanged
 * items and sequences are copied whole. `added` elements (the engine's own, top level only) are merged in by tag.
 */
function editElements(elements: DicomElement[], ctx: Ctx, scope: Scope, added: Element[] = []): Out | null {
  const creators = new Map<string, string>();
  for (const el of elements) if ((el.tag >>> 16) % 2 === 1 && isCreator(el.tag)) creators.set(creatorBlock(el.tag), stringValue(ctx.ds, el, scope.charset));

  const decisions: Decision[] = [];
  const keptBlocks = new Set<string>();
  const changedGroups = new Set<number>();
  const addedTags = new Set(added.map((a) => a.tag));
  for (const el of elements) {
    const group = el.tag >>> 16;
    const elem = el.tag & 0xffff;
    let d: Decision;
    if (elem === 0x0000 || (group % 2 === 1 && isCreator(el.tag))) d = { kind: 'copy' }; // decided below
    else if (addedTags.has(el.tag)) d = { kind: 'drop' }; // replaced by the engine's own value
    else if (group % 2 === 1) {
      const rule = ctx.profile.ruleForPrivate(el.tag, creators.get(blockOf(el.tag)));
      d = decide(el, rule.action, ctx, scope);
      if (d.kind !== 'drop') keptBlocks.add(blockOf(el.tag));
    } else d = decide(el, ctx.profile.ruleFor(el.tag).action, ctx, scope);
    if (d.kind !== 'copy') changedGroups.add(group);
    decisions.push(d);
  }
  // a Private Creator stays only while its block keeps an element
  elements.forEach((el, i) => {
    if ((el.tag >>> 16) % 2 === 1 && isCreator(el.tag) && !keptBlocks.has(creatorBlock(el.tag))) {
      decisions[i] = { kind: 'drop' };
      changedGroups.add(el.tag >>> 16);
      count(ctx, 'removed');
    }
  });
  for (const a of added) changedGroups.add(a.tag >>> 16);
  // group lengths are retired outside the meta group: drop those whose group changed, keep the others
  elements.forEach((el, i) => {
    if ((el.tag & 0xffff) === 0x0000 && changedGroups.has(el.tag >>> 16)) decisions[i] = { kind: 'drop' };
  });

  if (added.length === 0 && decisions.every((d) => d.kind === 'copy')) return null;

  const out: Out = { chunks: [], length: 0 };
  const pending = [...added].sort((a, b) => a.tag - b.tag);
  const encoding = elements[0]?.encoding ?? ctx.ds.encoding;
  const flushAddedBefore = (tag: number) => {
    while (pending.length && pending[0]!.tag < tag) encodeElementChunks([pending.shift()!], encoding).forEach((c) => push(out, c));
  };
  // runs of copied elements become one slice
  let runStart = -1;
  let runEnd = -1;
  const flushRun = () => {
    if (runStart >= 0) push(out, slice(ctx, runStart, runEnd));
    runStart = runEnd = -1;
  };
  elements.forEach((el, i) => {
    if (pending.length && pending[0]!.tag < el.tag) {
      flushRun();
      flushAddedBefore(el.tag);
    }
    const d = decisions[i]!;
    if (d.kind === 'copy') {
      if (runStart >= 0 && runEnd === el.start) runEnd = el.end;
      else {
        flushRun();
        runStart = el.start;
        runEnd = el.end;
      }
      return;
    }
    flushRun();
    if (d.kind === 'replace') d.out.chunks.forEach((c) => push(out, c));
  });
  flushRun();
  flushAddedBefore(0xffffffff + 1);
  return out;
}

/** Patient's Name and Patient ID are Type 2: an archive files an instance under its Patient ID, so both are written. */
function missingPatientElements(ctx: Ctx, charset: string[]): Element[] {
  if (ctx.profile.keepsEverything) return [];
  const has = (tag: number) => ctx.ds.elements.some((e) => e.tag === tag);
  const out: Element[] = [];
  if (!has(0x00100010)) out.push({ tag: 0x00100010, vr: 'PN', value: encodeString(ctx.r.patientName, charset) });
  if (!has(0x00100020)) out.push({ tag: 0x00100020, vr: 'LO', value: encodeString(ctx.r.patientId, charset) });
  return out;
}

function methodElements(ctx: Ctx): Element[] {
  const table = confidentialityTable();
  const options = ctx.profile.activeOptions();
  const cleanedPixels = ctx.pixelData !== undefined;
  const codes = [table.basicProfileCode, ...options.map((k) => table.optionCodes[k]), ...(cleanedPixels ? [CLEAN_PIXEL_DATA] : [])];
  const o = ctx.profile.options;
  return [
    { tag: 0x00120062, vr: 'CS', value: ctx.profile.keepsEverything ? 'NO' : 'YES' },
    {
      tag: 0x00120063,
      vr: 'LO',
      value: [`DPHIANT ${DPHIANT_IMPLEMENTATION_VERSION.replace('DPHIANT_', '')} PS3.15 ${table.edition}`, table.basicProfileCode.codeMeaning, ...options.map((k) => table.optionNames[k]), ...(cleanedPixels ? [CLEAN_PIXEL_DATA.codeMeaning] : []), ...(ctx.profile.name !== 'PS3.15 basic profile' ? [`site profile ${ctx.profile.name}`.slice(0, 64)] : [])],
    },
    {
      tag: 0x00120064,
      vr: 'SQ',
      value: codes.map((c) => [
        { tag: 0x00080100, vr: 'SH', value: c.codeValue },
        { tag: 0x00080102, vr: 'SH', value: c.codingSchemeDesignator },
        { tag: 0x00080104, vr: 'LO', value: c.codeMeaning },
      ]),
    },
    { tag: 0x00280303, vr: 'CS', value: o.retainLongModifiedDates ? 'MODIFIED' : o.retainLongFullDates ? 'UNMODIFIED' : 'REMOVED' },
  ];
}

export interface AnonymizeInput {
  dataset: ParsedDataset;
  sopClassUid: string;
  profile: Profile;
  replacements: Replacements;
  key: Buffer;
  /** Identifying values of the input (phiNeedles), redacted by the Clean action. */
  needles: Needle[];
  /** Pixel data cleaned of burned-in text (pixels/clean.ts); without it the pixel data passes byte for byte. */
  pixels?: CleanedPixels;
}

/** What cleaning changes besides the pixels: the annotation is gone, and the new encoding's own attributes. */
function cleanedPixelElements(pixels: CleanedPixels | undefined): Element[] {
  if (!pixels) return [];
  return [{ tag: BURNED_IN_ANNOTATION, vr: 'CS', value: 'NO' }, ...pixels.attributes];
}

export function anonymize(input: AnonymizeInput): AnonymizeResult {
  const { dataset: ds } = input;
  const ctx: Ctx = {
    ds,
    profile: input.profile,
    r: input.replacements,
    key: input.key,
    needles: input.needles,
    uids: new Map(),
    counts: {},
    pixelData: input.pixels?.pixelData,
  };
  const charset = specificCharacterSet(ds);
  const body = editElements(ds.elements, ctx, { within: 'normal', charset }, [...methodElements(ctx), ...missingPatientElements(ctx, charset), ...cleanedPixelElements(input.pixels)])!;
  const uidOf = (tag: number) => {
    const el = ds.elements.find((e) => e.tag === tag);
    const original = el ? stringValue(ds, el, charset) : '';
    return ctx.uids.get(original) ?? original;
  };
  const sopInstanceUid = uidOf(SOP_INSTANCE_UID);
  const meta = encodeFileMeta({
    sopClassUid: input.sopClassUid,
    sopInstanceUid,
    tsUid: input.pixels?.transferSyntaxUid ?? ds.transferSyntaxUid,
    implementationClassUid: DPHIANT_IMPLEMENTATION_CLASS_UID,
    implementationVersionName: DPHIANT_IMPLEMENTATION_VERSION,
  });
  const chunks: Uint8Array[] = [meta];
  let byteLength = meta.length;
  if (ds.deflated) {
    const deflated = deflateRawSync(Buffer.concat(body.chunks, body.length));
    const padded = deflated.length % 2 ? Buffer.concat([deflated, Buffer.alloc(1)]) : deflated;
    chunks.push(padded);
    byteLength += padded.length;
  } else {
    chunks.push(...body.chunks);
    byteLength += body.length;
  }
  return {
    chunks,
    byteLength,
    report: { counts: ctx.counts, uids: ctx.uids, sopInstanceUid, studyInstanceUid: uidOf(STUDY_INSTANCE_UID), seriesInstanceUid: uidOf(SERIES_INSTANCE_UID) },
  };
}

