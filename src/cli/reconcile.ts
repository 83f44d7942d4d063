// `dphiant reconcile`: a walk of the whole PACS archive, on request, for raw instances that no job covers (the
// running middleman only follows the change log from where it stands). It walks the PACS change log from its start,
// by sequence number (src/pipeline/reconciler.ts says why that skips nothing while the worker deletes), at most
// --limit instances per run, and stores where it stopped in the journal: the next run resumes there.
// It works while `dphiant serve` runs on the same data directory: the journal is SQLite in WAL mode (two processes
// may write it), and the jobs it adopts are IN_PACS rows that the running worker's sweep of due jobs picks up
// within a second; without a running middleman they wait for the next `dphiant serve`.
import type { CommandModule } from 'yargs';
import type { Config } from '../config/index.js';
import { loadKeys } from '../crosswalk/open.js';
import { pino } from 'pino';
import { pacsRestClient } from '../middleman.js';
import { Journal, journalPath } from '../pipeline/journal.js';
import { Reconciler } from '../pipeline/reconciler.js';

type LoadConfig = (argv: any) => Config;

export function reconcileCommand(loadConfig: LoadConfig): CommandModule<object, any> {
  return {
    command: 'reconcile',
    describe: 'walk the PACS archive for raw instances no job covers (resumable; works beside a running serve)',
    builder: (y) =>
      y
        .option('limit', { type: 'number', default: 100_000, describe: 'at most this many instances in this run; the next run resumes after them' })
        .option('restart', { type: 'boolean', default: false, describe: 'start the walk from the beginning, not where the last run stopped' })
        .option('config', { type: 'string' }),
    handler: async (argv) => {
      const cfg = loadConfig(argv);
      if (!Number.isInteger(argv.limit) || argv.limit < 1) throw new Error('--limit must be a whole number from 1');
      const warn = (m: string) => console.error(`warning: ${m}`);
      const keys = loadKeys(cfg, warn);
      const journal = new Journal(journalPath(cfg.dataDir), keys.site, warn);
      // the reconciler's own lines (foreign instances by Orthanc ID, adoptions by job id) go to standard error
      // (fd 2 itself: /dev/stderr cannot be opened when standard error is a socket)
      const log = pino({ level: cfg.logLevel === 'silent' ? 'silent' : 'warn', base: { app: 'dphiant' } }, pino.destination({ fd: 2, sync: true }));
      try {
        // the walk only adopts (IN_PACS); whoever runs the worker de-identifies
        const reconciler = new Reconciler(journal, pacsRestClient(cfg), log, () => undefined, { callingAet: cfg.pacs.callingAet, adopt: cfg.pipeline.reconcileAdopt });
        const r = await reconciler.walk(argv.limit, argv.restart);
        console.log(`walked the PACS change log to seq ${r.position}: ${r.considered} instances considered, ${r.adopted} adopted, ${r.foreign} left alone (stored by another system)`);
        console.log(r.complete ? 'walk complete: the next run starts from the beginning' : 'walk not complete: run dphiant reconcile again to resume');
        if (r.adopted) console.log('adopted jobs are IN_PACS: a running dphiant serve de-identifies them (else the next one)');
      } finally {
        journal.close();
      }
    },
  };
}
