// Crosswalk throughput, measured in one run (not asserted): get-or-create of patients that already exist, the
// call every instance makes, on the embedded SQLite store and on FerretDB (MongoDB wire protocol).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sealer } from '../src/crosswalk/crypto.js';
import { MongoCrosswalk } from '../src/crosswalk/mongo.js';
import { SqliteCrosswalk } from '../src/crosswalk/sqlite.js';
import type { CrosswalkSettings, CrosswalkStore } from '../src/crosswalk/store.js';
import { startMongoServer } from '../test/support/ferretdb.js';

const settings: CrosswalkSettings = {
  siteKey: Buffer.alloc(32, 1),
  sealer: new Sealer(Buffer.alloc(32, 2)),
  matchKey: 'id',
  aliasPattern: 'random',
  aliasPrefix: 'DPH',
  dateOffsetMinDays: -3650,
  dateOffsetMaxDays: -365,
};

const identity = (i: number) => ({ patientId: `BENCH-${i}`, issuerOfPatientId: 'H', name: `Bench^${i}`, sex: i % 2 ? 'M' : 'F', birthDate: '19800101' });

async function measure(store: CrosswalkStore, patients: number, lookups: number, concurrency: number): Promise<{ create: number; existing: number }> {
  let t = process.hrtime.bigint();
  for (let i = 0; i < patients; i++) await store.patient(identity(i));
  const create = patients / (Number(process.hrtime.bigint() - t) / 1e9);
  t = process.hrtime.bigint();
  for (let done = 0; done < lookups; done += concurrency) {
    await Promise.all(Array.from({ length: concurrency }, (_, k) => store.patient(identity((done + k) % patients))));
  }
  return { create, existing: lookups / (Number(process.hrtime.bigint() - t) / 1e9) };
}

export async function benchCrosswalk(): Promise<string[]> {
  const lines = ['crosswalk get-or-create (1,000 patients created, then look-ups of existing ones):'];
  const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-bench-cw-'));
  try {
    const sqlite = new SqliteCrosswalk(path.join(dir, 'crosswalk.sqlite'), settings);
    const s = await measure(sqlite, 1000, 50_000, 1);
    await sqlite.close();
    lines.push(`  SQLite (embedded)          create ${s.create.toFixed(0)}/s, existing ${s.existing.toFixed(0)}/s`);
    const server = await startMongoServer();
    if ('skip' in server) lines.push(`  FerretDB                   skipped: ${server.skip}`);
    else {
      try {
        const mongo = await MongoCrosswalk.open(`${server.url}/bench`, settings);
        const m1 = await measure(mongo, 1000, 5_000, 1);
        const m16 = await measure(mongo, 1000, 20_000, 16);
        await mongo.close();
        lines.push(`  ${server.name}: create ${m1.create.toFixed(0)}/s, existing ${m1.existing.toFixed(0)}/s one at a time, ${m16.existing.toFixed(0)}/s with 16 in flight`);
      } finally {
        await server.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return lines;
}
