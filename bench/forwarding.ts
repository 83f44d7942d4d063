// Throughput of the forwarding path, measured in one run on this machine (not asserted anywhere):
// storescu → PACS directly (the physical limit) against storescu → middleman → PACS, same instances, same PACS;
// the middleman forwards over its pool of open associations (src/scu/pool.ts, default settings), cut-through (the
// default) and, from a second middleman on the same PACS, store and forward (pacs.cutThrough false).
import { rmSync } from 'node:fs';
import path from 'node:path';
import { generateStudies } from '../tools/synth/generate.js';
import { storescu } from '../test/support/dcmtk.js';
import { startStack, type TestStack } from '../test/support/stack.js';
import { startTestMiddleman } from '../test/support/middleman.js';
import { startAssociationProxy } from '../test/support/association-proxy.js';

/**
 * `rows` × `cols` 16-bit frames (512 × 512 by default: 0.5 MB instances); `linkBytesPerSecond`: storescu sends over a
 * link of that rate (a proxy in front of whichever it calls), as a modality on a real network does.
 */
export async function benchForwarding(opts: { instances: number; senders: number; rows?: number; cols?: number; linkBytesPerSecond?: number }): Promise<string[]> {
  const stack = await startStack({ env: { DPHIANT_PIPELINE_ENABLED: 'false' } });
  const whole = await startTestMiddleman({ DPHIANT_PIPELINE_ENABLED: 'false', DPHIANT_PACS_CUT_THROUGH: 'false', DPHIANT_PACS_PORT: String(stack.pacs.dicomPort), DPHIANT_PACS_URL: stack.pacs.httpUrl });
  const lines: string[] = [];
  try {
    const perSeries = Math.ceil(opts.instances / 10);
    const manifest = await generateStudies({ outDir: path.join(stack.work, 'bench'), patients: 5, studiesPerPatient: 1, seriesPerStudy: 2, instancesPerSeries: perSeries, rows: opts.rows ?? 512, cols: opts.cols ?? 512, seed: 1000 });
    const files = manifest.instances.slice(0, opts.instances).map((i) => i.path);
    const mb = manifest.instances.slice(0, opts.instances).reduce((s, i) => s + i.bytes, 0) / 1e6;

    const send = (scpPort: number, aet: string, calledAet: string) => sendTimed(stack, files, { port: scpPort, callingAet: aet, calledAet, senders: opts.senders, ...(opts.linkBytesPerSecond ? { linkBytesPerSecond: opts.linkBytesPerSecond } : {}) });

    const direct = await send(stack.pacs.dicomPort, 'STORESCU', 'PACS');
    const via = await send(stack.mm.port, 'MODALITY', 'DPHIANT');
    const stored = await send(whole.port, 'MODALITY', 'DPHIANT');
    lines.push(
      `forwarding, ${files.length} instances (${mb.toFixed(0)} MB), ${opts.senders} storescu process(es)${opts.linkBytesPerSecond ? ` over a ${(opts.linkBytesPerSecond / 1e6).toFixed(0)} MB/s link` : ''}, TCP_NODELAY, ` +
        `pacs.maxAssociations ${stack.mm.config.pacs.maxAssociations} (associations to the PACS kept open ${stack.mm.config.pacs.idleTimeoutMs} ms idle):`,
      `  storescu → PACS directly                         ${direct.toFixed(1)} inst/s`,
      `  storescu → middleman → PACS, cut-through         ${via.toFixed(1)} inst/s`,
      `  storescu → middleman → PACS, store and forward   ${stored.toFixed(1)} inst/s`,
      `  ratio middleman / direct, cut-through            ${(via / direct).toFixed(2)}`,
      `  ratio middleman / direct, store and forward      ${(stored / direct).toFixed(2)}`,
    );
  } finally {
    await whole.close();
    await stack.stop();
    rmSync(stack.work, { recursive: true, force: true });
  }
  return lines;
}

/**
 * Instances per second of `files` sent to `port` by `senders` storescu processes at once (each its share; `extraArgs`
 * such as TLS options), into the emptied PACS of `stack`, which must hold them all after.
 */
export async function sendTimed(
  stack: TestStack,
  files: string[],
  o: { port: number; callingAet: string; calledAet: string; senders: number; extraArgs?: string[]; linkBytesPerSecond?: number },
): Promise<number> {
  await stack.pacsRest.deleteAll();
  const link = o.linkBytesPerSecond ? await startAssociationProxy({ port: o.port, bytesPerSecond: o.linkBytesPerSecond }) : undefined;
  const port = link?.port ?? o.port;
  const share = Math.ceil(files.length / o.senders);
  const started = process.hrtime.bigint();
  const runs = await Promise.all(
    Array.from({ length: o.senders }, (_, k) =>
      storescu(files.slice(k * share, (k + 1) * share), { port, callingAet: o.callingAet, calledAet: o.calledAet, timeoutMs: 1_800_000, ...(o.extraArgs ? { extraArgs: o.extraArgs } : {}) }),
    ),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await link?.close();
  runs.forEach((r) => {
    if (r.code !== 0) throw new Error(`storescu failed: ${r.stderr.slice(-300)}`);
  });
  const stored = (await stack.pacsRest.statistics()).CountInstances;
  if (stored !== files.length) throw new Error(`PACS holds ${stored} of ${files.length}`);
  return files.length / seconds;
}
