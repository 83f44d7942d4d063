// Throughput of the forwarding path, measured in one run on this machine (not asserted anywhere):
// storescu → PACS directly (the physical limit) against storescu → middleman → PACS, same instances, same PACS;
// the middleman forwards over its pool of open associations (src/scu/pool.ts, default settings).
import { rmSync } from 'node:fs';
import path from 'node:path';
import { generateStudies } from '../tools/synth/generate.js';
import { storescu } from '../test/support/dcmtk.js';
import { startStack } from '../test/support/stack.js';

export async function benchForwarding(opts: { instances: number; senders: number }): Promise<string[]> {
  const stack = await startStack({ env: { DPHIANT_PIPELINE_ENABLED: 'false' } });
  const lines: string[] = [];
  try {
    const perSeries = Math.ceil(opts.instances / 10);
    const manifest = await generateStudies({ outDir: path.join(stack.work, 'bench'), patients: 5, studiesPerPatient: 1, seriesPerStudy: 2, instancesPerSeries: perSeries, rows: 512, cols: 512, seed: 1000 });
    const files = manifest.instances.slice(0, opts.instances).map((i) => i.path);
    const mb = manifest.instances.slice(0, opts.instances).reduce((s, i) => s + i.bytes, 0) / 1e6;

    const send = async (port: number, aet: string, calledAet: string) => {
      await stack.pacsRest.deleteAll();
      const share = Math.ceil(files.length / opts.senders);
      const started = process.hrtime.bigint();
      const runs = await Promise.all(
        Array.from({ length: opts.senders }, (_, k) => storescu(files.slice(k * share, (k + 1) * share), { port, callingAet: aet, calledAet, timeoutMs: 1_800_000 })),
      );
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      runs.forEach((r) => {
        if (r.code !== 0) throw new Error(`storescu failed: ${r.stderr.slice(-300)}`);
      });
      const stored = (await stack.pacsRest.statistics()).CountInstances;
      if (stored !== files.length) throw new Error(`PACS holds ${stored} of ${files.length}`);
      return files.length / seconds;
    };

    const direct = await send(stack.pacs.dicomPort, 'STORESCU', 'PACS');
    const via = await send(stack.mm.port, 'MODALITY', 'DPHIANT');
    lines.push(
      `forwarding, ${files.length} instances (${mb.toFixed(0)} MB), ${opts.senders} storescu process(es), TCP_NODELAY, ` +
        `pacs.maxAssociations ${stack.mm.config.pacs.maxAssociations} (associations to the PACS kept open ${stack.mm.config.pacs.idleTimeoutMs} ms idle):`,
      `  storescu → PACS directly           ${direct.toFixed(1)} inst/s`,
      `  storescu → middleman → PACS        ${via.toFixed(1)} inst/s`,
      `  ratio middleman / direct           ${(via / direct).toFixed(2)}`,
    );
  } finally {
    await stack.stop();
    rmSync(stack.work, { recursive: true, force: true });
  }
  return lines;
}
