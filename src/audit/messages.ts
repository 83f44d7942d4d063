// IHE ATNA audit messages: the DICOM audit message format of PS3.15 A.5.1, for the events of A.5.3 this middleman
// reports. What a message may hold (README, "Audit trail"): the audit repository is inside the hospital but outside
// the crosswalk's trust zone, so a message names aliases, AE titles, staff user names and network addresses, never a
// patient's identity, an original UID, or the free-text reason of a re-identification (it may quote PHI; the
// crosswalk's own audit keeps it).
import { hostname } from 'node:os';

/** A coded value of the DICOM controlled terminology (DCM) or RFC 3881: code, code system name, original text. */
type Code = readonly [code: string, system: string, text: string];

const EV = {
  applicationActivity: ['110100', 'DCM', 'Application Activity'],
  userAuthentication: ['110114', 'DCM', 'User Authentication'],
  patientRecord: ['110110', 'DCM', 'Patient Record'],
  export: ['110106', 'DCM', 'Export'],
  securityAlert: ['110113', 'DCM', 'Security Alert'],
  instancesTransferred: ['110104', 'DCM', 'DICOM Instances Transferred'],
  studyDeleted: ['110105', 'DCM', 'DICOM Study Deleted'],
  instancesAccessed: ['110103', 'DCM', 'DICOM Instances Accessed'],
  restrictedFunction: ['110132', 'DCM', 'Use of Restricted Function'],
  studyInstanceUid: ['110180', 'DCM', 'Study Instance UID'],
  // no DCM code names it: a code of this application's own, as RFC 3881 allows
  quarantineEntry: ['quarantine-entry', 'DPHIANT', 'Keyed hash of a quarantined SOP Instance UID'],
  applicationStart: ['110120', 'DCM', 'Application Start'],
  applicationStop: ['110121', 'DCM', 'Application Stop'],
  login: ['110122', 'DCM', 'Login'],
  logout: ['110123', 'DCM', 'Logout'],
  nodeAuthentication: ['110126', 'DCM', 'Node Authentication'],
  application: ['110150', 'DCM', 'Application'],
  sourceRole: ['110153', 'DCM', 'Source Role ID'],
  destinationRole: ['110152', 'DCM', 'Destination Role ID'],
  patientNumber: ['2', 'RFC-3881', 'Patient Number'],
} as const satisfies Record<string, Code>;

/** EventOutcomeIndicator: 0 success, 4 minor failure, 8 serious failure. */
export type Outcome = 0 | 4 | 8;

export type AuditEvent =
  | { kind: 'application'; action: 'start' | 'stop' }
  | { kind: 'login'; user: string; address: string; outcome: Outcome; action?: 'login' | 'logout' }
  /** A re-identification: the identity behind `aliasId` shown to `user`. */
  | { kind: 'reveal'; user: string; address: string; aliasId: string }
  /** The crosswalk's whole mapping exported (or re-sealed: `rekey`) by `user`. */
  | { kind: 'export'; user: string; address: string; what: 'mapping' | 'rekey' }
  /**
   * An association or connection refused (`node`: unknown calling AE, certificate rejected, TLS version) or an
   * instance stopped by the PHI gate (`gate`): `why` a fixed phrase, `peer` the calling AE title (or the TLS
   * subject, `-` when unknown) and address; `repeats`: further alerts of the same peer and kind folded into this one.
   */
  | { kind: 'security-alert'; peer: string; address: string; why: string; type?: 'node' | 'gate'; repeats?: number }
  /**
   * De-identified instances of one study stored in the PACS, received from the modality `from` (DICOM Instances
   * Transferred, action C): the study by its new UID and the patient by alias.
   */
  | { kind: 'transfer'; from: Peer; to: Peer; studyUid: string; aliasId: string; sopClasses: Record<string, number> }
  /**
   * Raw copies deleted from the PACS: once de-identified, the copies of one study, named by the new study UID and
   * alias of their de-identified copies; once quarantined (sealed in the local quarantine first), by the keyed
   * hashes of their SOP Instance UIDs, which the quarantine list shows.
   */
  | ({ kind: 'raw-deleted'; pacs: Peer; instances: number } & ({ reason: 'deidentified'; studyUid: string; aliasId: string } | { reason: 'quarantined'; quarantined: string[] }))
  /**
   * Quarantined instances an operator acted on, by the keyed hashes of their SOP Instance UIDs: `requeue` sends the
   * sealed raw copies back to the PACS to be de-identified again (DICOM Instances Transferred, action C), `purge`
   * deletes them for good (DICOM Instances Accessed, action D).
   */
  | { kind: 'quarantine'; action: 'requeue' | 'purge'; user: string; address: string; pacs: Peer; entries: string[] };

/** A network peer: AE title and, when known, its address. */
export interface Peer {
  aet: string;
  address?: string;
}

export interface AuditSource {
  /** AuditSourceID (audit.sourceId, else the host name). */
  sourceId: string;
  /** This application as an active participant: its AE title. */
  aet: string;
}

export function auditSource(sourceId: string, aet: string): AuditSource {
  return { sourceId: sourceId || hostname(), aet };
}

const esc = (v: string) => v.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);

function coded(tag: string, [code, system, text]: Code): string {
  return `<${tag} csd-code="${code}" codeSystemName="${system}" originalText="${esc(text)}"/>`;
}

function attrs(a: Record<string, string | number | boolean | undefined>): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => ` ${k}="${esc(String(v))}"`)
    .join('');
}

interface Participant {
  userId: string;
  requestor: boolean;
  /** NetworkAccessPointID: an IP address (type 2). */
  address?: string;
  role?: Code;
}

function participant(p: Participant): string {
  const a = attrs({ UserID: p.userId, UserIsRequestor: p.requestor, NetworkAccessPointID: p.address, NetworkAccessPointTypeCode: p.address ? 2 : undefined });
  return p.role ? `<ActiveParticipant${a}>${coded('RoleIDCode', p.role)}</ActiveParticipant>` : `<ActiveParticipant${a}/>`;
}

/** ParticipantObjectIdentification of a patient by alias: type 1 (person), role 1 (patient). */
function patientObject(aliasId: string): string {
  return `<ParticipantObjectIdentification${attrs({ ParticipantObjectID: aliasId, ParticipantObjectTypeCode: 1, ParticipantObjectTypeCodeRole: 1 })}>${coded('ParticipantObjectIDTypeCode', EV.patientNumber)}</ParticipantObjectIdentification>`;
}

/** ParticipantObjectIdentification of a study: type 2 (system object), role 3 (report), its SOP classes and counts. */
function studyObject(studyUid: string, sopClasses: Record<string, number>): string {
  const sops = Object.entries(sopClasses)
    .map(([uid, n]) => `<SOPClass${attrs({ UID: uid, NumberOfInstances: n })}/>`)
    .join('');
  return `<ParticipantObjectIdentification${attrs({ ParticipantObjectID: studyUid, ParticipantObjectTypeCode: 2, ParticipantObjectTypeCodeRole: 3 })}>${coded('ParticipantObjectIDTypeCode', EV.studyInstanceUid)}${sops ? `<ParticipantObjectDescription>${sops}</ParticipantObjectDescription>` : ''}</ParticipantObjectIdentification>`;
}

/** ParticipantObjectIdentification of a quarantined instance by the keyed hash of its SOP Instance UID. */
function quarantineObject(hash: string): string {
  return `<ParticipantObjectIdentification${attrs({ ParticipantObjectID: hash, ParticipantObjectTypeCode: 2, ParticipantObjectTypeCodeRole: 3 })}>${coded('ParticipantObjectIDTypeCode', EV.quarantineEntry)}</ParticipantObjectIdentification>`;
}

/** The PS3.15 A.5.1 message of one event; `at`: its time. */
export function auditMessage(e: AuditEvent, source: AuditSource, at = new Date()): string {
  const self: Participant = { userId: source.aet, requestor: false, role: EV.application };
  let action = 'E';
  let outcome: Outcome = 0;
  let id: Code;
  let type: Code | undefined;
  const parts: Participant[] = [];
  const objects: string[] = [];
  switch (e.kind) {
    case 'application':
      id = EV.applicationActivity;
      type = e.action === 'start' ? EV.applicationStart : EV.applicationStop;
      parts.push(self);
      break;
    case 'login':
      id = EV.userAuthentication;
      type = e.action === 'logout' ? EV.logout : EV.login;
      outcome = e.outcome;
      parts.push({ userId: e.user, requestor: true, address: e.address }, self);
      break;
    case 'reveal':
      id = EV.patientRecord;
      action = 'R';
      parts.push({ userId: e.user, requestor: true, address: e.address }, self);
      objects.push(patientObject(e.aliasId));
      break;
    case 'export':
      id = EV.export;
      action = 'R';
      parts.push({ userId: e.user, requestor: true, address: e.address, role: EV.sourceRole }, { ...self, role: EV.destinationRole });
      // the crosswalk as a system object (type 2) in the role of a security resource (13)
      objects.push(`<ParticipantObjectIdentification${attrs({ ParticipantObjectID: `crosswalk ${e.what}`, ParticipantObjectTypeCode: 2, ParticipantObjectTypeCodeRole: 13 })}>${coded('ParticipantObjectIDTypeCode', ['12', 'RFC-3881', 'URI'])}</ParticipantObjectIdentification>`);
      break;
    case 'security-alert': {
      id = EV.securityAlert;
      type = e.type === 'gate' ? EV.restrictedFunction : EV.nodeAuthentication;
      outcome = 4;
      if (e.type === 'gate') parts.push({ ...self, requestor: true });
      else parts.push({ userId: e.peer, requestor: true, address: e.address }, self);
      const why = e.repeats ? `${e.why} (and ${e.repeats} more like it)` : e.why;
      objects.push(`<ParticipantObjectIdentification${attrs({ ParticipantObjectID: e.peer, ParticipantObjectTypeCode: 2, ParticipantObjectTypeCodeRole: 13 })}>${coded('ParticipantObjectIDTypeCode', ['12', 'RFC-3881', 'URI'])}<ParticipantObjectDetail type="Alert Description" value="${Buffer.from(why).toString('base64')}"/></ParticipantObjectIdentification>`);
      break;
    }
    case 'transfer':
      id = EV.instancesTransferred;
      action = 'C';
      parts.push(
        { userId: e.from.aet, requestor: false, address: e.from.address, role: EV.sourceRole },
        { ...self, requestor: true },
        { userId: e.to.aet, requestor: false, address: e.to.address, role: EV.destinationRole },
      );
      objects.push(studyObject(e.studyUid, e.sopClasses), patientObject(e.aliasId));
      break;
    case 'raw-deleted':
      id = EV.studyDeleted;
      action = 'D';
      parts.push({ ...self, requestor: true }, { userId: e.pacs.aet, requestor: false, address: e.pacs.address });
      if (e.reason === 'deidentified') objects.push(studyObject(e.studyUid, {}), patientObject(e.aliasId));
      else objects.push(...e.quarantined.map(quarantineObject));
      break;
    case 'quarantine':
      parts.push({ userId: e.user, requestor: true, address: e.address });
      if (e.action === 'requeue') {
        id = EV.instancesTransferred;
        action = 'C';
        parts.push({ ...self, role: EV.sourceRole }, { userId: e.pacs.aet, requestor: false, address: e.pacs.address, role: EV.destinationRole });
      } else {
        id = EV.instancesAccessed;
        action = 'D';
        parts.push(self);
      }
      objects.push(...e.entries.map(quarantineObject));
      break;
  }
  const event = `<EventIdentification${attrs({ EventActionCode: action, EventDateTime: at.toISOString(), EventOutcomeIndicator: outcome })}>${coded('EventID', id)}${type ? coded('EventTypeCode', type) : ''}</EventIdentification>`;
  const src = `<AuditSourceIdentification${attrs({ AuditSourceID: source.sourceId })}><AuditSourceTypeCode csd-code="4"/></AuditSourceIdentification>`;
  return `<?xml version="1.0" encoding="UTF-8"?><AuditMessage>${event}${parts.map(participant).join('')}${src}${objects.join('')}</AuditMessage>`;
}
