// A patient's identity as read from an instance, and the aliases the crosswalk gives it: the contract between the
// de-identification (which asks) and the crosswalk (which answers), below both.

/** The identifying values of a patient, read from an instance. */
export interface PatientIdentity {
  patientId: string;
  issuerOfPatientId: string;
  name: string;
  /** 'M', 'F', 'O' or '' */
  sex: string;
  birthDate: string;
  /**
   * The top-level Study Instance UID (0020,000D): the match key of an instance with none of the values above
   * (crosswalk.unidentified per-study). Never sealed into a patient's record.
   */
  studyInstanceUid?: string;
}

/**
 * What an alias ID looks like (crosswalk.aliasPrefix, 1-8 upper-case letters or digits, then 8 random base-32
 * characters or 8 counter digits): safe as a path component.
 */
export const ALIAS_ID = /^[A-Z0-9]{1,8}(?:[A-Z2-7]{8}|[0-9]{8})$/;

export interface PatientAlias {
  aliasId: string;
  aliasName: string;
  /** Whole days added to every date of this patient (negative: earlier). */
  dateOffsetDays: number;
  created: boolean;
}

export interface AliasSource {
  patient(identity: PatientIdentity): Promise<PatientAlias>;
  /** The accession alias of one study of an aliased patient. */
  study(patient: PatientAlias, study: { studyInstanceUid: string; accessionNumber: string }): Promise<string>;
}
