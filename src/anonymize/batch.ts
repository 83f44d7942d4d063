// `dphiant anonymize` on files and folders: a pool of worker threads, the crosswalk (alias source) in this
// thread, a progress line on a terminal, a summary, and the old→new mapping CSVs the MIDI-B validation script
// reads (uid_mapping.csv and patid_mapping.csv, columns id_old,id_new).
import { chmodSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import type { AliasSource } from '../dicom/identity.js';
import type { Options, profileFromSettings } from './profile.js';
import { AliasAnswers, setUp, startWorkers } from './threads.js';
import type { FileOutcome, FileTask, MainMessage, WorkerMessage, WorkerSetup } from './worker.js';

export interface BatchOptions {
  inputs: string[];
  out: string;
  /** Where the mapping CSVs go (they hold original IDs and UIDs): default `<out>.mappings`. */
  mappings?: string;
  layout: 'mirror' | 'alias';
  jobs: number;
  key: Buffer;
  /** What each worker builds its profile from (a bad site profile fails the batch before any file is read). */
  profile: ProfileSettings;
  aliases: AliasSource;
  progress?: (done: number, total: number, perSecond: number) => void;
}

export interface ProfileSettings {
  settings: Parameters<typeof profileFromSettings>[0];
  flags: Partial<Options>;
}

export interface BatchSummary {
  files: number;
  deidentified: number;
  rejected: { input: string; reason: string }[];
  failed: { input: string; reason: string }[];
  skipped: { input: string; reason: string }[];
  /** What the gate found in files it did not reject (a "default": "keep" profile keeps identifying values on purpose). */
  reported: { input: string; reason: string }[];
  seconds: number;
  perSecond: number;
  mappings: string;
}

/** Every file under the inputs, with its path relative to the input it was found under. */
export function listFiles(inputs: string[]): { file: string; relative: string }[] {
  const out: { file: string; relative: string }[] = [];
  for (const input of inputs) {
    const st = statSync(input);
    if (st.isFile()) {
      out.push({ file: input, relative: path.basename(input) });
      continue;
    }
    const walkDir = (dir: string) => {
      // code-unit order: the same on every machine (localeCompare follows the locale, and its first call, loading
      // ICU's collator, took longer than listing 500 files)
      for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
        const p = path.join(dir, entry.name);
        if (entry.isDirectory()) walkDir(p);
        else if (entry.isFile()) out.push({ file: p, relative: path.join(path.basename(input), path.relative(input, p)) });
      }
    };
    walkDir(input);
  }
  return out;
}

function csv(rows: Iterable<[string, string]>): string {
  const q = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  let text = 'id_old,id_new\n';
  for (const [a, b] of rows) text += `${q(a)},${q(b)}\n`;
  return text;
}

/** Files per chunk sent to a worker, at most (fewer near the end, so the workers finish together). */
const CHUNK = 16;

export async function runBatch(o: BatchOptions, started: Worker[] = startWorkers(o.jobs)): Promise<BatchSummary> {
  const files = listFiles(o.inputs);
  const begun = process.hrtime.bigint();
  const summary: BatchSummary = { files: files.length, deidentified: 0, rejected: [], failed: [], skipped: [], reported: [], seconds: 0, perSecond: 0, mappings: o.mappings ?? `${o.out.replace(/\/+$/, '')}.mappings` };
  const uids = new Map<string, string>();
  const patients = new Map<string, string>();

  const setup: WorkerSetup = { key: o.key.toString('hex'), rememberAliases: true, ...o.profile };
  const answers = new AliasAnswers(o.aliases);
  // no more workers than files
  const workers = started.slice(0, Math.max(1, Math.min(started.length, files.length)));
  void Promise.all(started.slice(workers.length).map((w) => w.terminate()));
  let next = 0;
  let done = 0;

  try {
    // every worker builds the profile first: a bad site profile fails here, before anything is written
    await setUp(workers, setup);
    mkdirSync(o.out, { recursive: true });
    await new Promise<void>((resolve, reject) => {
      if (files.length === 0) return resolve();
      const dispatch = (w: Worker) => {
        if (next >= files.length) return;
        const take = Math.min(CHUNK, Math.ceil((files.length - next) / (2 * workers.length)));
        const tasks: FileTask[] = files.slice(next, next + take).map((f, i) => ({ id: next + i, input: f.file, output: o.layout === 'mirror' ? path.join(o.out, f.relative) : o.out, layout: o.layout }));
        next += take;
        w.postMessage({ kind: 'tasks', tasks } satisfies MainMessage);
      };
      const record = (m: FileOutcome) => {
        const input = files[m.id]!.file;
        if (m.status === 'done') {
          summary.deidentified++;
          for (const [a, b] of m.uids) uids.set(a, b);
          if (m.patient[0]) patients.set(m.patient[0], m.patient[1]);
          if (m.gateReport) summary.reported.push({ input, reason: m.gateReport });
        } else summary[m.status].push({ input, reason: m.reason });
        done++;
      };
      for (const w of workers) {
        w.on('message', (m: WorkerMessage) => {
          if (m.kind === 'ask') return answers.answer(w, m);
          if (m.kind !== 'outcomes') return;
          for (const outcome of m.outcomes) record(outcome);
          o.progress?.(done, files.length, done / (Number(process.hrtime.bigint() - begun) / 1e9));
          if (done === files.length) resolve();
          else if (m.more) dispatch(w);
        });
        w.on('error', reject);
        w.on('exit', () => {
          if (done < files.length) reject(new Error('a worker thread stopped before the batch was done'));
        });
        dispatch(w);
      }
    });
  } finally {
    await Promise.all(started.map((w) => w.terminate()));
  }

  summary.seconds = Number(process.hrtime.bigint() - begun) / 1e9;
  summary.perSecond = summary.deidentified / summary.seconds;
  mkdirSync(summary.mappings, { recursive: true, mode: 0o700 });
  chmodSync(summary.mappings, 0o700);
  writeFileSync(path.join(summary.mappings, 'uid_mapping.csv'), csv(uids), { mode: 0o600 });
  writeFileSync(path.join(summary.mappings, 'patid_mapping.csv'), csv(patients), { mode: 0o600 });
  return summary;
}

export const defaultJobs = () => Math.max(1, os.availableParallelism());
