// The ATNA records of the middleman's DICOM side, received by a UDP audit repository of this test (RFC 5426): studies
// de-identified into the PACS (DICOM Instances Transferred, one record per study with its instances counted per SOP
// class) and their raw copies deleted (DICOM Study Deleted); an instance the gate quarantines (its deletion by keyed
// hash, and a Security Alert); associations refused for their AE title and a TLS caller with an untrusted
// certificate (Security Alerts, a caller retrying folded into one more record). None names a patient's identity or an
// original UID.
import { expect } from 'chai';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { auditMessage, type AuditEvent } from '../src/audit/messages.js';
import { AuditBatcher } from '../src/audit/batcher.js';
import { devCertificates, issue, makeCa } from '../tools/devstack/tls.js';
import { part10 } from '../src/dicom/writer.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { generateElements, generateStudies } from '../tools/synth/generate.js';
import { dphiant } from './support/cli.js';
import { storescu } from './support/dcmtk.js';
import { waitUntilSettled } from './support/pipeline.js';
import { freePort, freePorts } from './support/ports.js';
import { spawnMiddleman, type MiddlemanProcess } from './support/child.js';
import { startOrthanc, type OrthancProcess } from '../tools/devstack/orthanc.js';
import { Journal, journalPath, type Job } from '../src/pipeline/journal.js';
import { devKeyPath, readKeyFile } from '../src/keys.js';
import { startStack, type TestStack } from './support/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The A.5.1 message of an RFC 5424 datagram, its EventID and its EventTypeCode (if any). */
function parse(m: string): { xml: string; id: string; type: string | undefined } {
  const xml = m.slice(m.indexOf('<?xml'));
  const id = /<EventID csd-code="(\d+)"/.exec(xml)?.[1];
  if (!id) throw new Error(`no EventID: ${m.slice(0, 200)}`);
  return { xml, id, type: /<EventTypeCode csd-code="(\d+)"/.exec(xml)?.[1] };
}

describe('ATNA records of transfers, raw-copy deletions and security alerts (a real middleman, UDP repository)', function () {
  this.timeout(300_000);
  let work: string;
  let stack: TestStack | undefined;
  let repo: dgram.Socket;
  const messages: string[] = [];

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-audit-events-'));
    const port = await freePort();
    repo = dgram.createSocket('udp4');
    repo.on('message', (b) => messages.push(b.toString('utf8')));
    await new Promise<void>((r) => repo.bind(port, '127.0.0.1', () => r()));
    const certs = await devCertificates(path.join(work, 'certs'));
    const tlsPort = await freePort();
    stack = await startStack({
      env: {
        DPHIANT_AUDIT_REPOSITORY: `udp://127.0.0.1:${port}`,
        DPHIANT_SCP_TLS_PORT: String(tlsPort),
        DPHIANT_SCP_TLS_CERT: certs.middleman.cert,
        DPHIANT_SCP_TLS_KEY: certs.middleman.key,
        DPHIANT_SCP_TLS_CA: certs.ca.cert,
        DPHIANT_SCP_CALLERS: 'MODALITY@127.0.0.1,STORESCU@127.0.0.1',
      },
    });
    (stack as TestStack & { tlsPort: number; certs: typeof certs }).tlsPort = tlsPort;
    (stack as TestStack & { tlsPort: number; certs: typeof certs }).certs = certs;
  });
  after(async () => {
    await stack?.stop();
    repo?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('one Instances Transferred and one Study Deleted per study, gate hits and refused callers alerted, quarantine purges audited, no PHI', async () => {
    const s = stack as TestStack & { tlsPort: number; certs: Awaited<ReturnType<typeof devCertificates>> };
    const manifest = await generateStudies({ outDir: path.join(work, 'in'), patients: 2, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 3, rows: 32, cols: 32, seed: 15_100, modalities: ['CT', 'MR'] });
    const sent = await storescu(manifest.instances.map((i) => i.path), { port: s.mm.port });
    expect(sent.code, sent.stderr).to.equal(0);
    // the gate's case of test/pipeline.test.ts: the patient ID in Manufacturer, in two instances
    const leakedIds: string[] = [];
    for (const seed of [124, 125]) {
      const els = generateElements({ rows: 8, cols: 8, seed, patientIndex: 41 });
      const leakedId = String(els.find((e) => e.tag === 0x00100020)!.value);
      leakedIds.push(leakedId);
      els.find((e) => e.tag === 0x00080070)!.value = `scanner ${leakedId}`;
      const leaky = path.join(work, `leaky${seed}.dcm`);
      writeFileSync(leaky, part10(els, TS.ExplicitVRLittleEndian));
      expect((await storescu([leaky], { port: s.mm.port })).code).to.equal(0);
    }
    await waitUntilSettled(s.mm.journal, 60_000);
    // a caller not allowed, three times; a TLS caller whose certificate another CA signed
    for (let i = 0; i < 3; i++) expect((await storescu([manifest.instances[0]!.path], { port: s.mm.port, callingAet: 'ROGUE' })).code).to.not.equal(0);
    const other = await makeCa(path.join(work, 'other'), 'ca', 'Another CA');
    const rogue = await issue(path.join(work, 'other'), 'rogue', 'modality', other);
    const untrusted = await storescu([manifest.instances[0]!.path], { port: s.tlsPort, extraArgs: ['+tls', rogue.key, rogue.cert, '+cf', s.certs.ca.cert] });
    expect(untrusted.code).to.not.equal(0);
    const done = s.mm.journal.byState('DONE');
    // operators purge the gate's quarantined instances, one from the command line, one from the web UI
    const [gated, gatedToo] = s.mm.journal.byState('QUARANTINED') as [Job, Job];
    const purge = await dphiant(['quarantine', 'purge', String(gated.id)], { DPHIANT_DATA_DIR: s.mm.config.dataDir, DPHIANT_PACS_URL: s.pacs.httpUrl, DPHIANT_AUDIT_REPOSITORY: s.mm.config.audit.repository });
    expect(purge.code, purge.stderr).to.equal(0);
    const web = `http://127.0.0.1:${s.mm.config.web.port}`;
    const login = await fetch(`${web}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'demo', password: 'demo' }) });
    const { csrf } = (await login.json()) as { csrf: string };
    const webPurge = await fetch(`${web}/api/quarantine/${gatedToo.id}/purge`, { method: 'POST', headers: { cookie: login.headers.get('set-cookie')!.split(';')[0]!, 'x-csrf-token': csrf } });
    expect(webPurge.status).to.equal(200);
    await s.mm.close(); // pending study records and folded alerts go at the stop
    for (let i = 0; i < 50 && !messages.some((m) => m.includes('Application Stop')); i++) await sleep(100);

    const parsed = messages.map(parse);
    const ofId = (id: string) => parsed.filter((p) => p.id === id);
    const transfers = ofId('110104');
    const deleted = ofId('110105');
    const alerts = ofId('110113');
    const studies = new Set(done.map((j) => `${j.newStudyInstanceUid} ${j.aliasId}`));
    console.log(
      `      ${messages.length} records: ${parsed.map((p) => p.id + (p.type ? `/${p.type}` : '')).join(' ')}; ${done.length} instances DONE in ${studies.size} studies; ` +
        `${transfers.length} Instances Transferred, ${deleted.length} Study Deleted, ${alerts.length} Security Alerts`,
    );
    expect(transfers, 'one Instances Transferred per study').to.have.length(studies.size);
    for (const key of studies) {
      const [uid, alias] = key.split(' ') as [string, string];
      const t = transfers.find((p) => p.xml.includes(`ParticipantObjectID="${uid}"`));
      expect(t, `a record for study ${uid}`).to.exist;
      expect(t!.xml).to.contain(`ParticipantObjectID="${alias}"`);
      expect(t!.xml, 'the sender as source, the PACS as destination').to.match(/UserID="MODALITY"[^>]*><RoleIDCode csd-code="110153"/);
      expect(t!.xml).to.match(/UserID="PACS"[^>]*><RoleIDCode csd-code="110152"/);
      expect(t!.xml).to.contain(`NumberOfInstances="3"`);
      expect(deleted.some((p) => p.xml.includes(`ParticipantObjectID="${uid}"`)), `its raw copies' deletion`).to.equal(true);
    }
    const purged = ofId('110103');
    expect(purged, 'each purge: DICOM Instances Accessed, action D').to.have.length(2);
    for (const [p, job, user] of [[purged[0]!, gated, /UserID="[^"]+" UserIsRequestor="true"/], [purged[1]!, gatedToo, /UserID="demo" UserIsRequestor="true" NetworkAccessPointID="127\.0\.0\.1"/]] as const) {
      expect(p.xml).to.contain('EventActionCode="D"').and.to.contain(`ParticipantObjectID="${job.sopUidHash.slice(0, 12)}"`);
      expect(p.xml).to.match(user);
    }
    const quarantinedDeletion = deleted.filter((p) => p.xml.includes('csd-code="quarantine-entry"'));
    expect(quarantinedDeletion.flatMap((p) => [...p.xml.matchAll(/csd-code="quarantine-entry"/g)]), "the gate hits' raw copies deleted, named by keyed hash").to.have.length(2);
    expect(alerts.filter((p) => p.type === '110132'), 'gate hits: Use of Restricted Function, the first at once, the second folded').to.have.length(2);
    const rogueAlerts = alerts.filter((p) => p.xml.includes('UserID="ROGUE"'));
    expect(rogueAlerts.map((p) => Buffer.from(/value="([^"]+)"/.exec(p.xml)![1]!, 'base64').toString()), 'the first at once, the two retries folded').to.deep.equal([
      'association rejected: calling AE title not allowed',
      'association rejected: calling AE title not allowed (and 2 more like it)',
    ]);
    const tls = alerts.filter((p) => Buffer.from(/value="([^"]+)"/.exec(p.xml)![1]!, 'base64').toString().startsWith('TLS refused: untrusted-certificate'));
    expect(tls, 'the untrusted certificate').to.have.length(1);
    expect(tls[0]!.type).to.equal('110126');

    const phi = manifest.patients.flatMap((p) => [p.patientId, p.name, ...p.name.split('^').filter((x) => x.length > 2), ...p.studies.map((st) => st.studyInstanceUid)]);
    phi.push(...leakedIds, ...manifest.instances.map((i) => i.sopInstanceUid));
    const leaked = phi.filter((v) => messages.some((m) => m.includes(v)));
    expect(leaked, 'no identity or original UID in any record').to.deep.equal([]);
  });
});

describe('AuditBatcher: folding per-instance events into records', () => {
  it('one record per study once it is quiet, SOP classes counted; a full one goes at once; alerts folded per peer; a job is written once all its records are', async () => {
    const out: AuditEvent[] = [];
    const written: number[][] = [];
    const b = new AuditBatcher((e) => out.push(e), { quietMs: 50, maxInstances: 4, alertWindowMs: 80 }, (jobs) => written.push(jobs));
    const from = { aet: 'CT1' };
    const pacs = { aet: 'PACS', address: '10.0.0.2' };
    for (let i = 1; i <= 3; i++) b.transferred(i, from, pacs, '2.25.1', 'DPHA', '1.2.840.10008.5.1.4.1.1.2');
    // job 1's raw copy deleted too: its deletion record is still to come when the transfer record goes
    b.rawDeleted(1, pacs, '2.25.1', 'DPHA');
    b.transferred(4, from, pacs, '2.25.1', 'DPHA', '1.2.840.10008.5.1.4.1.1.7');
    expect(out, 'the fourth instance fills it').to.have.length(1);
    expect(written, 'jobs 2 to 4 written; job 1 waits for its deletion record').to.deep.equal([[2, 3, 4]]);
    b.transferred(5, from, pacs, '2.25.2', 'DPHB', '1.2.840.10008.5.1.4.1.1.4');
    for (let i = 0; i < 5; i++) b.alert({ type: 'node', peer: 'ROGUE', address: '10.0.0.9', why: 'association rejected' });
    expect(out, 'the first alert at once').to.have.length(2);
    await sleep(120);
    expect(out.map((e) => e.kind)).to.deep.equal(['transfer', 'security-alert', 'raw-deleted', 'transfer', 'security-alert']);
    expect(written.flat().sort(), 'every job written once').to.deep.equal([1, 2, 3, 4, 5]);
    expect(out[0]).to.deep.include({ studyUid: '2.25.1', sopClasses: { '1.2.840.10008.5.1.4.1.1.2': 3, '1.2.840.10008.5.1.4.1.1.7': 1 } });
    expect(out[4]).to.deep.include({ repeats: 4 });
    for (const e of out) expect(auditMessage(e, { sourceId: 'n', aet: 'DPHIANT' })).to.match(/^<\?xml .*<\/AuditMessage>$/);
  });

  it('a record that cannot be spooled (disk full) is reported, never thrown, and its jobs are never written', async () => {
    const written: number[] = [];
    const failures: string[] = [];
    let full = true;
    const b = new AuditBatcher(
      (e) => {
        if (full && e.kind === 'transfer') throw Object.assign(new Error('no space left'), { code: 'ENOSPC' });
      },
      { quietMs: 20 },
      (jobs) => written.push(...jobs),
      (e) => failures.push((e as NodeJS.ErrnoException).code!),
    );
    const pacs = { aet: 'PACS' };
    b.transferred(1, { aet: 'CT1' }, pacs, '2.25.1', 'DPHA', '1.2.840.10008.5.1.4.1.1.2');
    b.rawDeleted(1, pacs, '2.25.1', 'DPHA');
    await sleep(60);
    full = false;
    b.transferred(2, { aet: 'CT1' }, pacs, '2.25.2', 'DPHB', '1.2.840.10008.5.1.4.1.1.2');
    b.rawDeleted(2, pacs, '2.25.2', 'DPHB');
    b.flush();
    expect(failures).to.deep.equal(['ENOSPC']);
    expect(written, "job 1's transfer record was lost with the disk: it stays pending, though its deletion was spooled").to.deep.equal([2]);
  });
});

describe('ATNA records of a study de-identified just before a crash (dphiant serve killed with -9 within the fold window)', function () {
  this.timeout(300_000);
  let work: string;
  let pacs: OrthancProcess | undefined;
  let mm: MiddlemanProcess | undefined;
  let repo: dgram.Socket | undefined;

  after(async () => {
    await mm?.stop();
    await pacs?.stop();
    repo?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("the restart records the study's Instances Transferred and Study Deleted, once: the journal kept them pending", async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-audit-crash-'));
    const [mmPort, http, dicom, repoPort] = (await freePorts(4)) as [number, number, number, number];
    const messages: string[] = [];
    repo = dgram.createSocket('udp4');
    repo.on('message', (b) => messages.push(b.toString('utf8')));
    await new Promise<void>((r) => repo!.bind(repoPort, '127.0.0.1', () => r()));
    pacs = await startOrthanc({ role: 'pacs', workDir: path.join(work, 'pacs'), httpPort: http, dicomPort: dicom, middleman: { aet: 'DPHIANT', host: '127.0.0.1', port: mmPort } });
    const dataDir = path.join(work, 'data');
    const env = { DPHIANT_DATA_DIR: dataDir, DPHIANT_PACS_PORT: String(dicom), DPHIANT_PACS_URL: pacs.httpUrl, DPHIANT_AUDIT_REPOSITORY: `udp://127.0.0.1:${repoPort}` };
    const ids = () => messages.map((m) => parse(m).id);
    mm = await spawnMiddleman(env, mmPort);
    const manifest = await generateStudies({ outDir: path.join(work, 'in'), patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 3, rows: 32, cols: 32, seed: 15_200, modalities: ['CT'] });
    const sent = await storescu(manifest.instances.map((i) => i.path), { port: mmPort });
    expect(sent.code, sent.stderr).to.equal(0);
    const journal = new Journal(journalPath(dataDir), readKeyFile(devKeyPath(dataDir, 'site')));
    try {
      for (const t = Date.now(); journal.counts().DONE < 3; await sleep(50)) if (Date.now() - t > 60_000) throw new Error(`not DONE: ${JSON.stringify(journal.counts())}`);
      // within the 5 s a study's records wait for more of its instances
      await mm.kill9();
      const atKill = ids();
      const pendingAtKill = journal.auditPending().length;
      mm = await spawnMiddleman(env, mmPort);
      for (const t = Date.now(); !(ids().includes('110104') && ids().includes('110105')); await sleep(100)) if (Date.now() - t > 30_000) throw new Error(`records: ${ids().join(' ')}`);
      await mm.stop();
      const pendingAfter = journal.auditPending().length;
      // a third start records nothing of that study again
      mm = await spawnMiddleman(env, mmPort);
      await mm.stop();
      const transfers = messages.map(parse).filter((m) => m.id === '110104');
      const deletions = messages.map(parse).filter((m) => m.id === '110105');
      console.log(`      killed with 3 DONE: records before the kill ${atKill.join(' ')}, ${pendingAtKill} jobs audit-pending; after the restarts: ${ids().join(' ')}; ${pendingAfter} pending after a clean stop`);
      expect(atKill, 'the kill came before the study was recorded').to.not.include('110104');
      expect(pendingAtKill).to.equal(3);
      expect(transfers, 'one Instances Transferred').to.have.length(1);
      expect(transfers[0]!.xml).to.match(/<SOPClass UID="[\d.]+" NumberOfInstances="3"\/>/);
      expect(deletions, 'one Study Deleted').to.have.length(1);
      expect(pendingAfter).to.equal(0);
    } finally {
      journal.close();
    }
  });
});
