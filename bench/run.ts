// `npm run bench`: every benchmark of DPHIANT, each printing rates measured in this one run.
import { benchForwarding } from './forwarding.js';

const instances = Number(process.env.BENCH_INSTANCES ?? 1000);
for (const senders of [1, 4]) {
  for (const line of await benchForwarding({ instances, senders })) console.log(line);
}
