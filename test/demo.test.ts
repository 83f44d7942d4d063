// `make demo` as a newcomer runs it: the dev stack on its fixed ports, sample data flowing through, and the PACS
// ending with only de-identified instances stacked under sex-consistent aliases. Skipped when those ports are taken
// (a demo already running).
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { devStackDefaults } from '../tools/devstack/orthanc.js';
import { findUp } from '../src/paths.js';

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

describe('make demo', function () {
  this.timeout(240_000);

  it('runs the dev stack, de-identifies the sample studies in the PACS, prints the alias table, and stops on Ctrl-C', async function () {
    const d = devStackDefaults;
    const ports = [d.pacs.httpPort, d.pacs.dicomPort, d.modality.httpPort, d.modality.dicomPort, d.middleman.dicomPort];
    const free = await Promise.all(ports.map(portFree));
    if (free.includes(false)) {
      console.log(`      (skipped: a dev-stack port is taken: ${ports.filter((_, i) => !free[i]).join(', ')})`);
      this.skip();
    }
    const child = spawn(process.execPath, [findUp('dist/scripts/demo.js')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    for (let i = 0; i < 900 && !out.includes('Press Ctrl-C') && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGINT');
    const code = await exited;
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
    expect(code, 'Ctrl-C stops everything cleanly').to.equal(0);
    for (const p of ports) expect(await portFree(p), `port ${p} released`).to.equal(true);
  });
});
