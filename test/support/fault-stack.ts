// The real stack for fault and outage tests: Orthanc modality and PACS, the middleman as a child process
// (`dphiant serve`), the crosswalk on SQLite or FerretDB, optionally the PACS REST API behind a proxy the test can
// take down (test/support/rest-proxy.ts). outcome() gives the numbers every such test prints and checks.
import { expect } from 'chai';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startOrthanc, type OrthancProcess } from '../../tools/devstack/orthanc.js';
import { DevOrthanc } from '../../tools/devstack/orthanc-rest.js';
import { Journal, journalPath } from '../../src/pipeline/journal.js';
import { generateStudies } from '../../tools/synth/generate.js';
import { devKeyPath, readKeyFile } from '../../src/keys.js';
import { spawnMiddleman, type MiddlemanProcess } from './child.js';
import { pacsInventory } from './pipeline.js';
import { freePorts } from './ports.js';
import { startRestProxy, type RestProxy } from './rest-proxy.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FaultStack {
  work: string;
  dataDir: string;
  /** The middleman's DICOM port and web UI. */
  port: number;
  webUrl: string;
  pacs: OrthancProcess;
  pacsRest: DevOrthanc;
  modalityRest: DevOrthanc;
  /** The proxy the middleman reaches the PACS REST API through (opts.restProxy). */
  restProxy?: RestProxy;
  journal: Journal;
  sent: number;
  studies: string[];
  mm?: MiddlemanProcess;
  /** `env`: settings of this start only, over the stack's. */
  startMiddleman(env?: Record<string, string>): Promise<MiddlemanProcess>;
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

export interface FaultStackOptions {
  /** Put the PACS REST API behind a proxy the test can take down or make answer 401. */
  restProxy?: boolean;
}

export async function faultStack(instances: number, env: Record<string, string> = {}, opts: FaultStackOptions = {}): Promise<FaultStack> {
  const work = mkdtempSync(path.join(tmpdir(), 'dphiant-faults-'));
  const [mmPort, pacsHttp, pacsDicom, modHttp, modDicom, webPort, proxyPort] = (await freePorts(7)) as [number, number, number, number, number, number, number];
  const middleman = { aet: 'DPHIANT', host: '127.0.0.1', port: mmPort };
  const pacsOptions = { role: 'pacs' as const, workDir: path.join(work, 'pacs'), httpPort: pacsHttp, dicomPort: pacsDicom, middleman };
  const pacs = await startOrthanc(pacsOptions);
  const modality = await startOrthanc({ role: 'modality', workDir: path.join(work, 'modality'), httpPort: modHttp, dicomPort: modDicom, middleman });
  const auth = { username: 'demo', password: 'demo' };
  const pacsRest = new DevOrthanc({ url: pacs.httpUrl, ...auth });
  const modalityRest = new DevOrthanc({ url: modality.httpUrl, ...auth });
  if (instances > 0) {
    const perSeries = Math.ceil(instances / 10);
    const manifest = await generateStudies({ outDir: path.join(work, 'in'), patients: 5, studiesPerPatient: 2, seriesPerStudy: 1, instancesPerSeries: perSeries, rows: 32, cols: 32, seed: 500 });
    for (const i of manifest.instances.slice(0, instances)) await modalityRest.upload(readFileSync(i.path));
  }
  const dataDir = path.join(work, 'data');
  const restProxy = opts.restProxy ? await startRestProxy(pacs.httpUrl, proxyPort) : undefined;
  const mmEnv = {
    DPHIANT_DATA_DIR: dataDir,
    DPHIANT_PACS_PORT: String(pacsDicom),
    DPHIANT_PACS_URL: restProxy?.url ?? pacs.httpUrl,
    DPHIANT_WEB_PORT: String(webPort),
    DPHIANT_PIPELINE_RECONCILE_INTERVAL_MS: '5000',
    ...env,
  };
  let jobId: string | undefined;
  const s: FaultStack = {
    work,
    dataDir,
    port: mmPort,
    webUrl: `http://127.0.0.1:${webPort}`,
    restProxy,
    pacs,
    pacsRest,
    modalityRest,
    journal: undefined as unknown as Journal,
    sent: instances,
    studies: await modalityRest.findStudies({}),
    async startMiddleman(env = {}) {
      s.mm = await spawnMiddleman({ ...mmEnv, ...env }, mmPort);
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
      await restProxy?.close();
      await Promise.all([modality.stop(), s.pacs.stop()]);
    },
  };
  return s;
}

/** The numbers every fault test prints and checks. */
export async function outcome(s: FaultStack) {
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

export function expectClean(n: Awaited<ReturnType<typeof outcome>>) {
  expect(n.rawLeft, 'raw instances left in the PACS').to.equal(0);
  expect(n.duplicates, 'duplicates in the PACS').to.equal(0);
  expect(n.lost, 'instances lost').to.equal(0);
  expect(n.deidentifiedInPacs).to.equal(n.sent);
  expect(n.journal.QUARANTINED, 'nothing quarantined').to.equal(0);
}
