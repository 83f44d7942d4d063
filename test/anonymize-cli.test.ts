// `dphiant anonymize` and `dphiant verify` as a user runs them, on a folder that holds what real folders hold:
// good instances, a truncated file, a text file and an instance the verification gate must reject. The batch
// finishes, says what happened to every file without repeating any identifying value, writes the outputs in the
// layout asked for, and leaves the old→new mapping CSVs (readable by the owner only) beside them.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { splitPart10 } from '../src/dicom/part10.js';
import { stringValue } from '../src/dicom/values.js';
import { parseFile, type ParsedDataset } from '../src/dicom/walker.js';
import { part10, type Element } from '../src/dicom/writer.js';
import { findUp } from '../src/paths.js';
import { generateElements, generateStudies, type InstanceOptions, type Manifest } from '../tools/synth/generate.js';
import { cleanEnv, DEV_STACK_ENV } from './support/cli.js';

const CLI = findUp('dist/src/cli/main.js');
const SEED = 11;
const ROWS = 16;
/** The environment without any DPHIANT_* setting of the developer's shell (the CLI reads them), in the dev stack. */
const baseEnv = { ...cleanEnv, ...DEV_STACK_ENV };

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the compiled CLI with exactly `env` added to a DPHIANT_-free environment. */
function dphiant(args: string[], opts: { cwd: string; env: Record<string, string> }): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: { ...baseEnv, ...opts.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Every file under `dir`, relative to it, sorted. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const visit = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) visit(p);
      else out.push(path.relative(dir, p));
    }
  };
  if (existsSync(dir)) visit(dir);
  return out.sort();
}

function top(ds: ParsedDataset, tag: number): string {
  const el = ds.elements.find((e) => e.tag === tag);
  return el ? stringValue(ds, el) : '';
}

function datasetOfFile(file: string): ParsedDataset {
  return parseFile(readFileSync(file)).dataset;
}

/** Rows of a mapping CSV (header checked by the caller). */
function csvRows(file: string): { header: string; rows: [string, string][] } {
  const [header = '', ...lines] = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
  return { header, rows: lines.map((l) => l.split(',') as [string, string]) };
}

/** The identifying values of a generated instance: name components, IDs, birth date (DA and YYYY-MM-DD), accession. */
function phiValues(els: Element[]): string[] {
  const v = (tag: number) => String(els.find((e) => e.tag === tag)?.value ?? '');
  const birth = v(0x00100030);
  return [
    ...v(0x00100010).split('^').filter((s) => s.length >= 3),
    v(0x00100020),
    v(0x00101000),
    birth,
    `${birth.slice(0, 4)}-${birth.slice(4, 6)}-${birth.slice(6, 8)}`,
    v(0x00080050),
  ].filter((s) => s !== '');
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The planted values found in `text` (case-insensitive). */
function phiIn(text: string, values: string[]): string[] {
  const t = text.toLowerCase();
  return values.filter((s) => t.includes(s.toLowerCase()));
}

describe('dphiant anonymize and dphiant verify on a folder of files', function () {
  this.timeout(300_000);
  let root: string;
  let input: string;
  let keyFile: string;
  let profileFile: string;
  let manifest: Manifest;
  /** DPHIANT_DATA_DIR of the runs that are given --key: never written to. */
  let unusedDataDir: string;
  let phi: string[];
  let mirror: Result;
  const out = () => path.join(root, 'out');

  const anonymize = (args: string[], env: Record<string, string> = { DPHIANT_DATA_DIR: unusedDataDir }) =>
    dphiant(['anonymize', input, ...args], { cwd: root, env });
  /** Strips the temporary folder (random characters) so only what the program wrote is searched for PHI. */
  const scrub = (text: string) => text.split(root).join('<tmp>');

  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'dphiant-anonymize-cli-'));
    input = path.join(root, 'in');
    unusedDataDir = path.join(root, 'data-unused');
    manifest = await generateStudies({ outDir: input, patients: 3, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 2, rows: ROWS, cols: ROWS, seed: SEED });
    rmSync(path.join(input, 'manifest.json')); // the folder holds instances only (plus the three odd files below)
    phi = [];
    for (const i of manifest.instances) {
      const [, , , n] = i.file.split('/');
      const patientIndex = manifest.patients.findIndex((p) => p.patientId === i.patientId);
      phi.push(...phiValues(generateElements({ seed: SEED, patientIndex, instanceIndex: Number(n!.replace('.dcm', '')) - 1, rows: ROWS, cols: ROWS })));
    }

    // a valid instance of another patient, truncated in the middle of the value of PatientComments
    const corruptOptions: InstanceOptions = { seed: SEED, patientIndex: 8, rows: ROWS, cols: ROWS };
    const corruptEls = generateElements(corruptOptions);
    phi.push(...phiValues(corruptEls));
    const whole = part10(corruptEls, '1.2.840.10008.1.2.1');
    const metaLength = splitPart10(whole).meta.length;
    const comments = parseFile(whole).dataset.elements.find((e) => e.tag === 0x00104000)!;
    const cut = metaLength + comments.valueStart + Math.floor(comments.length / 2);
    writeFileSync(path.join(input, 'corrupt.dcm'), whole.subarray(0, cut));

    // a text file (a note about the first patient: must be neither copied nor echoed)
    writeFileSync(path.join(input, 'notes.txt'), `Referral note for ${manifest.patients[0]!.name.replace('^', ' ')}, ID ${manifest.patients[0]!.patientId}\n`);

    // an instance whose StudyDescription holds its patient's name, de-identified with a profile that keeps it
    const plantedEls = generateElements({ seed: SEED, patientIndex: 7, rows: ROWS, cols: ROWS });
    phi.push(...phiValues(plantedEls));
    const [family, given] = String(plantedEls.find((e) => e.tag === 0x00100010)!.value).split('^');
    plantedEls.find((e) => e.tag === 0x00081030)!.value = `CT Thorax for ${given} ${family}`;
    writeFileSync(path.join(input, 'planted.dcm'), part10(plantedEls, '1.2.840.10008.1.2.1'));

    profileFile = path.join(root, 'keep-study-description.json');
    writeFileSync(profileFile, JSON.stringify({ attributes: { StudyDescription: 'keep' } }));
    keyFile = path.join(root, 'site.key');
    writeFileSync(keyFile, '5c'.repeat(32) + '\n', { mode: 0o600 });

    mirror = await anonymize(['--out', out(), '--key', keyFile, '--profile', profileFile, '--jobs', '2']);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('exits 1 and counts 9 files: 6 de-identified, 1 rejected, 1 failed, 1 skipped', () => {
    expect(mirror.code, `stderr: ${scrub(mirror.stderr)}`).to.equal(1);
    expect(mirror.stdout).to.match(/^files 9, de-identified 6, rejected 1, failed 1, skipped \(not DICOM\) 1;/m);
  });

  it('lists the gate-rejected instance with the attribute, the truncated file as failed with a reason and the text file as skipped', () => {
    const lines = mirror.stdout.split('\n');
    const listed = (kind: string) => lines.filter((l) => l.startsWith(`${kind} `));
    expect(listed('rejected')).to.have.length(1);
    expect(listed('rejected')[0]).to.match(new RegExp(`^rejected\\s+${esc(path.join(input, 'planted.dcm'))}: .*\\bname in StudyDescription\\b`));
    expect(listed('failed')).to.have.length(1);
    expect(listed('failed')[0]).to.match(new RegExp(`^failed\\s+${esc(path.join(input, 'corrupt.dcm'))}: unreadable DICOM: .*\\(0010,4000\\)`));
    expect(listed('skipped')).to.have.length(1);
    expect(listed('skipped')[0]).to.match(new RegExp(`^skipped\\s+${esc(path.join(input, 'notes.txt'))}: \\S+`));
  });

  it('does not crash on the bad files: the good ones are all written and the run ends with the mapping line', () => {
    expect(mirror.stderr, 'stderr').to.not.match(/\b(TypeError|RangeError|Error:|Unhandled|uncaught)\b|^\s+at /m);
    expect(mirror.stdout).to.match(/^mapping CSVs .*: .+\.mappings$/m);
    expect(filesUnder(out())).to.have.length(6);
  });

  it("mirrors the input's relative paths and writes nothing for the rejected, failed and skipped files", () => {
    const expected = manifest.instances.map((i) => path.join(path.basename(input), i.file)).sort();
    expect(filesUnder(out())).to.deep.equal(expected);
    for (const i of manifest.instances) {
      const a = datasetOfFile(i.path);
      const b = datasetOfFile(path.join(out(), path.basename(input), i.file));
      expect(top(b, 0x00120062), `${i.file}: PatientIdentityRemoved`).to.equal('YES');
      expect(top(b, 0x00200013), `${i.file}: the output at this path is the same instance (InstanceNumber)`).to.equal(top(a, 0x00200013));
      expect(top(b, 0x00080018)).to.not.equal(i.sopInstanceUid);
    }
  });

  it('writes uid_mapping.csv and patid_mapping.csv with header id_old,id_new, the right rows and mode 0600 into <out>.mappings', () => {
    const dir = `${out()}.mappings`;
    expect(existsSync(dir), `${dir} exists`).to.equal(true);
    expect(statSync(dir).mode & 0o777, 'mappings folder mode').to.equal(0o700);
    for (const f of ['uid_mapping.csv', 'patid_mapping.csv']) expect(statSync(path.join(dir, f)).mode & 0o777, `${f} mode`).to.equal(0o600);
    const uids = csvRows(path.join(dir, 'uid_mapping.csv'));
    const pats = csvRows(path.join(dir, 'patid_mapping.csv'));
    expect(uids.header).to.equal('id_old,id_new');
    expect(pats.header).to.equal('id_old,id_new');
    const uidMap = new Map(uids.rows);
    expect(uidMap.size, 'one row per original UID').to.equal(uids.rows.length);

    const expectedPatients = new Map<string, string>();
    for (const i of manifest.instances) {
      const a = datasetOfFile(i.path);
      const b = datasetOfFile(path.join(out(), path.basename(input), i.file));
      for (const [tag, name] of [[0x0020000d, 'StudyInstanceUID'], [0x0020000e, 'SeriesInstanceUID'], [0x00080018, 'SOPInstanceUID']] as const) {
        expect(uidMap.get(top(a, tag)), `${i.file}: ${name} old → new`).to.equal(top(b, tag));
      }
      expectedPatients.set(top(a, 0x00100020), top(b, 0x00100020));
    }
    expect(new Map(pats.rows), 'patid_mapping.csv: old patient ID → alias ID of the de-identified instances').to.deep.equal(expectedPatients);
    expect(pats.rows).to.have.length(3);
  });

  it('with --layout alias writes <aliasId>/<study>/<series>/<sop>.dcm named by the new IDs and UIDs', async () => {
    const aliasOut = path.join(root, 'out-alias');
    const r = await anonymize(['--out', aliasOut, '--key', keyFile, '--profile', profileFile, '--layout', 'alias', '--jobs', '2']);
    expect(r.code, scrub(r.stderr)).to.equal(1);
    const files = filesUnder(aliasOut);
    expect(files).to.have.length(6);
    const patids = new Map(csvRows(path.join(`${aliasOut}.mappings`, 'patid_mapping.csv')).rows);
    for (const f of files) {
      const parts = f.split(path.sep);
      expect(parts, f).to.have.length(4);
      const ds = datasetOfFile(path.join(aliasOut, f));
      expect(parts).to.deep.equal([top(ds, 0x00100020), top(ds, 0x0020000d), top(ds, 0x0020000e), `${top(ds, 0x00080018)}.dcm`]);
      expect([...patids.values()], 'the folder is an alias ID of the mapping').to.include(parts[0]);
    }
  });

  it('gives byte-identical outputs with --jobs 1 and --jobs 2', async () => {
    const one = path.join(root, 'out-jobs1');
    const r = await anonymize(['--out', one, '--key', keyFile, '--profile', profileFile, '--jobs', '1']);
    expect(r.code).to.equal(1);
    expect(filesUnder(one)).to.deep.equal(filesUnder(out()));
    for (const f of filesUnder(one)) expect(readFileSync(path.join(one, f)).equals(readFileSync(path.join(out(), f))), f).to.equal(true);
    const sorted = (f: string) => readFileSync(f, 'utf8').split('\n').sort().join('\n');
    for (const f of ['uid_mapping.csv', 'patid_mapping.csv']) expect(sorted(path.join(`${one}.mappings`, f)), f).to.equal(sorted(path.join(`${out()}.mappings`, f)));
  });

  it('without --key creates the development key in DPHIANT_DATA_DIR with mode 0600, says so on stderr, and uses it', async () => {
    const dataDir = path.join(root, 'data');
    const keyPath = path.join(dataDir, 'site.key');
    expect(existsSync(keyPath)).to.equal(false);
    const first = await anonymize(['--out', path.join(root, 'out-nokey'), '--profile', profileFile, '--jobs', '2'], { DPHIANT_DATA_DIR: dataDir });
    expect(first.stdout).to.match(/^files 9, /m);
    expect(existsSync(keyPath), `${keyPath} created`).to.equal(true);
    expect(statSync(keyPath).mode & 0o777, 'key file mode').to.equal(0o600);
    expect(readFileSync(keyPath, 'utf8')).to.match(/^[0-9a-f]{64}\n?$/);
    expect(first.stderr).to.match(/warning/i);
    expect(first.stderr).to.include(keyPath);
    expect(first.stderr).to.match(/created/);

    // the created key is the one used: --key on it gives the same files, and a second run reuses it without a warning
    // (same data directory: the aliases come from its crosswalk, the UIDs from the key)
    const withKey = await anonymize(['--out', path.join(root, 'out-nokey-key'), '--key', keyPath, '--profile', profileFile, '--jobs', '2'], { DPHIANT_DATA_DIR: dataDir });
    const again = await anonymize(['--out', path.join(root, 'out-nokey-again'), '--profile', profileFile, '--jobs', '2'], { DPHIANT_DATA_DIR: dataDir });
    expect(again.stderr).to.not.match(/created/);
    const a = filesUnder(path.join(root, 'out-nokey'));
    expect(a.length).to.be.at.least(1);
    for (const other of ['out-nokey-key', 'out-nokey-again']) {
      expect(filesUnder(path.join(root, other)), other).to.deep.equal(a);
      for (const f of a) expect(readFileSync(path.join(root, other, f)).equals(readFileSync(path.join(root, 'out-nokey', f))), `${other}/${f}`).to.equal(true);
    }
    expect(withKey.code).to.equal(first.code);
    // runs given --key create no development site key in their data directory (only the crosswalk's own files)
    expect(existsSync(path.join(unusedDataDir, 'site.key')), 'runs with --key create no development site key').to.equal(false);
  });

  it('prints no planted identifying value in the summary or on stderr', () => {
    expect(phi.length).to.be.at.least(30);
    expect(phiIn(scrub(mirror.stdout), phi), 'stdout').to.deep.equal([]);
    expect(phiIn(scrub(mirror.stderr), phi), 'stderr').to.deep.equal([]);
  });

  describe('dphiant verify', () => {
    it('exits 0 on the de-identified folder checked against the originals', async () => {
      const r = await dphiant(['verify', out(), '--originals', input], { cwd: root, env: { DPHIANT_DATA_DIR: unusedDataDir } });
      expect(r.code, scrub(r.stdout + r.stderr)).to.equal(0);
      expect(r.stdout).to.match(/^verified 6 files against \d+ identifying values: 0 with findings$/m);
    });

    it('exits 1 on the originals folder itself, naming files and attribute paths but no value', async () => {
      const r = await dphiant(['verify', input, '--originals', input], { cwd: root, env: { DPHIANT_DATA_DIR: unusedDataDir } });
      expect(r.code).to.equal(1);
      expect(r.stdout).to.match(/verified 7 files against \d+ identifying values: 9 with findings/);
      const first = manifest.instances[0]!.path;
      const line = r.stdout.split('\n').find((l) => l.startsWith(`${first}: `));
      expect(line, `a line for ${first}`).to.be.a('string');
      expect(line).to.include('PatientIdentityRemoved is not YES');
      expect(line).to.match(/\bname in PatientName\b/);
      expect(line).to.match(/\bid in PatientID\b/);
      expect(line).to.match(/\bbirth date in PatientBirthDate\b/);
      // file paths are the user's own (generateStudies names folders by PatientID): remove them, then search
      let text = r.stdout + r.stderr;
      for (const i of manifest.instances) text = text.split(i.path).join('<file>');
      expect(phiIn(scrub(text), phi), 'identifying values in verify output').to.deep.equal([]);
    });
  });
});

/** Sets (or adds) a top-level element of generated elements. */
function setElement(els: Element[], tag: number, vr: string, value: string): Element[] {
  const el = els.find((e) => e.tag === tag);
  if (el) el.value = value;
  else els.push({ tag, vr, value });
  return els;
}

describe('dphiant anonymize on values it cannot write as they are', function () {
  this.timeout(300_000);
  let root: string;
  let keyFile: string;
  let dataDir: string;
  before(() => {
    root = mkdtempSync(path.join(tmpdir(), 'dphiant-anonymize-values-'));
    keyFile = path.join(root, 'site.key');
    writeFileSync(keyFile, '6d'.repeat(32) + '\n', { mode: 0o600 });
    dataDir = path.join(root, 'data');
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('rejects an instance whose new value its character set (ISO_IR 100) cannot hold, with a reason naming no value', async () => {
    const input = path.join(root, 'charset-in');
    mkdirSync(input);
    // the site writes a fixed StudyDescription that Latin-1 has no byte for; the generator's data sets are ISO_IR 100
    const profile = path.join(root, 'chinese-description.json');
    writeFileSync(profile, JSON.stringify({ attributes: { StudyDescription: { fixed: '李' } } }));
    const latin1 = generateElements({ seed: SEED, patientIndex: 1, rows: ROWS, cols: ROWS });
    expect(top(parseFile(part10(latin1, '1.2.840.10008.1.2.1')).dataset, 0x00080005)).to.equal('ISO_IR 100');
    writeFileSync(path.join(input, 'latin1.dcm'), part10(latin1, '1.2.840.10008.1.2.1'));
    // the same kind of instance without a StudyDescription: nothing to write in it, de-identified
    const without = generateElements({ seed: SEED, patientIndex: 2, rows: ROWS, cols: ROWS }).filter((e) => e.tag !== 0x00081030);
    writeFileSync(path.join(input, 'no-description.dcm'), part10(without, '1.2.840.10008.1.2.1'));
    const r = await dphiant(['anonymize', input, '--out', path.join(root, 'charset-out'), '--key', keyFile, '--profile', profile, '--jobs', '1'], { cwd: root, env: { DPHIANT_DATA_DIR: dataDir } });
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stdout).to.match(/^files 2, de-identified 1, rejected 1, failed 0,/m);
    expect(r.stdout.split('\n').filter((l) => /^(rejected|failed)/.test(l))).to.deep.equal([`rejected ${path.join(input, 'latin1.dcm')}: value not encodable in the data set's character set`]);
    expect(r.stdout + r.stderr).not.to.contain('李');
    expect(filesUnder(path.join(root, 'charset-out'))).to.deep.equal([path.join('charset-in', 'no-description.dcm')]);
  });

  it('refuses a bad site profile before reading or writing any file: exit 1, the attribute named, no output folder', async () => {
    const input = path.join(root, 'profile-in');
    mkdirSync(input);
    writeFileSync(path.join(input, '1.dcm'), part10(generateElements({ seed: SEED, patientIndex: 4, rows: ROWS, cols: ROWS }), '1.2.840.10008.1.2.1'));
    const profile = path.join(root, 'shred.json');
    writeFileSync(profile, JSON.stringify({ attributes: { StudyDescription: 'shred' } }));
    const out = path.join(root, 'profile-out');
    const r = await dphiant(['anonymize', input, '--out', out, '--key', keyFile, '--profile', profile, '--jobs', '2'], { cwd: root, env: { DPHIANT_DATA_DIR: dataDir } });
    expect(r.code, r.stdout + r.stderr).to.equal(1);
    expect(r.stderr).to.include('StudyDescription: unknown action "shred"');
    expect(r.stdout).to.equal('');
    expect(existsSync(out), 'output folder').to.equal(false);
  });

  it('with --layout alias --retain-uids names no folder or file after a UID that is not one, and writes nothing outside --out', async () => {
    const input = path.join(root, 'uids-in');
    mkdirSync(input);
    // out is <root>/a/out: from <out>/<alias>/, "../../escaped" is <root>/a/escaped, still inside the test folder
    const parent = path.join(root, 'a');
    const out = path.join(parent, 'out');
    const badStudy = '../../escaped';
    const badSeries = 'x/y';
    const badSop = '../../../../sop-escaped';
    const instance = (n: number, study: string, series: string, sop: string) => {
      const els = generateElements({ seed: SEED, patientIndex: 3, instanceIndex: n, rows: ROWS, cols: ROWS });
      setElement(els, 0x0020000d, 'UI', study);
      setElement(els, 0x0020000e, 'UI', series);
      setElement(els, 0x00080018, 'UI', sop);
      writeFileSync(path.join(input, `${n}.dcm`), part10(els, '1.2.840.10008.1.2.1'));
    };
    instance(0, badStudy, badSeries, '1.2.826.0.1.3680043.10.1.1');
    instance(1, badStudy, badSeries, '1.2.826.0.1.3680043.10.1.2');
    instance(2, '1.2.826.0.1.3680043.10.2', '1.2.826.0.1.3680043.10.3', badSop);
    const r = await dphiant(['anonymize', input, '--out', out, '--mappings', path.join(root, 'uids-mappings'), '--key', keyFile, '--layout', 'alias', '--retain-uids', '--jobs', '2'], { cwd: root, env: { DPHIANT_DATA_DIR: dataDir } });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^files 3, de-identified 3, rejected 0, failed 0,/m);
    expect(filesUnder(parent).filter((f) => !f.startsWith(`out${path.sep}`)), 'files written outside --out').to.deep.equal([]);
    const files = filesUnder(out);
    expect(files).to.have.length(3);
    const standIn = /^invalid-[0-9a-f]{32}$/;
    const byStudy = new Map<string, string[]>();
    for (const f of files) {
      const parts = f.split(path.sep);
      expect(parts, f).to.have.length(4);
      const ds = datasetOfFile(path.join(out, f));
      const [alias, study, series, file] = parts as [string, string, string, string];
      expect(alias).to.equal(top(ds, 0x00100020));
      expect(alias).to.match(/^DPH[A-Z2-7]{8}$/);
      const sop = top(ds, 0x00080018);
      if (top(ds, 0x0020000d) === badStudy) {
        // the retained UIDs are the input's: the stand-ins are in the path only
        expect(top(ds, 0x0020000e)).to.equal(badSeries);
        expect(study).to.match(standIn);
        expect(series).to.match(standIn);
        expect(file).to.equal(`${sop}.dcm`);
      } else {
        expect(sop).to.equal(badSop);
        expect([study, series]).to.deep.equal([top(ds, 0x0020000d), top(ds, 0x0020000e)]);
        expect(file.replace(/\.dcm$/, '')).to.match(standIn);
      }
      byStudy.set(study, [...(byStudy.get(study) ?? []), series]);
    }
    const badFolders = [...byStudy.entries()].filter(([s]) => standIn.test(s));
    expect(badFolders, 'one stand-in folder for the two instances of the study').to.have.length(1);
    expect(new Set(badFolders[0]![1]).size, 'and one for their series').to.equal(1);
  });
});

describe('dphiant anonymize asks the crosswalk once per patient and study, and each gets its own aliases', function () {
  this.timeout(300_000);
  let root: string;
  before(() => (root = mkdtempSync(path.join(tmpdir(), 'dphiant-anonymize-aliases-'))));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('with --jobs 3 over files of 3 patients (two sharing a name) in 2 studies each, interleaved: 3 aliases, 6 accession aliases', async () => {
    const input = path.join(root, 'in');
    mkdirSync(input);
    const name = String(generateElements({ seed: SEED, patientIndex: 0, rows: ROWS, cols: ROWS }).find((e) => e.tag === 0x00100010)!.value);
    // files named so the sorted order interleaves patients and studies (every worker meets every patient and study)
    const expected = new Map<string, { patient: number; study: number }>();
    for (let i = 0; i < 8; i++) {
      for (let patient = 0; patient < 3; patient++) {
        for (let study = 0; study < 2; study++) {
          const els = generateElements({ seed: SEED, patientIndex: patient, studyIndex: study, instanceIndex: i, rows: ROWS, cols: ROWS });
          if (patient === 1) setElement(els, 0x00100010, 'PN', name); // another patient (own PatientID) of the same name
          const file = `${String(i).padStart(2, '0')}-${patient}-${study}.dcm`;
          writeFileSync(path.join(input, file), part10(els, '1.2.840.10008.1.2.1'));
          expected.set(file, { patient, study });
        }
      }
    }
    const dataDir = path.join(root, 'data');
    const out = path.join(root, 'out');
    const r = await dphiant(['anonymize', input, '--out', out, '--jobs', '3'], { cwd: root, env: { DPHIANT_DATA_DIR: dataDir } });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^files 48, de-identified 48, rejected 0, failed 0,/m);

    const patientAlias = new Map<number, Set<string>>();
    const accessionAlias = new Map<string, Set<string>>();
    for (const [file, { patient, study }] of expected) {
      const ds = datasetOfFile(path.join(out, 'in', file));
      patientAlias.set(patient, (patientAlias.get(patient) ?? new Set()).add(top(ds, 0x00100020)));
      accessionAlias.set(`${patient}/${study}`, (accessionAlias.get(`${patient}/${study}`) ?? new Set()).add(top(ds, 0x00080050)));
    }
    for (const [p, ids] of patientAlias) expect([...ids], `patient ${p}: one alias ID in all its files`).to.have.length(1);
    expect(new Set([...patientAlias.values()].map((s) => [...s][0])).size, 'three patients, three aliases (a shared name is not a shared patient)').to.equal(3);
    for (const [s, accs] of accessionAlias) expect([...accs], `study ${s}: one accession alias`).to.have.length(1);
    expect(new Set([...accessionAlias.values()].map((s) => [...s][0])).size, 'six studies, six accession aliases').to.equal(6);

    // the crosswalk holds exactly these: one record per patient, two studies each
    const list = await dphiant(['crosswalk', 'list'], { cwd: root, env: { DPHIANT_DATA_DIR: dataDir } });
    expect(list.code, list.stderr).to.equal(0);
    expect(list.stdout).to.match(/^3 patient aliases in the sqlite crosswalk$/m);
    const rows = list.stdout.split('\n').filter((l) => /^\S+\t/.test(l));
    expect(rows.map((l) => l.split('\t')[0]).sort()).to.deep.equal([...patientAlias.values()].map((s) => [...s][0]!).sort());
    for (const l of rows) expect(l, 'studies per patient').to.include('\tstudies 2\t');
    console.log(`aliases: 48 files of 3 patients in 6 studies over 3 workers → ${patientAlias.size} patient aliases, ${accessionAlias.size} accession aliases in the crosswalk`);
  });
});
