// A deterministic keyed alias source for engine tests and benchmarks (no database):
// aliases derived from HMAC-SHA-256(site key, match key), so the same patient gets the same alias in every run
// and process, without storing anything (and so without re-identification).
import { createHmac } from 'node:crypto';
import type { AliasSource, PatientAlias, PatientIdentity } from '../../src/dicom/identity.js';

const GIVEN: Record<'M' | 'F' | 'O', string[]> = {
  M: ['ADAM', 'BRUNO', 'CARL', 'DAVID', 'EMIL', 'FELIX', 'GUSTAV', 'HUGO', 'IVAN', 'JONAS', 'KARL', 'LUDWIG', 'MARTIN', 'NIKOLAI', 'OSKAR', 'PAUL'],
  F: ['ALMA', 'BERTA', 'CLARA', 'DORA', 'EMMA', 'FRIDA', 'GRETA', 'HANNA', 'IDA', 'JULIA', 'KLARA', 'LENA', 'MARTHA', 'NORA', 'OLGA', 'PAULA'],
  O: ['ALEX', 'CHARLIE', 'EDEN', 'JORDAN', 'KIM', 'MORGAN', 'NOA', 'ROBIN', 'SAM', 'TAYLOR'],
};
const FAMILY = ['ALDER', 'BIRCH', 'CEDAR', 'ELM', 'FIR', 'HAZEL', 'LARCH', 'MAPLE', 'OAK', 'PINE', 'ROWAN', 'SPRUCE', 'WILLOW', 'YEW', 'ASPEN', 'LINDEN'];
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

export class KeyedStandIn implements AliasSource {
  constructor(private readonly key: Buffer) {}

  private mac(what: string): Buffer {
    return createHmac('sha256', this.key).update(what).digest();
  }

  async patient(p: PatientIdentity): Promise<PatientAlias> {
    const h = this.mac(`patient\0${p.patientId}\0${p.issuerOfPatientId}`);
    const sex = p.sex === 'M' || p.sex === 'F' ? p.sex : 'O';
    const aliasId = 'DPH' + Array.from(h.subarray(0, 8), (b) => BASE32[b & 31]).join('');
    // an alias shares no name component with the real name (the verification gate would reject it)
    const real = new Set(p.name.toUpperCase().split(/[\^=\s]+/));
    const given = GIVEN[sex];
    let aliasName = '';
    for (let k = 0; k < FAMILY.length * given.length; k++) {
      const family = FAMILY[(h[8]! + k) % FAMILY.length]!;
      const first = given[(h[9]! + Math.floor(k / FAMILY.length)) % given.length]!;
      if (!real.has(family) && !real.has(first)) {
        aliasName = `${family}^${first}`;
        break;
      }
    }
    const dateOffsetDays = -(365 + (h.readUInt32BE(10) % (3650 - 365 + 1)));
    return { aliasId, aliasName, dateOffsetDays, created: false };
  }

  async study(patient: PatientAlias, study: { studyInstanceUid: string; accessionNumber: string }): Promise<string> {
    const h = this.mac(`study\0${patient.aliasId}\0${study.studyInstanceUid}`);
    return 'ACC' + Array.from(h.subarray(0, 10), (b) => BASE32[b & 31]).join('');
  }
}
