// `npm run bench`: every benchmark of DPHIANT, each printing rates measured in this one run.
// BENCH=walker, BENCH=anonymize, BENCH=crosswalk, BENCH=journal-scale, BENCH=pipeline, BENCH=forwarding, BENCH=burned-in,
// BENCH=cluster or BENCH=tls
// runs one of them.
import { benchAnonymize } from './anonymize.js';
import { benchBurnedIn } from './burned-in.js';
import { benchCluster } from './cluster.js';
import { benchCrosswalk } from './crosswalk.js';
import { benchForwarding } from './forwarding.js';
import { benchJournalScale } from './journal-scale.js';
import { benchPipeline } from './pipeline.js';
import { benchTls } from './tls.js';
import { benchWalker } from './walker.js';

const only = process.env.BENCH;
if (!only || only === 'walker') {
  for (const line of benchWalker()) console.log(line);
}
if (!only || only === 'anonymize') {
  for (const line of await benchAnonymize(Number(process.env.BENCH_ANON_INSTANCES ?? 2000))) console.log(line);
}
if (!only || only === 'crosswalk') {
  for (const line of await benchCrosswalk()) console.log(line);
}
if (!only || only === 'journal-scale') {
  for (const line of await benchJournalScale()) console.log(line);
}
if (!only || only === 'pipeline') {
  const instances = Number(process.env.BENCH_PIPELINE_INSTANCES ?? 500);
  // BENCH_FORWARD=store-and-forward: the middleman with pacs.cutThrough false
  const cutThrough = process.env.BENCH_FORWARD !== 'store-and-forward';
  for (const senders of [1, 4]) for (const line of await benchPipeline({ instances, senders, cutThrough })) console.log(line);
}
if (!only || only === 'forwarding') {
  const instances = Number(process.env.BENCH_INSTANCES ?? 1000);
  for (const senders of [1, 4]) for (const line of await benchForwarding({ instances, senders })) console.log(line);
  // large instances (32 MiB), one sender, on loopback and over a 50 MB/s link: where forwarding while the data set
  // arrives saves the most
  const large = { instances: Number(process.env.BENCH_LARGE_INSTANCES ?? 10), senders: 1, rows: 4096, cols: 4096 };
  for (const line of await benchForwarding(large)) console.log(line);
  for (const line of await benchForwarding({ ...large, linkBytesPerSecond: 50e6 })) console.log(line);
}
if (!only || only === 'burned-in') {
  for (const line of await benchBurnedIn({ images: Number(process.env.BENCH_OCR_IMAGES ?? 20), instances: Number(process.env.BENCH_MIX_INSTANCES ?? 200) })) console.log(line);
}
if (!only || only === 'cluster') {
  for (const line of await benchCluster({ instances: Number(process.env.BENCH_CLUSTER_INSTANCES ?? 500), senders: 4 })) console.log(line);
}
if (!only || only === 'tls') {
  for (const senders of [1, 4]) for (const line of await benchTls({ instances: Number(process.env.BENCH_TLS_INSTANCES ?? 500), senders })) console.log(line);
}
