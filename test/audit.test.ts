// IHE ATNA audit records (src/audit) received by a real TLS syslog listener of this test, which parses RFC 5425
// octet-counting framing (and a UDP one, RFC 5426): one well-formed RFC 5424 message per event, each holding a
// PS3.15 A.5.1 audit message with its required elements, none holding a patient's identity; the repository down
// during a burst, then up: every record arrives, once.
import { expect } from 'chai';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { auditMessage } from '../src/audit/messages.js';
import { AuditTrail } from '../src/audit/trail.js';
import { issue, makeCa, type CertifiedKey } from '../tools/devstack/tls.js';
import { generateStudies } from '../tools/synth/generate.js';
import { checkMessage, EVENT_IDS, EVENTS } from './support/atna.js';
import { storescu } from './support/dcmtk.js';
import { waitUntilSettled } from './support/pipeline.js';
import { freePort } from './support/ports.js';
import { startStack, type TestStack } from './support/stack.js';

/** An audit record repository: TLS, RFC 5425 framing (MSG-LEN SP SYSLOG-MSG); `messages` in arrival order. */
class Repository {
  readonly messages: string[] = [];
  private server: tls.Server | undefined;
  private readonly sockets = new Set<tls.TLSSocket>();

  constructor(
    readonly port: number,
    private readonly certs: { server: CertifiedKey; ca: string },
  ) {}

  async start(): Promise<void> {
    this.server = tls.createServer({ cert: readFileSync(this.certs.server.cert), key: readFileSync(this.certs.server.key), ca: readFileSync(this.certs.ca), minVersion: 'TLSv1.2' }, (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const sp = buf.indexOf(0x20);
          if (sp < 0) break;
          const len = Number(buf.subarray(0, sp).toString('ascii'));
          if (!Number.isInteger(len) || len <= 0) throw new Error(`bad RFC 5425 frame: ${buf.subarray(0, 20).toString()}`);
          if (buf.length < sp + 1 + len) break;
          this.messages.push(buf.subarray(sp + 1, sp + 1 + len).toString('utf8'));
          buf = buf.subarray(sp + 1 + len);
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', () => r()));
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  async waitFor(pred: (m: string[]) => boolean, ms = 20_000): Promise<void> {
    for (const t = Date.now(); !pred(this.messages); await sleep(100)) if (Date.now() - t > ms) throw new Error(`repository: ${this.messages.length} messages, not what was awaited`);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ATNA audit trail (IHE ITI-20): syslog over TLS to an audit repository', function () {
  this.timeout(180_000);
  let work: string;
  let certs: { server: CertifiedKey; ca: string };

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-audit-'));
    const ca = await makeCa(work, 'ca', 'audit test CA');
    certs = { server: await issue(work, 'repository', 'audit repository', ca), ca: ca.cert };
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('every event kind gives a message with the required elements of PS3.15 A.5.1', () => {
    const events = EVENTS;
    const ids = events.map((e) => checkMessage(`<85>1 2026-12-02T00:00:00.000Z host DPHIANT 1 IHE+RFC-3881 - \uFEFF${auditMessage(e, { sourceId: 'node1', aet: 'DPHIANT' })}`).eventId);
    console.log(`      EventIDs: ${ids.join(', ')}`);
    expect(ids).to.deep.equal(EVENT_IDS);
    expect(auditMessage(events[3]!, { sourceId: 'n', aet: 'A' }), 'values escaped').to.contain('UserID="mallory &lt;x&gt;"');
  });

  it('the middleman sends start, logins, a reveal and stop; a reveal names the alias, never the identity', async () => {
    const port = await freePort();
    const repo = new Repository(port, certs);
    await repo.start();
    let stack: TestStack | undefined;
    try {
      stack = await startStack({ env: { DPHIANT_AUDIT_REPOSITORY: `tls://127.0.0.1:${port}`, DPHIANT_AUDIT_CA: certs.ca, DPHIANT_AUDIT_SOURCE_ID: 'test-node' } });
      const manifest = await generateStudies({ outDir: path.join(work, 'in'), patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 2, rows: 32, cols: 32, seed: 15_000, modalities: ['CT'] });
      const sent = await storescu(manifest.instances.map((i) => i.path), { port: stack.mm.port, callingAet: 'STORESCU', calledAet: 'DPHIANT' });
      expect(sent.code, sent.stderr).to.equal(0);
      await waitUntilSettled(stack.mm.journal, 60_000);
      const base = `http://127.0.0.1:${stack.mm.config.web.port}`;
      const bad = await fetch(`${base}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'demo', password: 'wrong' }) });
      const login = await fetch(`${base}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'demo', password: 'demo' }) });
      const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
      const { csrf } = (await login.json()) as { csrf: string };
      const alias = stack.mm.journal.recent('', 1)[0]!.aliasId!;
      const reveal = await fetch(`${base}/api/patients/${alias}/reveal`, { method: 'POST', headers: { cookie, 'x-csrf-token': csrf, 'content-type': 'application/json' }, body: JSON.stringify({ reason: `study of ${manifest.patients[0]!.name}` }) });
      expect([bad.status, login.status, reveal.status]).to.deep.equal([401, 200, 200]);
      await stack.mm.close();
      await repo.waitFor((m) => m.some((x) => x.includes('Application Stop')));
      const parsed = repo.messages.map(checkMessage);
      const p = manifest.patients[0]!;
      const phi = [p.patientId, p.name, ...p.name.split('^').filter((x) => x.length > 2), p.birthDate, ...manifest.instances.map((i) => i.sopInstanceUid), p.studies[0]!.studyInstanceUid];
      const leaked = phi.filter((v) => repo.messages.some((m) => m.includes(v)));
      console.log(`      ${repo.messages.length} messages: ${parsed.map((x) => `${x.eventId}/${x.outcome}`).join(' ')}; the reveal's names alias ${alias}: ${parsed.some((x) => x.eventId === '110110' && x.xml.includes(alias))}; PHI values found: ${leaked.length}`);
      // the study's transfer and raw-copy deletion are folded per study and sent when it goes quiet (or at stop)
      const kinds = parsed.map((x) => `${x.eventId}/${x.outcome}`);
      expect([kinds[0], kinds.at(-1)], 'Application Start first, Stop last').to.deep.equal(['110100/0', '110100/0']);
      expect(kinds.slice(1, -1).sort()).to.deep.equal(['110104/0', '110105/0', '110110/0', '110114/0', '110114/4']);
      const transfer = parsed.find((x) => x.eventId === '110104')!.xml;
      expect(transfer, 'the transfer names the alias').to.contain(alias);
      expect(transfer, 'two instances of the study').to.match(/<SOPClass UID="[\d.]+" NumberOfInstances="2"\/>/);
      expect(leaked, 'no identity, original UID or reason text in any record').to.deep.equal([]);
    } finally {
      await stack?.stop();
      await repo.stop();
    }
  });

  it('the repository down during a burst, then up: every record arrives, once, in order', async () => {
    const port = await freePort();
    const repo = new Repository(port, certs);
    await repo.start();
    const spoolDir = path.join(work, 'spool-burst');
    const trail = new AuditTrail({ repository: `tls://127.0.0.1:${port}`, ca: certs.ca, cert: '', key: '', spoolDir, source: { sourceId: 'burst', aet: 'DPHIANT' }, retryMs: 500 });
    try {
      for (let i = 0; i < 10; i++) trail.record({ kind: 'login', user: `before${i}`, address: '127.0.0.1', outcome: 0 });
      await repo.waitFor((m) => m.length === 10);
      // past the trail's confirmation window (a connection dropped within it has its last batch sent again)
      await repo.waitFor(() => trail.pending() === 0);
      await repo.stop();
      for (let i = 0; i < 50; i++) trail.record({ kind: 'login', user: `during${i}`, address: '127.0.0.1', outcome: 4 });
      await sleep(1500);
      const spooled = trail.pending();
      const arrivedWhileDown = repo.messages.length - 10;
      await repo.start();
      const up = Date.now();
      await repo.waitFor((m) => m.length >= 60);
      const afterMs = Date.now() - up;
      await sleep(1000); // nothing more arrives
      const users = repo.messages.map((m) => /UserID="([^"]+)" UserIsRequestor="true"/.exec(m)![1]);
      console.log(`      10 sent, repository down, 50 recorded: ${spooled} spooled, ${arrivedWhileDown} arrived meanwhile; up again: all there ${afterMs} ms later, ${repo.messages.length} in all, ${new Set(users).size} distinct, ${trail.pending()} left in the spool`);
      expect(spooled).to.equal(50);
      expect(repo.messages).to.have.length(60);
      expect(users).to.deep.equal([...Array.from({ length: 10 }, (_, i) => `before${i}`), ...Array.from({ length: 50 }, (_, i) => `during${i}`)]);
      expect(trail.pending()).to.equal(0);
    } finally {
      await trail.close();
      await repo.stop();
    }
  });

  it('records spooled while the repository was down are sent by the next start on the same spool', async () => {
    const port = await freePort();
    const spoolDir = path.join(work, 'spool-restart');
    const settings = { repository: `tls://127.0.0.1:${port}`, ca: certs.ca, cert: '', key: '', spoolDir, source: { sourceId: 'restart', aet: 'DPHIANT' }, retryMs: 500 };
    const first = new AuditTrail(settings);
    for (let i = 0; i < 5; i++) first.record({ kind: 'login', user: `u${i}`, address: '127.0.0.1', outcome: 0 });
    await first.close(500);
    const left = first.pending();
    const repo = new Repository(port, certs);
    await repo.start();
    const second = new AuditTrail(settings);
    try {
      await repo.waitFor((m) => m.length >= 5);
      await sleep(500);
      console.log(`      5 recorded with no repository: ${left} left in the spool at stop; the next start sent ${repo.messages.length}`);
      expect(left).to.equal(5);
      expect(repo.messages.map((m) => /UserID="(u\d)"/.exec(m)![1])).to.deep.equal(['u0', 'u1', 'u2', 'u3', 'u4']);
    } finally {
      await second.close();
      await repo.stop();
    }
  });

  it('over UDP (RFC 5426): one datagram per record', async () => {
    const port = await freePort();
    const socket = dgram.createSocket('udp4');
    const got: string[] = [];
    socket.on('message', (m) => got.push(m.toString('utf8')));
    await new Promise<void>((r) => socket.bind(port, '127.0.0.1', () => r()));
    const trail = new AuditTrail({ repository: `udp://127.0.0.1:${port}`, ca: '', cert: '', key: '', spoolDir: path.join(work, 'spool-udp'), source: { sourceId: 'udp', aet: 'DPHIANT' } });
    try {
      trail.record({ kind: 'application', action: 'start' });
      trail.record({ kind: 'security-alert', peer: 'ROGUE', address: '10.1.1.1', why: 'calling AE not allowed' });
      for (const t = Date.now(); got.length < 2 && Date.now() - t < 5000; ) await sleep(50);
      const parsed = got.map(checkMessage);
      console.log(`      ${got.length} datagrams: ${parsed.map((x) => `${x.eventId}/${x.outcome}`).join(' ')}, priorities ${got.map((m) => m.slice(0, 4)).join(' ')}`);
      expect(parsed.map((x) => x.eventId)).to.deep.equal(['110100', '110113']);
      expect(got[1]!.startsWith('<84>'), 'a security alert is a warning').to.equal(true);
    } finally {
      await trail.close();
      socket.close();
    }
  });
});
