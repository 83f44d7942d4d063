// The identifying values of one instance, read from its input: the patient's identity (for the crosswalk) and
// the "needles" the verification gate and the Clean action look for in every value of the output.
import type { DicomElement, ParsedDataset } from '../dicom/walker.js';
import { walk } from '../dicom/walker.js';
import { specificCharacterSet, stringValue, topLevelString } from '../dicom/values.js';
import type { PatientIdentity } from '../crosswalk/types.js';
import type { Profile } from './profile.js';

export type NeedleKind = 'name' | 'id' | 'birth date' | 'accession' | 'address' | 'telephone' | 'institution' | 'physician';

export interface Needle {
  kind: NeedleKind;
  /** Lower-cased text to find as a whole token sequence. */
  text: string;
}

const PATIENT_NAMES = [0x00100010, 0x00101001, 0x00101005, 0x00101060, 0x00102297];
const PHYSICIAN_NAMES = [0x00080090, 0x00081050, 0x00081060, 0x00081070, 0x00081048, 0x00321032, 0x00400006, 0x0040a123, 0x00400275, 0x40080114, 0x0040a075, 0x00700084];
const IDS = [0x00100020, 0x00101000, 0x00101002 /* sequence: its PatientID items are caught as 0x00100020 */, 0x00380010, 0x00401001];
const ACCESSION = [0x00080050];
const ADDRESSES = [0x00101040, 0x00080081];
const TELEPHONES = [0x00102154];
const INSTITUTIONS = [0x00080080, 0x00081040];
const BIRTH_DATE = 0x00100030;

const KIND: Map<number, NeedleKind> = new Map([
  ...PATIENT_NAMES.map((t) => [t, 'name'] as const),
  ...PHYSICIAN_NAMES.map((t) => [t, 'physician'] as const),
  ...IDS.map((t) => [t, 'id'] as const),
  ...ACCESSION.map((t) => [t, 'accession'] as const),
  ...ADDRESSES.map((t) => [t, 'address'] as const),
  ...TELEPHONES.map((t) => [t, 'telephone'] as const),
  ...INSTITUTIONS.map((t) => [t, 'institution'] as const),
  [BIRTH_DATE, 'birth date'],
]);

/** The patient's identity from the top level of the data set. */
export function identityOf(ds: ParsedDataset): PatientIdentity {
  const top = (tag: number) => topLevelString(ds, tag);
  return {
    patientId: top(0x00100020),
    issuerOfPatientId: top(0x00100021),
    name: top(0x00100010),
    sex: top(0x00100040).toUpperCase(),
    birthDate: top(BIRTH_DATE),
  };
}

/** Person-name components of 3+ characters (family, given, middle of every component group). */
function nameTokens(pn: string): string[] {
  const out: string[] = [];
  for (const group of pn.split('=')) {
    for (const comp of group.split('^').slice(0, 3)) {
      for (const word of comp.split(/[\s,]+/)) if ([...word].length >= 3) out.push(word);
    }
  }
  return out;
}

/** A birth date in DA and the textual forms people write. */
function dateForms(da: string): string[] {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(da.trim());
  if (!m) return [];
  const [, y, mo, d] = m;
  return [`${y}${mo}${d}`, `${y}-${mo}-${d}`, `${y}/${mo}/${d}`, `${d}/${mo}/${y}`, `${mo}/${d}/${y}`, `${d}.${mo}.${y}`, `${d}-${mo}-${y}`];
}

/**
 * Every identifying value of the input, at any depth, as needles. Institution, physician and address values are
 * skipped when the profile keeps those attributes (Retain Institution Identity, site choices): they are then
 * wanted in the output.
 */
export function phiNeedles(ds: ParsedDataset, profile: Profile): Needle[] {
  const charset = specificCharacterSet(ds);
  const seen = new Set<string>();
  const needles: Needle[] = [];
  const add = (kind: NeedleKind, text: string) => {
    const t = text.trim().toLowerCase();
    if (!t || seen.has(t)) return;
    // short tokens and short numbers match by chance
    if ([...t].length < 3 || (/^\d+$/.test(t) && t.length < 4)) return;
    seen.add(t);
    needles.push({ kind, text: t });
  };
  walk(ds, (el: DicomElement) => {
    const kind = KIND.get(el.tag);
    if (!kind || el.items) return;
    if ((kind === 'institution' || kind === 'physician' || kind === 'address') && profile.ruleFor(el.tag).action.kind === 'keep') return;
    const value = stringValue(ds, el, charset);
    if (!value) return;
    for (const v of value.split('\\')) {
      if (kind === 'name' || kind === 'physician') nameTokens(v).forEach((t) => add(kind, t));
      else if (kind === 'birth date') dateForms(v).forEach((t) => add(kind, t));
      else add(kind, v);
    }
  });
  return needles;
}

const WORD = /[\p{L}\p{N}]/u;

/** Where a needle occurs in `text` as whole tokens (not inside a longer word or number). */
export function findNeedle(text: string, needle: string, from = 0): number {
  return findInLowerCase(text.toLowerCase(), needle, from);
}

/** findNeedle on text already lower-cased (the gate lower-cases each value once for all needles). */
export function findInLowerCase(hay: string, needle: string, from = 0): number {
  for (let i = hay.indexOf(needle, from); i >= 0; i = hay.indexOf(needle, i + 1)) {
    const before = i === 0 ? '' : hay[i - 1]!;
    const after = hay[i + needle.length] ?? '';
    if (!(before && WORD.test(before)) && !(after && WORD.test(after))) return i;
  }
  return -1;
}

/** Replaces every whole-token occurrence of the needles by X characters of the same length (VR limits kept). */
export function redact(text: string, needles: Needle[]): string {
  let out = text;
  for (const n of needles) {
    for (let i = findNeedle(out, n.text); i >= 0; i = findNeedle(out, n.text, i + n.text.length)) {
      out = out.slice(0, i) + 'X'.repeat(n.text.length) + out.slice(i + n.text.length);
    }
  }
  return out;
}
