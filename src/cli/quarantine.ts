// `dphiant quarantine list|requeue|purge`: what the pipeline could not de-identify, and what to do with it.
import type { CommandModule } from 'yargs';
import type { Config } from '../config/index.js';
import { loadKeys } from '../crosswalk/open.js';
import { auditCommand, pacsRestClient } from '../middleman.js';
import { Journal, journalPath } from '../pipeline/journal.js';
import os from 'node:os';
import { purgeQuarantined, Quarantine, quarantineDir, quarantineEntry, requeueQuarantined } from '../pipeline/quarantine.js';

type LoadConfig = (argv: any) => Config;

export function quarantineCommand(loadConfig: LoadConfig): CommandModule<object, any> {
  return {
    command: 'quarantine <action> [jobs..]',
    describe: 'list quarantined instances; requeue them (back to the PACS and the pipeline) or purge them',
    builder: (y) =>
      y
        .positional('action', { choices: ['list', 'requeue', 'purge'] as const })
        .positional('jobs', { type: 'number', array: true, describe: 'job ids (requeue, purge)' })
        .option('config', { type: 'string' }),
    handler: async (argv) => {
      const cfg = loadConfig(argv);
      const keys = loadKeys(cfg, (m) => console.error(`warning: ${m}`));
      const journal = new Journal(journalPath(cfg.dataDir), keys.site, (m) => console.error(`warning: ${m}`));
      const quarantine = new Quarantine(quarantineDir(cfg.dataDir), keys.crosswalk);
      try {
        if (argv.action === 'list') {
          const jobs = journal.byState('QUARANTINED', 100_000);
          const kept = new Set(quarantine.jobIds());
          console.log(`${jobs.length} quarantined`);
          // the code is the stable column (src/reasons.ts, README); the message after it may change between versions
          for (const j of jobs) console.log(`job ${j.id}\t${j.updatedAt}\t${kept.has(j.id) ? 'kept' : 'nothing kept'}\t${j.reasonCode ?? 'other'}\t${j.reason ?? ''}`);
          return;
        }
        const ids: number[] = argv.jobs ?? [];
        if (ids.length === 0) throw new Error(`${argv.action} needs job ids (dphiant quarantine list)`);
        const pacs = pacsRestClient(cfg);
        const done: string[] = [];
        try {
          for (const id of ids) {
            const job = journal.get(id);
            if (job?.state !== 'QUARANTINED') throw new Error(`job ${id} is not quarantined`);
            if (argv.action === 'requeue') {
              await requeueQuarantined(job, { journal, quarantine, pacs });
              console.log(`job ${id} requeued`);
            } else {
              purgeQuarantined(job, { journal, quarantine }, os.userInfo().username);
              console.log(`job ${id} purged`);
            }
            done.push(quarantineEntry(job));
          }
        } finally {
          // what was done before a failure is audited too
          if (done.length) await auditCommand(cfg, { kind: 'quarantine', action: argv.action, user: os.userInfo().username, address: '127.0.0.1', pacs: { aet: cfg.pacs.aet, address: cfg.pacs.host }, entries: done });
        }
      } finally {
        journal.close();
      }
    },
  };
}
