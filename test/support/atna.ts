// The checks of an ATNA record as the audit repository receives it: the RFC 5424 header fields ITI-20 fixes and the
// PS3.15 A.5.1 audit message with its required elements. One validator for the raw message of a test's own listener
// (checkMessage) and for the fields a real syslog receiver parsed out of it (checkRecord: rsyslog's).
import { expect } from 'chai';
import type { AuditEvent } from '../../src/audit/messages.js';

/** An RFC 5424 message as its fields: what rsyslog's parser yields, or checkMessage's regular expression. */
export interface SyslogRecord {
  facility: number;
  /** TIMESTAMP, RFC 3339 */
  time: string;
  appName: string;
  msgId: string;
  structuredData: string;
  /** MSG without the UTF-8 BOM that precedes it */
  xml: string;
}

export interface CheckedRecord {
  xml: string;
  eventId: string;
  outcome: string;
}

/** Header fields (facility authpriv, app DPHIANT, MSGID IHE+RFC-3881) and the A.5.1 message's required parts; throws naming what is missing. */
export function checkRecord(r: SyslogRecord): CheckedRecord {
  const { xml } = r;
  expect(r.facility, 'facility authpriv (10)').to.equal(10);
  expect(Date.parse(r.time), 'RFC 3339 time').to.not.be.NaN;
  expect(r.appName).to.equal('DPHIANT');
  expect(r.msgId).to.equal('IHE+RFC-3881');
  expect(r.structuredData, 'no structured data, or well-formed').to.match(/^(-|\[.*\])$/s);
  const ev = /<EventIdentification EventActionCode="([CRUDE])" EventDateTime="([^"]+)" EventOutcomeIndicator="(0|4|8|12)"><EventID csd-code="(\d+)" codeSystemName="DCM" originalText="[^"]+"\/>/.exec(xml);
  if (!ev) throw new Error(`EventIdentification with EventID, EventActionCode, EventDateTime and EventOutcomeIndicator missing: ${xml}`);
  expect(xml).to.match(/<ActiveParticipant UserID="[^"]+" UserIsRequestor="(true|false)"/);
  expect(xml).to.match(/<AuditSourceIdentification AuditSourceID="[^"]+"><AuditSourceTypeCode csd-code="\d"\/><\/AuditSourceIdentification>/);
  for (const po of xml.matchAll(/<ParticipantObjectIdentification([^>]*)>(.*?)<\/ParticipantObjectIdentification>/g)) {
    expect(po[1]).to.match(/ParticipantObjectID="[^"]+"/);
    expect(po[1]).to.match(/ParticipantObjectTypeCode="\d"/);
    const type = /^<ParticipantObjectIDTypeCode csd-code="([^"]+)" codeSystemName="([^"]+)" originalText="[^"]+"\/>/.exec(po[2]!);
    if (!type) throw new Error(`ParticipantObjectIDTypeCode with code, code system and original text missing: ${po[0]}`);
    // DCM and RFC 3881 codes are numbers; a code of this application's own (quarantine-entry) need not be
    if (['DCM', 'RFC-3881'].includes(type[2]!)) expect(type[1], `${type[2]} code`).to.match(/^\d+$/);
  }
  expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?><AuditMessage>') && xml.endsWith('</AuditMessage>')).to.equal(true);
  return { xml, eventId: ev[4]!, outcome: ev[3]! };
}

/** checkRecord of a raw RFC 5424 message, whose MSG must start with the UTF-8 BOM (RFC 5424 6.4). */
export function checkMessage(m: string): CheckedRecord {
  const header = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?\]) \uFEFF(<\?xml.*)$/s.exec(m);
  if (!header) throw new Error(`not an RFC 5424 message: ${m.slice(0, 120)}`);
  const [, pri, time, , appName, , msgId, structuredData, xml] = header;
  return checkRecord({ facility: Number(pri) >> 3, time: time!, appName: appName!, msgId: msgId!, structuredData: structuredData!, xml: xml! });
}

/** Every event kind (each variant of each), and the EventID each gives. */
export const EVENTS: AuditEvent[] = [
  { kind: 'application', action: 'start' },
  { kind: 'application', action: 'stop' },
  { kind: 'login', user: 'demo', address: '127.0.0.1', outcome: 0 },
  { kind: 'login', user: 'mallory <x>', address: '10.0.0.9', outcome: 4 },
  { kind: 'login', user: 'demo', address: '127.0.0.1', outcome: 0, action: 'logout' },
  { kind: 'reveal', user: 'demo', address: '127.0.0.1', aliasId: 'ANON1234' },
  { kind: 'export', user: 'demo', address: '127.0.0.1', what: 'mapping' },
  { kind: 'security-alert', peer: 'ROGUE', address: '10.0.0.8', why: 'calling AE not allowed' },
  { kind: 'security-alert', peer: 'CN=intruder', address: '10.0.0.7', why: 'certificate not trusted', type: 'node', repeats: 3 },
  { kind: 'security-alert', peer: 'STORESCU', address: '10.0.0.6', why: 'gate: text left in a private element', type: 'gate' },
  { kind: 'transfer', from: { aet: 'CT1', address: '10.0.0.5' }, to: { aet: 'PACS', address: '10.0.0.4' }, studyUid: '2.25.1', aliasId: 'ANON1234', sopClasses: { '1.2.840.10008.5.1.4.1.1.2': 2 } },
  { kind: 'raw-deleted', pacs: { aet: 'PACS' }, instances: 2, reason: 'deidentified', studyUid: '2.25.1', aliasId: 'ANON1234' },
  { kind: 'raw-deleted', pacs: { aet: 'PACS' }, instances: 1, reason: 'quarantined', quarantined: ['k1'] },
  { kind: 'quarantine', action: 'requeue', user: 'demo', address: '127.0.0.1', pacs: { aet: 'PACS', address: '10.0.0.4' }, entries: ['k1', 'k2'] },
  { kind: 'quarantine', action: 'purge', user: 'demo', address: '127.0.0.1', pacs: { aet: 'PACS' }, entries: ['k1'] },
];
export const EVENT_IDS = ['110100', '110100', '110114', '110114', '110114', '110110', '110106', '110113', '110113', '110113', '110104', '110105', '110105', '110104', '110103'];
