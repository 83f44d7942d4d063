// De-identification throughput, measured in one run (not asserted anywhere):
//  1. the engine alone in memory on one core (parse, match the patient with the keyed stand-in, de-identify, verify);
//  2. `dphiant anonymize --jobs 1` and `--jobs 2` on a folder against `cp -r` of the same folder (the physical limit).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { deidentify } from '../src/anonymize/deidentify.js';
import { Profile } from '../src/anonymize/profile.js';
import { DEV_STACK_ENV } from '../test/support/cli.js';
import { KeyedStandIn } from '../test/support/standin.js';
import { findUp } from '../src/paths.js';
import { generateStudies } from '../tools/synth/generate.js';

interface Engine {
  deidentify: typeof deidentify;
  Profile: typeof Profile;
  KeyedStandIn: typeof KeyedStandIn;
}

export async function benchAnonymize(instances: number): Promise<string[]> {
  const work = mkdtempSync(path.join(tmpdir(), 'dphiant-bench-anon-'));
  const lines: string[] = [];
  try {
    const input = path.join(work, 'in');
    const manifest = await generateStudies({ outDir: input, patients: 10, studiesPerPatient: 2, seriesPerStudy: 2, instancesPerSeries: Math.ceil(instances / 40), rows: 512, cols: 512, seed: 2000, modalities: ['CT'] });
    const files = manifest.instances.slice(0, instances).map((i) => i.path);
    const mb = manifest.instances.slice(0, instances).reduce((s, i) => s + i.bytes, 0) / 1e6;
    // the folder holds exactly the files measured
    for (const extra of manifest.instances.slice(instances)) rmSync(extra.path);
    rmSync(path.join(input, 'manifest.json'), { force: true });

    const key = Buffer.alloc(32, 9);
    const buffers = files.map((f) => readFileSync(f));
    // BENCH_ANON_BASELINE=<another checkout, built>: its engine is measured in the same run, rounds interleaved,
    // so a change is compared with what it changes on the same machine at the same moment
    const engines: { name: string; run: Engine }[] = [{ name: 'this checkout', run: { deidentify, Profile, KeyedStandIn } }];
    const baseline = process.env.BENCH_ANON_BASELINE;
    if (baseline) {
      const from = (m: string) => import(pathToFileURL(path.join(path.resolve(baseline), 'dist', m)).href);
      engines.push({
        name: `baseline ${baseline}`,
        run: { deidentify: (await from('src/anonymize/deidentify.js')).deidentify, Profile: (await from('src/anonymize/profile.js')).Profile, KeyedStandIn: (await from('test/support/standin.js')).KeyedStandIn },
      });
    }
    const rates = new Map<string, number[]>(engines.map((e) => [e.name, []]));
    const rounds = baseline ? 5 : 1;
    for (let round = 0; round < rounds; round++) {
      for (const e of round % 2 ? [...engines].reverse() : engines) { // ABBA: drift of the machine hits both alike
        const profile = new e.run.Profile();
        const aliases = new e.run.KeyedStandIn(key);
        for (const b of buffers) await e.run.deidentify(b, profile, key, aliases); // one warm-up pass (JIT, keyed-UID cache)
        const t0 = process.hrtime.bigint();
        for (const b of buffers) await e.run.deidentify(b, profile, key, aliases);
        rates.get(e.name)!.push(buffers.length / (Number(process.hrtime.bigint() - t0) / 1e9));
      }
    }
    const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
    const engine = median(rates.get('this checkout')!);

    const keyFile = path.join(work, 'site.key');
    writeFileSync(keyFile, key.toString('hex') + '\n');
    chmodSync(keyFile, 0o600);
    const timed = (cmd: string, args: string[]) => {
      const start = process.hrtime.bigint();
      const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...DEV_STACK_ENV, DPHIANT_DATA_DIR: work } });
      if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.toString().slice(-300)}${r.stdout.toString().slice(-300)}`);
      return files.length / (Number(process.hrtime.bigint() - start) / 1e9);
    };
    const cp = timed('cp', ['-r', input, path.join(work, 'copy')]);
    const cli = findUp('dist/src/cli/main.js');
    const jobs1 = timed(process.execPath, [cli, 'anonymize', input, '--out', path.join(work, 'out1'), '--key', keyFile, '--jobs', '1']);
    const jobs2 = timed(process.execPath, [cli, 'anonymize', input, '--out', path.join(work, 'out2'), '--key', keyFile, '--jobs', '2']);
    lines.push(
      `de-identification, ${files.length} CT instances 512×512 16-bit (${mb.toFixed(0)} MB), basic profile, verification gate on:`,
      `  engine alone, in memory, one core     ${engine.toFixed(0)} inst/s${baseline ? ` (median of ${rounds} rounds)` : ''}`,
      ...(baseline ? [`  the same, ${engines[1]!.name}: ${median(rates.get(engines[1]!.name)!).toFixed(0)} inst/s; this checkout ${median(rates.get('this checkout')!.map((r, i) => r / rates.get(engines[1]!.name)![i]!)).toFixed(2)} × it (median of the rounds' ratios)`] : []),
      `  cp -r (the physical limit)             ${cp.toFixed(0)} inst/s`,
      `  dphiant anonymize --jobs 1             ${jobs1.toFixed(0)} inst/s  (${(jobs1 / cp).toFixed(2)} × cp)`,
      `  dphiant anonymize --jobs 2             ${jobs2.toFixed(0)} inst/s  (${(jobs2 / cp).toFixed(2)} × cp)`,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return lines;
}
