// Fault tests on the real stack: Orthanc modality and PACS, the middleman as a child process (`dphiant serve`),
// the crosswalk on SQLite or FerretDB. Each prints its numbers: sent, de-identified in the PACS, raw left,
// duplicates, lost.
import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { startMongoServer, type MongoServer } from './support/ferretdb.js';
import { waitUntilSettled } from './support/pipeline.js';
import { expectClean, faultStack, outcome, sleep, type FaultStack } from './support/fault-stack.js';
import { Rng } from '../tools/synth/rng.js';

describe('fault: kill -9 the middleman at seeded random moments during a 500-instance burst', function () {
  this.timeout(900_000);
  let s: FaultStack;
  after(async () => {
    await s?.stop();
  });

  it('ends with every instance the modality sent de-identified in the PACS exactly once, none raw, none lost', async () => {
    const seed = Number(process.env.DPHIANT_FAULT_SEED ?? 20261125);
    const rng = new Rng(`faults|${seed}`);
    s = await faultStack(500);
    await s.startMiddleman();
    await s.send();
    const kills: number[] = [];
    for (let k = 0; k < 10; k++) {
      const delay = rng.int(200, 2000);
      await sleep(delay);
      await s.mm!.kill9();
      kills.push(delay);
      const counts = s.journal.counts();
      await s.startMiddleman();
      // the modality's job fails when its association is cut; resubmit it as an operator would
      for (let i = 0; i < 40 && (await s.jobState()) === 'Running'; i++) await sleep(250);
      if ((await s.jobState()) === 'Failure') await s.send();
      console.log(`      kill ${k + 1} after ${delay} ms (journal then: DONE ${counts.DONE}, IN_PACS ${counts.IN_PACS}, DEIDENTIFIED ${counts.DEIDENTIFIED}, RECEIVED ${counts.RECEIVED})`);
    }
    const resubmits = await s.sendUntilDone(300_000);
    await waitUntilSettled(s.journal, 300_000);
    const n = await outcome(s);
    console.log(`      seed ${seed}; kill points (ms after each restart): ${kills.join(', ')}; final resubmits ${resubmits}`);
    console.log(`      sent ${n.sent}, de-identified in PACS ${n.deidentifiedInPacs}, raw left ${n.rawLeft}, duplicates ${n.duplicates}, lost ${n.lost}; journal ${JSON.stringify(n.journal)}`);
    expect(kills).to.have.length.at.least(10);
    expectClean(n);
  });
});

describe('fault: the PACS stopped for 30 s mid-burst, then started again', function () {
  this.timeout(600_000);
  let s: FaultStack;
  after(async () => {
    await s?.stop();
  });

  it('delivers everything: nothing lost, nothing raw, nothing quarantined', async () => {
    s = await faultStack(300);
    await s.startMiddleman();
    await s.send();
    await sleep(1000);
    const atStop = s.journal.counts();
    await s.pacs.stop();
    await sleep(30_000);
    await s.startPacs();
    const resubmits = await s.sendUntilDone(300_000);
    await waitUntilSettled(s.journal, 300_000);
    const n = await outcome(s);
    console.log(`      PACS stopped with journal ${JSON.stringify(atStop)}; resubmits after restart ${resubmits}`);
    console.log(`      sent ${n.sent}, de-identified in PACS ${n.deidentifiedInPacs}, raw left ${n.rawLeft}, duplicates ${n.duplicates}, lost ${n.lost}; journal ${JSON.stringify(n.journal)}`);
    expectClean(n);
  });
});

describe('fault: the crosswalk database (FerretDB) stopped mid-burst, then started again', function () {
  this.timeout(600_000);
  let s: FaultStack | undefined;
  let ferret: MongoServer | { skip: string } | undefined;
  after(async () => {
    await s?.stop();
    if (ferret && !('skip' in ferret)) await ferret.stop();
  });

  it('makes jobs wait, then complete: nothing lost, nothing raw, nothing quarantined', async function () {
    ferret = await startMongoServer();
    if ('skip' in ferret || !ferret.restart) {
      console.log(`      (skipped: ${'skip' in ferret ? ferret.skip : 'an external MongoDB cannot be stopped by the test'})`);
      this.skip();
    }
    const db = ferret as MongoServer;
    s = await faultStack(300, { DPHIANT_CROSSWALK_URL: `${db.url}/faults`, DPHIANT_PIPELINE_RETRY_MAX_MS: '5000' });
    await s.startMiddleman();
    await s.send();
    // mid-burst: as soon as the first instances are de-identified
    for (let i = 0; i < 200 && s.journal.counts().DONE < 20; i++) await sleep(50);
    await db.stop();
    const down = Date.now();
    await sleep(15_000);
    const waiting = s.journal.counts();
    await db.restart!();
    const resubmits = await s.sendUntilDone(300_000);
    await waitUntilSettled(s.journal, 300_000);
    const n = await outcome(s);
    console.log(`      crosswalk down ${Math.round((Date.now() - down) / 1000)} s; while down: ${JSON.stringify(waiting)}; resubmits ${resubmits}`);
    console.log(`      sent ${n.sent}, de-identified in PACS ${n.deidentifiedInPacs}, raw left ${n.rawLeft}, duplicates ${n.duplicates}, lost ${n.lost}; journal ${JSON.stringify(n.journal)}`);
    expect(waiting.IN_PACS, 'jobs waited for the crosswalk').to.be.greaterThan(0);
    expectClean(n);
    expect(readdirSync(path.join(s.work, 'data', 'quarantine'))).to.deep.equal([]);
  });
});
