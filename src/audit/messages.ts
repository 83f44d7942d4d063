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
  /** An association or connection refused: `why` a fixed phrase, `peer` the calling AE title and address. */
  | { kind: 'security-alert'; peer: string; address: string; why: string };

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
      // the patient by alias: ParticipantObjectTypeCode 1 (person), role 1 (patient)
      objects.push(`<ParticipantObjectIdentification${attrs({ ParticipantObjectID: e.aliasId, ParticipantObjectTypeCode: 1, ParticipantObjectTypeCodeRole: 1 })}>${coded('ParticipantObjectIDTypeCode', EV.patientNumber)}</ParticipantObjectIdentification>`);
      break;
    case 'export':
      id = EV.export;
      action = 'R';
      parts.push({ userId: e.user, requestor: true, address: e.address, role: EV.sourceRole }, { ...self, role: EV.destinationRole });
      // the crosswalk as a system object (type 2) in the role of a security resource (13)
      objects.push(`<ParticipantObjectIdentification${attrs({ ParticipantObjectID: `crosswalk ${e.what}`, ParticipantObjectTypeCode: 2, ParticipantObjectTypeCodeRole: 13 })}>${coded('ParticipantObjectIDTypeCode', ['12', 'RFC-3881', 'URI'])}</ParticipantObjectIdentification>`);
      break;
    case 'security-alert':
      id = EV.securityAlert;
      type = EV.nodeAuthentication;
      outcome = 4;
      parts.push({ userId: e.peer, requestor: true, address: e.address }, self);
      objects.push(`<ParticipantObjectIdentification${attrs({ ParticipantObjectID: e.peer, ParticipantObjectTypeCode: 2, ParticipantObjectTypeCodeRole: 13 })}>${coded('ParticipantObjectIDTypeCode', ['12', 'RFC-3881', 'URI'])}<ParticipantObjectDetail type="Alert Description" value="${Buffer.from(e.why).toString('base64')}"/></ParticipantObjectIdentification>`);
      break;
  }
  const event = `<EventIdentification${attrs({ EventActionCode: action, EventDateTime: at.toISOString(), EventOutcomeIndicator: outcome })}>${coded('EventID', id)}${type ? coded('EventTypeCode', type) : ''}</EventIdentification>`;
  const src = `<AuditSourceIdentification${attrs({ AuditSourceID: source.sourceId })}><AuditSourceTypeCode csd-code="4"/></AuditSourceIdentification>`;
  return `<?xml version="1.0" encoding="UTF-8"?><AuditMessage>${event}${parts.map(participant).join('')}${src}${objects.join('')}</AuditMessage>`;
}
