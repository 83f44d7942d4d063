// `dphiant anonymize`, `dphiant verify` and `dphiant profile show`. The engine's modules (the dictionary, the
// profile, the gate) are loaded by the commands that run them here, verify and profile show: `anonymize` runs them
// in its worker threads only, and this thread starts them first instead of loading the engine itself.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import type { Config } from '../config/index.js';
import { defaultJobs, listFiles, runBatch, type ProfileSettings } from '../anonymize/batch.js';
import { startWorkers } from '../anonymize/threads.js';
import type { Needle } from '../anonymize/phi.js';
import type { Options } from '../anonymize/profile.js';
import { OPTION_KEYS, type OptionKey } from '../anonymize/table.js';
import { loadKeys, openCrosswalk } from '../crosswalk/open.js';

type LoadConfig = (argv: any) => Config;

/** retainUIDs → retain-uids, retainLongFullDates → retain-long-full-dates */
const kebab = (k: string) => k.replace(/([a-z])([A-Z]+)/g, (_m, a: string, b: string) => `${a}-${b.toLowerCase()}`);

function withProfileOptions(y: Argv<any>): Argv<any> {
  let out: Argv<any> = y.option('profile', { type: 'string', describe: 'site profile JSON (overrides anonymize.profile)' });
  for (const k of OPTION_KEYS) out = out.option(kebab(k), { type: 'boolean', describe: `PS3.15 option ${k} (overrides anonymize.${k})` });
  return out;
}

/** What the profile is made of: config + flags (flags win over the configuration, which wins over the site profile file's options). */
export function profileSettings(cfg: Config, argv: Record<string, unknown>): ProfileSettings {
  const flags: Partial<Options> = {};
  for (const k of OPTION_KEYS) {
    const flag = argv[kebab(k)];
    if (typeof flag === 'boolean') flags[k] = flag;
  }
  const file = argv.profile as string | undefined;
  return { settings: file !== undefined ? { ...cfg.anonymize, profile: file } : cfg.anonymize, flags };
}

/** The profile of config + flags, built in this thread. */
export async function profileFrom(cfg: Config, argv: Record<string, unknown>) {
  const { profileFromSettings } = await import('../anonymize/profile.js');
  const { settings, flags } = profileSettings(cfg, argv);
  return profileFromSettings(settings, flags);
}

/** PatientName, PatientID, AccessionNumber: what the crosswalk replaces. */
const ALIASED_TAGS = [0x00100010, 0x00100020, 0x00080050];

function bar(done: number, total: number, perSecond: number): void {
  const width = 30;
  const filled = Math.round((done / Math.max(total, 1)) * width);
  process.stderr.write(`\r[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total} ${perSecond.toFixed(0)} files/s`);
}

export function anonymizeCommands(loadConfig: LoadConfig): CommandModule<object, any>[] {
  const anonymize: CommandModule<object, any> = {
    command: 'anonymize <inputs..>',
    describe: 'de-identify DICOM files and folders into --out',
    builder: (y) =>
      withProfileOptions(y)
        .positional('inputs', { type: 'string', array: true, demandOption: true })
        .option('out', { type: 'string', demandOption: true, describe: 'output folder' })
        .option('key', { type: 'string', describe: 'site key file (else keyFile, else the data directory development key); aliases come from the configured crosswalk' })
        .option('jobs', { type: 'number', default: defaultJobs(), describe: 'worker threads' })
        .option('layout', { choices: ['mirror', 'alias'] as const, default: 'mirror', describe: 'mirror the input layout, or alias/study/series/instance.dcm' })
        .option('mappings', { type: 'string', describe: 'folder of the old→new mapping CSVs (default <out>.mappings; they hold original IDs)' })
        .option('config', { type: 'string' }),
    handler: async (argv) => {
      const workers = startWorkers(argv.jobs); // first: they load the engine while this thread reads the rest
      const progress = process.stderr.isTTY ? bar : undefined;
      let s;
      try {
        const cfg = loadConfig(argv);
        const keys = loadKeys(argv.key ? { ...cfg, keyFile: argv.key } : cfg, (msg) => console.error(`warning: ${msg}`));
        const crosswalk = await openCrosswalk(cfg, keys);
        try {
          s = await runBatch({ inputs: argv.inputs, out: argv.out, mappings: argv.mappings, layout: argv.layout, jobs: argv.jobs, key: keys.site, profile: profileSettings(cfg, argv), aliases: crosswalk, progress }, workers);
        } finally {
          await crosswalk.close();
        }
      } finally {
        await Promise.all(workers.map((w) => w.terminate())); // runBatch's own end did it, unless it never ran
      }
      if (progress) process.stderr.write('\n');
      console.log(`files ${s.files}, de-identified ${s.deidentified}, rejected ${s.rejected.length}, failed ${s.failed.length}, skipped (not DICOM) ${s.skipped.length}; ${s.perSecond.toFixed(1)} instances/s over ${s.seconds.toFixed(1)} s`);
      for (const r of s.rejected) console.log(`rejected ${r.input}: ${r.reason}`);
      for (const r of s.failed) console.log(`failed   ${r.input}: ${r.reason}`);
      for (const r of s.skipped) console.log(`skipped  ${r.input}: ${r.reason}`);
      if (s.reported.length) console.log(`the profile keeps everything ("default": "keep"), so the verification gate reported instead of rejecting:`);
      for (const r of s.reported) console.log(`reported ${r.input}: ${r.reason}`);
      console.log(`mapping CSVs (they hold original IDs and UIDs: keep them as PHI): ${path.resolve(s.mappings)}`);
      process.exitCode = s.rejected.length || s.failed.length ? 1 : 0;
    },
  };

  const verify: CommandModule<object, any> = {
    command: 'verify <folder>',
    describe: 'run the verification gate on de-identified files (with --originals: search them for the originals\' identifying values)',
    builder: (y) =>
      withProfileOptions(y)
        .positional('folder', { type: 'string', demandOption: true })
        .option('originals', { type: 'string', describe: 'folder of the original files' })
        .option('config', { type: 'string' }),
    handler: async (argv) => {
      const cfg = loadConfig(argv);
      const { profile } = await profileFrom(cfg, argv);
      const [{ scanForPhi }, { phiNeedles }, { parseFile }, { stringValue, specificCharacterSet, topLevelString }] = await Promise.all([
        import('../anonymize/gate.js'),
        import('../anonymize/phi.js'),
        import('../dicom/walker.js'),
        import('../dicom/values.js'),
      ]);
      const needles: Needle[] = [];
      /** The originals' own patient names, IDs and accession numbers: an output value equal to one is never an alias. */
      const originalIds = new Set<string>();
      if (argv.originals) {
        const seen = new Set<string>();
        for (const { file } of listFiles([argv.originals])) {
          try {
            const ds = parseFile(readFileSync(file)).dataset;
            for (const n of phiNeedles(ds, profile)) if (!seen.has(n.text)) (seen.add(n.text), needles.push(n));
            for (const t of ALIASED_TAGS) originalIds.add(topLevelString(ds, t));
          } catch {
            /* not DICOM: nothing to look for */
          }
        }
      }
      let checked = 0;
      let bad = 0;
      for (const { file } of listFiles([argv.folder])) {
        let problems: string[] = [];
        try {
          const { dataset } = parseFile(readFileSync(file));
          checked++;
          const removed = dataset.elements.find((e) => e.tag === 0x00120062);
          if (!removed || stringValue(dataset, removed, specificCharacterSet(dataset)) !== 'YES') problems.push('PatientIdentityRemoved is not YES');
          // like the gate, the aliases the crosswalk wrote are not searched (they may share a word with a physician's name)
          const aliases = new Set(ALIASED_TAGS.map((t) => topLevelString(dataset, t)).filter((v) => v && !originalIds.has(v)));
          problems.push(...scanForPhi(dataset, needles, profile, aliases).map((h) => `${h.kind} in ${h.path}`));
        } catch (e) {
          problems = [`unreadable: ${(e as Error).message}`];
        }
        if (problems.length) {
          bad++;
          console.log(`${file}: ${problems.join('; ')}`);
        }
      }
      console.log(`verified ${checked} files against ${needles.length} identifying values: ${bad} with findings`);
      process.exitCode = bad ? 1 : 0;
    },
  };

  const profileShow: CommandModule<object, any> = {
    command: 'profile <action>',
    describe: 'show: the effective rule of every attribute',
    builder: (y) =>
      withProfileOptions(y)
        .positional('action', { choices: ['show'] as const })
        .option('format', { choices: ['text', 'markdown'] as const, default: 'text' })
        .option('config', { type: 'string' }),
    handler: async (argv) => {
      const cfg = loadConfig(argv);
      const { profile } = await profileFrom(cfg, argv);
      const { describePixelPolicy } = await import('../anonymize/pixels/clean.js');
      const active = profile.activeOptions();
      const title = `${profile.name}; options: ${active.length ? active.join(', ') : 'none'}`;
      if (argv.format === 'markdown') {
        console.log(`# Effective de-identification rules: ${title}\n`);
        console.log('Generated by `dphiant profile show --format markdown` from the rules the engine runs; a test keeps this file equal to its output.\n');
        console.log('| tag | keyword | action | source |\n| --- | --- | --- | --- |');
        for (const r of profile.describe()) console.log(`| ${r.tag} | ${r.keyword} | ${r.action} | ${r.source} |`);
        console.log('\n## Burned-in text in pixels\n\n| what | name | detail |\n| --- | --- | --- |');
        for (const r of describePixelPolicy(profile.pixels)) console.log(`| ${r.what} | ${r.name} | ${r.detail.replace(/\|/g, '\\|')} |`);
        return;
      }
      console.log(`# ${title}`);
      for (const r of profile.describe()) console.log(`${r.tag}\t${r.keyword}\t${r.action}\t[${r.source}]`);
      console.log('# burned-in text in pixels');
      for (const r of describePixelPolicy(profile.pixels)) console.log(`${r.what}\t${r.name}\t${r.detail}`);
    },
  };
  return [anonymize, verify, profileShow];
}

export type { OptionKey };
