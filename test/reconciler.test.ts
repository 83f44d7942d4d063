// The reconciler, `dphiant reconcile`, the quarantine's durability and `crosswalk rekey` with quarantined
// instances, on a real Orthanc PACS. Instances "the middleman stored whose job was lost" are stored straight into
// the PACS by storescu with the middleman's calling AE title: the PACS then records exactly what a forward leaves
// (Origin DicomProtocol, RemoteAET = pacs.callingAet) and no journal row covers them. Foreign instances come from
// storescu with another AE title and from a REST upload.
import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startOrthanc, type OrthancProcess } from '../tools/devstack/orthanc.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { part10 } from '../src/dicom/writer.js';
import { devKeyPath, readKeyFile } from '../src/keys.js';
import { DevOrthanc } from '../tools/devstack/orthanc-rest.js';
import { Journal, journalPath } from '../src/pipeline/journal.js';
import { Quarantine, quarantineDir } from '../src/pipeline/quarantine.js';
import { POSITION_KEY } from '../src/pipeline/reconciler.js';
import { ServeLock } from '../src/serve-lock.js';
import { generateElements } from '../tools/synth/generate.js';
import { CLI, cleanEnv, DEV_STACK_ENV, dphiant } from './support/cli.js';
import { run, storescu } from './support/dcmtk.js';
import { startTestMiddleman, type TestMiddleman } from './support/middleman.js';
import { pacsInventory, waitUntilSettled } from './support/pipeline.js';
import { freePorts } from './support/ports.js';
import { findUp } from '../src/paths.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe('reconciler: the change log by Seq, only its own instances, walks on request', function () {
  this.timeout(600_000);
  let work: string;
  let pacs: OrthancProcess;
  let pacsRest: DevOrthanc;
  let mmPort: number;
  let seed = 1000;
  const running: TestMiddleman[] = [];

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-reconciler-'));
    const [pacsHttp, pacsDicom, port] = (await freePorts(3)) as [number, number, number];
    mmPort = port;
    pacs = await startOrthanc({
      role: 'pacs',
      workDir: path.join(work, 'pacs'),
      httpPort: pacsHttp,
      dicomPort: pacsDicom,
      middleman: { aet: 'DPHIANT', host: '127.0.0.1', port: mmPort },
      extraModalities: { direct: { AET: 'STORESCU', Host: '127.0.0.1', Port: 1, AllowStore: true, AllowEcho: true } },
    });
    pacsRest = new DevOrthanc({ url: pacs.httpUrl, username: 'demo', password: 'demo' });
  });
  beforeEach(async () => {
    await pacsRest.deleteAll();
  });
  afterEach(async () => {
    for (const mm of running.splice(0)) await mm.close();
  });
  after(async () => {
    await pacs?.stop();
  });

  const newDataDir = () => mkdtempSync(path.join(work, 'data-'));
  const mmEnv = (dataDir: string, env: Record<string, string> = {}) => ({
    DPHIANT_DATA_DIR: dataDir,
    DPHIANT_PACS_PORT: String(pacs.dicomPort),
    DPHIANT_PACS_URL: pacs.httpUrl,
    DPHIANT_PIPELINE_RECONCILE_INTERVAL_MS: '300',
    ...env,
  });
  const start = async (dataDir: string, env: Record<string, string> = {}, logFile?: string) => {
    const mm = await startTestMiddleman(mmEnv(dataDir, env), mmPort, logFile);
    running.push(mm);
    return mm;
  };
  const stop = async (mm: TestMiddleman) => {
    running.splice(running.indexOf(mm), 1);
    await mm.close();
  };
  const cliEnv = (dataDir: string, env: Record<string, string> = {}) => ({ DPHIANT_DATA_DIR: dataDir, DPHIANT_PACS_URL: pacs.httpUrl, DPHIANT_PACS_PORT: String(pacs.dicomPort), ...env });

  /** New synthetic instances written to files; `leak` puts the Patient ID in Manufacturer (the gate quarantines it). */
  function instances(n: number, opts: { leak?: boolean } = {}): { file: string; sop: string }[] {
    return Array.from({ length: n }, () => {
      const els = generateElements({ rows: 8, cols: 8, seed: ++seed, patientIndex: seed % 50 });
      if (opts.leak) els.find((e) => e.tag === 0x00080070)!.value = `scanner ${String(els.find((e) => e.tag === 0x00100020)!.value)}`;
      const file = path.join(work, `i${seed}.dcm`);
      writeFileSync(file, part10(els, TS.ExplicitVRLittleEndian));
      return { file, sop: String(els.find((e) => e.tag === 0x00080018)!.value) };
    });
  }
  /** Stores straight into the PACS with this calling AE; returns the instances' Orthanc IDs. */
  async function storeInPacs(items: { file: string; sop: string }[], callingAet: string): Promise<string[]> {
    const r = await storescu(items.map((i) => i.file), { port: pacs.dicomPort, callingAet, calledAet: 'PACS' });
    expect(r.code, r.stderr).to.equal(0);
    return Promise.all(items.map(async (i) => (await pacsRest.lookup(i.sop)).find((l) => l.Type === 'Instance')!.ID));
  }
  const isRaw = async (id: string) => (await pacsRest.instance(id)) !== null && (await pacsRest.tagValue(id, '0012-0062')) !== 'YES';
  const doneJobOf = (mm: TestMiddleman, sop: string) => mm.journal.byState('DONE', 100_000).find((j) => j.sopUidHash === mm.journal.uidHash(sop));
  const passes = (logFile: string) => (existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('reconciler followed the change log')).length : 0);

  it('leaves foreign instances alone and reports them, adopts its own lost one, and replays nothing after a restart', async () => {
    const dataDir = newDataDir();
    // the archive before the first start: its own raw instances stay for `dphiant reconcile` (no walk at start)
    const before = await storeInPacs(instances(3), 'DPHIANT');
    const log1 = path.join(work, `first-${seed}.log`);
    let mm = await start(dataDir, {}, log1);
    await until('the first position', () => mm.journal.getMeta(POSITION_KEY) !== undefined);
    expect(Number(mm.journal.getMeta(POSITION_KEY)), 'the first start records /changes?last').to.equal((await pacsRest.lastChange()).Last);
    await until('two passes', () => passes(log1) >= 2);
    expect(mm.metrics.counter('dphiant_reconciler_considered_total'), 'nothing of the archive before the first start is read').to.equal(0);

    const foreignDicom = instances(1);
    const [foreignDicomId] = await storeInPacs(foreignDicom, 'STORESCU');
    const foreignRest = instances(1)[0]!;
    const foreignRestId = (await pacsRest.upload(readFileSync(foreignRest.file))).ID;
    const own = instances(1);
    const [ownId] = await storeInPacs(own, 'DPHIANT');
    await until('the own instance DONE', () => !!doneJobOf(mm, own[0]!.sop));
    await until('both foreign instances reported', () => mm.metrics.counter('dphiant_reconciler_foreign_total') >= 2);
    await waitUntilSettled(mm.journal, 60_000);
    expect(doneJobOf(mm, own[0]!.sop)!.callingAet).to.equal('RECONCILER');
    expect(await pacsRest.instance(ownId!), 'the own raw copy is gone').to.equal(null);
    for (const id of [foreignDicomId!, foreignRestId]) {
      expect(await isRaw(id), `foreign ${id} still raw in the PACS`).to.equal(true);
      expect(mm.journal.knows(id), `no job for foreign ${id}`).to.equal(false);
    }
    for (const id of before) expect(await isRaw(id), 'the archive before the first start is untouched').to.equal(true);
    const log = readFileSync(log1, 'utf8');
    for (const id of [foreignDicomId!, foreignRestId]) expect(log, `the log names foreign ${id}`).to.match(new RegExp(`"orthancId":"${id}".*another system`));
    expect(log, 'the log never names a UID').not.to.contain(own[0]!.sop);
    const status = await dphiant(['status'], cliEnv(dataDir));
    expect(status.stdout).to.match(/raw instances of other systems reported and left alone: 2 /);
    const first = { considered: mm.metrics.counter('dphiant_reconciler_considered_total'), foreign: mm.metrics.counter('dphiant_reconciler_foreign_total'), adopted: mm.metrics.counter('dphiant_reconciler_adopted_total') };

    await stop(mm);
    const log2 = path.join(work, `second-${seed}.log`);
    mm = await start(dataDir, {}, log2);
    await until('three passes after the restart', () => passes(log2) >= 3);
    const replayed = mm.metrics.counter('dphiant_reconciler_considered_total');
    // and the follower does run after the restart: a new foreign instance is seen
    const [later] = await storeInPacs(instances(1), 'STORESCU');
    await until('the new foreign instance reported', () => mm.metrics.counter('dphiant_reconciler_foreign_total') >= 1);
    console.log(
      `      first run: considered ${first.considered}, adopted ${first.adopted}, foreign ${first.foreign}; ` +
        `after the restart: old changes considered ${replayed}, then foreign ${mm.metrics.counter('dphiant_reconciler_foreign_total')}; raw left: ${(await pacsInventory(pacsRest)).instances.filter((i) => i.identityRemoved !== 'YES').length} (3 before the first start, 3 foreign)`,
    );
    expect(first.foreign, "foreign instances reported").to.equal(2);
    expect(first.adopted, "own instances adopted").to.equal(1);
    expect(replayed, 'changes read again after the restart').to.equal(0);
    expect(mm.metrics.counter('dphiant_reconciler_foreign_total')).to.equal(1);
    expect(await isRaw(later!)).to.equal(true);
  });

  it("with pipeline.reconcileAdopt 'all' takes in other systems' raw instances too", async () => {
    const mm = await start(newDataDir(), { DPHIANT_PIPELINE_RECONCILE_ADOPT: 'all' });
    await until('the first position', () => mm.journal.getMeta(POSITION_KEY) !== undefined);
    const foreign = instances(1);
    const [id] = await storeInPacs(foreign, 'STORESCU');
    await until('the foreign instance DONE', () => !!doneJobOf(mm, foreign[0]!.sop));
    expect(await pacsRest.instance(id!)).to.equal(null);
    expect(mm.metrics.counter('dphiant_reconciler_foreign_total')).to.equal(0);
  });

  it('dphiant reconcile finds own raw instances the position had passed, in resumed runs, beside serve, while instances are deleted', async () => {
    const dataDir = newDataDir();
    const own = instances(40);
    const foreign = instances(5);
    const ownIds = await storeInPacs(own, 'DPHIANT');
    const foreignIds = await storeInPacs(foreign, 'STORESCU');
    // the first start records a position beyond all of them: the follower never reads them
    const mm = await start(dataDir);
    await until('the first position', () => mm.journal.getMeta(POSITION_KEY) !== undefined);
    await sleep(1500);
    expect(mm.journal.counts().DONE, 'nothing adopted by following the log').to.equal(0);

    // resumed runs of 7; between runs an instance not yet walked is deleted (as an operator might), while the
    // running worker de-identifies the adopted ones and deletes their raw copies (entries leave the log)
    const deleted: string[] = [];
    let runs = 0;
    let considered = 0;
    let adopted = 0;
    let foreignSeen = 0;
    for (;;) {
      const r = await dphiant(['reconcile', '--limit', '7'], cliEnv(dataDir));
      expect(r.code, r.stderr).to.equal(0);
      runs++;
      const m = /(\d+) instances considered, (\d+) adopted, (\d+) left alone/.exec(r.stdout)!;
      considered += Number(m[1]);
      adopted += Number(m[2]);
      foreignSeen += Number(m[3]);
      if (/walk complete/.test(r.stdout)) break;
      expect(runs, 'the walk ends').to.be.below(40);
      const next = ownIds.find((id) => mm.journal.jobsOfRaw(id).length === 0 && !deleted.includes(id));
      if (next && deleted.length < 5) {
        await pacsRest.deleteInstance(next);
        deleted.push(next);
      }
      // the worker's deletions happen during the walk
      await sleep(300);
    }
    await waitUntilSettled(mm.journal, 120_000);
    const inv = await pacsInventory(pacsRest);
    const rawLeft = inv.instances.filter((i) => i.identityRemoved !== 'YES').map((i) => i.id);
    const lost = ownIds.filter((id) => !deleted.includes(id) && !mm.journal.jobsOfRaw(id).some((j) => j.state === 'DONE'));
    console.log(`      own raw ${own.length}, deleted during the walk ${deleted.length}, foreign ${foreign.length}; runs ${runs}, considered ${considered}, adopted ${adopted}, foreign reported ${foreignSeen}; DONE ${mm.journal.counts().DONE}, raw left ${rawLeft.length}, skipped ${lost.length}`);
    expect(runs, 'a bounded walk resumed').to.be.greaterThan(3);
    expect(deleted.length).to.equal(5);
    expect(lost, 'own raw instances the walk skipped').to.deep.equal([]);
    expect(adopted).to.equal(own.length - deleted.length);
    expect(mm.journal.counts().DONE).to.equal(own.length - deleted.length);
    expect(rawLeft.sort(), 'only the foreign instances stay raw').to.deep.equal([...foreignIds].sort());
    expect(foreignSeen).to.equal(foreign.length);
  });

  it('keeps a quarantined copy through kill -9 between seal and delete; the middleman then ends the job QUARANTINED', async () => {
    const dataDir = newDataDir();
    // forwarded but not processed: the job IN_PACS, its raw copy in the PACS
    let mm = await start(dataDir, { DPHIANT_PIPELINE_ENABLED: 'false' });
    const leaky = instances(1, { leak: true });
    const sent = await storescu([leaky[0]!.file], { port: mm.port, callingAet: 'STORESCU' });
    expect(sent.code, sent.stderr).to.equal(0);
    const job = mm.journal.byState('IN_PACS').at(-1)!;
    expect(job.rawId).to.be.a('string');
    await stop(mm);
    const rawFile = await pacsRest.instanceFile(job.rawId!);

    const child = await run(process.execPath, [findUp('dist/test/support/quarantine-kill.js'), dataDir, pacs.httpUrl, String(job.id)]);
    expect(child.stdout, child.stderr).to.contain(`sealed job ${job.id}`);
    expect(child.code, 'killed by SIGKILL').to.equal(null);
    const qdir = quarantineDir(dataDir);
    expect(readdirSync(qdir), 'the sealed file, no temporary left').to.deep.equal([`${job.id}.dcm.sealed`]);
    expect(statSync(path.join(qdir, `${job.id}.dcm.sealed`)).mode & 0o777).to.equal(0o600);
    const crosswalkKey = readKeyFile(devKeyPath(dataDir, 'crosswalk'));
    expect(new Quarantine(qdir, crosswalkKey).get(job.id).equals(rawFile), 'the sealed copy opens to the raw file').to.equal(true);
    expect(await isRaw(job.rawId!), 'the raw copy is still in the PACS').to.equal(true);
    // a temporary file of an earlier crash: removed by the next serve, never listed
    writeFileSync(path.join(qdir, `${job.id + 1000}.dcm.sealed.tmp`), 'torn');
    expect(new Quarantine(qdir, crosswalkKey).jobIds()).to.deep.equal([job.id]);

    mm = await start(dataDir);
    await waitUntilSettled(mm.journal, 60_000);
    const after = mm.journal.get(job.id)!;
    const rawLeft = (await pacsInventory(pacsRest)).instances.filter((i) => i.identityRemoved !== 'YES').length;
    console.log(`      sent 1, sealed before kill -9: 1, after restart: ${after.state}, raw left ${rawLeft}, files ${readdirSync(qdir).join(' ')}`);
    expect(after.state).to.equal('QUARANTINED');
    expect(rawLeft).to.equal(0);
    expect(readdirSync(qdir)).to.deep.equal([`${job.id}.dcm.sealed`]);
    expect(new Quarantine(qdir, crosswalkKey).get(job.id).equals(rawFile)).to.equal(true);
  });

  it('rekey re-seals the quarantine (resuming an interrupted rekey), is refused while serve runs, and requeue works with the new key', async () => {
    const dataDir = newDataDir();
    let mm = await start(dataDir);
    const leaky = instances(3, { leak: true });
    const sent = await storescu(leaky.map((l) => l.file), { port: mm.port, callingAet: 'STORESCU' });
    expect(sent.code, sent.stderr).to.equal(0);
    await waitUntilSettled(mm.journal, 60_000);
    const jobs = mm.journal.byState('QUARANTINED');
    expect(jobs).to.have.length(3);
    const qdir = quarantineDir(dataDir);
    const oldKey = readKeyFile(devKeyPath(dataDir, 'crosswalk'));
    const originals = new Map(jobs.map((j) => [j.id, new Quarantine(qdir, oldKey).get(j.id)]));
    const newKeyFile = path.join(work, `crosswalk-new-${seed}.key`);
    expect((await dphiant(['keygen', '--out', newKeyFile])).code).to.equal(0);
    const newKey = readKeyFile(newKeyFile);
    const rekeyArgs = ['crosswalk', 'rekey', '--new-key', newKeyFile, '--reason', 'scheduled rotation'];

    const refused = await dphiant(rekeyArgs, cliEnv(dataDir));
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.contain('refusing to rekey: the middleman (dphiant serve) is running');
    for (const j of jobs) expect(new Quarantine(qdir, oldKey).get(j.id).equals(originals.get(j.id)!), 'untouched by the refused rekey').to.equal(true);
    expect((await dphiant(['crosswalk', 'list'], cliEnv(dataDir))).code, 'the crosswalk still opens with the old key').to.equal(0);
    await stop(mm);

    // serve refuses to start while the lock is held (by a rekey)
    const lock = ServeLock.acquire(dataDir);
    const [scp, web] = await freePorts(2);
    const blocked = await run(process.execPath, [CLI, 'serve'], { env: { ...cleanEnv, ...DEV_STACK_ENV, ...mmEnv(dataDir), DPHIANT_SCP_PORT: String(scp), DPHIANT_WEB_PORT: String(web), DPHIANT_LOG_LEVEL: 'warn' }, timeoutMs: 30_000 });
    lock.release();
    expect(blocked.code).to.equal(1);
    expect(blocked.stdout + blocked.stderr).to.contain('another dphiant serve, or a crosswalk rekey, is running');

    // an interrupted rekey: the first file already under the new key
    new Quarantine(qdir, newKey).put(jobs[0]!.id, originals.get(jobs[0]!.id)!);
    const rekeyed = await dphiant(rekeyArgs, cliEnv(dataDir));
    expect(rekeyed.code, rekeyed.stderr).to.equal(0);
    expect(rekeyed.stdout).to.match(/re-sealed [1-9]\d* values and 2 quarantined instances/);
    for (const j of jobs) {
      expect(new Quarantine(qdir, newKey).get(j.id).equals(originals.get(j.id)!), `job ${j.id} opens with the new key`).to.equal(true);
      expect(() => new Quarantine(qdir, oldKey).get(j.id)).to.throw(/does not open with the configured crosswalk key/);
    }
    const again = await dphiant(rekeyArgs, cliEnv(dataDir));
    expect(again.stdout, 'a second run has nothing left to do').to.match(/re-sealed 0 values and 0 quarantined instances/);

    const withNewKey = cliEnv(dataDir, { DPHIANT_CROSSWALK_KEY_FILE: newKeyFile });
    const requeued = await dphiant(['quarantine', 'requeue', String(jobs[1]!.id)], withNewKey);
    expect(requeued.code, requeued.stderr).to.equal(0);
    const back = new Journal(journalPath(dataDir), readKeyFile(devKeyPath(dataDir, 'site')));
    try {
      const j = back.get(jobs[1]!.id)!;
      expect(j.state).to.equal('IN_PACS');
      expect(await isRaw(j.rawId!), 'the raw instance is back in the PACS').to.equal(true);
      expect((await pacsRest.instanceFile(j.rawId!)).equals(originals.get(j.id)!)).to.equal(true);
    } finally {
      back.close();
    }
    expect(readdirSync(qdir)).not.to.include(`${jobs[1]!.id}.dcm.sealed`);

    // the middleman on the new key: the requeued job meets the gate again and is sealed under the new key
    mm = await start(dataDir, { DPHIANT_CROSSWALK_KEY_FILE: newKeyFile });
    await waitUntilSettled(mm.journal, 60_000);
    const counts = mm.journal.counts();
    const rawLeft = (await pacsInventory(pacsRest)).instances.filter((i) => i.identityRemoved !== 'YES').length;
    console.log(`      quarantined ${jobs.length}, re-sealed by rekey ${2} (+1 already under the new key), requeued 1 → ${mm.journal.get(jobs[1]!.id)!.state}; QUARANTINED ${counts.QUARANTINED}, raw left ${rawLeft}`);
    expect(counts.QUARANTINED).to.equal(3);
    expect(rawLeft).to.equal(0);
    expect(new Quarantine(qdir, newKey).get(jobs[1]!.id).equals(originals.get(jobs[1]!.id)!)).to.equal(true);
  });
});
