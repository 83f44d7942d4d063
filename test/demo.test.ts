// `make demo` as a newcomer runs it: the dev stack on its fixed ports, sample data flowing through, and the PACS
// ending with only de-identified instances stacked under sex-consistent aliases; and `make demo TLS=1` (--tls), the
// same with DICOM TLS on both links. Each is skipped when those ports are taken (a demo already running).
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { devStackDefaults } from '../tools/devstack/orthanc.js';
import { devCertificates } from '../tools/devstack/tls.js';
import { findUp, repoRoot } from '../src/paths.js';
import { run, type RunResult } from './support/dcmtk.js';

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

const d = devStackDefaults;
const ports = [d.pacs.httpPort, d.pacs.dicomPort, d.modality.httpPort, d.modality.dicomPort, d.middleman.dicomPort, d.middleman.webPort];

/**
 * Runs the demo with `args` until it says "Press Ctrl-C" (or exits), runs `whileRunning` against the running stack,
 * then sends SIGINT; resolves with its output and exit code. Skips the test when a dev-stack port is taken.
 */
async function runDemo(ctx: Mocha.Context, args: string[], whileRunning?: () => Promise<void>): Promise<{ out: string; code: number | null }> {
  const free = await Promise.all(ports.map(portFree));
  if (free.includes(false)) {
    console.log(`      (skipped: a dev-stack port is taken: ${ports.filter((_, i) => !free[i]).join(', ')})`);
    ctx.skip();
  }
  const child = spawn(process.execPath, [findUp('dist/scripts/demo.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (out += b));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  for (let i = 0; i < 900 && !out.includes('Press Ctrl-C') && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 200));
  try {
    if (out.includes('Press Ctrl-C') && child.exitCode === null) await whileRunning?.();
  } finally {
    child.kill('SIGINT');
  }
  return { out, code: await exited };
}

/** What both demos end with: every sample instance DONE, the alias table, everything stopped by Ctrl-C. */
async function expectDemoRan({ out, code }: { out: string; code: number | null }): Promise<void> {
  expect(out, out).to.contain('the PACS holds only de-identified instances, stacked under sex-consistent aliases');
  const rows = out.split('\n').filter((l) => /^\s+DPH[A-Z2-7]{8}\s/.test(l));
  expect(rows.length, 'one row per alias patient').to.be.at.least(4);
  const sexes = rows.map((r) => r.trim().split(/\s{2,}/)[2]);
  expect(sexes).to.include('M');
  expect(sexes).to.include('F');
  // six CT/MR patients with two studies of 16 instances each, and the ultrasound patient's two burned-in images
  expect(rows.filter((r) => /\s2\s+16$/.test(r)), 'two studies stacked per alias').to.have.length(6);
  expect(rows.filter((r) => /\s[12]\s+2$/.test(r)), 'the ultrasound patient').to.have.length(1);
  expect(out).to.contain('DONE          98');
  expect(out).to.contain('Press Ctrl-C to stop everything.');
  expect(code, 'Ctrl-C stops everything cleanly').to.equal(0);
  for (const p of ports) expect(await portFree(p), `port ${p} released`).to.equal(true);
}

/** DCMTK's first error line, for the log. */
const failure = (r: RunResult) => (r.stdout + r.stderr).split('\n').find((l) => /^[FE]: /.test(l)) ?? '';

describe('make demo', function () {
  this.timeout(240_000);

  it('runs the dev stack, de-identifies the sample studies in the PACS, prints the alias table, and stops on Ctrl-C', async function () {
    const result = await runDemo(this, []);
    await expectDemoRan(result);
    expect(result.out).to.not.contain('DICOM TLS');
  });

  it('with TLS=1 (--tls): the same over DICOM TLS on both links, a plain caller refused by the middleman and by the PACS', async function () {
    let echoes: Record<string, RunResult> = {};
    let modalityEcho = '';
    const result = await runDemo(this, ['--tls'], async () => {
      const certs = await devCertificates(); // made by the demo: only read here
      const trust = ['+cf', certs.ca.cert];
      const mm = [d.middleman.host, String(d.middleman.dicomPort)];
      const pacs = [d.pacs.host, String(d.pacs.dicomPort)];
      // the middleman's port: MODALITY is accepted over TLS with the modality's certificate, not over plain TCP
      // the PACS's port: it accepts the middleman's AE over TLS with the middleman's certificate, not over plain TCP
      const [mmPlain, mmTls, pacsPlain, pacsTls] = await Promise.all([
        run('echoscu', ['-aet', d.modality.aet, '-aec', d.middleman.aet, ...mm]),
        run('echoscu', ['+tls', certs.modality.key, certs.modality.cert, ...trust, '-aet', d.modality.aet, '-aec', d.middleman.aet, ...mm]),
        run('echoscu', ['-aet', d.middleman.aet, '-aec', d.pacs.aet, ...pacs]),
        run('echoscu', ['+tls', certs.middleman.key, certs.middleman.cert, ...trust, '-aet', d.middleman.aet, '-aec', d.pacs.aet, ...pacs]),
      ]);
      echoes = { mmPlain: mmPlain!, mmTls: mmTls!, pacsPlain: pacsPlain!, pacsTls: pacsTls! };
      // the modality Orthanc's own C-ECHO to its "middleman" entry (UseDicomTls)
      const auth = `Basic ${Buffer.from(`${d.credentials.username}:${d.credentials.password}`).toString('base64')}`;
      const res = await fetch(`${d.modality.httpUrl}/modalities/${d.middleman.modalityEntry}/echo`, { method: 'POST', headers: { authorization: auth }, body: '{}' });
      modalityEcho = `${res.status}`;
    });
    const e = echoes;
    console.log(
      `      echoscu → middleman ${d.middleman.dicomPort}: plain exit ${e.mmPlain?.code} (${e.mmPlain && failure(e.mmPlain)}), +tls exit ${e.mmTls?.code}; ` +
        `→ PACS ${d.pacs.dicomPort}: plain exit ${e.pacsPlain?.code} (${e.pacsPlain && failure(e.pacsPlain)}), +tls exit ${e.pacsTls?.code}; modality Orthanc's C-ECHO to the middleman: HTTP ${modalityEcho}`,
    );
    await expectDemoRan(result);
    expect(result.out).to.contain(`DICOM TLS on both links (modality → middleman → PACS; TLS only, client certificates required); dev CA and certificates in .stack/tls/`);
    expect(e.mmPlain?.code, 'plain echoscu to the middleman').to.be.a('number').and.not.equal(0);
    expect(e.mmTls?.code, failure(e.mmTls!)).to.equal(0);
    expect(e.pacsPlain?.code, 'plain echoscu to the PACS').to.be.a('number').and.not.equal(0);
    expect(e.pacsTls?.code, failure(e.pacsTls!)).to.equal(0);
    expect(modalityEcho).to.equal('200');
    // the middleman said so at start: its TLS listener alone on the DICOM port, TLS to the PACS
    const listening = readFileSync(path.join(repoRoot, '.stack', 'middleman.log'), 'utf8').split('\n').find((l) => l.includes('"DICOM server listening"'));
    expect(JSON.parse(listening ?? '{}')).to.include({ tlsPort: d.middleman.dicomPort, plain: false, pacsTls: true });
  });
});
