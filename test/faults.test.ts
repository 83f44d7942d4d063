// Fault tests on the real stack: Orthanc modality and PACS, the middleman as a child process (`dphiant serve`),
// the crosswalk on SQLite or FerretDB. Each prints its numbers: sent, de-identified in the PACS, raw left,
// duplicates, lost.
import { expect } from 'chai';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startOrthanc, type OrthancProcess } from '../src/devstack/orthanc.js';
import { OrthancClient } from '../src/pacs/orthanc.js';
import { Journal, journalPath } from '../src/pipeline/journal.js';
import { generateStudies } from '../src/synth/generate.js';
import { devKeyPath, readKeyFile } from '../src/keys.js';
import { spawnMiddleman, type MiddlemanProcess } from './support/child.js';
import { startMongoServer, type MongoServer } from './support/ferretdb.js';
import { pacsInventory, waitUntilSettled } from './support/pipeline.js';
import { freePorts } from './support/ports.js';
import { Rng } from '../src/synth/rng.js';


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface FaultStack {
  work: string;
  pacs: OrthancProcess;
  pacsRest: OrthancClient;
  modalityRest: OrthancClient;
  journal: Journal;
  sent: number;
  studies: string[];
  mm?: MiddlemanProcess;
  startMiddleman(): Promise<MiddlemanProcess>;
  /** Starts the PACS again after pacs.stop() (same ports, same storage). */
  startPacs(): Promise<void>;
  /** Starts the modality's store job, or resubmits it; resolves at once. */
  send(): Promise<void>;
  /** The store job's state now. */
  jobState(): Promise<string>;
  /** Until the modality's job succeeded, resubmitting it after failures (as an operator would). */
  sendUntilDone(timeoutMs: number): Promise<number>;
  stop(): Promise<void>;
}

async function faultStack(instances: number, env: Record<string, string> = {}): Promise<FaultStack> {
  const work = mkdtempSync(path.join(tmpdir(), 'dphiant-faults-'));
  const [mmPort, pacsHttp, pacsDicom, modHttp, modDicom] = (await freePorts(5)) as [number, number, number, number, number];
  const middleman = { aet: 'DPHIANT', host: '127.0.0.1', port: mmPort };
  const pacsOptions = { role: 'pacs' as const, workDir: path.join(work, 'pacs'), httpPort: pacsHttp, dicomPort: pacsDicom, middleman };
  const pacs = await startOrthanc(pacsOptions);
  const modality = await startOrthanc({ role: 'modality', workDir: path.join(work, 'modality'), httpPort: modHttp, dicomPort: modDicom, middleman });
  const auth = { username: 'demo', password: 'demo' };
  const pacsRest = new OrthancClient({ url: pacs.httpUrl, ...auth });
  const modalityRest = new OrthancClient({ url: modality.httpUrl, ...auth });
  const perSeries = Math.ceil(instances / 10);
  const manifest = await generateStudies({ outDir: path.join(work, 'in'), patients: 5, studiesPerPatient: 2, seriesPerStudy: 1, instancesPerSeries: perSeries, rows: 32, cols: 32, seed: 500 });
  const { readFileSync } = await import('node:fs');
  for (const i of manifest.instances.slice(0, instances)) await modalityRest.upload(readFileSync(i.path));
  const dataDir = path.join(work, 'data');
  const mmEnv = { DPHIANT_DATA_DIR: dataDir, DPHIANT_PACS_PORT: String(pacsDicom), DPHIANT_PACS_URL: pacs.httpUrl, DPHIANT_PIPELINE_RECONCILE_INTERVAL_MS: '5000', ...env };
  let jobId: string | undefined;
  const s: FaultStack = {
    work,
    pacs,
    pacsRest,
    modalityRest,
    journal: undefined as unknown as Journal,
    sent: instances,
    studies: await modalityRest.findStudies({}),
    async startMiddleman() {
      s.mm = await spawnMiddleman(mmEnv, mmPort);
      s.journal ??= new Journal(journalPath(dataDir), readKeyFile(devKeyPath(dataDir, 'site')));
      return s.mm;
    },
    async startPacs() {
      s.pacs = await startOrthanc(pacsOptions);
    },
    async send() {
      if (!jobId) jobId = (await modalityRest.storeToModality('middleman', s.studies, { asynchronous: true, timeoutSec: 60 })).ID;
      else await modalityRest.resubmitJob(jobId);
    },
    async jobState() {
      return (await modalityRest.job(jobId!)).State;
    },
    async sendUntilDone(timeoutMs) {
      const end = Date.now() + timeoutMs;
      let resubmits = 0;
      for (;;) {
        const state = await s.jobState();
        if (state === 'Success') return resubmits;
        if (state === 'Failure') {
          await s.send();
          resubmits++;
        }
        if (Date.now() > end) throw new Error(`the modality's store job did not succeed in ${timeoutMs} ms (state ${state})`);
        await sleep(250);
      }
    },
    async stop() {
      await s.mm?.stop();
      s.journal?.close();
      await Promise.all([modality.stop(), s.pacs.stop()]);
    },
  };
  return s;
}

/** The numbers every fault test prints and checks. */
async function outcome(s: FaultStack) {
  const inv = await pacsInventory(s.pacsRest);
  const deidentified = inv.instances.filter((i) => i.identityRemoved === 'YES');
  const distinct = new Set(deidentified.map((i) => i.sopInstanceUid)).size;
  const numbers = {
    sent: s.sent,
    deidentifiedInPacs: deidentified.length,
    rawLeft: inv.instances.length - deidentified.length,
    duplicates: deidentified.length - distinct,
    lost: s.sent - distinct,
    journal: s.journal.counts(),
  };
  return numbers;
}

function expectClean(n: Awaited<ReturnType<typeof outcome>>) {
  expect(n.rawLeft, 'raw instances left in the PACS').to.equal(0);
  expect(n.duplicates, 'duplicates in the PACS').to.equal(0);
  expect(n.lost, 'instances lost').to.equal(0);
  expect(n.deidentifiedInPacs).to.equal(n.sent);
  expect(n.journal.QUARANTINED, 'nothing quarantined').to.equal(0);
}

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
    s = await faultStack(300, { DPHIANT_CROSSWALK_URL: `${db.url}/faults`, DPHIANT_PIPELINE_RETRY_MAX_MS: '5000', DPHIANT_PIPELINE_MAX_ATTEMPTS: '40' });
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
