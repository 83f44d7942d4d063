// A 500 MB multi-frame instance passes through with the middleman's memory bounded (target ≤ 300 MB peak RSS):
// the data set is spooled to disk PDV by PDV and streamed to the PACS from there.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startOrthanc, type OrthancProcess } from '../tools/devstack/orthanc.js';
import { DevOrthanc } from '../tools/devstack/orthanc-rest.js';
import { generateLarge } from '../tools/synth/generate.js';
import { spawnMiddleman, type MiddlemanProcess } from './support/child.js';
import { storescu } from './support/dcmtk.js';
import { freePorts } from './support/ports.js';

const PEAK_RSS_TARGET_MIB = 300;

describe('a 500 MB multi-frame instance', function () {
  this.timeout(600_000);
  let work: string;
  let pacs: OrthancProcess | undefined;
  let mm: MiddlemanProcess | undefined;

  after(async () => {
    await mm?.stop();
    await pacs?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it(`passes storescu → middleman → PACS with the middleman's peak RSS ≤ ${PEAK_RSS_TARGET_MIB} MiB`, async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-large-'));
    const [mmPort, http, dicom] = await freePorts(3);
    pacs = await startOrthanc({ role: 'pacs', workDir: path.join(work, 'pacs'), httpPort: http, dicomPort: dicom, middleman: { aet: 'DPHIANT', host: '127.0.0.1', port: mmPort! } });
    const file = path.join(work, 'large.dcm');
    const made = await generateLarge(file, 500 * 1024 * 1024, { seed: 5 });
    mm = await spawnMiddleman({ DPHIANT_DATA_DIR: path.join(work, 'data'), DPHIANT_PACS_PORT: String(dicom), DPHIANT_PACS_URL: pacs.httpUrl, DPHIANT_PIPELINE_ENABLED: 'false' }, mmPort!);
    const baseline = mm.peakRssMiB();
    const started = Date.now();
    const r = await storescu([file], { port: mmPort!, timeoutMs: 300_000 });
    const seconds = (Date.now() - started) / 1000;
    const peak = mm.peakRssMiB();
    console.log(`      ${(made.bytes / 1024 ** 2).toFixed(0)} MiB, ${made.frames} frames in ${seconds.toFixed(1)} s; middleman peak RSS ${peak.toFixed(0)} MiB (idle ${baseline.toFixed(0)} MiB)`);
    expect(r.code, r.stdout.slice(-500) + r.stderr.slice(-500)).to.equal(0);
    const rest = new DevOrthanc({ url: pacs.httpUrl, username: 'demo', password: 'demo' });
    const found = await rest.lookup(made.sopInstanceUid);
    expect(found.map((f) => f.Type)).to.include('Instance');
    expect(peak).to.be.at.most(PEAK_RSS_TARGET_MIB);
  });
});
