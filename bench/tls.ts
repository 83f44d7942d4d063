// What DICOM TLS costs, measured in one run on this machine (not asserted anywhere): the same instances through
// storescu → middleman → PACS with both links plain, then with both over TLS (storescu +tls with a client
// certificate → the middleman's TLS listener, the middleman → the PACS Orthanc with DicomTlsEnabled), each beside
// storescu → PACS directly on the same link. One Orthanc speaks either plain or TLS on its DICOM port, so each
// variant has a stack of its own, started and stopped in turn.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { devCertificates, middlemanTlsEnv, orthancTls } from '../tools/devstack/tls.js';
import { generateStudies } from '../tools/synth/generate.js';
import { freePort } from '../test/support/ports.js';
import { startStack } from '../test/support/stack.js';
import { sendTimed } from './forwarding.js';

export async function benchTls(opts: { instances: number; senders: number }): Promise<string[]> {
  const work = mkdtempSync(path.join(tmpdir(), 'dphiant-bench-tls-'));
  try {
    const certs = await devCertificates(path.join(work, 'certs'));
    const clientCert = ['+tls', certs.modality.key, certs.modality.cert, '+cf', certs.ca.cert];
    const perSeries = Math.ceil(opts.instances / 10);
    const manifest = await generateStudies({ outDir: path.join(work, 'synth'), patients: 5, studiesPerPatient: 1, seriesPerStudy: 2, instancesPerSeries: perSeries, rows: 512, cols: 512, seed: 1500 });
    const files = manifest.instances.slice(0, opts.instances).map((i) => i.path);
    const mb = manifest.instances.slice(0, opts.instances).reduce((s, i) => s + i.bytes, 0) / 1e6;

    /** Direct and through the middleman, on a stack whose links are plain or TLS. */
    const measure = async (secure: boolean) => {
      const tlsPort = await freePort();
      const stack = await startStack({
        env: { DPHIANT_PIPELINE_ENABLED: 'false', ...(secure ? { ...middlemanTlsEnv(certs, tlsPort), DPHIANT_SCP_TLS_PLAIN: 'false' } : {}) },
        ...(secure ? { pacsConfig: orthancTls(certs.pacs, certs.ca.cert) } : {}),
      });
      try {
        const extraArgs = secure ? clientCert : [];
        const direct = await sendTimed(stack, files, { port: stack.pacs.dicomPort, callingAet: 'STORESCU', calledAet: 'PACS', senders: opts.senders, extraArgs });
        const via = await sendTimed(stack, files, { port: secure ? tlsPort : stack.mm.port, callingAet: 'MODALITY', calledAet: 'DPHIANT', senders: opts.senders, extraArgs });
        return { direct, via };
      } finally {
        await stack.stop();
        rmSync(stack.work, { recursive: true, force: true });
      }
    };
    const plain = await measure(false);
    const tls = await measure(true);
    return [
      `DICOM TLS, ${files.length} instances (${mb.toFixed(0)} MB), ${opts.senders} storescu process(es), TCP_NODELAY, cut-through, TLS 1.3 with RSA 2048 certificates (storescu's BCP 195 profile):`,
      `  storescu → PACS directly, plain                     ${plain.direct.toFixed(1)} inst/s`,
      `  storescu → PACS directly, TLS                       ${tls.direct.toFixed(1)} inst/s`,
      `  storescu → middleman → PACS, both links plain       ${plain.via.toFixed(1)} inst/s`,
      `  storescu → middleman → PACS, both links TLS         ${tls.via.toFixed(1)} inst/s`,
      `  ratio TLS / plain, directly                         ${(tls.direct / plain.direct).toFixed(2)}`,
      `  ratio TLS / plain, through the middleman            ${(tls.via / plain.via).toFixed(2)}`,
    ];
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
