// The pipeline's engine in worker threads (./threads.ts, ./worker.ts), off the event loop that serves the SCP:
// C-ECHO, new associations and the forwarding of other instances are answered while instances are parsed, cleaned,
// de-identified and verified.
import type { Worker } from 'node:worker_threads';
import type { AliasSource } from '../dicom/identity.js';
import { CharsetError } from '../dicom/values.js';
import { DicomParseError } from '../dicom/walker.js';
import { VerificationError } from './gate.js';
import { PixelRiskError } from './pixels/types.js';
import { AliasAnswers, setUp, startWorkers } from './threads.js';
import type { DatasetResult, MainMessage, ThreadError, WorkerMessage, WorkerSetup } from './worker.js';

/** A de-identification thread stopped (a crash, or the pool closed) before it answered: not the instance's fault. */
export class ThreadStoppedError extends Error {
  constructor() {
    super('a de-identification thread stopped before it answered');
    this.name = 'ThreadStoppedError';
  }
}

/** The error classes a thread's failure is rebuilt as, so that callers classify it as if it had been thrown here. */
const ERROR_CLASSES: Record<string, { prototype: Error }> = { VerificationError, PixelRiskError, DicomParseError, CharsetError };

function rebuild(e: ThreadError, answers: AliasAnswers): unknown {
  if (e.ask !== undefined) {
    const original = answers.failureOf(e.ask);
    if (original !== undefined) return original;
  }
  const cls = ERROR_CLASSES[e.name];
  return Object.assign(Object.create((cls ?? Error).prototype) as Error, e.fields, { name: e.name, message: e.message });
}

interface Thread {
  worker: Worker;
  pending: Map<number, { resolve: (r: DatasetResult) => void; reject: (e: unknown) => void }>;
}

/**
 * The pipeline's engine: `deidentify` runs one instance in the least busy thread. A thread that dies fails its
 * instances with ThreadStoppedError and is replaced.
 */
export class DeidentifyThreads {
  private readonly threads: Thread[] = [];
  private readonly answers: AliasAnswers;
  private nextId = 1;
  private closed = false;
  private readonly ready: Promise<void>;

  constructor(
    count: number,
    private readonly setup: WorkerSetup,
    aliases: AliasSource,
  ) {
    this.answers = new AliasAnswers(aliases);
    const started = startWorkers(count);
    this.ready = setUp(started, setup);
    this.ready.catch(() => undefined); // the caller learns it from whenReady() or deidentify()
    for (const w of started) this.threads.push(this.adopt(w));
  }

  /** Resolves once every thread built its profile; rejects with the reason when one could not. */
  whenReady(): Promise<void> {
    return this.ready;
  }

  private adopt(worker: Worker): Thread {
    const t: Thread = { worker, pending: new Map() };
    worker.on('message', (m: WorkerMessage) => {
      if (m.kind === 'ask') this.answers.answer(worker, m);
      else if (m.kind === 'dataset-done') {
        const p = t.pending.get(m.id);
        t.pending.delete(m.id);
        if (m.result) p?.resolve({ ...m.result, bytes: Buffer.from(m.result.bytes.buffer, m.result.bytes.byteOffset, m.result.bytes.byteLength) });
        else p?.reject(rebuild(m.error!, this.answers));
      }
    });
    // an 'error' is followed by 'exit'
    worker.on('error', () => undefined);
    worker.on('exit', () => {
      for (const p of t.pending.values()) p.reject(new ThreadStoppedError());
      t.pending.clear();
      const at = this.threads.indexOf(t);
      if (at < 0 || this.closed) return;
      const fresh = startWorkers(1);
      void setUp(fresh, this.setup).catch(() => undefined);
      this.threads[at] = this.adopt(fresh[0]!);
    });
    return t;
  }

  /**
   * De-identifies a PS3.10 file, or a bare data set in `datasetTs`. Fails as deidentify() does (the same error
   * classes, the caller's own alias failures as they were thrown), or with ThreadStoppedError. Takes `bytes`: when
   * they span an ArrayBuffer of their own, that buffer moves to the thread (no copy) and `bytes` is empty after.
   */
  async deidentify(bytes: Buffer, datasetTs?: string): Promise<DatasetResult> {
    await this.ready;
    if (this.closed) throw new ThreadStoppedError();
    const t = this.threads.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.nextId++;
    return new Promise<DatasetResult>((resolve, reject) => {
      t.pending.set(id, { resolve, reject });
      const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
      t.worker.postMessage({ kind: 'dataset', task: { id, bytes, datasetTs } } satisfies MainMessage, whole ? [bytes.buffer as ArrayBuffer] : []);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }
}
