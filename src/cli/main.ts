#!/usr/bin/env -S node --initial-old-space-size=256
// dphiant: the command line. Each command loads the one validated configuration; a bad value exits 2 with its key.
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ConfigError, configLines, loadConfig, type Config } from '../config/index.js';
import { createLogger } from '../log.js';
import { Journal, journalPath, JOB_STATES } from '../pipeline/journal.js';
import { formatStatus } from '../dicom/c-store.js';
import { loadKeys } from '../crosswalk/open.js';
import { anonymizeCommands } from './anonymize.js';
import { FOREIGN_COUNT_KEY, FOREIGN_LAST_KEY, POSITION_KEY, WALK_KEY } from '../pipeline/reconciler.js';
import { existsSync } from 'node:fs';
import { DEPENDENCIES, HEALTH_META_KEY, type HealthSnapshot } from '../pipeline/health.js';

const DEPENDENCY_NAMES = { pacs: 'PACS REST API', crosswalk: 'crosswalk' } as const;

/** What the running middleman last published about its dependencies (src/pipeline/health.ts), for `status`. */
function healthLines(published: string | undefined, p: Config['pipeline']): string[] {
  if (!published) return ['dependencies: nothing published yet (the middleman has not run with this journal)'];
  const h = JSON.parse(published) as HealthSnapshot;
  const age = Math.round((Date.now() - h.at) / 1000);
  const lines = [`dependencies (as the middleman saw them ${age} s ago, at ${new Date(h.at).toISOString()}):`];
  for (const dep of DEPENDENCIES) {
    const s = h.dependencies[dep];
    const name = DEPENDENCY_NAMES[dep].padEnd(14);
    if (s.failingSince === null) lines.push(`  ${name} ok`);
    else {
      const failing = Math.round((h.at - s.failingSince) / 1000);
      const over = h.at - s.failingSince > p.backpressureAfterMs ? '; new C-STOREs refused (0xA700)' : '';
      lines.push(`  ${name} failing for ${failing} s since ${new Date(s.failingSince).toISOString()} (${s.lastErrorClass}, ${s.failures} failed calls)${over}`);
    }
  }
  lines.push(`stuck jobs (retrying after ${p.stuckAfterAttempts}+ failed attempts): ${h.stuckJobs}`);
  return lines;
}

function config(argv: { config?: string }, offline = false): Config {
  try {
    return loadConfig({ file: argv.config, offline });
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`dphiant: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
}

/**
 * Commands that need no middleman, PACS or web server. They start without loading those modules (DICOM networking,
 * the web server, the PACS client), which took longer than de-identifying a few hundred files; the other commands
 * are registered only when the command line does not start with one of these.
 */
const OFFLINE_COMMANDS = new Set(['anonymize', 'verify', 'profile']);
const offline = OFFLINE_COMMANDS.has(hideBin(process.argv)[0] ?? '');

const withConfig = <T>(y: Argv<T>) => y.option('config', { type: 'string', describe: 'JSON configuration file (else $DPHIANT_CONFIG)' });

const cli = yargs(hideBin(process.argv))
  .scriptName('dphiant')
  .command(
    'serve',
    'run the middleman: DICOM SCP, forwarding to PACS',
    withConfig,
    async (argv) => {
      const cfg = config(argv);
      const log = createLogger(cfg.logLevel);
      // after an uncaught exception or a rejection nobody handled, the process state is unknown (a half-written
      // journal step, a stuck association, a promise an answer waits for): log it (an Error's message and stack,
      // else only the kind of value: never a data set) and exit; the journal resumes unfinished jobs when the
      // supervisor restarts the middleman (README: under a supervisor)
      const exitOn = (what: string) => (reason: unknown) => {
        const fields = reason instanceof Error ? { err: reason.message, stack: reason.stack } : { err: `not an Error (${typeof reason})` };
        log.fatal(fields, `${what}: exiting`);
        process.exit(70);
      };
      process.on('uncaughtException', exitOn('uncaught exception'));
      process.on('unhandledRejection', exitOn('unhandled rejection'));
      const { startMiddleman } = await import('../middleman.js');
      let mm;
      try {
        mm = await startMiddleman(cfg, log);
      } catch (e) {
        log.fatal({ err: (e as Error).message }, 'cannot start');
        // a setting the start-up checks found wrong (the PACS REST credentials): exit 2, as for any invalid setting
        if (e instanceof ConfigError) {
          console.error(`dphiant: ${e.message}`);
          process.exit(2);
        }
        process.exit(1);
      }
      const stop = async (signal: string) => {
        log.info({ signal }, 'stopping');
        await mm.close();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop('SIGINT'));
      process.once('SIGTERM', () => void stop('SIGTERM'));
    },
  )
  .command('config <action>', 'configuration', (y) =>
    withConfig(y).positional('action', { choices: ['show'] as const, describe: 'show: print the effective configuration, secrets masked' }),
    (argv) => {
      for (const line of configLines(config(argv))) console.log(line);
    },
  )
  .command('status', 'jobs per state, the oldest unfinished job, the quarantine', withConfig, (argv) => {
    const cfg = config(argv);
    const file = journalPath(cfg.dataDir);
    if (!existsSync(file)) {
      console.log(`no journal yet at ${file}`);
      return;
    }
    const warn = (m: string) => console.error(`warning: ${m}`);
    const journal = new Journal(file, loadKeys(cfg, warn).site, warn);
    try {
      const counts = journal.counts();
      for (const s of JOB_STATES) console.log(`${s.padEnd(13)} ${counts[s]}`);
      const oldest = journal.oldestUnfinished();
      console.log(`oldest unfinished job: ${oldest ? `${Math.round((Date.now() - Date.parse(oldest)) / 1000)} s old (received ${oldest})` : 'none'}`);
      const quarantined = journal.byState('QUARANTINED', 50);
      console.log(`quarantine: ${counts.QUARANTINED} instance(s)${counts.QUARANTINED ? ' (dphiant quarantine list)' : ''}`);
      for (const j of quarantined.slice(0, 10)) console.log(`  job ${j.id}  ${j.updatedAt}  ${j.reasonCode ?? ''}  ${j.reason ?? ''}`);
      const backlog = counts.IN_PACS + counts.DEIDENTIFIED;
      const bound = cfg.pipeline.maxBacklog;
      console.log(`backlog: ${backlog} unfinished (IN_PACS + DEIDENTIFIED)${bound ? `, bound ${bound}${backlog >= bound ? ': new C-STOREs refused (0xA700)' : ''}` : ', no bound'}`);
      for (const line of healthLines(journal.getMeta(HEALTH_META_KEY), cfg.pipeline)) console.log(line);
      const foreign = Number(journal.getMeta(FOREIGN_COUNT_KEY) ?? 0);
      const walk = journal.getMeta(WALK_KEY);
      console.log(`reconciler: change log followed to seq ${journal.getMeta(POSITION_KEY) ?? '- (not started)'}${walk ? `; dphiant reconcile stopped at seq ${walk}` : ''}`);
      console.log(`  raw instances of other systems reported and left alone: ${foreign}${foreign ? ` (last: Orthanc ID ${journal.getMeta(FOREIGN_LAST_KEY)})` : ''}`);
    } finally {
      journal.close();
    }
  })
  .command('echo', 'C-ECHO the PACS with the configured AE titles', withConfig, async (argv) => {
    const cfg = config(argv);
    const [{ echo }, { pacsTarget }] = await Promise.all([import('../scu/echo.js'), import('../middleman.js')]);
    try {
      const status = await echo(pacsTarget(cfg));
      console.log(`C-ECHO ${cfg.pacs.aet}@${cfg.pacs.host}:${cfg.pacs.port}: status ${formatStatus(status)}`);
      process.exitCode = status === 0 ? 0 : 1;
    } catch (e) {
      console.error(`C-ECHO ${cfg.pacs.aet}@${cfg.pacs.host}:${cfg.pacs.port} failed: ${(e as Error).message}`);
      process.exitCode = 1;
    }
  })
  .command('hash-password', 'a web.users password hash (scrypt) of the password read from standard input', (y) => y, async () => {
    const { hashPassword } = await import('../web/auth.js');
    let input = '';
    for await (const chunk of process.stdin) input += chunk;
    const password = input.replace(/\r?\n$/, '');
    if (password.length < 8) throw new Error('use a password of 8 characters or more');
    console.log(hashPassword(password));
  })
  .command(anonymizeCommands((argv) => config(argv, true)));
if (!offline) {
  const [{ crosswalkCommands }, { quarantineCommand }, { reconcileCommand }] = await Promise.all([import('./crosswalk.js'), import('./quarantine.js'), import('./reconcile.js')]);
  cli.command(crosswalkCommands(config)).command(quarantineCommand(config)).command(reconcileCommand(config));
}
await cli
  .fail((msg, err, y) => {
    // errors name keys, files and aliases, never PHI values; no stack traces for users
    console.error(`dphiant: ${err ? err.message : msg}`);
    if (!err) y.showHelp();
    process.exit(err ? 1 : 2);
  })
  .demandCommand(1)
  .strict()
  .help()
  .parseAsync();
