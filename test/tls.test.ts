// DICOM TLS on both links, with real peers: DCMTK's storescu/echoscu with client certificates and Orthanc 1.10.1
// (DicomTlsEnabled, UseDicomTls) → the middleman's TLS listener → the PACS Orthanc over TLS, byte for byte; the plain
// listener beside it; and the callers refused at the handshake or at A-ASSOCIATE, each counted by its reason.
import { expect } from 'chai';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pacsTarget } from '../src/middleman.js';
import { echo } from '../src/scu/echo.js';
import { readOrthancConfig } from '../tools/devstack/orthanc.js';
import { devCertificates, issue, makeCa, middlemanTlsEnv, orthancTls, overTls, type CertifiedKey, type DevCertificates } from '../tools/devstack/tls.js';
import { generateStudies } from '../tools/synth/generate.js';
import { startCapture, type Capture } from './support/capture.js';
import { echoscu, run, storescu, type RunResult } from './support/dcmtk.js';
import { datasetBytes, datasetOf } from './support/files.js';
import { freePort } from './support/ports.js';
import { startTestMiddleman } from './support/middleman.js';
import { startStack, type TestStack } from './support/stack.js';

/** storescu/echoscu's options for TLS with this certificate, trusting the dev CA. */
const tlsArgs = (ca: CertifiedKey, own?: CertifiedKey) => (own ? ['+tls', own.key, own.cert] : ['+tla']).concat(['+cf', ca.cert]);

/** "3 × Success" from storescu -v's output. */
function responses(r: RunResult): string {
  const statuses = [...(r.stdout + r.stderr).matchAll(/Received Store Response \(([^)]+)\)/g)].map((m) => m[1]!);
  const counts = new Map<string, number>();
  for (const s of statuses) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].map(([s, n]) => `${n} × ${s}`).join(', ') || 'no store response';
}

/** The last line DCMTK printed about a failure (F: or E:), or ''. */
const failure = (r: RunResult) => (r.stdout + r.stderr).split('\n').filter((l) => /^[FE]: /.test(l)).slice(0, 3).join(' / ');

/** openssl s_client offering only `version` (tls1, tls1_1), at security level 0 so that the client side permits it. */
function sClient(port: number, version: string, certs: DevCertificates): Promise<RunResult> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, `-${version}`, '-cipher', 'DEFAULT@SECLEVEL=0', '-cert', certs.modality.cert, '-key', certs.modality.key, '-CAfile', certs.ca.cert];
  return run('openssl', args, { timeoutMs: 20_000 });
}

describe('DICOM TLS: storescu and Orthanc with certificates → middleman → PACS over TLS', function () {
  this.timeout(300_000);
  let certs: DevCertificates;
  /** Trusted (the dev CA signed it), but not the subject MODALITY is bound to. */
  let ct2: CertifiedKey;
  /** Another CA, and a certificate it signed (for the dev CA's CN=modality). */
  let otherCa: CertifiedKey;
  let rogue: CertifiedKey;
  let stack: TestStack;
  let capture: Capture;
  let tlsPort: number;
  let files: string[];
  const refused = (reason: string) => stack.mm.metrics.counter('dphiant_tls_refused_total', { reason });

  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-tls-'));
    const t0 = Date.now();
    certs = await devCertificates(path.join(dir, 'certs'));
    ct2 = await issue(certs.dir, 'ct2', 'ct2', certs.ca);
    otherCa = await makeCa(path.join(dir, 'other'), 'ca', 'Another CA');
    rogue = await issue(path.join(dir, 'other'), 'rogue', 'modality', otherCa);
    console.log(`      certificates made with openssl in ${Date.now() - t0} ms: ${certs.dir}`);
    capture = await startCapture(path.join(dir, 'capture'));
    tlsPort = await freePort();
    const modalityEntry = readOrthancConfig('modality').DicomModalities!.middleman!;
    stack = await startStack({
      modality: true,
      // the modality Orthanc calls the middleman's TLS listener with its own certificate
      modalityPeers: { middleman: overTls({ ...modalityEntry, AET: 'DPHIANT', Host: '127.0.0.1', Port: tlsPort }) },
      modalityConfig: orthancTls(certs.modality, certs.ca.cert),
      pacsConfig: orthancTls(certs.pacs, certs.ca.cert),
      env: {
        DPHIANT_PIPELINE_ENABLED: 'false',
        ...middlemanTlsEnv(certs, tlsPort),
        // MODALITY only with the modality's certificate; STORESCU with any trusted one, or over the plain listener
        DPHIANT_SCP_CALLERS: `MODALITY@127.0.0.1#${certs.modality.subject},STORESCU@127.0.0.1`,
      },
    });
    files = (await generateStudies({ outDir: path.join(dir, 'synth'), patients: 2, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 4, rows: 64, cols: 64, seed: 15 })).instances.map((i) => i.path);
  });
  after(async () => {
    await stack?.stop();
    await capture?.stop();
  });

  /** The PACS holds each file's instance with the data set bytes the sender put on the wire (what the capture got). */
  async function expectInPacsAsSent(sent: string[]): Promise<void> {
    for (const f of sent) {
      const uid = datasetOf(f).sopInstanceUid;
      const wire = capture.received(uid);
      const instance = (await stack.pacsRest.lookup(uid)).find((r) => r.Type === 'Instance');
      expect(instance, `${uid} is in the PACS`).to.exist;
      const stored = datasetBytes(await stack.pacsRest.instanceFile(instance!.ID));
      expect(stored.ts, 'transfer syntax').to.equal(wire.ts);
      expect(stored.bytes.equals(wire.bytes), `${uid}: data set bytes identical`).to.equal(true);
    }
  }

  async function toCapture(sent: string[]): Promise<void> {
    const r = await storescu(sent, { port: capture.port, calledAet: capture.aet });
    expect(r.code, r.stderr).to.equal(0);
  }

  it('the PACS Orthanc speaks TLS only on its DICOM port once DicomTlsEnabled is on', async () => {
    const plain = await run('echoscu', ['-aet', 'STORESCU', '-aec', 'PACS', '127.0.0.1', String(stack.pacs.dicomPort)]);
    const overTls = await run('echoscu', [...tlsArgs(certs.ca, certs.modality), '-aet', 'STORESCU', '-aec', 'PACS', '127.0.0.1', String(stack.pacs.dicomPort)]);
    console.log(`      echoscu → PACS plain: exit ${plain.code} (${failure(plain)}); over TLS: exit ${overTls.code}`);
    expect(plain.code).to.not.equal(0);
    expect(overTls.code, overTls.stderr).to.equal(0);
  });

  it('storescu +tls with a client certificate → TLS listener → PACS over TLS: the PACS copy is byte-identical', async () => {
    const sent = files.slice(0, 4);
    await toCapture(sent);
    const before = (await stack.pacsRest.statistics()).CountInstances;
    // storescu -d would print the TLS details, but no longer each response's status: echoscu -d shows them
    const details = await echoscu({ port: tlsPort, extraArgs: ['-d', ...tlsArgs(certs.ca, certs.modality)] });
    const protocol = /Protocol\s*:\s*(\S+)/.exec(details.stdout + details.stderr)?.[1];
    const suite = /Ciphersuite\s*:\s*([^\s,]+)/.exec(details.stdout + details.stderr)?.[1];
    const r = await storescu(sent, { port: tlsPort, extraArgs: tlsArgs(certs.ca, certs.modality) });
    console.log(`      storescu +tls (${protocol}, ${suite}) as MODALITY, bound to ${certs.modality.subject}: exit ${r.code}, ${responses(r)}`);
    expect(r.code, failure(r)).to.equal(0);
    expect(protocol).to.match(/^TLSv1\.[23]$/);
    expect((await stack.pacsRest.statistics()).CountInstances - before).to.equal(sent.length);
    await expectInPacsAsSent(sent);
  });

  it('the plain listener and the TLS listener serve side by side, at the same time', async () => {
    const viaPlain = files.slice(4, 6);
    const viaTls = files.slice(6, 8);
    await toCapture([...viaPlain, ...viaTls]);
    const [plain, secure] = await Promise.all([
      storescu(viaPlain, { port: stack.mm.port, callingAet: 'STORESCU' }),
      storescu(viaTls, { port: tlsPort, callingAet: 'STORESCU', extraArgs: tlsArgs(certs.ca, ct2) }),
    ]);
    console.log(`      plain port ${stack.mm.port}: exit ${plain.code}, ${responses(plain)}; TLS port ${tlsPort} (STORESCU with ${ct2.subject}): exit ${secure.code}, ${responses(secure)}`);
    expect(plain.code, failure(plain)).to.equal(0);
    expect(secure.code, failure(secure)).to.equal(0);
    await expectInPacsAsSent([...viaPlain, ...viaTls]);
  });

  it('the modality Orthanc (UseDicomTls) stores through the TLS listener', async () => {
    const ids: string[] = [];
    for (const f of files.slice(0, 2)) ids.push((await stack.modalityRest!.upload(readFileSync(f))).ID);
    // already in the PACS from the first test: the PACS answers AlreadyStored as Success, the way there is what counts
    const received = stack.mm.metrics.total('dphiant_instances_received_total');
    const result = await stack.modalityRest!.storeToModality('middleman', ids);
    const got = stack.mm.metrics.total('dphiant_instances_received_total') - received;
    console.log(`      Orthanc modality → middleman over TLS: ${result.InstancesCount} sent, ${result.FailedInstancesCount} failed; the middleman received ${got}`);
    expect(result.FailedInstancesCount).to.equal(0);
    expect(got).to.equal(ids.length);
  });

  it("DPHIANT's C-ECHO to the PACS goes over TLS too, and fails on a certificate it cannot trust or of another name", async () => {
    const target = pacsTarget(stack.mm.config);
    const ok = await echo(target);
    const plain = await echo({ ...target, tls: undefined }).then(String, (e: Error) => e.message);
    const untrusted = await echo({ ...target, tls: { ...target.tls!, ca: readFileSync(otherCa.cert) } }).then(String, (e: Error) => e.message);
    const otherName = await echo({ ...target, tls: { ...target.tls!, servername: 'pacs.example.org' } }).then(String, (e: Error) => e.message);
    console.log(`      echo over TLS: status ${ok}; plain: ${plain}; another CA: ${untrusted}; servername pacs.example.org: ${otherName}`);
    expect(ok).to.equal(0);
    expect(plain).to.not.equal('0');
    expect(untrusted).to.match(/SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE/); // Orthanc sends its CA in the chain
    expect(otherName).to.match(/ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it('TLS only (scp.tls.plain false) with scp.tls.requireClientCert false: a caller without a certificate associates, unless its AE is bound to a subject', async () => {
    const [port, tlsOnly] = [await freePort(), await freePort()];
    const mm = await startTestMiddleman(
      {
        DPHIANT_PACS_PORT: String(stack.pacs.dicomPort),
        DPHIANT_PACS_URL: stack.pacs.httpUrl,
        DPHIANT_PIPELINE_ENABLED: 'false',
        ...middlemanTlsEnv(certs, tlsOnly),
        DPHIANT_SCP_TLS_PLAIN: 'false',
        DPHIANT_SCP_TLS_REQUIRE_CLIENT_CERT: 'false',
        DPHIANT_SCP_CALLERS: `MODALITY@127.0.0.1#${certs.modality.subject},STORESCU@127.0.0.1`,
      },
      port,
    );
    try {
      const anonymous = await echoscu({ port: tlsOnly, callingAet: 'STORESCU', extraArgs: tlsArgs(certs.ca) });
      const bound = await echoscu({ port: tlsOnly, callingAet: 'MODALITY', extraArgs: tlsArgs(certs.ca) });
      const plain = await echoscu({ port, callingAet: 'STORESCU' });
      console.log(`      without a certificate: STORESCU exit ${anonymous.code}; MODALITY (bound) exit ${bound.code} (${failure(bound)}); the plain port: exit ${plain.code} (${failure(plain)})`);
      expect(anonymous.code, failure(anonymous)).to.equal(0);
      expect(bound.stdout + bound.stderr).to.match(/Calling AE Title Not Recognized/);
      expect(plain.code).to.not.equal(0);
    } finally {
      await mm.close();
    }
  });

  describe('refused, logged and counted (dphiant_tls_refused_total); nothing reaches the journal or the PACS', () => {
    let jobs: number;
    let inPacs: number;
    const journalled = () => Object.values(stack.mm.journal.counts()).reduce((a, b) => a + b, 0);
    beforeEach(async () => {
      jobs = journalled();
      inPacs = (await stack.pacsRest.statistics()).CountInstances;
    });
    afterEach(async () => {
      expect(journalled(), 'journal jobs').to.equal(jobs);
      expect((await stack.pacsRest.statistics()).CountInstances, 'instances in the PACS').to.equal(inPacs);
    });

    it('a client certificate signed by another CA', async () => {
      const before = refused('untrusted-certificate');
      const r = await echoscu({ port: tlsPort, callingAet: 'STORESCU', extraArgs: tlsArgs(certs.ca, rogue) });
      console.log(`      echoscu with ${rogue.subject} from another CA: exit ${r.code} (${failure(r)}); untrusted-certificate ${before} → ${refused('untrusted-certificate')}`);
      expect(r.code).to.not.equal(0);
      expect(refused('untrusted-certificate')).to.equal(before + 1);
    });

    it('no client certificate', async () => {
      const before = refused('no-certificate');
      const r = await echoscu({ port: tlsPort, callingAet: 'STORESCU', extraArgs: tlsArgs(certs.ca) });
      console.log(`      echoscu +tla (no certificate): exit ${r.code} (${failure(r)}); no-certificate ${before} → ${refused('no-certificate')}`);
      expect(r.code).to.not.equal(0);
      expect(refused('no-certificate')).to.equal(before + 1);
    });

    for (const version of ['tls1', 'tls1_1']) {
      it(`a client offering only ${version === 'tls1' ? 'TLS 1.0' : 'TLS 1.1'} (openssl s_client -${version})`, async () => {
        const before = refused('protocol-version');
        const r = await sClient(tlsPort, version, certs);
        const alert = /alert [a-z ]+/.exec(r.stdout + r.stderr)?.[0] ?? '(no alert)';
        console.log(`      openssl s_client -${version}: exit ${r.code}, "${alert}"; protocol-version ${before} → ${refused('protocol-version')}`);
        expect(r.code).to.not.equal(0);
        expect(alert).to.equal('alert protocol version'); // the server's alert: the client did send its ClientHello
        expect(refused('protocol-version')).to.equal(before + 1);
      });
    }

    it('an AE bound to a subject presenting another trusted certificate: A-ASSOCIATE-RJ, calling AE not recognised', async () => {
      const before = refused('subject-mismatch');
      const wrong = await echoscu({ port: tlsPort, callingAet: 'MODALITY', extraArgs: tlsArgs(certs.ca, ct2) });
      const right = await echoscu({ port: tlsPort, callingAet: 'MODALITY', extraArgs: tlsArgs(certs.ca, certs.modality) });
      console.log(`      MODALITY (bound to ${certs.modality.subject}) with ${ct2.subject}: exit ${wrong.code} (${failure(wrong)}); with ${certs.modality.subject}: exit ${right.code}; subject-mismatch ${before} → ${refused('subject-mismatch')}`);
      expect(wrong.stdout + wrong.stderr).to.match(/Calling AE Title Not Recognized/);
      expect(right.code, failure(right)).to.equal(0);
      expect(refused('subject-mismatch')).to.equal(before + 1);
    });

    it('an AE bound to a subject calling the plain listener', async () => {
      const r = await echoscu({ port: stack.mm.port, callingAet: 'MODALITY' });
      console.log(`      MODALITY over plain TCP: exit ${r.code} (${failure(r)})`);
      expect(r.stdout + r.stderr).to.match(/Calling AE Title Not Recognized/);
    });
  });
});
