// What the de-identification needs from the crosswalk, whatever stores it.

/** The identifying values of a patient, read from an instance. */
export interface PatientIdentity {
  patientId: string;
  issuerOfPatientId: string;
  name: string;
  /** 'M', 'F', 'O' or '' */
  sex: string;
  birthDate: string;
}

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
