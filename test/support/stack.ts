// The dev-stack topology on free ports for one test file: Orthanc PACS (+ modality), an in-process middleman.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startOrthanc, type ModalityEntry, type OrthancProcess } from '../../tools/devstack/orthanc.js';
import { DevOrthanc } from '../../tools/devstack/orthanc-rest.js';
import { startTestMiddleman, type TestMiddleman } from './middleman.js';
import { freePorts } from './ports.js';

export interface TestStack {
  work: string;
  pacs: OrthancProcess;
  pacsRest: DevOrthanc;
  modality?: OrthancProcess;
  modalityRest?: DevOrthanc;
  mm: TestMiddleman;
  /** Starts the PACS again after pacs.stop() (same ports, same storage). */
  startPacs(): Promise<void>;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Start an Orthanc modality too. */
  modality?: boolean;
  /** More DICOM peers the modality knows (e.g. a capture). */
  modalityPeers?: Record<string, ModalityEntry>;
  /** DPHIANT_* settings of the middleman. */
  env?: Record<string, string>;
  /** Write the middleman's log (debug level) to this file. */
  logFile?: string;
  /** Other top-level keys of the PACS's and the modality's Orthanc configuration (e.g. their DICOM TLS). */
  pacsConfig?: Record<string, unknown>;
  modalityConfig?: Record<string, unknown>;
}

export async function startStack(opts: StackOptions = {}): Promise<TestStack> {
  const work = mkdtempSync(path.join(tmpdir(), 'dphiant-stack-'));
  const [mmPort, pacsHttp, pacsDicom, modHttp, modDicom] = await freePorts(5);
  const middleman = { aet: 'DPHIANT', host: '127.0.0.1', port: mmPort! };
  const pacsOpts = {
    role: 'pacs' as const,
    workDir: path.join(work, 'pacs'),
    httpPort: pacsHttp,
    dicomPort: pacsDicom,
    middleman,
    // storescu as a second, direct sender: the benchmark's and tests' reference path
    extraModalities: { direct: { AET: 'STORESCU', Host: '127.0.0.1', Port: 1, AllowStore: true, AllowEcho: true } },
    ...(opts.pacsConfig ? { configOverrides: opts.pacsConfig } : {}),
  };
  const stack: Partial<TestStack> & { work: string } = { work };
  try {
    stack.pacs = await startOrthanc(pacsOpts);
    stack.pacsRest = new DevOrthanc({ url: stack.pacs.httpUrl, username: 'demo', password: 'demo' });
    if (opts.modality) {
      stack.modality = await startOrthanc({ role: 'modality', workDir: path.join(work, 'modality'), httpPort: modHttp, dicomPort: modDicom, middleman, extraModalities: opts.modalityPeers, ...(opts.modalityConfig ? { configOverrides: opts.modalityConfig } : {}) });
      stack.modalityRest = new DevOrthanc({ url: stack.modality.httpUrl, username: 'demo', password: 'demo' });
    }
    stack.mm = await startTestMiddleman(
      { DPHIANT_PACS_PORT: String(pacsDicom), DPHIANT_PACS_URL: stack.pacs.httpUrl, ...opts.env },
      mmPort,
      opts.logFile,
    );
  } catch (e) {
    await stack.mm?.close();
    await stack.modality?.stop();
    await stack.pacs?.stop();
    throw e;
  }
  const s = stack as TestStack;
  s.startPacs = async () => {
    s.pacs = await startOrthanc(pacsOpts);
  };
  s.stop = async () => {
    await s.mm.close();
    await Promise.all([s.modality?.stop(), s.pacs.stop()]);
  };
  return s;
}
