// `make demo`: the dev stack of docs/design.md on this machine, without Docker. Starts the PACS and the modality
// (Orthanc), the middleman (`dphiant serve`), generates synthetic studies, uploads them to the modality, sends
// them through the middleman, prints where to look, and runs until Ctrl-C, which stops everything it started.
// `make demo TLS=1` (`--tls`): the same with DICOM TLS on both links (README, DICOM TLS): the dev CA and certificates
// in .stack/tls/ (made when missing, kept across starts), both Orthanc servers with DicomTlsEnabled and their
// middleman entry UseDicomTls, the middleman listening over TLS only on its usual port (11112, so the modality's
// entry keeps its port and a plain caller is refused) with client certificates required, and TLS to the PACS.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { CLI, startNodeProcess, type NodeProcess } from '../tools/devstack/node-process.js';
import { devStackDefaults, MIDDLEMAN_ENTRY, middlemanEnv, readOrthancConfig, repoRoot, startOrthanc, stopAll, type OrthancProcess } from '../tools/devstack/orthanc.js';
import { DevOrthanc } from '../tools/devstack/orthanc-rest.js';
import { printAliasTable, sendSamples } from '../tools/devstack/samples.js';
import { devCertificates, middlemanTlsEnv, orthancTls, overTls, type DevCertificates } from '../tools/devstack/tls.js';

const d = devStackDefaults;
const work = path.join(repoRoot, '.stack');
const say = (msg: string) => console.log(`==> ${msg}`);
const tls = process.argv.includes('--tls');
const rel = (p: string) => path.relative(process.cwd(), p) || p;

let middleman: NodeProcess | undefined;
const orthancs: OrthancProcess[] = [];

async function shutdown(code: number): Promise<never> {
  say('stopping the middleman and both Orthanc servers');
  await middleman?.stop();
  await Promise.all(orthancs.map((o) => o.stop()));
  await stopAll();
  process.exit(code);
}

/**
 * Both Orthanc servers' TLS: DicomTlsEnabled with its own certificate, peers verified against the dev CA and required
 * to present a certificate, the middleman's entry (same AE, host and port as in orthanc/<role>.json) UseDicomTls.
 */
function orthancOverTls(role: 'pacs' | 'modality', certs: DevCertificates) {
  const entry = readOrthancConfig(role).DicomModalities![MIDDLEMAN_ENTRY]!;
  return { configOverrides: orthancTls(certs[role], certs.ca.cert), extraModalities: { [MIDDLEMAN_ENTRY]: overTls(entry) } };
}

/**
 * The middleman's settings: the dev stack's, and with --tls its TLS listener alone on the usual DICOM port (no plain
 * one), a client certificate required, MODALITY accepted only with the modality's certificate, TLS to the PACS.
 */
function demoEnv(certs: DevCertificates | undefined): Record<string, string> {
  const env = middlemanEnv({ dataDir: path.join(work, 'data') });
  if (!certs) return env;
  return {
    ...env,
    ...middlemanTlsEnv(certs, d.middleman.dicomPort),
    DPHIANT_SCP_TLS_PLAIN: 'false',
    DPHIANT_SCP_TLS_REQUIRE_CLIENT_CERT: 'true',
    DPHIANT_SCP_CALLERS: `${d.middleman.callers}#${certs.modality.subject}`,
  };
}

async function main(): Promise<void> {
  process.once('SIGINT', () => void shutdown(0));
  process.once('SIGTERM', () => void shutdown(0));

  say(`fresh dev stack in ${rel(work)} (previous demo data removed)`);
  for (const entry of ['pacs', 'modality', 'data', 'samples', 'middleman.log']) rmSync(path.join(work, entry), { recursive: true, force: true });
  mkdirSync(work, { recursive: true });

  let certs: DevCertificates | undefined;
  if (tls) {
    certs = await devCertificates();
    say(`DICOM TLS on both links: dev CA and certificates (CN=dphiant, pacs, modality) in ${rel(certs.dir)} (made when missing)`);
  }
  const over = tls ? ' over TLS' : '';

  say(`starting the PACS (Orthanc, HTTP ${d.pacs.httpPort}, DICOM${over} ${d.pacs.aet}:${d.pacs.dicomPort})`);
  const pacs = await startOrthanc({ role: 'pacs', workDir: path.join(work, 'pacs'), ...(certs && orthancOverTls('pacs', certs)) });
  orthancs.push(pacs);
  say(`starting the modality (Orthanc, HTTP ${d.modality.httpPort}, DICOM${over} ${d.modality.aet}:${d.modality.dicomPort})`);
  const modality = await startOrthanc({ role: 'modality', workDir: path.join(work, 'modality'), ...(certs && orthancOverTls('modality', certs)) });
  orthancs.push(modality);

  say(`starting the middleman (DICOM${tls ? ' over TLS only' : ''} ${d.middleman.aet}:${d.middleman.dicomPort}${tls ? ', TLS to the PACS' : ''}; log in .stack/middleman.log)`);
  middleman = await startNodeProcess({
    env: demoEnv(certs),
    logFile: path.join(work, 'middleman.log'),
    onExit: (code) => {
      if (code !== 0 && code !== null) console.error(`middleman exited with ${code}; see .stack/middleman.log`);
    },
  });

  const auth = { username: d.credentials.username, password: d.credentials.password };
  const modalityRest = new DevOrthanc({ url: modality.httpUrl, ...auth });
  const pacsRest = new DevOrthanc({ url: pacs.httpUrl, ...auth });
  const { rows } = await sendSamples({ outDir: path.join(work, 'samples'), modality: modalityRest, pacs: pacsRest, say });
  say(`the PACS holds only de-identified instances, stacked under sex-consistent aliases (no real PHI below):`);
  printAliasTable(rows);

  const status = spawn(process.execPath, [CLI, 'status'], {
    env: { ...process.env, ...demoEnv(certs) },
    stdio: 'inherit',
  });
  await new Promise((r) => status.once('exit', r));

  const spool = readdirSync(path.join(work, 'data', 'spool'));
  console.log(`
The dev stack is running (login demo/demo everywhere):

  modality  Orthanc Explorer  ${modality.httpUrl}/app/explorer.html
  PACS      Orthanc Explorer  ${pacs.httpUrl}/app/explorer.html
  middleman web UI            ${d.middleman.webUrl}   (demo/demo may reveal identities; viewer/viewer may not)
  middleman DICOM             ${d.middleman.aet}@${d.middleman.host}:${d.middleman.dicomPort}
${certs ? tlsLines(certs) : ''}
What to click:
  1. In the modality's explorer, open a patient, then a study, and press "Send to DICOM modality" → "middleman".
  2. In the PACS's explorer the study appears under its alias patient, de-identified (PatientIdentityRemoved YES);
     a few seconds after arriving raw, it is replaced by its de-identified copy.
  3. The middleman's dashboard (${d.middleman.webUrl}) shows the jobs as they flow, the crosswalk page the aliases;
     revealing an identity asks for a reason and is written to the audit log.
  4. After \`export DPHIANT_DEV_STACK=true DPHIANT_DATA_DIR=.stack/data${nodeOnPath()}\` (the demo's settings):
     \`npx dphiant status\` shows the journal and the quarantine; \`npx dphiant crosswalk list\` the aliases;
     \`npx dphiant crosswalk reveal <alias> --reason "…"\` re-identifies (audited).
     .stack/middleman.log is the middleman's log (aliases and hashes of UIDs, no PHI values).
${spool.length ? `\nwarning: ${spool.length} spool file(s) left in .stack/data/spool` : ''}
Press Ctrl-C to stop everything.`);
}

/** The closing text's lines about DICOM TLS (--tls): both links, the certificates, a storescu that gets in. */
function tlsLines(certs: DevCertificates): string {
  const [key, cert, ca] = [certs.modality.key, certs.modality.cert, certs.ca.cert].map(rel);
  return `  DICOM TLS on both links (modality → middleman → PACS; TLS only, client certificates required); dev CA and certificates in ${rel(certs.dir)}/
    storescu +tls ${key} ${cert} +cf ${ca} -aet ${d.modality.aet} -aec ${d.middleman.aet} ${d.middleman.host} ${d.middleman.dicomPort} file.dcm
`;
}

/** The PATH entry of the Node.js running the demo when the shell would find another one (make installs 24 in .stack/node). */
function nodeOnPath(): string {
  const dir = path.dirname(process.execPath);
  return (process.env.PATH ?? '').split(':')[0] === dir && dir.startsWith(repoRoot) ? ` PATH="$PWD/${path.relative(repoRoot, dir)}:$PATH"` : '';
}

main().catch(async (e: Error) => {
  console.error(`demo failed: ${e.message}`);
  await shutdown(1);
});
