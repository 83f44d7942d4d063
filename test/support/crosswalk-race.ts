// A child process of the crosswalk concurrency test: opens the configured crosswalk (DPHIANT_* variables), waits
// until the agreed instant, fires `calls` get-or-creates at once over `patients` new patients, and prints
// patientId → aliasId as JSON.
import { loadConfig } from '../../src/config/index.js';
import { loadKeys, openCrosswalk } from '../../src/crosswalk/open.js';

const [patients, calls, startAt] = process.argv.slice(2).map(Number) as [number, number, number];
const config = loadConfig();
const store = await openCrosswalk(config, loadKeys(config, () => {}));
const order = Array.from({ length: calls }, (_, i) => i % patients).sort(() => Math.random() - 0.5);
await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now())));
const results = await Promise.all(
  order.map(async (i) => [`RACE-${i}`, (await store.patient({ patientId: `RACE-${i}`, issuerOfPatientId: '', name: `Race^${i}`, sex: i % 2 ? 'M' : 'F', birthDate: '' })).aliasId] as const),
);
const map: Record<string, string> = {};
for (const [pid, alias] of results) {
  if (map[pid] && map[pid] !== alias) throw new Error(`one process saw two aliases for ${pid}`);
  map[pid] = alias;
}
await store.close();
process.stdout.write(JSON.stringify(map));
