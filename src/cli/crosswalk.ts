// `dphiant keygen` and `dphiant crosswalk list|reveal|audit|export|rekey`.
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import type { CommandModule } from 'yargs';
import type { Config } from '../config/index.js';
import { auditCommand } from '../middleman.js';
import { Sealer } from '../crosswalk/crypto.js';
import { loadKeys, openCrosswalk } from '../crosswalk/open.js';
import { checkReason, type CrosswalkStore } from '../crosswalk/store.js';
import { readKeyFile, writeKeyFile } from '../keys.js';
import { Quarantine, quarantineDir } from '../pipeline/quarantine.js';
import { DataDirBusyError, ServeLock, serveLockPath } from '../serve-lock.js';

type LoadConfig = (argv: any) => Config;

/** Who asks: the operating-system account, and the name given with --user if any. */
function who(user: string | undefined): string {
  const account = os.userInfo().username;
  return user ? `${user} (os user ${account})` : account;
}

async function withStore<T>(cfg: Config, fn: (store: CrosswalkStore) => Promise<T>): Promise<T> {
  const store = await openCrosswalk(cfg, loadKeys(cfg, (msg) => console.error(`warning: ${msg}`)));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * A new crosswalk key for the crosswalk and the quarantine (both sealed with it), with the middleman stopped: it
 * takes the data directory's lock that `dphiant serve` holds (src/serve-lock.ts), so it refuses while serve runs
 * and serve refuses to start meanwhile. The quarantine is re-sealed first, file by file (temp + fsync + rename),
 * then the crosswalk. Every file and value opens with one of the two keys at any moment, and what is already under
 * the new key is skipped: an interrupted rekey is finished by running the same command again, with the
 * configuration still naming the old key (this run opens values under either key).
 */
async function rekey(cfg: Config, newKeyFile: string | undefined, user: string, reason: string): Promise<void> {
  if (!newKeyFile) throw new Error('rekey needs --new-key FILE (dphiant keygen --out FILE)');
  checkReason(user, reason);
  const next = readKeyFile(newKeyFile);
  let lock: ServeLock;
  try {
    lock = ServeLock.acquire(cfg.dataDir);
  } catch (e) {
    if (e instanceof DataDirBusyError) throw new Error(`refusing to rekey: the middleman (dphiant serve) is running on ${cfg.dataDir} (it holds ${serveLockPath(cfg.dataDir)}); stop it first`);
    throw e;
  }
  try {
    const keys = loadKeys(cfg, (msg) => console.error(`warning: ${msg}`));
    if (next.equals(keys.site)) throw new Error('the new crosswalk key must differ from the site key');
    const store = await openCrosswalk(cfg, keys, [next]);
    try {
      const q = new Quarantine(quarantineDir(cfg.dataDir), keys.crosswalk).rekey(next);
      if (q.unreadable.length)
        console.error(
          `warning: quarantined job(s) ${q.unreadable.join(', ')} open with neither the configured nor the new key; left as they are ` +
            '(if crosswalk.keyFile already names the new key after an interrupted rekey, set it back to the old key and run this again)',
        );
      const count = await store.rekey(new Sealer(next), user, reason);
      await auditCommand(cfg, { kind: 'export', user, address: '127.0.0.1', what: 'rekey' });
      console.log(`re-sealed ${count} values and ${q.resealed.length} quarantined instances; now point crosswalk.keyFile at ${newKeyFile}`);
    } finally {
      await store.close();
    }
  } finally {
    lock.release();
  }
}

const csvCell = (v: string) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

export function crosswalkCommands(loadConfig: LoadConfig): CommandModule<object, any>[] {
  const keygen: CommandModule<object, any> = {
    command: 'keygen',
    describe: 'write a new random 256-bit key file (mode 0600) for keyFile or crosswalk.keyFile',
    builder: (y) => y.option('out', { type: 'string', demandOption: true, describe: 'the key file to create (never overwritten)' }),
    handler: (argv) => {
      writeKeyFile(argv.out);
      console.log(`wrote ${argv.out} (mode 0600); keep a copy in a safe place`);
    },
  };

  const crosswalk: CommandModule<object, any> = {
    command: 'crosswalk <action> [alias]',
    describe: 'list aliases; reveal, audit, export or rekey the crosswalk',
    builder: (y) =>
      y
        .positional('action', { choices: ['list', 'reveal', 'audit', 'export', 'rekey'] as const })
        .positional('alias', { type: 'string', describe: 'alias ID (reveal; audit: optional filter)' })
        .option('reason', { type: 'string', describe: 'why (reveal, export, rekey): recorded in the audit log' })
        .option('user', { type: 'string', describe: 'name of the person asking, recorded beside the OS account' })
        .option('search', { type: 'string', describe: 'list: alias ID prefix' })
        .option('limit', { type: 'number', default: 100 })
        .option('out', { type: 'string', describe: 'export: CSV file to write (mode 0600)' })
        .option('new-key', { type: 'string', describe: 'rekey: key file of the new crosswalk key' })
        .option('config', { type: 'string' }),
    handler: async (argv) => {
      const cfg = loadConfig(argv);
      if (argv.action === 'rekey') return rekey(cfg, argv.newKey, who(argv.user), argv.reason ?? '');
      await withStore(cfg, async (store) => {
        switch (argv.action) {
          case 'list': {
            const { total, items } = await store.listPatients({ search: argv.search, limit: argv.limit });
            console.log(`${total} patient aliases in the ${store.backend} crosswalk`);
            for (const p of items) console.log(`${p.aliasId}\t${p.aliasName}\t${p.aliasSex}\tstudies ${p.studies}\tfirst ${p.createdAt}\tlast study ${p.lastStudyAt ?? '-'}`);
            return;
          }
          case 'reveal': {
            if (!argv.alias) throw new Error('reveal needs an alias');
            const r = await store.reveal(argv.alias, who(argv.user), argv.reason ?? '');
            await auditCommand(cfg, { kind: 'reveal', user: who(argv.user), address: '127.0.0.1', aliasId: argv.alias });
            console.log(JSON.stringify(r, null, 2));
            console.error(`(recorded in the audit log: ${who(argv.user)}, "${argv.reason}")`);
            return;
          }
          case 'audit':
            for (const a of await store.audit({ aliasId: argv.alias, limit: argv.limit })) console.log(`${a.at}\t${a.action}\t${a.aliasId ?? '*'}\t${a.user}\t${a.reason}`);
            return;
          case 'export': {
            if (!argv.out) throw new Error('export needs --out FILE');
            const rows = await store.exportMapping(who(argv.user), argv.reason ?? '');
            await auditCommand(cfg, { kind: 'export', user: who(argv.user), address: '127.0.0.1', what: 'mapping' });
            const lines = ['alias_id,alias_name,patient_id,issuer_of_patient_id,patient_name,birth_date,sex,date_offset_days,accession_alias,study_instance_uid,accession_number'];
            for (const p of rows) {
              const base = [p.aliasId, p.aliasName, p.identity.patientId, p.identity.issuerOfPatientId, p.identity.name, p.identity.birthDate, p.identity.sex, String(p.dateOffsetDays)];
              const studies = p.studies.length ? p.studies : [{ accessionAlias: '', studyInstanceUid: '', accessionNumber: '' }];
              for (const s of studies) lines.push([...base, s.accessionAlias, s.studyInstanceUid, s.accessionNumber].map(csvCell).join(','));
            }
            writeFileSync(argv.out, lines.join('\n') + '\n', { mode: 0o600, flag: 'wx' });
            console.log(`exported ${rows.length} patients to ${argv.out} (mode 0600; it holds PHI)`);
            return;
          }
        }
      });
    },
  };
  return [keygen, crosswalk];
}
