// What the middleman refuses, and that a refusal never disturbs the other associations.
import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { generateStudies } from '../src/synth/generate.js';
import { echoscu, storescu } from './support/dcmtk.js';
import { startStack, type TestStack } from './support/stack.js';

describe('refusals: callers, size limit and a stopped PACS', function () {
  this.timeout(300_000);
  let stack: TestStack;
  let small: string[]; // 64×64 instances, a few KB each
  let large: string[]; // 512×512 instances, ~0.5 MB each

  before(async () => {
    // the size limit sits between the two kinds of instances
    stack = await startStack({ env: { DPHIANT_SCP_MAX_INSTANCE_BYTES: String(200 * 1024), DPHIANT_PIPELINE_ENABLED: 'false' } });
    small = (await generateStudies({ outDir: path.join(stack.work, 'small'), patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 20, rows: 64, cols: 64, seed: 21 })).instances.map((i) => i.path);
    large = (await generateStudies({ outDir: path.join(stack.work, 'large'), patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 1, rows: 512, cols: 512, seed: 22 })).instances.map((i) => i.path);
  });
  after(async () => {
    await stack?.stop();
  });

  it('refuses an association from an unknown calling AE', async () => {
    const r = await echoscu({ port: stack.mm.port, callingAet: 'INTRUDER' });
    expect(r.code).not.to.equal(0);
    expect(r.stdout + r.stderr).to.match(/Calling AE Title Not Recognized/i);
  });

  it('refuses an association that calls another AE title', async () => {
    const r = await echoscu({ port: stack.mm.port, calledAet: 'NOT_DPHIANT' });
    expect(r.code).not.to.equal(0);
    expect(r.stdout + r.stderr).to.match(/Called AE Title Not Recognized/i);
  });

  it('refuses an instance over the size limit with 0xA700 while a parallel association completes', async () => {
    const before = (await stack.pacsRest.statistics()).CountInstances;
    const [big, parallel] = await Promise.all([
      storescu(large, { port: stack.mm.port }),
      storescu(small, { port: stack.mm.port }),
    ]);
    expect(big.code, 'storescu exits with the status high byte').to.equal(0xa7);
    expect(big.stdout + big.stderr).to.contain('Received Store Response (Refused: OutOfResources)');
    expect(parallel.code, parallel.stderr).to.equal(0);
    expect((await stack.pacsRest.statistics()).CountInstances - before).to.equal(small.length);
    const counts = stack.mm.journal.counts();
    expect(counts.IN_PACS).to.equal(small.length);
    expect(counts.RECEIVED + counts.REJECTED, 'the refused instance was never journalled').to.equal(0);
  });

  it('answers 0xA700 when the PACS is stopped, journals nothing IN_PACS, and the retry succeeds once it is back', async () => {
    const inPacsBefore = stack.mm.journal.counts().IN_PACS;
    const file = small.slice(0, 1);
    await stack.pacs.stop();
    const refused = await storescu(file, { port: stack.mm.port });
    expect(refused.code, 'storescu exits with the status high byte').to.equal(0xa7);
    expect(refused.stdout + refused.stderr).to.contain('Received Store Response (Refused: OutOfResources)');
    expect(readdirSync(path.join(stack.mm.config.dataDir, 'spool')), 'the middleman keeps nothing').to.deep.equal([]);
    expect(stack.mm.journal.counts().IN_PACS).to.equal(inPacsBefore);
    const rejected = stack.mm.journal.byState('REJECTED');
    expect(rejected.at(-1)?.reason).to.match(/^PACS unavailable: ECONNREFUSED/);

    await stack.startPacs();
    const retried = await storescu(file, { port: stack.mm.port });
    expect(retried.code, retried.stderr).to.equal(0);
    expect(stack.mm.journal.counts().IN_PACS).to.equal(inPacsBefore + 1);
  });
});
