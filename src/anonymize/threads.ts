// The de-identification worker threads (./worker.ts) as `dphiant anonymize` (./batch.ts) and the pipeline
// (./pool.ts) both use them: started before their setup is known, set up with the profile's settings and the site
// key (each builds its own profile), and answered their patient and study alias questions by this thread, which owns
// the crosswalk. Loads nothing of the engine: the batch's main thread stays light.
import { Worker } from 'node:worker_threads';
import type { AliasSource } from '../dicom/identity.js';
import type { MainMessage, WorkerMessage, WorkerSetup } from './worker.js';

/** Worker threads, started at once: their start-up (loading the engine) overlaps whatever the caller does next. */
export function startWorkers(count: number): Worker[] {
  return Array.from({ length: Math.max(1, Math.floor(count) || 1) }, () => new Worker(new URL('./worker.js', import.meta.url)));
}

/** Sends every worker its setup; rejects with the reason (a bad site profile) when one cannot build the profile. */
export function setUp(workers: Worker[], setup: WorkerSetup): Promise<void> {
  return Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve, reject) => {
          const onMessage = (m: WorkerMessage) => {
            if (m.kind !== 'ready' && m.kind !== 'unusable') return;
            w.off('message', onMessage).off('error', reject);
            if (m.kind === 'ready') resolve();
            else reject(new Error(m.reason));
          };
          w.on('message', onMessage).on('error', reject);
          w.postMessage({ kind: 'setup', setup } satisfies MainMessage);
        }),
    ),
  ).then(() => undefined);
}

/**
 * Answers a worker's alias questions from `aliases`. A failed answer reaches the worker as its ask number; the
 * failure itself (a classified error of the caller's) is kept here for `failureOf`, the last ones only.
 */
export class AliasAnswers {
  private readonly failures = new Map<number, unknown>();

  constructor(private readonly aliases: AliasSource) {}

  answer(w: Worker, m: Extract<WorkerMessage, { kind: 'ask' }>): void {
    const answer: Promise<unknown> = m.what === 'patient' ? this.aliases.patient(m.identity) : this.aliases.study(m.patient, m.study);
    answer.then(
      (value) => w.postMessage({ kind: 'answer', ask: m.ask, value } satisfies MainMessage),
      (e: unknown) => {
        this.failures.set(m.ask, e);
        if (this.failures.size > KEPT_FAILURES) this.failures.delete(this.failures.keys().next().value!);
        w.postMessage({ kind: 'answer', ask: m.ask, value: null, error: (e as Error)?.message ?? String(e) } satisfies MainMessage);
      },
    );
  }

  failureOf(ask: number): unknown {
    return this.failures.get(ask);
  }
}

const KEPT_FAILURES = 1000;
