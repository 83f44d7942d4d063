// Long outages and bad credentials on the real stack (issue 10): the middleman as a child process, a burst from the
// modality Orthanc, storescu as a second sender during the outage. The PACS REST API sits behind a proxy
// (test/support/rest-proxy.ts) that the test takes down or makes answer 401 while DICOM goes to the PACS directly;
// the crosswalk is FerretDB, stopped. Transient failures must never quarantine, and once a dependency has failed
// longer than pipeline.backpressureAfterMs (20 s here) new C-STOREs are refused with 0xA700 before forwarding.
// Each test prints sent, de-identified, raw left, quarantined, lost and the refusals.
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startOrthanc } from '../tools/devstack/orthanc.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { part10 } from '../src/dicom/writer.js';
import { devKeyPath, readKeyFile } from '../src/keys.js';
import { REFUSAL } from '../src/pipeline/health.js';
import type { ReasonCode } from '../src/reasons.js';
import { Quarantine, quarantineDir } from '../src/pipeline/quarantine.js';
import type { Journal } from '../src/pipeline/journal.js';
import { generateElements, generateStudies } from '../tools/synth/generate.js';
import { dphiant } from './support/cli.js';
import { echoscu, storescu } from './support/dcmtk.js';
import { expectClean, faultStack, outcome, sleep, type FaultStack } from './support/fault-stack.js';
import { startMongoServer, type MongoServer } from './support/ferretdb.js';
import { pacsInventory, waitUntilSettled } from './support/pipeline.js';
import { freePorts } from './support/ports.js';

const BACKPRESSURE_AFTER_MS = 20_000;
/** Fast retries, so recovery after the outage takes seconds. */
const ENV = { DPHIANT_PIPELINE_BACKPRESSURE_AFTER_MS: String(BACKPRESSURE_AFTER_MS), DPHIANT_PIPELINE_RETRY_MAX_MS: '5000' };

function refusals(journal: Journal, comment: string): number {
  return journal.byState('REJECTED', 1_000_000).filter((j) => j.reason === comment && j.reasonCode === 'backpressure').length;
}

/** Instances of other patients than the burst's, for storescu to send during the outage. */
async function lateFiles(s: FaultStack, count: number): Promise<string[]> {
  const m = await generateStudies({ outDir: path.join(s.work, 'late'), patients: 2, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: Math.ceil(count / 2), rows: 32, cols: 32, seed: 701, prefix: 'LATE' });
  s.sent += m.instances.length;
  return m.instances.map((i) => i.path);
}

/** Until the first instance of the modality's burst is de-identified: the outage starts mid-burst. */
async function firstDone(s: FaultStack, n = 10): Promise<void> {
  for (let i = 0; i < 600 && s.journal.counts().DONE < n; i++) await sleep(50);
}

interface Probe {
  /** ms after the outage began */
  at: number;
  code: number | null;
}

/**
 * storescu sends `files` every `everyMs` while the outage lasts (it stops at the first refusal, as a modality's
 * store job does). Returns what each send ended with.
 */
async function probeDuring(s: FaultStack, files: string[], start: number, durationMs: number, everyMs: number): Promise<Probe[]> {
  const probes: Probe[] = [];
  while (Date.now() - start < durationMs) {
    const at = Date.now() - start;
    const r = await storescu(files, { port: s.port, timeoutMs: 120_000 });
    probes.push({ at, code: r.code });
    await sleep(Math.max(0, Math.min(everyMs, durationMs - (Date.now() - start))));
  }
  return probes;
}

/** storescu again after the outage until every file is accepted (backpressure lifts once the dependency answers). */
async function resendUntilAccepted(s: FaultStack, files: string[], timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (let tries = 1; ; tries++) {
    const r = await storescu(files, { port: s.port, timeoutMs: 120_000 });
    if (r.code === 0) return tries;
    if (Date.now() > end) throw new Error(`storescu still refused ${timeoutMs} ms after the outage: ${r.stderr.slice(-300)}`);
    await sleep(2000);
  }
}

/** /readyz, the metrics and `dphiant status` while new instances are refused for `cause`. */
async function expectVisible(s: FaultStack, dependency: 'pacs' | 'crosswalk', code: ReasonCode) {
  const ready = await fetch(`${s.webUrl}/readyz`);
  const body = (await ready.json()) as { refusing: string | null; dependencies: Record<string, { failing: boolean; lastErrorClass: string; failingSeconds: number }> };
  expect(ready.status, '/readyz while refusing').to.equal(503);
  expect(body.refusing).to.equal(dependency);
  expect(body.dependencies[dependency]).to.include({ failing: true, lastErrorClass: code });
  const metrics = await (await fetch(`${s.webUrl}/metrics`)).text();
  const failing = new RegExp(`^dphiant_dependency_failing_seconds\\{dependency="${dependency}",reason="${code}"\\} ([\\d.]+)$`, 'm').exec(metrics);
  expect(failing, `dphiant_dependency_failing_seconds for ${dependency} in\n${metrics}`).to.not.equal(null);
  expect(Number(failing![1])).to.be.greaterThan(BACKPRESSURE_AFTER_MS / 1000);
  expect(metrics).to.match(new RegExp(`^dphiant_backpressure\\{cause="${dependency}"\\} 1$`, 'm'));
  expect(metrics).to.match(/^dphiant_backlog \d+$/m);
  expect(metrics).to.match(new RegExp(`^dphiant_failures_total\\{kind="transient",reason="${code}"\\} \\d+$`, 'm'));
  const status = await dphiant(['status'], { DPHIANT_DATA_DIR: s.dataDir, ...ENV });
  const name = dependency === 'pacs' ? 'PACS REST API' : 'crosswalk';
  expect(status.stdout).to.match(new RegExp(`${name}\\s+failing for \\d+ s since \\S+ \\(${code}, \\d+ failed calls\\); new C-STOREs refused \\(0xA700\\)`));
  return { failingSeconds: body.dependencies[dependency]!.failingSeconds };
}

function report(label: string, n: Awaited<ReturnType<typeof outcome>>, extra: string) {
  console.log(`      ${label}: ${extra}`);
  console.log(`      sent ${n.sent}, de-identified in PACS ${n.deidentifiedInPacs}, raw left ${n.rawLeft}, quarantined ${n.journal.QUARANTINED}, duplicates ${n.duplicates}, lost ${n.lost}; journal ${JSON.stringify(n.journal)}`);
}

describe('outage: the PACS REST API down for 5 minutes during a burst (DICOM still up)', function () {
  this.timeout(900_000);
  let s: FaultStack;
  after(async () => {
    await s?.stop();
  });

  it('refuses new C-STOREs with 0xA700 once down 20 s, quarantines nothing, and de-identifies everything after', async () => {
    const OUTAGE_MS = 300_000;
    s = await faultStack(150, ENV, { restProxy: true });
    const late = await lateFiles(s, 20);
    await s.startMiddleman();
    await s.send();
    await firstDone(s);
    await s.restProxy!.down();
    const down = Date.now();
    const atDown = s.journal.counts();
    // the modality sends its burst again a little later, when the outage has passed the limit: refused
    let second: string | undefined;
    const seen = { visible: undefined as undefined | { failingSeconds: number }, modalityRefused: false };
    const watcher = (async () => {
      await sleep(BACKPRESSURE_AFTER_MS + 15_000);
      second = (await s.modalityRest.storeToModality('middleman', s.studies, { asynchronous: true, timeoutSec: 60 })).ID;
      for (let i = 0; i < 120 && (await s.modalityRest.job(second)).State !== 'Failure'; i++) await sleep(250);
      seen.modalityRefused = (await s.modalityRest.job(second)).State === 'Failure';
      seen.visible = await expectVisible(s, 'pacs', 'pacs-unavailable');
    })();
    const probes = await probeDuring(s, late, down, OUTAGE_MS, 15_000);
    await watcher;
    const during = s.journal.counts();
    const refusedPacs = refusals(s.journal, REFUSAL.pacs);
    // past pipeline.stuckAfterAttempts (10): reported stuck, still retrying
    const stuck = ((await (await fetch(`${s.webUrl}/readyz`)).json()) as { stuckJobs: number }).stuckJobs;
    const stuckStatus = /stuck jobs \(retrying after 10\+ failed attempts\): (\d+)/.exec((await dphiant(['status'], { DPHIANT_DATA_DIR: s.dataDir })).stdout)?.[1];
    await s.restProxy!.up();
    const up = Date.now();
    const tries = await resendUntilAccepted(s, late, 120_000);
    const acceptedAfterS = Math.round((Date.now() - up) / 1000);
    await s.sendUntilDone(300_000);
    await s.modalityRest.resubmitJob(second!);
    for (let i = 0; i < 1200 && (await s.modalityRest.job(second!)).State !== 'Success'; i++) {
      if ((await s.modalityRest.job(second!)).State === 'Failure') await s.modalityRest.resubmitJob(second!);
      await sleep(250);
    }
    await waitUntilSettled(s.journal, 300_000);
    const after = await fetch(`${s.webUrl}/readyz`);
    const afterBody = (await after.json()) as { refusing: string | null; stuckJobs: number };
    const n = await outcome(s);
    report(
      'REST down 300 s',
      n,
      `journal at the drop ${JSON.stringify(atDown)}, at the end of the outage ${JSON.stringify(during)}; storescu sends during it (s after the drop: exit code) ${probes.map((p) => `${Math.round(p.at / 1000)}:${p.code}`).join(' ')}; 0xA700 refusals journalled ${refusedPacs}; failing ${seen.visible?.failingSeconds} s when checked; stuck jobs at the end ${stuck} (status: ${stuckStatus}), after recovery ${afterBody.stuckJobs}; /readyz after ${after.status}; modality's second burst refused: ${seen.modalityRefused}; accepted again ${acceptedAfterS} s after the API came back (${tries} storescu runs)`,
    );
    expect(OUTAGE_MS, 'longer than the old retry budget (10 attempts, ~150 s)').to.be.greaterThan(150_000);
    expect(probes[0]!.code, 'accepted before the outage passed the limit').to.equal(0);
    const late30 = probes.filter((p) => p.at > BACKPRESSURE_AFTER_MS + 10_000);
    expect(late30.length).to.be.greaterThan(10);
    expect(late30.filter((p) => p.code === 0), 'storescu sends accepted after the limit').to.deep.equal([]);
    expect(refusedPacs, 'refusals journalled with the fixed comment').to.be.at.least(late30.length);
    expect(seen.modalityRefused, "the modality's store job was refused").to.equal(true);
    expect(during.QUARANTINED, 'nothing quarantined during the outage').to.equal(0);
    expect(stuck, 'jobs past stuckAfterAttempts are reported').to.be.greaterThan(0);
    expect(Number(stuckStatus), 'dphiant status shows them').to.equal(stuck);
    expect(afterBody.stuckJobs).to.equal(0);
    expect(after.status, '/readyz once recovered').to.equal(200);
    expectClean(n);
  });
});

describe('outage: the PACS REST API answers 401 for 60 s during a burst', function () {
  this.timeout(600_000);
  let s: FaultStack;
  after(async () => {
    await s?.stop();
  });

  it('keeps the jobs (not quarantined) and finishes them once the credentials work again', async () => {
    s = await faultStack(100, ENV, { restProxy: true });
    const late = await lateFiles(s, 10);
    await s.startMiddleman();
    await s.send();
    await firstDone(s);
    await s.restProxy!.unauthorized();
    const start = Date.now();
    const watcher = (async () => {
      await sleep(BACKPRESSURE_AFTER_MS + 15_000);
      return expectVisible(s, 'pacs', 'pacs-auth');
    })();
    const probes = await probeDuring(s, late, start, 60_000, 10_000);
    const visible = await watcher;
    const during = s.journal.counts();
    await s.restProxy!.up();
    await resendUntilAccepted(s, late, 120_000);
    await s.sendUntilDone(300_000);
    await waitUntilSettled(s.journal, 300_000);
    const n = await outcome(s);
    const answered401 = s.restProxy!.answered.get(401) ?? 0;
    report(
      'REST 401 for 60 s',
      n,
      `journal at the end of it ${JSON.stringify(during)}; HTTP 401 answers ${answered401}; storescu sends ${probes.map((p) => `${Math.round(p.at / 1000)}:${p.code}`).join(' ')}; 0xA700 refusals journalled ${refusals(s.journal, REFUSAL.pacs)}; failing ${visible.failingSeconds} s when checked`,
    );
    expect(answered401, 'the PACS answered 401 to the middleman').to.be.greaterThan(0);
    expect(during.IN_PACS + during.DEIDENTIFIED, 'jobs waited').to.be.greaterThan(0);
    expect(during.QUARANTINED, 'nothing quarantined for a 401').to.equal(0);
    expect(refusals(s.journal, REFUSAL.pacs)).to.be.greaterThan(0);
    expectClean(n);
  });
});

describe('start-up: the PACS REST credentials are checked before listening', function () {
  this.timeout(120_000);
  let work: string;
  let pacs: Awaited<ReturnType<typeof startOrthanc>> | undefined;
  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-startup-'));
    const [pacsHttp, pacsDicom, mmPort] = (await freePorts(3)) as [number, number, number];
    pacs = await startOrthanc({ role: 'pacs', workDir: path.join(work, 'pacs'), httpPort: pacsHttp, dicomPort: pacsDicom, middleman: { aet: 'DPHIANT', host: '127.0.0.1', port: mmPort } });
  });
  after(async () => {
    await pacs?.stop();
  });

  it('refuses to start with a wrong PACS password: exit 2, naming pacs.username/pacs.password, nothing listening', async () => {
    const [scp, web] = (await freePorts(2)) as [number, number];
    const r = await dphiant(['serve'], { DPHIANT_DATA_DIR: path.join(work, 'wrong'), DPHIANT_PACS_URL: pacs!.httpUrl, DPHIANT_PACS_PASSWORD: 'not-the-password', DPHIANT_SCP_PORT: String(scp), DPHIANT_WEB_PORT: String(web), DPHIANT_LOG_LEVEL: 'silent' });
    console.log(`      exit ${r.code}: ${r.stderr.trim()}`);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.contain('invalid configuration: pacs.username/pacs.password: the PACS REST API at');
    expect(r.stderr).to.contain('answered HTTP 401');
    expect((await echoscu({ port: scp })).code, 'no SCP listening').to.not.equal(0);
  });

  it('starts when the REST API does not answer, and refuses C-STOREs once that outage passed backpressureAfterMs; C-ECHO is still answered', async () => {
    const [closed] = (await freePorts(1)) as [number];
    const s = await faultStack(0, { DPHIANT_PACS_URL: `http://127.0.0.1:${closed}`, DPHIANT_PIPELINE_BACKPRESSURE_AFTER_MS: '2000' });
    try {
      await s.startMiddleman();
      const files = await lateFiles(s, 2);
      await sleep(3000);
      const r = await storescu(files, { port: s.port });
      const echo = await echoscu({ port: s.port });
      const ready = await fetch(`${s.webUrl}/readyz`);
      console.log(`      storescu exit ${r.code}, C-ECHO exit ${echo.code}, /readyz ${ready.status}, refusals ${refusals(s.journal, REFUSAL.pacs)}`);
      expect(r.code, 'refused (storescu exits with the status high byte, 0xA7)').to.equal(0xa7);
      expect(r.stdout + r.stderr).to.contain('Received Store Response (Refused: OutOfResources)');
      expect(echo.code).to.equal(0);
      expect(ready.status).to.equal(503);
      expect(refusals(s.journal, REFUSAL.pacs)).to.equal(1);
      expect(s.journal.counts().IN_PACS, 'nothing forwarded').to.equal(0);
    } finally {
      await s.stop();
    }
  });
});

describe('outage: the crosswalk database (FerretDB) down for 3 minutes during a burst', function () {
  this.timeout(900_000);
  let s: FaultStack | undefined;
  let ferret: MongoServer | { skip: string } | undefined;
  after(async () => {
    await s?.stop();
    if (ferret && !('skip' in ferret)) await ferret.stop();
  });

  it('refuses new C-STOREs with 0xA700 once down 20 s, quarantines nothing, and de-identifies everything after', async function () {
    ferret = await startMongoServer();
    if ('skip' in ferret || !ferret.restart) {
      console.log(`      (skipped: ${'skip' in ferret ? ferret.skip : 'an external MongoDB cannot be stopped by the test'})`);
      this.skip();
    }
    const db = ferret as MongoServer;
    const OUTAGE_MS = 180_000;
    s = await faultStack(100, { ...ENV, DPHIANT_CROSSWALK_URL: `${db.url}/outages` });
    const late = await lateFiles(s, 10);
    await s.startMiddleman();
    await s.send();
    await firstDone(s);
    await db.stop();
    const down = Date.now();
    const watcher = (async () => {
      // the driver gives up on a call after its server-selection timeout: the streak starts then
      for (let i = 0; i < 240 && (await (await fetch(`${s!.webUrl}/readyz`)).json() as { refusing: string | null }).refusing !== 'crosswalk'; i++) await sleep(500);
      return expectVisible(s!, 'crosswalk', 'crosswalk-unavailable');
    })();
    const probes = await probeDuring(s, late, down, OUTAGE_MS, 15_000);
    const visible = await watcher;
    const during = s.journal.counts();
    const refused = refusals(s.journal, REFUSAL.crosswalk);
    await db.restart!();
    await resendUntilAccepted(s, late, 120_000);
    await s.sendUntilDone(300_000);
    await waitUntilSettled(s.journal, 300_000);
    const n = await outcome(s);
    report(
      'crosswalk down 180 s',
      n,
      `journal at the end of the outage ${JSON.stringify(during)}; storescu sends ${probes.map((p) => `${Math.round(p.at / 1000)}:${p.code}`).join(' ')}; 0xA700 refusals journalled ${refused}; failing ${visible.failingSeconds} s when checked`,
    );
    expect(during.IN_PACS, 'jobs waited for the crosswalk').to.be.greaterThan(0);
    expect(during.QUARANTINED, 'nothing quarantined during the outage').to.equal(0);
    expect(refused, 'refusals journalled with the fixed comment').to.be.greaterThan(0);
    expect(probes.filter((p) => p.code !== 0).length, 'storescu sends refused').to.be.greaterThan(0);
    expectClean(n);
  });
});

describe('backpressure: the backlog bound (pipeline.maxBacklog 20, the worker blocked by the REST API)', function () {
  this.timeout(600_000);
  let s: FaultStack;
  after(async () => {
    await s?.stop();
  });

  it('takes 20 unfinished instances, refuses the next with the backlog comment, and finishes all after recovery', async () => {
    // the REST API down, but the dependency limit far away: only the backlog bound refuses
    s = await faultStack(40, { DPHIANT_PIPELINE_MAX_BACKLOG: '20', DPHIANT_PIPELINE_BACKPRESSURE_AFTER_MS: '600000', DPHIANT_PIPELINE_RETRY_MAX_MS: '5000' }, { restProxy: true });
    await s.startMiddleman();
    await s.restProxy!.down();
    await s.send();
    for (let i = 0; i < 240 && (await s.jobState()) !== 'Failure'; i++) await sleep(250);
    const modalityJob = await s.jobState();
    await sleep(2000);
    const blocked = s.journal.counts();
    const refused = refusals(s.journal, REFUSAL.backlog);
    const ready = await fetch(`${s.webUrl}/readyz`);
    const readyBody = (await ready.json()) as { refusing: string | null; backlog: number };
    await s.restProxy!.up();
    // the sender keeps the refused instances and sends them again, in batches under the bound once the backlog
    // has drained (one store job of all 40 needs the worker to drain 20 while it runs: never, at this sender's pace)
    const files = readdirSync(path.join(s.work, 'in'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.dcm')).map((f) => path.join(s.work, 'in', f));
    expect(files).to.have.length(40);
    let rounds = 0;
    for (let i = 0; i < files.length; i += 10, rounds++) {
      await waitUntilSettled(s.journal, 120_000);
      const r = await storescu(files.slice(i, i + 10), { port: s.port, timeoutMs: 120_000 });
      expect(r.code, `batch ${rounds + 1} accepted`).to.equal(0);
    }
    await waitUntilSettled(s.journal, 300_000);
    const n = await outcome(s);
    report('backlog bound 20', n, `modality's job ${modalityJob}; sent again by storescu in ${rounds} batches of 10 after recovery; journal while blocked ${JSON.stringify(blocked)}; backlog refusals journalled ${refused}; /readyz ${ready.status} ${JSON.stringify(readyBody)}`);
    expect(modalityJob, "the modality's store job was refused").to.equal('Failure');
    expect(blocked.IN_PACS + blocked.DEIDENTIFIED, 'unfinished jobs at the bound').to.equal(20);
    expect(refused).to.be.at.least(1);
    expect(ready.status).to.equal(503);
    expect(readyBody).to.include({ refusing: 'backlog', backlog: 20 });
    expectClean(n);
  });
});

describe('quarantine: never without a sealed copy or a raw copy the PACS confirmed absent', function () {
  this.timeout(300_000);
  let s: FaultStack;
  after(async () => {
    await s?.stop();
  });

  it('keeps jobs IN_PACS while the REST API is down, then quarantines after a cut-short step only by a 404', async () => {
    s = await faultStack(0, {}, { restProxy: true });
    // forward only: three jobs stay IN_PACS with their raw copies in the PACS
    await s.startMiddleman({ DPHIANT_PIPELINE_ENABLED: 'false' });
    const dir = path.join(s.work, 'cases');
    mkdirSync(dir);
    const files = ['sealed', 'gone', 'leaky'].map((name, i) => {
      const els = generateElements({ rows: 8, cols: 8, seed: 810 + i, patientIndex: 60 + i });
      // the patient ID in Manufacturer, vendor vocabulary the engine keeps as it is: the gate rejects it (permanent)
      if (name === 'leaky') els.find((e) => e.tag === 0x00080070)!.value = `scanner ${String(els.find((e) => e.tag === 0x00100020)!.value)}`;
      const file = path.join(dir, `${name}.dcm`);
      writeFileSync(file, part10(els, TS.ExplicitVRLittleEndian));
      return file;
    });
    const r = await storescu(files, { port: s.port });
    expect(r.code, r.stderr).to.equal(0);
    await s.mm!.stop();
    const [sealed, gone, leaky] = s.journal.byState('IN_PACS').sort((a, b) => a.id - b.id);
    expect([sealed, gone, leaky].every((j) => j?.rawId)).to.equal(true);
    // a quarantine step cut short (kill -9) after the seal and the raw deletion, before the journal: the sealed copy
    // is there and the raw copy gone; and a raw copy someone else deleted, with nothing sealed
    const quarantine = new Quarantine(quarantineDir(s.dataDir), readKeyFile(devKeyPath(s.dataDir, 'crosswalk')));
    quarantine.put(sealed!.id, await s.pacsRest.instanceFile(sealed!.rawId!));
    s.journal.failed(sealed!.id, { code: 'gate-hit', message: 'verification: id in Manufacturer' }, 0);
    await s.pacsRest.deleteInstance(sealed!.rawId!);
    await s.pacsRest.deleteInstance(gone!.rawId!);

    await s.restProxy!.down();
    await s.startMiddleman({ DPHIANT_PIPELINE_RETRY_BASE_MS: '200', DPHIANT_PIPELINE_RETRY_MAX_MS: '1000' });
    await sleep(8000);
    const whileDown = [sealed, gone, leaky].map((j) => s.journal.get(j!.id)!);
    await s.restProxy!.up();
    await waitUntilSettled(s.journal, 60_000);
    const [a, b, c] = [sealed, gone, leaky].map((j) => s.journal.get(j!.id)!);
    const inv = await pacsInventory(s.pacsRest);
    console.log(`      while the REST API was down: ${whileDown.map((j) => `job ${j.id} ${j.state} after ${j.attempts} attempts`).join(', ')}`);
    console.log(`      after: ${[a, b, c].map((j) => `job ${j!.id} ${j!.state} (${j!.reason}; sealed ${quarantine.has(j!.id)})`).join(', ')}; PACS instances ${inv.instances.length}`);
    expect(whileDown.map((j) => j.state), 'nothing quarantined while the REST API fails').to.deep.equal(['IN_PACS', 'IN_PACS', 'IN_PACS']);
    expect(whileDown.every((j) => j.attempts >= 2), 'retried meanwhile').to.equal(true);
    expect(a).to.include({ state: 'QUARANTINED', reason: 'verification: id in Manufacturer', reasonCode: 'gate-hit' });
    expect(quarantine.has(a!.id)).to.equal(true);
    expect(b).to.include({ state: 'QUARANTINED', reason: 'raw instance absent from the PACS; nothing to keep', reasonCode: 'raw-absent' });
    expect(quarantine.has(b!.id)).to.equal(false);
    expect(c!.state).to.equal('QUARANTINED');
    expect(c!.reason).to.match(/^verification: id in Manufacturer/);
    expect(c!.reasonCode).to.equal('gate-hit');
    expect(quarantine.get(c!.id).length, 'the leaky instance sealed').to.be.greaterThan(0);
    expect(inv.instances, 'no raw copy left in the PACS').to.deep.equal([]);
  });
});
