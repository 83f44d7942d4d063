// Several modalities at once: every instance arrives, and the journal accounts for each.
import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { generateStudies } from '../tools/synth/generate.js';
import { storescu } from './support/dcmtk.js';
import { startStack, type TestStack } from './support/stack.js';

describe('concurrency: 4 storescu processes × 100 instances', function () {
  this.timeout(600_000);
  let stack: TestStack;
  after(async () => {
    await stack?.stop();
  });

  it('puts all 400 in the PACS and journals 400 IN_PACS', async () => {
    stack = await startStack({ env: { DPHIANT_PIPELINE_ENABLED: 'false' } }); // forwarding only: the raw copies stay to be counted
    const manifest = await generateStudies({ outDir: path.join(stack.work, 'c'), patients: 4, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 100, rows: 128, cols: 128, seed: 400 });
    const files = manifest.instances.map((i) => i.path);
    expect(files).to.have.length(400);
    const started = Date.now();
    const runs = await Promise.all([0, 1, 2, 3].map((k) => storescu(files.slice(k * 100, k * 100 + 100), { port: stack.mm.port })));
    const seconds = (Date.now() - started) / 1000;
    runs.forEach((r, k) => expect(r.code, `storescu #${k}: ${r.stderr.slice(-400)}`).to.equal(0));
    expect((await stack.pacsRest.statistics()).CountInstances).to.equal(400);
    const counts = stack.mm.journal.counts();
    expect(counts.IN_PACS).to.equal(400);
    expect(counts.RECEIVED + counts.REJECTED).to.equal(0);
    expect(readdirSync(path.join(stack.mm.config.dataDir, 'spool')), 'no spool file left behind').to.deep.equal([]);
    console.log(`      400 instances in ${seconds.toFixed(1)} s (${(400 / seconds).toFixed(0)} inst/s, 4 associations)`);
  });
});
