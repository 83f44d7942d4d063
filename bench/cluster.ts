// Scale-out, measured in one run on this machine (not asserted anywhere): the same instances from 4 storescu
// processes through HAProxy to one node, then to two nodes, each time until every job is DONE, on the cluster stack
// of test/support/cluster.ts (crosswalk on FerretDB/PostgreSQL, PACS on Orthanc/PostgreSQL).
import path from 'node:path';
import { generateStudies } from '../tools/synth/generate.js';
import { clusterUnavailable, sendThrough, startCluster } from '../test/support/cluster.js';
import { waitUntilSettled } from '../test/support/pipeline.js';

export async function benchCluster(opts: { instances: number; senders: number }): Promise<string[]> {
  const why = clusterUnavailable();
  if (why) return [`cluster: skipped (${why})`];
  const rates: number[] = [];
  for (const nodes of [1, 2]) {
    const c = await startCluster({ nodes });
    try {
      const manifest = await generateStudies({ outDir: path.join(c.work, 'bench'), patients: 10, studiesPerPatient: 1, seriesPerStudy: 2, instancesPerSeries: Math.ceil(opts.instances / 20), rows: 512, cols: 512, seed: 14_100, modalities: ['CT'] });
      const files = manifest.instances.slice(0, opts.instances).map((i) => i.path);
      const t = process.hrtime.bigint();
      const runs = await sendThrough(c, files, opts.senders, 1_800_000);
      for (const r of runs) if (r.code !== 0) throw new Error(`storescu failed: ${r.stderr.slice(-300)}`);
      await Promise.all(c.nodes.map((n) => waitUntilSettled(n.journal, 1_800_000)));
      const sec = Number(process.hrtime.bigint() - t) / 1e9;
      const done = c.nodes.reduce((s, n) => s + n.journal.counts().DONE, 0);
      if (done !== files.length) throw new Error(`${nodes} node(s): ${done} of ${files.length} DONE`);
      rates.push(files.length / sec);
    } finally {
      await c.stop();
    }
  }
  return [
    `cluster, ${opts.instances} CT instances of 0.5 MB, ${opts.senders} storescu processes through HAProxy, until every job is DONE (crosswalk FerretDB/PostgreSQL, PACS Orthanc/PostgreSQL):`,
    `  1 node                  ${rates[0]!.toFixed(1)} inst/s`,
    `  2 nodes                 ${rates[1]!.toFixed(1)} inst/s`,
    `  ratio 2 nodes / 1 node  ${(rates[1]! / rates[0]!).toFixed(2)}  (one machine: the nodes share its cores with the PACS, PostgreSQL and the senders)`,
  ];
}
