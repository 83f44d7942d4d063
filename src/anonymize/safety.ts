// The safety pass: what happens to a standard attribute that no row of Table E.1-1, no option and no site rule
// decides. PS3.15 E.1.1 keeps such attributes as non-identifying, but real instances put names, dates, UIDs and
// free text in them (reviewer names, source-instance UIDs, retrieve URLs, SR text), so DPHIANT decides them by
// their VR instead. Profile.describe() prints these rules, so `dphiant profile show` shows them to a site.
import { tagOfKeyword, vrOf } from '../dicom/dictionary.js';
import type { Action } from './profile.js';

/** What the safety pass does with free text outside the table: redact identifying values, or remove the attribute. */
export type TextPolicy = 'redact' | 'remove';

export interface SafetyPassSettings {
  /** LO, SH, UC: labels and short descriptions. Default redact: they rarely hold PHI, and research needs them. */
  shortText: TextPolicy;
  /** ST, LT, UT: narrative text, where names of people and places are written that no list can foresee. */
  longText: TextPolicy;
}

export const DEFAULT_SAFETY_PASS: SafetyPassSettings = { shortText: 'redact', longText: 'remove' };

/**
 * Where an element is: `normal`; inside a sequence the table replaces (D, e.g. Content Sequence under the basic
 * profile: the tree and its codes stay, every value that could identify is replaced); inside a sequence the table
 * cleans (C, Clean Structured Content: values are redacted instead).
 */
export type Within = 'normal' | 'replace' | 'redact';

/**
 * Standard attributes outside the table that hold only coded or vendor vocabulary: kept as they are (the gate
 * still searches them). Codes must survive for SR trees and code sequences to mean anything, and class and
 * transfer syntax UIDs name kinds of object, not patients.
 */
export const VOCABULARY_KEYWORDS = [
  // code sequence macro (PS3.3 Table 8.8-1)
  'CodeValue', 'CodingSchemeDesignator', 'CodingSchemeVersion', 'CodeMeaning', 'LongCodeValue', 'URNCodeValue',
  'MappingResource', 'MappingResourceName', 'MappingResourceUID', 'ContextIdentifier', 'ContextUID',
  'ContextGroupVersion', 'ContextGroupLocalVersion', 'ContextGroupExtensionFlag', 'ContextGroupExtensionCreatorUID',
  'CodingSchemeUID', 'CodingSchemeName', 'CodingSchemeRegistry', 'CodingSchemeExternalID',
  // kinds of object and encodings
  'SOPClassUID', 'ReferencedSOPClassUID', 'RelatedGeneralSOPClassUID', 'OriginalSpecializedSOPClassUID', 'SOPClassesInStudy',
  'SOPClassesSupported', 'PertinentSOPClassesInStudy', 'PertinentSOPClassesInSeries', 'ReferencedSOPClassUIDInFile',
  'ReferencedRelatedGeneralSOPClassUIDInFile', 'TransferSyntaxUID', 'StoredInstanceTransferSyntaxUID', 'AvailableTransferSyntaxUID',
  'ReferencedTransferSyntaxUIDInFile', 'FlowTransferSyntaxUID', 'MACCalculationTransferSyntaxUID', 'EncryptedContentTransferSyntaxUID',
  'PrivateInformationCreatorUID', 'CreatorVersionUID', 'ExtendedCodeMeaning',
  // vendor vocabulary and encodings
  'Manufacturer', 'SpecificCharacterSet', 'TimezoneOffsetFromUTC',
] as const;

let vocabulary: Set<number> | undefined;

/** Tags of VOCABULARY_KEYWORDS. */
export function vocabularyTags(): ReadonlySet<number> {
  if (!vocabulary) {
    vocabulary = new Set();
    for (const k of VOCABULARY_KEYWORDS) {
      const tag = tagOfKeyword(k);
      if (tag === undefined) throw new Error(`safety pass vocabulary: ${k} is not a keyword of the data dictionary`);
      vocabulary.add(tag);
    }
  }
  return vocabulary;
}

const SHORT_TEXT = new Set(['LO', 'SH', 'UC']);
const LONG_TEXT = new Set(['ST', 'LT', 'UT']);
/** VRs that hold codes, numbers or bulk data: nothing a person types about a patient. */
const KEPT_VRS = new Set(['CS', 'AS', 'DS', 'IS', 'US', 'SS', 'UL', 'SL', 'UV', 'SV', 'FL', 'FD', 'AT', 'OB', 'OW', 'OF', 'OD', 'OL', 'OV', 'SQ']);

/**
 * The VR the safety pass decides an element by. The walker gives a UN element of a known text or sequence attribute
 * its real VR already; a known binary attribute written as UN (Rows, a LUT) is numbers, kept like its VR. Any
 * other UN stays UN: nobody can say what it holds.
 */
export function safetyVr(tag: number, vr: string): string {
  if (vr !== 'UN') return vr;
  const known = vrOf(tag);
  return known && known !== 'SQ' && KEPT_VRS.has(known) ? known : 'UN';
}

export interface DateOptions {
  retainUIDs: boolean;
  retainLongFullDates: boolean;
  retainLongModifiedDates: boolean;
}

/** The action for an element of `vr` that nothing else decides. `clean` shifts dates and redacts text (engine). */
export function safetyAction(vr: string, within: Within, o: DateOptions, s: SafetyPassSettings): Action {
  const text = (policy: TextPolicy): Action => (within === 'replace' ? { kind: 'dummy' } : within === 'redact' || policy === 'redact' ? { kind: 'clean' } : { kind: 'remove' });
  if (vr === 'UI') return o.retainUIDs ? { kind: 'keep' } : { kind: 'uid' };
  if (vr === 'DA' || vr === 'DT') return o.retainLongFullDates ? { kind: 'keep' } : o.retainLongModifiedDates ? { kind: 'clean' } : { kind: 'dummy' };
  if (vr === 'TM') return o.retainLongFullDates || o.retainLongModifiedDates ? { kind: 'keep' } : { kind: 'dummy' };
  if (vr === 'PN' || vr === 'AE') return { kind: 'dummy' };
  if (SHORT_TEXT.has(vr)) return text(s.shortText);
  if (LONG_TEXT.has(vr)) return text(s.longText);
  if (vr === 'UR') return within === 'normal' ? { kind: 'remove' } : { kind: 'dummy' };
  if (KEPT_VRS.has(vr)) return { kind: 'keep' };
  return { kind: 'remove' }; // UN that is not a known attribute or does not parse as one: nobody can say what it holds
}

/** The safety pass in words, one row per VR group, for `dphiant profile show`. */
export function describeSafetyPass(o: DateOptions, s: SafetyPassSettings): { vrs: string; action: string }[] {
  const word = (vr: string, a: Action): string => {
    switch (a.kind) {
      case 'uid':
        return "remap (keyed 2.25 UID, as U), except UIDs of the standard's registry (PS3.6 Annex A)";
      case 'clean':
        return vr === 'DA' ? "shift by the patient's date offset" : 'redact identifying values and patterns';
      case 'dummy':
        return 'dummy';
      default:
        return a.kind;
    }
  };
  const groups: [string, string][] = [
    ['UI', 'UI'], ['DA DT', 'DA'], ['TM', 'TM'], ['PN AE', 'PN'], ['LO SH UC', 'LO'], ['ST LT UT', 'ST'], ['UR', 'UR'],
    ['UN (no known attribute, or not readable as one)', 'UN'], ['CS AS DS IS, binary numbers, OB OW OF OD OL OV', 'CS'],
  ];
  const rows = groups.map(([vrs, vr]) => {
    const [normal, replace, redact] = (['normal', 'replace', 'redact'] as const).map((w) => word(vr, safetyAction(vr, w, o, s)));
    const inside = replace === normal && redact === normal ? '' : `; in a sequence the table replaces (D): ${replace}; in one it cleans (C): ${redact}`;
    return { vrs, action: normal + inside };
  });
  rows.push({ vrs: 'SQ', action: 'keep, apply these rules to its items' });
  return rows;
}
