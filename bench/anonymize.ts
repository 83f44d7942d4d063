// De-identification throughput, measured in one run (not asserted anywhere):
//  1. the engine alone in memory on one core (parse, match the patient with the keyed stand-in, de-identify, verify);
//  2. `dphiant anonymize --jobs 1` and `--jobs 2` on a folder against `cp -r` of the same folder (the physical limit),
//     and against other tools on the same folder: dicognito (PyPI, installed by this benchmark in a venv under
//     .stack/) and GDCM's gdcmanon with the basic profile (when the system has it: Debian's libgdcm-tools);
//  3. the peak RSS of `dphiant anonymize --jobs 2` (its worker threads are in the one process), from GNU time;
//  4. cp, --jobs 2 and dicognito again in memory (/dev/shm), where the disk's write rate bounds none of them.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync, chmodSync } from 'node:fs';
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
      spawnSync('sync'); // the previous run's dirty pages written back first, not during this one
      const start = process.hrtime.bigint();
      const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...DEV_STACK_ENV, DPHIANT_DATA_DIR: work } });
      if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.toString().slice(-300)}${r.stdout.toString().slice(-300)}`);
      return files.length / (Number(process.hrtime.bigint() - start) / 1e9);
    };
    const cp = timed('cp', ['-r', input, path.join(work, 'copy')]);
    const cli = findUp('dist/src/cli/main.js');
    const jobs1 = timed(process.execPath, [cli, 'anonymize', input, '--out', path.join(work, 'out1'), '--key', keyFile, '--jobs', '1']);
    // GNU time reports the process's peak resident set (its worker threads included) of this same run
    const rssFile = path.join(work, 'jobs2.rss');
    const gnuTime = existsSync('/usr/bin/time');
    const jobs2Args = [cli, 'anonymize', input, '--out', path.join(work, 'out2'), '--key', keyFile, '--jobs', '2'];
    const jobs2 = gnuTime ? timed('/usr/bin/time', ['-f', '%M', '-o', rssFile, process.execPath, ...jobs2Args]) : timed(process.execPath, jobs2Args);
    const peakRss = gnuTime ? `${(Number(readFileSync(rssFile, 'utf8').trim().split('\n').at(-1)) / 1024).toFixed(0)} MB` : 'not measured: /usr/bin/time (Debian package time) absent';
    const others = otherTools(work, input, files.length, timed);
    // the same three in memory, where the disk's write rate does not bound them all alike
    const inMemory: string[] = [];
    const shm = memoryFolder(3 * mb * 1e6);
    if (shm) {
      const mwork = mkdtempSync(path.join(shm, 'dphiant-bench-anon-'));
      try {
        const minput = path.join(mwork, 'in');
        spawnSync('cp', ['-r', input, minput]);
        const mcp = timed('cp', ['-r', minput, path.join(mwork, 'copy')]);
        const mjobs2 = timed(process.execPath, [cli, 'anonymize', minput, '--out', path.join(mwork, 'out2'), '--key', keyFile, '--jobs', '2']);
        const mdicognito = otherTools(mwork, minput, files.length, timed).find((o) => o.name.startsWith('dicognito'));
        inMemory.push(
          `  in memory (${shm}, tmpfs), the same files:`,
          `    cp -r ${mcp.toFixed(0)} inst/s; dphiant anonymize --jobs 2 ${mjobs2.toFixed(0)} inst/s (${(mjobs2 / mcp).toFixed(2)} × cp)` +
            (mdicognito && 'rate' in mdicognito ? `; dicognito ${mdicognito.rate.toFixed(0)} inst/s; dphiant --jobs 2 / it ${(mjobs2 / mdicognito.rate).toFixed(2)}` : ''),
        );
      } finally {
        rmSync(mwork, { recursive: true, force: true });
      }
    } else inMemory.push('  in memory: skipped (no /dev/shm with room for three copies)');
    lines.push(
      `de-identification, ${files.length} CT instances 512×512 16-bit (${mb.toFixed(0)} MB), basic profile, verification gate on:`,
      `  engine alone, in memory, one core     ${engine.toFixed(0)} inst/s${baseline ? ` (median of ${rounds} rounds)` : ''}`,
      ...(baseline ? [`  the same, ${engines[1]!.name}: ${median(rates.get(engines[1]!.name)!).toFixed(0)} inst/s; this checkout ${median(rates.get('this checkout')!.map((r, i) => r / rates.get(engines[1]!.name)![i]!)).toFixed(2)} × it (median of the rounds' ratios)`] : []),
      `  cp -r (the physical limit)             ${cp.toFixed(0)} inst/s`,
      `  dphiant anonymize --jobs 1             ${jobs1.toFixed(0)} inst/s  (${(jobs1 / cp).toFixed(2)} × cp)`,
      `  dphiant anonymize --jobs 2             ${jobs2.toFixed(0)} inst/s  (${(jobs2 / cp).toFixed(2)} × cp), peak RSS ${peakRss}`,
      ...others.map((o) => ('rate' in o ? `  ${o.name.padEnd(37)}  ${o.rate.toFixed(0)} inst/s  (${(o.rate / cp).toFixed(2)} × cp); dphiant --jobs 2 / it ${(jobs2 / o.rate).toFixed(2)}` : `  ${o.name.padEnd(37)}  skipped: ${o.skip}`)),
      ...inMemory,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return lines;
}

/** /dev/shm when it is a folder with `bytes` free, else undefined. */
function memoryFolder(bytes: number): string | undefined {
  try {
    const st = statfsSync('/dev/shm');
    return st.bavail * st.bsize >= bytes ? '/dev/shm' : undefined;
  } catch {
    return undefined;
  }
}

/** The same folder de-identified by other tools, each writing a new folder as `dphiant anonymize --out` does. */
function otherTools(work: string, input: string, count: number, timed: (cmd: string, args: string[]) => number): ({ name: string; rate: number } | { name: string; skip: string })[] {
  const out: ({ name: string; rate: number } | { name: string; skip: string })[] = [];
  const dicognito = dicognitoBin();
  if ('skip' in dicognito) out.push({ name: `dicognito ${DICOGNITO_VERSION}`, skip: dicognito.skip });
  else {
    const dir = path.join(work, 'out-dicognito');
    mkdirSync(dir);
    const rate = timed(dicognito.python, ['-m', 'dicognito', '--quiet', '--output-directory', dir, input]);
    out.push({ name: `dicognito ${DICOGNITO_VERSION} (one process)`, rate });
    if (count !== countFiles(dir)) throw new Error(`dicognito wrote ${countFiles(dir)} of ${count} files`);
  }
  const gdcmanon = spawnSync('sh', ['-c', 'command -v gdcmanon'], { encoding: 'utf8' }).stdout.trim();
  if (!gdcmanon) out.push({ name: 'gdcmanon (GDCM, basic profile)', skip: 'not installed (Debian: apt-get install libgdcm-tools)' });
  else {
    // the basic profile (-e) encrypts the replaced values into the data set: it needs a certificate
    const key = path.join(work, 'gdcm.key');
    const cert = path.join(work, 'gdcm.pem');
    const ssl = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=dphiant-bench'], { stdio: 'ignore' });
    if (ssl.status !== 0) out.push({ name: 'gdcmanon (GDCM, basic profile)', skip: 'openssl could not make its certificate' });
    else {
      const dir = path.join(work, 'out-gdcmanon');
      mkdirSync(dir);
      const rate = timed(gdcmanon, ['-e', '--certificate', cert, '--continue', '--recursive', '-i', input, '-o', dir]);
      out.push({ name: 'gdcmanon (GDCM, basic profile)', rate });
      if (count !== countFiles(dir)) throw new Error(`gdcmanon wrote ${countFiles(dir)} of ${count} files`);
    }
  }
  return out;
}

function countFiles(dir: string): number {
  return spawnSync('find', [dir, '-type', 'f'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).length;
}

/** The version pip resolved when this benchmark was written, pinned so the comparison is repeatable. */
const DICOGNITO_VERSION = '0.19.0';

/** dicognito in its own venv under .stack/ (made on first use, from PyPI), or why not. Run as `python -m dicognito`:
 * the console script of 0.19.0 calls main() without its arguments and fails. */
function dicognitoBin(): { python: string } | { skip: string } {
  const venv = findUp(`.stack/venv-dicognito-${DICOGNITO_VERSION}`);
  const python = path.join(venv, 'bin', 'python3');
  const ready = () => existsSync(python) && spawnSync(python, ['-m', 'dicognito', '--version'], { stdio: 'ignore' }).status === 0;
  if (ready()) return { python };
  const step = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  rmSync(venv, { recursive: true, force: true });
  let r = step('python3', ['-m', 'venv', venv]);
  if (r.status !== 0) return { skip: `python3 -m venv failed: ${(r.stderr ?? '').trim().split('\n').at(-1)}` };
  r = step(path.join(venv, 'bin', 'pip'), ['install', '--quiet', `dicognito==${DICOGNITO_VERSION}`]);
  if (r.status !== 0 || !ready()) {
    rmSync(venv, { recursive: true, force: true });
    return { skip: `pip install dicognito==${DICOGNITO_VERSION} failed: ${(r.stderr ?? '').trim().split('\n').at(-1)}` };
  }
  return { python };
}
