// A worker thread of `dphiant anonymize`: reads, de-identifies, verifies and writes files. Patient and study
// aliases are asked of the main thread, which owns the crosswalk, so every worker sees the same aliases.
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { ALIAS_ID, type AliasSource, type PatientAlias, type PatientIdentity } from '../dicom/identity.js';
import { isValidUid } from '../dicom/uid.js';
import { CharsetError } from '../dicom/values.js';
import { DicomParseError } from '../dicom/walker.js';
import { deidentify } from './deidentify.js';
import { VerificationError } from './gate.js';
import { keyedHash } from './keyed.js';
import { Profile, type Options, type SiteProfile } from './profile.js';
import type { PixelPolicy } from './pixels/clean.js';
import { PixelRiskError } from './pixels/types.js';

export interface WorkerSetup {
  key: string; // hex
  options: Partial<Options>;
  site: SiteProfile;
  pixels: PixelPolicy;
}

export interface FileTask {
  id: number;
  input: string;
  /** Mirror layout: the output path; alias layout: the output folder (the file goes to alias/study/series/sop.dcm). */
  output: string;
  layout: 'mirror' | 'alias';
}

export type FileOutcome =
  | { id: number; status: 'done'; output: string; uids: [string, string][]; patient: [string, string]; gateReport?: string }
  | { id: number; status: 'rejected' | 'skipped' | 'failed'; reason: string };

export type WorkerRequest = { what: 'patient'; id: number; identity: PatientIdentity } | { what: 'study'; id: number; patient: PatientAlias; study: { studyInstanceUid: string; accessionNumber: string } };
export type WorkerMessage = ({ kind: 'outcome' } & FileOutcome) | ({ kind: 'ask'; ask: number } & WorkerRequest);
export type MainMessage = { kind: 'task'; task: FileTask } | { kind: 'answer'; ask: number; value: unknown; error?: string };

const setup = workerData as WorkerSetup;
const profile = new Profile(setup.options, setup.site, setup.pixels);
const key = Buffer.from(setup.key, 'hex');
const port = parentPort!;

/** Output folders this worker already created (one mkdir per folder, not per file). */
const madeDirs = new Set<string>();

let nextAsk = 1;
const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
function ask<T>(req: WorkerRequest): Promise<T> {
  const n = nextAsk++;
  return new Promise<T>((resolve, reject) => {
    waiting.set(n, { resolve: resolve as (v: unknown) => void, reject });
    port.postMessage({ kind: 'ask', ask: n, ...req } satisfies WorkerMessage);
  });
}

function aliasesFor(id: number): AliasSource {
  return {
    patient: (identity) => ask<PatientAlias>({ what: 'patient', id, identity }),
    study: (patient, study) => ask<string>({ what: 'study', id, patient, study }),
  };
}

/**
 * One folder or file name of the alias layout: the value itself when it is a UID (or an alias ID), else a keyed
 * stand-in, the same for the same value. With Retain UIDs the UIDs are the input's, which may hold `/` or `..`.
 */
function pathComponent(value: string, valid: (v: string) => boolean): string {
  return valid(value) ? value : `invalid-${keyedHash(key, `alias layout\0${value}`, 32)}`;
}

/** <out>/<alias>/<study>/<series>/<sop>.dcm, never outside <out>. */
function aliasLayoutPath(out: string, aliasId: string, study: string, series: string, sop: string): string {
  const uid = (v: string) => pathComponent(v, isValidUid);
  const file = path.join(out, pathComponent(aliasId, (v) => ALIAS_ID.test(v)), uid(study), uid(series), `${uid(sop)}.dcm`);
  const rel = path.relative(path.resolve(out), path.resolve(file));
  if (path.isAbsolute(rel) || rel.split(path.sep).includes('..')) throw new Error('the alias layout path would leave the output folder');
  return file;
}

async function handle(task: FileTask): Promise<FileOutcome> {
  const file = await readFile(task.input);
  if (file.length < 132 || file.toString('latin1', 128, 132) !== 'DICM') return { id: task.id, status: 'skipped', reason: 'not a DICOM PS3.10 file' };
  try {
    const d = await deidentify(file, profile, key, aliasesFor(task.id));
    const output =
      task.layout === 'alias' ? aliasLayoutPath(task.output, d.alias.aliasId, d.report.studyInstanceUid, d.report.seriesInstanceUid, d.report.sopInstanceUid) : task.output;
    const dir = path.dirname(output);
    if (!madeDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      madeDirs.add(dir);
    }
    const fh = await open(output, 'w');
    try {
      await fh.writev(d.chunks); // the unchanged slices of the input and the new elements, in one vectored write
    } finally {
      await fh.close();
    }
    const gateReport = d.gateReport.length ? d.gateReport.map((h) => `${h.kind} in ${h.path}`).join('; ') : undefined;
    return { id: task.id, status: 'done', output, uids: [...d.report.uids], patient: [d.identity.patientId, d.alias.aliasId], gateReport };
  } catch (e) {
    if (e instanceof VerificationError || e instanceof PixelRiskError) return { id: task.id, status: 'rejected', reason: e.message };
    if (e instanceof CharsetError) return { id: task.id, status: 'rejected', reason: CharsetError.REASON };
    if (e instanceof DicomParseError) return { id: task.id, status: 'failed', reason: `unreadable DICOM: ${e.message}` };
    return { id: task.id, status: 'failed', reason: (e as Error).message };
  }
}

port.on('message', (m: MainMessage) => {
  if (m.kind === 'answer') {
    const w = waiting.get(m.ask);
    waiting.delete(m.ask);
    if (m.error) w?.reject(new Error(m.error));
    else w?.resolve(m.value);
    return;
  }
  handle(m.task).then(
    (outcome) => port.postMessage({ kind: 'outcome', ...outcome } satisfies WorkerMessage),
    (e: Error) => port.postMessage({ kind: 'outcome', id: m.task.id, status: 'failed', reason: e.message } satisfies WorkerMessage),
  );
});
