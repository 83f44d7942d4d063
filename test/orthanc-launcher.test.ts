// Starts a PACS and a modality with the dev-stack launcher on free ports in a temp dir, checks how
// they are bound and who they let in, and exercises the Orthanc REST client against them.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { startOrthanc, type OrthancProcess } from '../tools/devstack/orthanc.js';
import { OrthancHttpError, orthancInstanceId } from '../src/pacs/orthanc.js';
import { DevOrthanc } from '../tools/devstack/orthanc-rest.js';
import { freePorts } from './support/ports.js';

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function echo(callingAet: string, calledAet: string, port: number): number | null {
  const r = spawnSync('echoscu', ['-to', '5', '-aet', callingAet, '-aec', calledAet, '127.0.0.1', String(port)], {
    env: { ...process.env, TCP_NODELAY: '1' },
    timeout: 15_000,
  });
  return r.status;
}

/** local addresses of the listening TCP sockets on `port` */
function listeners(port: number): string[] {
  const out = spawnSync('ss', ['-ltnH'], { encoding: 'utf8' }).stdout;
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[3])
    .filter((local): local is string => !!local && local.endsWith(`:${port}`))
    .map((local) => local.slice(0, local.lastIndexOf(':')));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** a tiny Secondary Capture instance made with DCMTK's dump2dcm */
function makeDicom(dir: string, ids: { patientId: string; study: string; series: string; sop: string }): Buffer {
  const dump = path.join(dir, `${ids.sop}.dump`);
  const file = path.join(dir, `${ids.sop}.dcm`);
  writeFileSync(
    dump,
    [
      '(0008,0016) UI [1.2.840.10008.5.1.4.1.1.7]',
      `(0008,0018) UI [${ids.sop}]`,
      '(0008,0060) CS [OT]',
      '(0010,0010) PN [TEST^LAUNCHER]',
      `(0010,0020) LO [${ids.patientId}]`,
      `(0020,000d) UI [${ids.study}]`,
      `(0020,000e) UI [${ids.series}]`,
      '',
    ].join('\n'),
  );
  const r = spawnSync('dump2dcm', ['+te', dump, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dump2dcm failed: ${r.stderr}`);
  return readFileSync(file);
}

describe('dev-stack Orthanc launcher', function () {
  this.timeout(60_000);
  let workDir: string;
  let pacs: OrthancProcess | undefined;
  let modality: OrthancProcess | undefined;
  let ports: { pacsHttp: number; pacsDicom: number; modHttp: number; modDicom: number; middleman: number };
  const log: string[] = [];

  before(async function () {
    for (const cmd of ['Orthanc', 'echoscu', 'dump2dcm', 'gcc', 'ss']) {
      if (!have(cmd)) {
        console.log(`      skipped: ${cmd} is not installed (apt-get install orthanc dcmtk gcc iproute2)`);
        this.skip();
      }
    }
    workDir = mkdtempSync(path.join(os.tmpdir(), 'dphiant-orthanc-'));
    const [pacsHttp, pacsDicom, modHttp, modDicom, middleman] = await freePorts(5);
    ports = { pacsHttp, pacsDicom, modHttp, modDicom, middleman };
    const mm = { aet: 'DPHIANT', host: '127.0.0.1', port: middleman };
    [pacs, modality] = await Promise.all([
      startOrthanc({
        role: 'pacs',
        workDir,
        httpPort: pacsHttp,
        dicomPort: pacsDicom,
        middleman: mm,
        // lets the REST-client tests below push from the modality straight to the PACS
        extraModalities: { modality: { AET: 'MODALITY', Host: '127.0.0.1', Port: modDicom, AllowStore: true } },
        log: (m) => log.push(m),
      }),
      startOrthanc({
        role: 'modality',
        workDir,
        httpPort: modHttp,
        dicomPort: modDicom,
        middleman: mm,
        extraModalities: { pacs: { AET: 'PACS', Host: '127.0.0.1', Port: pacsDicom } },
        log: (m) => log.push(m),
      }),
    ]);
  });

  after(async function () {
    await Promise.all([pacs?.stop(), modality?.stop()]);
    if (log.length) console.log(log.map((l) => `      ${l}`).join('\n'));
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('answers GET /system with the configured AET and ports', async function () {
    const p = await new DevOrthanc({ url: pacs!.httpUrl, ...pacs!.auth }).system();
    expect(p).to.include({ DicomAet: 'PACS', DicomPort: ports.pacsDicom, HttpPort: ports.pacsHttp, Version: '1.10.1' });
    const m = await new DevOrthanc({ url: modality!.httpUrl, ...modality!.auth }).system();
    expect(m).to.include({ DicomAet: 'MODALITY', DicomPort: ports.modDicom, HttpPort: ports.modHttp });
  });

  it('refuses REST calls without the demo credentials', async function () {
    const res = await fetch(`${pacs!.httpUrl}/system`);
    expect(res.status).to.equal(401);
    await res.arrayBuffer();
  });

  it('listens on 127.0.0.1 only (HTTP and DICOM of both)', function () {
    for (const port of [ports.pacsHttp, ports.pacsDicom, ports.modHttp, ports.modDicom]) {
      const addrs = listeners(port);
      expect(addrs, `listeners of port ${port}`).to.not.be.empty;
      for (const a of addrs) expect(['127.0.0.1', '[::1]'], `port ${port} bound to ${a}`).to.include(a);
    }
  });

  it('writes storage and runtime config under the work dir', function () {
    const cfg = JSON.parse(readFileSync(pacs!.configPath, 'utf8'));
    expect(pacs!.configPath.startsWith(workDir)).to.equal(true);
    expect(cfg.StorageDirectory).to.equal(path.join(workDir, 'pacs-db'));
    expect(cfg.IndexDirectory).to.equal(path.join(workDir, 'pacs-db'));
    expect(cfg.DicomModalities.middleman).to.include({ AET: 'DPHIANT', Host: '127.0.0.1', Port: ports.middleman, AllowStore: true });
  });

  it('the modality knows the middleman under the name "middleman"', async function () {
    const res = await fetch(`${modality!.httpUrl}/modalities?expand`, {
      headers: { authorization: `Basic ${Buffer.from('demo:demo').toString('base64')}` },
    });
    const mods = (await res.json()) as Record<string, { AET: string; Host: string; Port: number }>;
    expect(mods).to.have.property('middleman');
    expect(mods.middleman).to.include({ AET: 'DPHIANT', Host: '127.0.0.1', Port: ports.middleman });
  });

  it('PACS accepts C-ECHO from DPHIANT and refuses an unknown calling AET or a wrong called AET', function () {
    expect(echo('DPHIANT', 'PACS', ports.pacsDicom), 'DPHIANT → PACS').to.equal(0);
    expect(echo('INTRUDER', 'PACS', ports.pacsDicom), 'INTRUDER → PACS').to.not.equal(0);
    expect(echo('DPHIANT', 'NOTPACS', ports.pacsDicom), 'DPHIANT → NOTPACS').to.not.equal(0);
  });

  describe('DevOrthanc', function () {
    let client: DevOrthanc;
    let modClient: DevOrthanc;
    const ids = { patientId: 'LAUNCH-PID-1', study: '2.25.7001', series: '2.25.7002', sop: '2.25.7003' };
    let bytes: Buffer;

    before(function () {
      client = new DevOrthanc({ url: pacs!.httpUrl, ...pacs!.auth });
      modClient = new DevOrthanc({ url: modality!.httpUrl, ...modality!.auth });
      bytes = makeDicom(workDir, ids);
    });

    it('uploads, computes the resource id, looks up, downloads, deletes', async function () {
      const up = await client.upload(bytes);
      expect(up.Status).to.equal('Success');
      expect(up.ID).to.equal(orthancInstanceId(ids.patientId, ids.study, ids.series, ids.sop));
      expect((await client.upload(bytes)).Status).to.equal('AlreadyStored');
      expect((await client.statistics()).CountInstances).to.equal(1);
      expect(await client.listInstances()).to.deep.equal([up.ID]);
      expect(await client.lookup(ids.sop)).to.deep.equal([{ ID: up.ID, Path: `/instances/${up.ID}`, Type: 'Instance' }]);
      expect(await client.findStudies({ PatientID: ids.patientId })).to.deep.equal([up.ParentStudy]);
      expect((await client.instanceTags(up.ID)).SOPInstanceUID).to.equal(ids.sop);
      expect(Buffer.compare(await client.instanceFile(up.ID), bytes)).to.equal(0);
      expect(await client.deleteInstance(up.ID)).to.equal(true);
      expect(await client.deleteInstance(up.ID)).to.equal(false);
      expect((await client.statistics()).CountInstances).to.equal(0);
    });

    it('names method, path and status in errors, not the body', async function () {
      const err = await client.upload(Buffer.from('not dicom: DOE^JANE')).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(OrthancHttpError);
      const e = err as OrthancHttpError;
      expect(e.message).to.match(/^Orthanc POST \/instances failed: HTTP 400/);
      expect(e.status).to.equal(400);
      expect(e.message).to.not.include('DOE');
    });

    it('stores from the modality synchronously and as a job; a failed job can be resubmitted', async function () {
      const up = await modClient.upload(bytes);
      const sync = await modClient.storeToModality('pacs', [up.ParentStudy]);
      expect(sync).to.include({ InstancesCount: 1, FailedInstancesCount: 0, RemoteAet: 'PACS' });
      expect((await client.statistics()).CountInstances).to.equal(1);
      expect(await client.deleteAll()).to.equal(1);

      const ref = await modClient.storeToModality('pacs', [up.ID], { asynchronous: true });
      expect((await modClient.waitForJob(ref.ID)).State).to.equal('Success');
      expect((await client.statistics()).CountInstances).to.equal(1);

      // nothing listens on the middleman port: the store job fails, resubmit re-runs it
      const failing = await modClient.storeToModality('middleman', [up.ID], { asynchronous: true, timeoutSec: 5 });
      expect((await modClient.waitForJob(failing.ID)).State).to.equal('Failure');
      await modClient.resubmitJob(failing.ID);
      expect((await modClient.waitForJob(failing.ID)).State).to.equal('Failure');
      const syncErr = await modClient.storeToModality('middleman', [up.ID], { timeoutSec: 5 }).catch((e: unknown) => e);
      expect(syncErr).to.be.instanceOf(OrthancHttpError);
      expect((syncErr as Error).message).to.match(/^Orthanc POST \/modalities\/middleman\/store failed: HTTP 500/);
      await modClient.deleteAll();
      await client.deleteAll();
    });
  });

  // a nested suite, so it runs after the DevOrthanc suite (mocha runs a suite's own tests first)
  describe('lifecycle', function () {
    it('restart() keeps the storage and stop() ends the process', async function () {
      const client = new DevOrthanc({ url: pacs!.httpUrl, ...pacs!.auth });
      await client.upload(makeDicom(workDir, { patientId: 'LAUNCH-PID-2', study: '2.25.8001', series: '2.25.8002', sop: '2.25.8003' }));
      const oldPid = pacs!.pid;
      await pacs!.restart();
      expect(pacs!.pid).to.not.equal(oldPid);
      expect(alive(oldPid)).to.equal(false);
      expect((await client.statistics()).CountInstances).to.equal(1);

      await Promise.all(
        [pacs!, modality!].map(async (p) => {
          const pid = p.pid;
          await p.stop();
          expect(p.running).to.equal(false);
          expect(alive(pid), `pid ${pid} still alive`).to.equal(false);
        }),
      );
      expect(listeners(ports.pacsHttp)).to.be.empty;
      expect(listeners(ports.modDicom)).to.be.empty;
      await pacs!.stop(); // a second stop is harmless
    });
  });
});

describe('dev-stack Orthanc launcher: failures and orphans', function () {
  this.timeout(30_000);
  let workDir: string;

  before(function () {
    if (!have('Orthanc') || !have('gcc')) this.skip();
    workDir = mkdtempSync(path.join(os.tmpdir(), 'dphiant-orthanc-bad-'));
  });

  after(function () {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('refuses a port that is already taken instead of probing the other server', async function () {
    const [httpPort, dicomPort] = await freePorts(2);
    const squatter = net.createServer().listen(httpPort, '127.0.0.1');
    await once(squatter, 'listening');
    try {
      const err = await startOrthanc({ role: 'pacs', workDir, httpPort, dicomPort }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(Error);
      expect((err as Error).message).to.include(`pacs HTTP port ${httpPort}`).and.include('not free');
    } finally {
      squatter.close();
    }
  });

  it('reports an Orthanc that dies during start-up with the tail of its log', async function () {
    const [httpPort, dicomPort] = await freePorts(2);
    const err = await startOrthanc({
      role: 'pacs',
      workDir,
      httpPort,
      dicomPort,
      configOverrides: { DicomModalities: { broken: { AET: 'X' } } },
    }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(Error);
    expect((err as Error).message).to.include('exited during start-up').and.include('String value expected in field: Host');
  });

  it('an Orthanc whose launcher is killed with SIGKILL stops too (no orphan holding the ports)', async function () {
    const [httpPort, dicomPort] = await freePorts(2);
    const launcher = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../tools/devstack/orthanc.js');
    const script =
      `const m = await import(${JSON.stringify(launcher)});` +
      `const o = await m.startOrthanc({ role: 'pacs', workDir: ${JSON.stringify(workDir)}, httpPort: ${httpPort}, dicomPort: ${dicomPort} });` +
      `console.log(o.pid); setInterval(() => {}, 1000);`;
    const node = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(node.stdout!, 'data')) as [Buffer];
    const pid = Number(line.toString().trim());
    expect(alive(pid)).to.equal(true);
    node.kill('SIGKILL');
    const deadline = Date.now() + 15_000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(alive(pid), `orphan Orthanc pid ${pid}`).to.equal(false);
  });
});
