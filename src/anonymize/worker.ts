// A de-identification worker thread (started and set up by ./threads.ts). For `dphiant anonymize` it reads,
// de-identifies, verifies and writes files, one at a time; it is started before the batch is known (its start-up
// overlaps the main thread's reading of the configuration and the folder) and gets its setup in the first message.
// Files come in chunks and outcomes go back in chunks: a message per file woke the main thread 2 × N times. For the
// pipeline it de-identifies instances sent as bytes and answers with the output's bytes, several at once (an instance
// may wait for OCR). Patient and study aliases are asked of the main thread, which owns the crosswalk, so every
// worker sees the same aliases; a batch asks each once per worker, the pipeline for every instance.
import { closeSync, fstatSync, mkdirSync, openSync, readSync, writevSync } from 'node:fs';
import path from 'node:path';
import { parentPort } from 'node:worker_threads';
import { ALIAS_ID, type AliasSource, type PatientAlias, type PatientIdentity } from '../dicom/identity.js';
import { isValidUid } from '../dicom/uid.js';
import { CharsetError } from '../dicom/values.js';
import { DicomParseError } from '../dicom/walker.js';
import { deidentify, deidentifyDataset } from './deidentify.js';
import { VerificationError } from './gate.js';
import { keyedHash } from './keyed.js';
import { profileFromSettings, type Profile } from './profile.js';
import type { ProfileSettings } from './batch.js';
import { PixelRiskError } from './pixels/types.js';

export interface WorkerSetup extends ProfileSettings {
  key: string; // hex
  /**
   * Ask each patient and study once (a batch), or for every instance (the pipeline: the crosswalk is the
   * authority while the server runs, and its outage holds the instances that need it, as the design says).
   */
  rememberAliases: boolean;
}

export interface FileTask {
  id: number;
  input: string;
  /** Mirror layout: the output path; alias layout: the output folder (the file goes to alias/study/series/sop.dcm). */
  output: string;
  layout: 'mirror' | 'alias';
}

/** One instance of the pipeline: a PS3.10 file, or a bare data set in `datasetTs`. */
export interface DatasetTask {
  id: number;
  bytes: Uint8Array;
  datasetTs?: string;
}

/** What the pipeline needs of a de-identified instance: the PS3.10 file and what it is filed under. */
export interface DatasetResult {
  bytes: Buffer;
  aliasId: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  pixels: string;
}

/** A failure as it crosses threads: the error class's name and own fields, or the ask whose answer failed. */
export interface ThreadError {
  name: string;
  message: string;
  fields: Record<string, unknown>;
  ask?: number;
}

export type FileOutcome =
  | { id: number; status: 'done'; uids: [string, string][]; patient: [string, string]; gateReport?: string }
  | { id: number; status: 'rejected' | 'skipped' | 'failed'; reason: string };

export type WorkerRequest = { what: 'patient'; identity: PatientIdentity } | { what: 'study'; patient: PatientAlias; study: { studyInstanceUid: string; accessionNumber: string } };
/** `more`: this worker's queue is running low, send the next chunk (asked once until a chunk comes). */
export type WorkerMessage =
  | { kind: 'ready' }
  /** The profile could not be built (a bad site profile): the message names the file and key, no value of an instance. */
  | { kind: 'unusable'; reason: string }
  | { kind: 'outcomes'; outcomes: FileOutcome[]; more: boolean }
  | ({ kind: 'ask'; ask: number } & WorkerRequest)
  | { kind: 'dataset-done'; id: number; result?: Omit<DatasetResult, 'bytes'> & { bytes: Uint8Array }; error?: ThreadError };
export type MainMessage =
  | { kind: 'setup'; setup: WorkerSetup }
  | { kind: 'tasks'; tasks: FileTask[] }
  | { kind: 'dataset'; task: DatasetTask }
  | { kind: 'answer'; ask: number; value: unknown; error?: string };

/** Files the worker asks for more at (so the next chunk arrives before it runs dry), and outcomes it sends at most. */
export const LOW_WATER = 4;
const FLUSH_AT = 16;

let profile: Profile;
let key: Buffer;
const port = parentPort!;

/** Output folders this worker already created (one mkdir per folder, not per file). */
const madeDirs = new Set<string>();

/** A failed alias answer: names its ask, so the main thread rethrows its own error for it. */
class AskFailed extends Error {
  constructor(
    readonly ask: number,
    message: string,
  ) {
    super(message);
  }
}

let nextAsk = 1;
const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
function ask<T>(req: WorkerRequest): Promise<T> {
  const n = nextAsk++;
  return new Promise<T>((resolve, reject) => {
    waiting.set(n, { resolve: resolve as (v: unknown) => void, reject });
    port.postMessage({ kind: 'ask', ask: n, ...req } satisfies WorkerMessage);
  });
}

/** The answer already asked for under `key`, else a new ask (forgotten if it fails, so a later file asks again). */
function remembered<T>(answers: Map<string, Promise<T>>, key: string, get: () => Promise<T>): Promise<T> {
  let answer = answers.get(key);
  if (!answer) {
    // a server's thread lives for months: a bounded memory, forgotten at once when full (asked again, same answer)
    if (answers.size >= REMEMBERED_MAX) answers.clear();
    answer = get();
    answers.set(key, answer);
    answer.catch(() => answers.delete(key));
  }
  return answer;
}

const REMEMBERED_MAX = 10_000;

// The crosswalk never changes an alias it gave (insert-or-get, no deletes), so each patient and study costs this
// worker one round trip to the main thread, not two per file. Keys: the whole identity (a subset of what the
// crosswalk's match key treats as one patient) and what the crosswalk keys a study by.
const patientAliases = new Map<string, Promise<PatientAlias>>();
const studyAliases = new Map<string, Promise<string>>();
let remember = true;
const aliases: AliasSource = {
  patient: (identity) => {
    const get = () => ask<PatientAlias>({ what: 'patient', identity });
    if (!remember) return get();
    const key = [identity.patientId, identity.issuerOfPatientId, identity.name, identity.sex, identity.birthDate, identity.studyInstanceUid ?? ''].join('\0');
    return remembered(patientAliases, key, get);
  },
  study: (patient, study) => {
    const get = () => ask<string>({ what: 'study', patient, study });
    return remember ? remembered(studyAliases, `${patient.aliasId}\0${study.studyInstanceUid}`, get) : get();
  },
};

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

/** Files larger than this are read into a buffer of their own, not kept for the next file. */
const REUSE_UP_TO = 64 * 1024 * 1024;
let readBuffer = Buffer.allocUnsafeSlow(0);

/**
 * The whole file, in this worker's read buffer when it fits: a fresh half-megabyte buffer per file cost page faults
 * and garbage collections. Valid until the next call: tasks run one at a time, and nothing of a task keeps a slice
 * of its input (outcomes hold strings).
 */
function readWhole(file: string): Buffer {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    let into = readBuffer;
    if (size > into.length) {
      into = Buffer.allocUnsafeSlow(size > REUSE_UP_TO ? size : Math.max(size, Math.min(2 * into.length, REUSE_UP_TO)));
      if (size <= REUSE_UP_TO) readBuffer = into;
    }
    let at = 0;
    while (at < size) {
      const n = readSync(fd, into, at, size - at, at);
      if (n === 0) break; // shrank while read: what is there
      at += n;
    }
    return into.subarray(0, at);
  } finally {
    closeSync(fd);
  }
}

/** The unchanged slices of the input and the new elements, in one vectored write. */
function writeChunks(file: string, chunks: Uint8Array[], byteLength: number): void {
  const fd = openSync(file, 'w');
  try {
    if (writevSync(fd, chunks) !== byteLength) throw new Error('short write');
  } finally {
    closeSync(fd);
  }
}

async function handle(task: FileTask): Promise<FileOutcome> {
  const file = readWhole(task.input);
  if (file.length < 132 || file.toString('latin1', 128, 132) !== 'DICM') return { id: task.id, status: 'skipped', reason: 'not a DICOM PS3.10 file' };
  try {
    const d = await deidentify(file, profile, key, aliases);
    const output =
      task.layout === 'alias' ? aliasLayoutPath(task.output, d.alias.aliasId, d.report.studyInstanceUid, d.report.seriesInstanceUid, d.report.sopInstanceUid) : task.output;
    const dir = path.dirname(output);
    if (!madeDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      madeDirs.add(dir);
    }
    writeChunks(output, d.chunks, d.byteLength);
    const gateReport = d.gateReport.length ? d.gateReport.map((h) => `${h.kind} in ${h.path}`).join('; ') : undefined;
    return { id: task.id, status: 'done', uids: [...d.report.uids], patient: [d.identity.patientId, d.alias.aliasId], gateReport };
  } catch (e) {
    if (e instanceof VerificationError || e instanceof PixelRiskError) return { id: task.id, status: 'rejected', reason: e.message };
    if (e instanceof CharsetError) return { id: task.id, status: 'rejected', reason: CharsetError.REASON };
    if (e instanceof DicomParseError) return { id: task.id, status: 'failed', reason: `unreadable DICOM: ${e.message}` };
    return { id: task.id, status: 'failed', reason: (e as Error).message };
  }
}

/** Why a task failed, as it crosses to the main thread (./threads.ts rebuilds the error). */
function threadError(e: unknown): ThreadError {
  const err = e instanceof Error ? e : new Error(String(e));
  // own fields (hits, step, offset…): name and message are not enumerable unless a class set them, and sent apart
  return { name: err.name, message: err.message, fields: { ...err }, ask: e instanceof AskFailed ? e.ask : undefined };
}

async function handleDataset(task: DatasetTask): Promise<void> {
  try {
    const bytes = Buffer.from(task.bytes.buffer, task.bytes.byteOffset, task.bytes.byteLength);
    const d = task.datasetTs ? await deidentifyDataset(bytes, task.datasetTs, profile, key, aliases) : await deidentify(bytes, profile, key, aliases);
    // one buffer of its own, handed over without a copy
    const out = new Uint8Array(new ArrayBuffer(d.byteLength));
    let at = 0;
    for (const c of d.chunks) {
      out.set(c, at);
      at += c.length;
    }
    const { studyInstanceUid, seriesInstanceUid, sopInstanceUid } = d.report;
    const result = { bytes: out, aliasId: d.alias.aliasId, studyInstanceUid, seriesInstanceUid, sopInstanceUid, pixels: d.pixels.kind };
    port.postMessage({ kind: 'dataset-done', id: task.id, result } satisfies WorkerMessage, [out.buffer]);
  } catch (e) {
    port.postMessage({ kind: 'dataset-done', id: task.id, error: threadError(e) } satisfies WorkerMessage);
  }
}

const queue: FileTask[] = [];
let outcomes: FileOutcome[] = [];
let running = false;
let asked = false;

function flush(): void {
  const more = !asked && queue.length <= LOW_WATER;
  if (more) asked = true;
  if (outcomes.length || more) port.postMessage({ kind: 'outcomes', outcomes, more } satisfies WorkerMessage);
  outcomes = [];
}

async function run(): Promise<void> {
  running = true;
  while (queue.length) {
    const task = queue.shift()!;
    outcomes.push(await handle(task).catch((e: Error): FileOutcome => ({ id: task.id, status: 'failed', reason: e.message })));
    if (queue.length === 0 || outcomes.length >= FLUSH_AT || (!asked && queue.length <= LOW_WATER)) flush();
  }
  running = false;
}

port.on('message', (m: MainMessage) => {
  if (m.kind === 'answer') {
    const w = waiting.get(m.ask);
    waiting.delete(m.ask);
    if (m.error) w?.reject(new AskFailed(m.ask, m.error));
    else w?.resolve(m.value);
  } else if (m.kind === 'setup') {
    try {
      profile = profileFromSettings(m.setup.settings, m.setup.flags).profile;
      key = Buffer.from(m.setup.key, 'hex');
      remember = m.setup.rememberAliases;
      port.postMessage({ kind: 'ready' } satisfies WorkerMessage);
    } catch (e) {
      port.postMessage({ kind: 'unusable', reason: (e as Error).message } satisfies WorkerMessage);
    }
  } else if (m.kind === 'dataset') void handleDataset(m.task);
  else {
    asked = false;
    queue.push(...m.tasks);
    if (!running) void run();
  }
});
