// The audit trail's ATNA records (src/audit) received by a real syslog receiver, Debian's rsyslog (test/support/
// rsyslog.ts): over RFC 5425 TLS with mutual authentication (imtcp, gtls driver, x509/certvalid) and over RFC 5426 UDP
// (imudp). rsyslog parses each as RFC 5424 (facility, app-name, msgid, structured data, MSG) and the A.5.1 checks of
// test/audit.test.ts pass on what it parsed; clients without a certificate of the trusted CA are refused and keep
// their records spooled; rsyslog stopped and started again mid-burst loses and repeats none. (It is stopped once the
// trail's confirmation window has passed: a connection dropped within 250 ms of a write has that batch sent again,
// so the records in flight then arrive twice, by design: README, Audit trail.)
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { auditMessage, type AuditEvent, type AuditSource } from '../src/audit/messages.js';
import { AuditTrail, type AuditTrailSettings } from '../src/audit/trail.js';
import { issue, makeCa, type CertifiedKey } from '../tools/devstack/tls.js';
import { checkMessage, checkRecord, EVENT_IDS, EVENTS, type CheckedRecord } from './support/atna.js';
import { rsyslogMissing, startRsyslog, type ParsedSyslog, type Rsyslog } from './support/rsyslog.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SOURCE: AuditSource = { sourceId: 'rsyslog-test', aet: 'DPHIANT' };

const BOM = '\uFEFF';

/**
 * The A.5.1 checks on the fields rsyslog parsed (its MSG keeps RFC 5424's BOM: it must be there, and is not part of
 * the XML), and the same checks on the raw message it received.
 */
function checkParsed(p: ParsedSyslog): CheckedRecord {
  expect(p.msg.startsWith(BOM), `MSG starts with the UTF-8 BOM: ${p.msg.slice(0, 40)}`).to.equal(true);
  const parsed = checkRecord({ facility: Number(p.syslogfacility), time: p.timereported, appName: p['app-name'], msgId: p.msgid, structuredData: p['structured-data'], xml: p.msg.slice(BOM.length) });
  expect(checkMessage(p.rawmsg), 'the raw message holds the same record').to.deep.equal(parsed);
  return parsed;
}

/** Failed events and security alerts are warnings (4), the rest notices (5): src/audit/trail.ts. */
const severityOf = (e: AuditEvent) => (('outcome' in e && e.outcome !== 0) || e.kind === 'security-alert' ? '4' : '5');

/** The message minus its EventDateTime, the one part that differs between two runs. */
const timeless = (xml: string) => xml.replace(/ EventDateTime="[^"]+"/, '');

const requestor = (p: ParsedSyslog) => /UserID="([^"]+)" UserIsRequestor="true"/.exec(p.msg)?.[1];

describe('ATNA audit trail received by rsyslog (Debian, gtls): RFC 5425 mutual TLS and RFC 5426 UDP', function () {
  this.timeout(60_000);
  let work: string;
  let ca: CertifiedKey;
  let server: CertifiedKey;
  let client: CertifiedKey;
  let stranger: CertifiedKey;
  const running: Rsyslog[] = [];
  const trails: AuditTrail[] = [];

  before(async function () {
    const why = rsyslogMissing();
    if (why) {
      console.log('      skipped: ' + why);
      this.skip();
    }
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-audit-rsyslog-'));
    ca = await makeCa(work, 'ca', 'audit test CA');
    server = await issue(work, 'repository', 'audit repository', ca);
    client = await issue(work, 'client', 'dphiant', ca);
    const otherCa = await makeCa(work, 'other-ca', 'another CA');
    stranger = await issue(work, 'stranger', 'dphiant', otherCa);
  });
  afterEach(async () => {
    await Promise.all(trails.splice(0).map((t) => t.close(200)));
    await Promise.all(running.splice(0).map((r) => r.stop()));
  });
  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  async function rsyslog(name: string): Promise<Rsyslog> {
    const r = await startRsyslog({ dir: path.join(work, name), ca: ca.cert, server });
    running.push(r);
    return r;
  }

  function trail(name: string, s: Pick<AuditTrailSettings, 'repository'> & Partial<AuditTrailSettings>): AuditTrail {
    const t = new AuditTrail({ ca: '', cert: '', key: '', spoolDir: path.join(work, `spool-${name}`), source: SOURCE, retryMs: 300, ...s });
    trails.push(t);
    return t;
  }

  /** Every event recorded on `t`: rsyslog writes exactly one line each, in order, from `input`, each valid. */
  async function everyEventKind(r: Rsyslog, t: AuditTrail, input: 'imtcp' | 'imudp', over: string): Promise<void> {
    for (const e of EVENTS) t.record(e);
    await r.waitFor(EVENTS.length);
    for (const at = Date.now(); t.pending() && Date.now() - at < 5000; ) await sleep(50);
    await sleep(500); // nothing more arrives
    const got = r.messages();
    const parsed = got.map(checkParsed);
    console.log(`      ${EVENTS.length} records over ${over}: rsyslog parsed ${got.length} (inputs ${[...new Set(got.map((p) => p.inputname))].join(', ')}, BOM kept in MSG), EventIDs ${parsed.map((x) => `${x.eventId}/${x.outcome}`).join(' ')}`);
    expect(got).to.have.length(EVENTS.length);
    expect(parsed.map((x) => x.eventId)).to.deep.equal(EVENT_IDS);
    expect(got.map((p) => p.inputname)).to.deep.equal(EVENTS.map(() => input));
    expect(got.map((p) => p.syslogseverity), 'severities').to.deep.equal(EVENTS.map(severityOf));
    // byte for byte what the trail wrote, in order (escaping and UTF-8 through rsyslog's parser included)
    expect(parsed.map((x) => timeless(x.xml))).to.deep.equal(EVENTS.map((e) => timeless(auditMessage(e, SOURCE))));
    expect(t.pending(), 'left in the spool').to.equal(0);
  }

  it('every event kind over TLS with a client certificate of the trusted CA: one parsed message each, in order', async () => {
    const r = await rsyslog('tls');
    const t = trail('tls', { repository: `tls://127.0.0.1:${r.tcpPort}`, ca: ca.cert, cert: client.cert, key: client.key });
    await everyEventKind(r, t, 'imtcp', 'TLS');
  });

  it('every event kind over UDP: one datagram, one parsed message each, in order', async () => {
    const r = await rsyslog('udp');
    const t = trail('udp', { repository: `udp://127.0.0.1:${r.udpPort}` });
    await everyEventKind(r, t, 'imudp', 'UDP');
  });

  it("a client with another CA's certificate or none is refused: nothing written from it, its records stay spooled", async () => {
    const r = await rsyslog('refused');
    const repository = `tls://127.0.0.1:${r.tcpPort}`;
    const foreign = trail('foreign-ca', { repository, ca: ca.cert, cert: stranger.cert, key: stranger.key });
    const anonymous = trail('no-cert', { repository, ca: ca.cert });
    for (const t of [foreign, anonymous]) for (let i = 0; i < 3; i++) t.record({ kind: 'login', user: `refused${i}`, address: '127.0.0.1', outcome: 0 });
    await sleep(2000); // several tries each (retryMs 300)
    // rsyslog up and accepting all along: a trusted client's record gets through
    const trusted = trail('trusted', { repository, ca: ca.cert, cert: client.cert, key: client.key });
    trusted.record({ kind: 'login', user: 'trusted', address: '127.0.0.1', outcome: 0 });
    await r.waitFor(1);
    await sleep(500);
    const count = (s: string) => r.log().split(s).length - 1;
    const signerNotFound = count('certificate invalid: signer not found');
    const noCertificate = count('peer did not provide a certificate');
    console.log(
      `      another CA's certificate: ${signerNotFound} connections refused by rsyslog ("signer not found"), ${foreign.pending()} of 3 records spooled; ` +
        `no certificate: ${noCertificate} refused ("peer did not provide a certificate"), ${anonymous.pending()} of 3 spooled; ` +
        `rsyslog wrote ${r.messages().length} message(s): ${r.messages().map(requestor).join(', ')}`,
    );
    expect(r.messages().map(requestor), 'only the trusted client').to.deep.equal(['trusted']);
    expect([foreign.pending(), anonymous.pending(), trusted.pending()]).to.deep.equal([3, 3, 0]);
    expect(signerNotFound, 'rsyslog refused the foreign certificate, more than once').to.be.greaterThan(1);
    expect(noCertificate, 'rsyslog refused the client without one, more than once').to.be.greaterThan(1);
  });

  it('rsyslog stopped during a burst of 50 records (after 20, confirmed), then started again: every record arrives once, in order', async () => {
    const r = await rsyslog('burst');
    const t = trail('burst', { repository: `tls://127.0.0.1:${r.tcpPort}`, ca: ca.cert, cert: client.cert, key: client.key });
    const users = Array.from({ length: 50 }, (_, i) => `burst${i}`);
    for (const u of users.slice(0, 20)) t.record({ kind: 'login', user: u, address: '127.0.0.1', outcome: 4 });
    await r.waitFor(20);
    // past the trail's confirmation window (a connection dropped within it has its last batch sent again)
    for (const at = Date.now(); t.pending() && Date.now() - at < 5000; ) await sleep(50);
    const stopping = Date.now();
    await r.stop();
    const stopMs = Date.now() - stopping;
    for (const u of users.slice(20)) t.record({ kind: 'login', user: u, address: '127.0.0.1', outcome: 4 });
    await sleep(1500);
    const spooled = t.pending();
    const writtenWhileDown = r.messages().length - 20;
    await r.restart();
    const up = Date.now();
    await r.waitFor(50);
    const afterMs = Date.now() - up;
    await sleep(1000); // nothing more arrives
    const got = r.messages();
    got.forEach(checkParsed);
    console.log(
      `      20 written, rsyslog stopped (${stopMs} ms), 30 recorded: ${spooled} spooled, ${writtenWhileDown} written meanwhile; ` +
        `started again: all there ${afterMs} ms later, ${got.length} in all, ${new Set(got.map(requestor)).size} distinct, ${t.pending()} left in the spool`,
    );
    expect([spooled, writtenWhileDown]).to.deep.equal([30, 0]);
    expect(got.map(requestor)).to.deep.equal(users);
    expect(t.pending()).to.equal(0);
  });
});
