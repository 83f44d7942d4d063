// C-ECHO latency probe for the pipeline benchmark: DPHIANT's own C-ECHO SCU (src/scu/echo.ts) in a worker thread,
// its own event loop and clock, so neither the middleman's loop in the main thread nor the cost of starting a
// process per probe (echoscu) is in the figures: a C-ECHO every ~100 ms (start to start; back to back when one
// takes longer) until told to stop, then the latencies in ms and the failures.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { echo } from '../src/scu/echo.js';

export interface EchoProbe {
  ms: number[];
  failed: number;
}

/** Probes the SCP on 127.0.0.1:`port` until `until` settles. */
export async function echoLatencies(port: number, until: Promise<unknown>): Promise<EchoProbe> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { port } });
  const result = new Promise<EchoProbe>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await until.then(() => undefined, () => undefined);
  worker.postMessage('stop');
  return result.finally(() => worker.terminate());
}

/** p50, p99 and max of a probe, and how many answered. */
export function latencies(p: EchoProbe): string {
  const sorted = [...p.ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
  return `p50 ${at(0.5).toFixed(1)} ms, p99 ${at(0.99).toFixed(1)} ms, max ${(sorted.at(-1) ?? NaN).toFixed(1)} ms (${sorted.length} answered, ${p.failed} failed)`;
}

if (!isMainThread && parentPort) {
  const port = (workerData as { port: number }).port;
  let stop = false;
  parentPort.once('message', () => (stop = true));
  const probe: EchoProbe = { ms: [], failed: 0 };
  while (!stop) {
    const t = process.hrtime.bigint();
    try {
      await echo({ host: '127.0.0.1', port, aet: 'DPHIANT', callingAet: 'MODALITY', connectTimeoutMs: 30_000 });
      probe.ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    } catch {
      probe.failed++;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 100 - Number(process.hrtime.bigint() - t) / 1e6)));
  }
  parentPort.postMessage(probe);
}
