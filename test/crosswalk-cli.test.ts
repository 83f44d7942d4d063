// The crosswalk as operators use it: keygen, anonymize with the crosswalk (SQLite and FerretDB), list, reveal,
// audit, export, rekey, and no PHI in any output or log line along the way.
import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { part10, type Element } from '../src/dicom/writer.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { dphiant } from './support/cli.js';
import { startMongoServer, type MongoServer } from './support/ferretdb.js';

const PLANTED = { name: 'Wolkenstein^Ermengarde', id: 'PLNT-55821', birth: '19440229', accession: 'ACCPL-991' };

function instance(n: number): Buffer {
  const el: Element[] = [
    { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' },
    { tag: 0x00080018, vr: 'UI', value: `1.2.826.0.1.3680043.2.1125.55.${n}` },
    { tag: 0x00080050, vr: 'SH', value: PLANTED.accession },
    { tag: 0x00100010, vr: 'PN', value: PLANTED.name },
    { tag: 0x00100020, vr: 'LO', value: PLANTED.id },
    { tag: 0x00100030, vr: 'DA', value: PLANTED.birth },
    { tag: 0x00100040, vr: 'CS', value: 'F' },
    { tag: 0x0020000d, vr: 'UI', value: '1.2.826.0.1.3680043.2.1125.55.100' },
    { tag: 0x0020000e, vr: 'UI', value: '1.2.826.0.1.3680043.2.1125.55.200' },
  ];
  return part10(el, TS.ExplicitVRLittleEndian);
}

function expectNoPhi(text: string, where: string) {
  for (const v of [...PLANTED.name.split('^'), PLANTED.id, PLANTED.birth, PLANTED.accession]) expect(text, `${v} in ${where}`).not.to.contain(v);
}

let ferret: MongoServer | { skip: string };
before(async () => {
  ferret = await startMongoServer();
});
after(async () => {
  if (!('skip' in ferret)) await ferret.stop();
});

for (const backend of ['SQLite', 'MongoDB (FerretDB)'] as const) {
  describe(`dphiant crosswalk commands on ${backend}`, function () {
    this.timeout(120_000);
    let dir: string;
    let env: Record<string, string>;
    const cli = (args: string[], extra: Record<string, string> = {}) => dphiant(args, { ...env, ...extra });

    before(async function () {
      if (backend !== 'SQLite' && 'skip' in ferret) {
        console.log(`      (skipped: ${ferret.skip})`);
        this.skip();
      }
      dir = mkdtempSync(path.join(tmpdir(), 'dphiant-cwcli-'));
      env = { DPHIANT_DATA_DIR: path.join(dir, 'data') };
      if (backend !== 'SQLite') env.DPHIANT_CROSSWALK_URL = `${(ferret as MongoServer).url}/cli_${Date.now()}`;
    });

    // Each test sets up what it needs through these (idempotent), so it passes alone under --grep as well as after
    // the tests before it; when those ran, the steps are already done and nothing is repeated.
    const keyFiles = () => ({ site: path.join(dir, 'site.key'), crosswalk: path.join(dir, 'crosswalk.key') });
    const useKeys = () => {
      env.DPHIANT_KEY_FILE = keyFiles().site;
      env.DPHIANT_CROSSWALK_KEY_FILE ??= keyFiles().crosswalk;
    };
    /** Both key files exist and the commands use them. */
    async function ensureKeys(): Promise<void> {
      for (const f of Object.values(keyFiles())) {
        if (existsSync(f)) continue;
        const r = await cli(['keygen', '--out', f]);
        expect(r.code, r.stderr).to.equal(0);
      }
      useKeys();
    }
    /** Two instances of the planted patient went through `dphiant anonymize`: the crosswalk holds one alias. */
    let anonymized: Awaited<ReturnType<typeof cli>> | undefined;
    async function ensureAnonymized(): Promise<NonNullable<typeof anonymized>> {
      await ensureKeys();
      if (anonymized) return anonymized;
      const input = path.join(dir, 'in');
      mkdirSync(input, { recursive: true });
      writeFileSync(path.join(input, 'a.dcm'), instance(1));
      writeFileSync(path.join(input, 'b.dcm'), instance(2));
      anonymized = await cli(['anonymize', input, '--out', path.join(dir, 'out'), '--jobs', '2']);
      expect(anonymized.code, anonymized.stdout + anonymized.stderr).to.equal(0);
      return anonymized;
    }
    /** The audit's actions, newest first. */
    const auditActions = async () => (await cli(['crosswalk', 'audit'])).stdout.split('\n').filter(Boolean).map((l) => l.split('\t')[1]);

    it('keygen writes a 0600 key file and never overwrites one', async () => {
      // the first test of the describe: no key file exists yet, the ones written here are the describe's keys
      for (const f of Object.values(keyFiles())) {
        expect(existsSync(f), `${f} before keygen`).to.equal(false);
        const r = await cli(['keygen', '--out', f]);
        expect(r.code, r.stderr).to.equal(0);
        expect(statSync(f).mode & 0o777).to.equal(0o600);
        expect(readFileSync(f, 'utf8').trim()).to.match(/^[0-9a-f]{64}$/);
      }
      const before = readFileSync(keyFiles().site, 'utf8');
      const again = await cli(['keygen', '--out', keyFiles().site]);
      expect(again.code).not.to.equal(0);
      expect(readFileSync(keyFiles().site, 'utf8'), 'the key file is unchanged').to.equal(before);
      useKeys();
    });

    it('anonymizes two instances of one patient under one alias of the right sex, with no PHI in any output line', async () => {
      const r = await ensureAnonymized();
      expectNoPhi(r.stdout + r.stderr, 'anonymize output');
      const list = await cli(['crosswalk', 'list']);
      expect(list.stdout).to.match(/^1 patient aliases in the (sqlite|mongodb) crosswalk/);
      expect(list.stdout).to.match(/\tF\tstudies 1\t/);
      expectNoPhi(list.stdout + list.stderr, 'crosswalk list');
    });

    it('reveal needs a reason; with one it prints the identity and the audit shows who and why', async () => {
      await ensureAnonymized();
      const alias = (await cli(['crosswalk', 'list'])).stdout.split('\n')[1]!.split('\t')[0]!;
      expect(alias).to.match(/^DPH/);
      const auditBefore = await auditActions();
      const refused = await cli(['crosswalk', 'reveal', alias]);
      expect(refused.code).to.equal(1);
      expect(refused.stderr).to.contain('needs a reason');
      expectNoPhi(refused.stdout + refused.stderr, 'a refused reveal');
      const shown = await cli(['crosswalk', 'reveal', alias, '--reason', 'tumour board follow-up', '--user', 'dr.lee']);
      expect(shown.code, shown.stderr).to.equal(0);
      expect(JSON.parse(shown.stdout).identity).to.include({ patientId: PLANTED.id, name: PLANTED.name, birthDate: PLANTED.birth });
      const audit = await cli(['crosswalk', 'audit']);
      expect(audit.stdout.trim().split('\n'), 'one audit record more: the reveal; the refused one wrote none').to.have.length(auditBefore.length + 1);
      expect(audit.stdout.trim().split('\n')[0]).to.match(new RegExp(`\\treveal\\t${alias}\\tdr\\.lee \\(os user .+\\)\\ttumour board follow-up`));
    });

    it('exports the mapping to a 0600 file, audited, and rekeys to a new crosswalk key', async () => {
      await ensureAnonymized();
      const auditBefore = await auditActions();
      const out = path.join(dir, 'export.csv');
      const r = await cli(['crosswalk', 'export', '--out', out, '--reason', 'registry reconciliation']);
      expect(r.code, r.stderr).to.equal(0);
      expect(statSync(out).mode & 0o777).to.equal(0o600);
      expect(readFileSync(out, 'utf8')).to.contain(PLANTED.id);
      await cli(['keygen', '--out', path.join(dir, 'crosswalk2.key')]);
      const rekey = await cli(['crosswalk', 'rekey', '--new-key', path.join(dir, 'crosswalk2.key'), '--reason', 'scheduled rotation']);
      expect(rekey.code, rekey.stderr).to.equal(0);
      expect(rekey.stdout).to.match(/re-sealed [1-9]\d* values/);
      const old = await cli(['crosswalk', 'list']);
      expect(old.code, 'the old key no longer opens the crosswalk').to.equal(1);
      expect(old.stderr).to.contain('sealed with key');
      env.DPHIANT_CROSSWALK_KEY_FILE = path.join(dir, 'crosswalk2.key');
      expect(await auditActions(), 'the new key reads the audit: the rekey and the export on top of what was there').to.deep.equal(['rekey', 'export', ...auditBefore]);
    });

    it('finds the planted values 0 times in the crosswalk files at rest and in the database server log', async function () {
      await ensureAnonymized();
      const files: string[] = [];
      const scan = (d: string) => existsSync(d) && readdirSync(d, { recursive: true, withFileTypes: true }).forEach((e) => e.isFile() && files.push(path.join(e.parentPath, e.name)));
      if (backend === 'SQLite') scan(path.join(dir, 'data'));
      else if ((ferret as MongoServer).dataDir) scan((ferret as MongoServer).dataDir!);
      const stores = files.filter((f) => /\.sqlite/.test(f));
      expect(stores.length, 'crosswalk database files found').to.be.greaterThan(0);
      for (const f of stores) expectNoPhi(readFileSync(f).toString('latin1'), path.basename(f));
      if (backend !== 'SQLite') expectNoPhi((ferret as MongoServer).log(), 'the FerretDB log');
    });
  });
}

describe('the middleman outside the dev stack', () => {
  it('refuses to start without keys, naming the setting', async () => {
    const r = await dphiant(['serve'], { DPHIANT_DEV_STACK: 'false', DPHIANT_PACS_PASSWORD: 'a-real-password' });
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/keyFile|crosswalk\.keyFile/);
  });
});
