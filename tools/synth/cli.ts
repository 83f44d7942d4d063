// `npm run synth -- --out D …`: write synthetic studies (and optionally one large multi-frame file).
// Prints counts only: the fake PHI is treated as if it were real and never printed.
// Dev tooling beside the product (tools/), never part of it or of the Docker image.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import yargs, { type Argv, type CommandModule } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { TS, encodingOf } from '../../src/dicom/transfer-syntax.js';
import { generateLarge, generateStudies, type Sex } from './generate.js';
import { burnedInFile } from './burned-in.js';

/** Fake patients for burned-in text (upper case: the bitmap font has no lower case). */
const FAKE_NAMES = ['DOE^JANE', 'ROE^RICHARD', 'NG^LI', 'OKAFOR^CHIDI', 'KOWALSKI^ANNA', 'TANAKA^YUKI'];

interface SynthArgs {
  out: string;
  patients: number;
  studies: number;
  series: number;
  instances: number;
  rows: number;
  cols: number;
  seed: number;
  prefix: string;
  ts: string;
  largeBytes?: number;
  burnedIn: number;
}

export const synthCommand: CommandModule<object, SynthArgs> = {
  command: 'synth',
  describe: 'write deterministic synthetic CT/MR studies with fake PHI (and a manifest.json)',
  builder: (y: Argv<object>) =>
    y
      .option('out', { type: 'string', demandOption: true, describe: 'output directory' })
      .option('patients', { type: 'number', default: 4, describe: 'number of patients (0: none)' })
      .option('studies', { type: 'number', default: 1, describe: 'studies per patient' })
      .option('series', { type: 'number', default: 2, describe: 'series per study' })
      .option('instances', { type: 'number', default: 10, describe: 'instances per series' })
      .option('rows', { type: 'number', default: 512 })
      .option('cols', { type: 'number', default: 512 })
      .option('seed', { type: 'number', default: 1, describe: 'same seed, same files' })
      .option('prefix', { type: 'string', default: 'SYN', describe: 'PatientID prefix' })
      .option('ts', { type: 'string', default: TS.ExplicitVRLittleEndian, describe: 'transfer syntax UID (native or RLE)' })
      .option('large-bytes', { type: 'number', describe: 'also write <out>/large.dcm, a multi-frame CT of about N bytes' })
      .option('burned-in', { type: 'number', default: 0, describe: 'also write N ultrasound and secondary-capture images with a fake name, ID and birth date drawn into the pixels, in <out>/burned-in/' })
      .check((a) => {
        for (const k of ['patients', 'studies', 'series', 'instances', 'rows', 'cols', 'seed', 'burned-in'] as const) {
          if (!Number.isInteger(a[k]) || a[k] < 0) throw new Error(`--${k} must be a non-negative integer`);
        }
        if (a.rows < 1 || a.cols < 1 || a.rows > 65535 || a.cols > 65535) throw new Error('--rows and --cols must be in 1..65535');
        let encapsulated: boolean;
        try {
          encapsulated = encodingOf(a.ts).encapsulated;
        } catch {
          throw new Error(`--ts ${a.ts} is not a transfer syntax DPHIANT knows`);
        }
        if (encapsulated && a.ts !== TS.RLELossless) throw new Error(`--ts: the generator writes native syntaxes and RLE only, not ${a.ts}`);
        if (a['large-bytes'] !== undefined && !(a['large-bytes'] > 0)) throw new Error('--large-bytes must be positive');
        return true;
      }) as unknown as Argv<SynthArgs>,
  handler: async (a) => {
    const manifest = await generateStudies({
      outDir: a.out, patients: a.patients, studiesPerPatient: a.studies, seriesPerStudy: a.series,
      instancesPerSeries: a.instances, rows: a.rows, cols: a.cols, seed: a.seed, prefix: a.prefix, tsUid: a.ts,
    });
    const bySex: Record<Sex, number> = { M: 0, F: 0, O: 0 };
    for (const p of manifest.patients) bySex[p.sex]++;
    let large = '';
    if (a.largeBytes !== undefined) {
      await mkdir(a.out, { recursive: true });
      const l = await generateLarge(join(a.out, 'large.dcm'), a.largeBytes, { seed: a.seed, prefix: a.prefix, rows: a.rows, cols: a.cols });
      large = `; large.dcm ${l.bytes} bytes, ${l.frames} frames`;
    }
    let burned = '';
    if (a.burnedIn > 0) {
      const dir = join(a.out, 'burned-in');
      await mkdir(dir, { recursive: true });
      const encodings = ['native', 'rle', 'jpegLossless'] as const;
      for (let i = 0; i < a.burnedIn; i++) {
        const kind = i % 2 ? 'SC' : 'US';
        const patient = { name: FAKE_NAMES[i % FAKE_NAMES.length]!, id: `${a.prefix.toUpperCase()}${String(7000000 + a.seed * 1000 + i)}`, birthDate: '19700101' };
        const made = await burnedInFile({ kind, frames: 1 + (i % 3), encoding: encodings[i % 3]!, patient, allowWords: kind === 'US' ? ['5.0 MHZ', 'L'] : undefined, seed: a.seed * 1000 + i });
        await writeFile(join(dir, `${kind}-${i + 1}.dcm`), made.file);
      }
      burned = `; ${a.burnedIn} images with burned-in text in ${dir}`;
    }
    console.log(
      `synth: ${manifest.totals.files} files, ${manifest.totals.bytes} bytes, ` +
        `${manifest.patients.length} patients (M ${bySex.M}, F ${bySex.F}, O ${bySex.O})${large}${burned} in ${a.out}`,
    );
  },
};

// run as a program (npm run synth), not when a test imports the command
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await yargs(hideBin(process.argv)).scriptName('synth').command({ ...synthCommand, command: '$0' }).strict().help().parseAsync();
}
