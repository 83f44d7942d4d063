// The crosswalk: patients and studies by alias, with their PHI sealed, found by blind index, and an append-only
// audit of every re-identification. Two implementations (SQLite, MongoDB) share this contract and these records.
import type { Sealer } from './crypto.js';
import { blindIndex } from './crypto.js';
import { aliasName, aliasSexOf, counterAliasId, dateOffset, randomAliasId, type AliasSex } from './aliases.js';
import type { AliasSource, PatientAlias, PatientIdentity } from '../dicom/identity.js';

export type MatchKeyKind = 'id' | 'demographics';
/** How instances without any patient identity (phantoms, secondary captures, test objects) are aliased. */
export type UnidentifiedKind = 'per-study' | 'single';

export interface CrosswalkSettings {
  /** The site key: blind index of the match keys. */
  siteKey: Buffer;
  sealer: Sealer;
  /** id: PatientID + IssuerOfPatientID; demographics: PatientName + PatientBirthDate + PatientSex. */
  matchKey: MatchKeyKind;
  /** per-study (default): one alias per Study Instance UID; single: one "unknown patient" alias for all of them. */
  unidentified?: UnidentifiedKind;
  aliasPattern: 'random' | 'counter';
  aliasPrefix: string;
  dateOffsetMinDays: number;
  dateOffsetMaxDays: number;
}

export interface PatientSummary {
  aliasId: string;
  aliasName: string;
  aliasSex: AliasSex;
  studies: number;
  createdAt: string;
  lastStudyAt: string | null;
}

export interface StudySummary {
  aliasId: string;
  accessionAlias: string;
  createdAt: string;
}

export interface RevealedPatient {
  aliasId: string;
  aliasName: string;
  aliasSex: AliasSex;
  /** All empty for an alias of instances without patient identity. */
  identity: PatientIdentity;
  /** Set when the alias stands for instances without any patient identity: of one study, or of all (single). */
  unidentified?: UnidentifiedKind;
  dateOffsetDays: number;
  studies: { accessionAlias: string; studyInstanceUid: string; accessionNumber: string }[];
}

export type AuditAction = 'reveal' | 'export' | 'rekey';

export interface AuditRecord {
  at: string;
  user: string;
  reason: string;
  action: AuditAction;
  /** null for actions on the whole crosswalk (export, rekey). */
  aliasId: string | null;
  /** Which kinds of value were disclosed (never the values). */
  disclosed: string[];
}

export interface CrosswalkStore extends AliasSource {
  /** Get or create the patient of this identity (insert-or-get on the blind index). */
  patient(identity: PatientIdentity): Promise<PatientAlias>;
  /** Get or create the accession alias of one study of an aliased patient. */
  study(patient: PatientAlias, study: { studyInstanceUid: string; accessionNumber: string }): Promise<string>;
  listPatients(q?: { search?: string; offset?: number; limit?: number }): Promise<{ total: number; items: PatientSummary[] }>;
  listStudies(aliasId: string): Promise<StudySummary[]>;
  /** The PHI behind an alias; needs a user and a reason, and writes one audit record before answering. */
  reveal(aliasId: string, user: string, reason: string): Promise<RevealedPatient>;
  audit(q?: { aliasId?: string; limit?: number }): Promise<AuditRecord[]>;
  /** The whole mapping with its PHI (audited like a reveal). */
  exportMapping(user: string, reason: string): Promise<RevealedPatient[]>;
  /** Re-seals every PHI value under `next` (values already under `next` are skipped); returns values re-sealed. */
  rekey(next: Sealer, user: string, reason: string): Promise<number>;
  readonly backend: string;
  /** A shared database's client made anew (after a long outage); absent where there is none (embedded SQLite). */
  reconnect?(): Promise<void>;
  close(): Promise<void>;
}

// ---- records shared by both implementations ----

export interface PatientRecord {
  matchHash: string;
  aliasId: string;
  aliasName: string;
  aliasSex: AliasSex;
  /** sealed number */
  dateOffset: string;
  /** sealed PatientIdentity */
  phi: string;
  createdAt: string;
}

export interface StudyRecord {
  matchHash: string;
  aliasId: string;
  accessionAlias: string;
  /** sealed { studyInstanceUid, accessionNumber } */
  phi: string;
  createdAt: string;
}

/** The sealed PHI of a patient record: the identity without the study it was first seen with. */
interface SealedIdentity extends PatientIdentity {
  unidentified?: UnidentifiedKind;
}

/** Whose alias this identity gets: a patient's, by match key, or (no identity at all) an unidentified one. */
function matchOf(p: PatientIdentity, matchKey: MatchKeyKind): { kind: 'id' | 'demographics'; parts: string[] } | null {
  const byId = [p.patientId.trim(), p.issuerOfPatientId.trim()];
  const byDemographics = [p.name.trim().toUpperCase(), p.birthDate.trim(), p.sex.trim().toUpperCase()];
  const hasId = byId[0] !== '';
  if (matchKey === 'id' && hasId) return { kind: 'id', parts: byId };
  if (byDemographics.some((x) => x !== '')) return { kind: 'demographics', parts: byDemographics };
  // demographics key, but only a PatientID: that still names one patient
  if (hasId) return { kind: 'id', parts: byId };
  return null;
}

/** The match key of all unidentified instances under crosswalk.unidentified single. */
const UNKNOWN_PATIENT = 'unknown patient';

const unidentifiedKind = (s: CrosswalkSettings): UnidentifiedKind => s.unidentified ?? 'per-study';

/**
 * The blind index of the patient's match key. An instance without a PatientID (under the id key) is matched by
 * name + birth date + sex instead (and under the demographics key, one with a PatientID only by that). One with
 * none of these is unidentified: matched by its Study Instance UID (per-study) or by one constant (single). The
 * kind leads the hashed material, so no unidentified key can equal a patient's.
 */
export function patientMatchHash(s: CrosswalkSettings, p: PatientIdentity): string {
  const m = matchOf(p, s.matchKey);
  if (m) return blindIndex(s.siteKey, `patient:${m.kind}`, m.parts);
  if (unidentifiedKind(s) === 'single') return blindIndex(s.siteKey, 'patient:unidentified:single', [UNKNOWN_PATIENT]);
  const study = (p.studyInstanceUid ?? '').trim();
  if (!study) throw new Error('crosswalk: the instance has no PatientID, name, birth date, sex or Study Instance UID to match the patient by');
  return blindIndex(s.siteKey, 'patient:unidentified:study', [study]);
}

export function studyMatchHash(s: CrosswalkSettings, aliasId: string, studyInstanceUid: string): string {
  return blindIndex(s.siteKey, 'study', [aliasId, studyInstanceUid.trim()]);
}

/** A new patient record; `counter` gives the next number when aliases are counter-based. */
export async function newPatientRecord(s: CrosswalkSettings, p: PatientIdentity, matchHash: string, counter: () => Promise<number>): Promise<PatientRecord> {
  const identified = matchOf(p, s.matchKey) !== null;
  const sex = aliasSexOf(p.sex); // 'O' for an unidentified instance, which has no sex
  // an unidentified alias may stand for many instances (single): what one of them held (an issuer) is not its identity
  const phi: SealedIdentity = identified
    ? { patientId: p.patientId, issuerOfPatientId: p.issuerOfPatientId, name: p.name, sex: p.sex, birthDate: p.birthDate }
    : { patientId: '', issuerOfPatientId: '', name: '', sex: '', birthDate: '', unidentified: unidentifiedKind(s) };
  return {
    matchHash,
    aliasId: s.aliasPattern === 'counter' ? counterAliasId(s.aliasPrefix, await counter()) : randomAliasId(s.aliasPrefix),
    aliasName: aliasName(sex, p.name),
    aliasSex: sex,
    dateOffset: s.sealer.seal(dateOffset(s.dateOffsetMinDays, s.dateOffsetMaxDays)),
    phi: s.sealer.seal(phi),
    createdAt: new Date().toISOString(),
  };
}

export function newStudyRecord(s: CrosswalkSettings, aliasId: string, study: { studyInstanceUid: string; accessionNumber: string }, matchHash: string): StudyRecord {
  return {
    matchHash,
    aliasId,
    accessionAlias: randomAliasId('ACC', 10),
    phi: s.sealer.seal({ studyInstanceUid: study.studyInstanceUid, accessionNumber: study.accessionNumber }),
    createdAt: new Date().toISOString(),
  };
}

export function aliasOf(s: CrosswalkSettings, r: PatientRecord, created: boolean): PatientAlias {
  return { aliasId: r.aliasId, aliasName: r.aliasName, dateOffsetDays: s.sealer.open<number>(r.dateOffset), created };
}

export function revealed(s: CrosswalkSettings, r: PatientRecord, studies: StudyRecord[]): RevealedPatient {
  const { unidentified, ...identity } = s.sealer.open<SealedIdentity>(r.phi);
  return {
    aliasId: r.aliasId,
    aliasName: r.aliasName,
    aliasSex: r.aliasSex,
    identity,
    ...(unidentified ? { unidentified } : {}),
    dateOffsetDays: s.sealer.open<number>(r.dateOffset),
    studies: studies.map((st) => ({ accessionAlias: st.accessionAlias, ...s.sealer.open<{ studyInstanceUid: string; accessionNumber: string }>(st.phi) })),
  };
}

/** A reason worth auditing: not empty, not a placeholder. */
export function checkReason(user: string, reason: string): void {
  if (!user || !user.trim()) throw new Error('re-identification needs the name of the user asking');
  if (!reason || reason.trim().length < 5) throw new Error('re-identification needs a reason (5 characters or more)');
}

export const REVEALED_FIELDS = ['patient name', 'patient ID', 'issuer of patient ID', 'birth date', 'sex', 'date offset', 'study instance UIDs', 'accession numbers'];
