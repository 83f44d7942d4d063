import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { synthCommand } from '../tools/synth/cli.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { isValidUid } from '../src/dicom/uid.js';
import { parseFile } from '../src/dicom/walker.js';
import {
  CT_IMAGE_STORAGE, GIVEN_NAMES, MR_IMAGE_STORAGE, generateLarge, generateOne, generateStudies, type Manifest,
} from '../tools/synth/generate.js';
import { VARIANT_TRANSFER_SYNTAXES, dcmdump, makeVariants, transferSyntaxOf } from './support/variants.js';

/** The first value of a tag at top level of a dcmdump listing (strings in [], numbers bare). */
function valueOf(dump: string, tag: string): string | undefined {
  const m = new RegExp(`^\\(${tag}\\) \\w\\w (?:\\[([^\\]]*)\\]|(\\S+))`, 'm').exec(dump);
  return m ? (m[1] ?? m[2]) : undefined;
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('synthetic studies', () => {
  let dir: string;
  let manifest: Manifest;
  const dumps = new Map<string, string>();
  const dumpOf = async (file: string): Promise<string> => {
    if (!dumps.has(file)) {
      const r = await dcmdump(file, ['-Un', '+L']);
      expect(r.code, r.stderr).to.equal(0);
      dumps.set(file, r.stdout);
    }
    return dumps.get(file)!;
  };

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'dphiant-synth-'));
    manifest = await generateStudies({
      outDir: path.join(dir, 'a'), patients: 5, studiesPerPatient: 2, seriesPerStudy: 2, instancesPerSeries: 2, rows: 32, cols: 32, seed: 42,
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes one file per instance under patient/study/series folders and a manifest.json that matches the files', () => {
    expect(manifest.instances).to.have.length(5 * 2 * 2 * 2);
    expect(manifest.totals.files).to.equal(40);
    const onDisk = JSON.parse(readFileSync(path.join(dir, 'a', 'manifest.json'), 'utf8'));
    expect(onDisk).to.deep.equal(manifest);
    let total = 0;
    for (const i of manifest.instances) {
      expect(i.file).to.match(new RegExp(`^${i.patientId}/[12]/[12]/[12]\\.dcm$`));
      expect(i.path).to.equal(path.join(dir, 'a', i.file));
      expect(statSync(i.path).size).to.equal(i.bytes);
      expect(i.transferSyntaxUid).to.equal(TS.ExplicitVRLittleEndian);
      total += i.bytes;
    }
    expect(manifest.totals.bytes).to.equal(total);
  });

  it('instances of a series share study, series and frame of reference UIDs, and every SOP instance UID is unique and valid', async () => {
    const bySeries = new Map<string, Set<string>>();
    for (const i of manifest.instances) {
      const d = await dumpOf(i.path);
      expect(valueOf(d, '0008,0018')).to.equal(i.sopInstanceUid);
      expect(valueOf(d, '0020,000d')).to.equal(i.studyInstanceUid);
      expect(valueOf(d, '0020,000e')).to.equal(i.seriesInstanceUid);
      expect(valueOf(d, '0008,0016')).to.equal(i.sopClassUid);
      const key = i.seriesInstanceUid;
      bySeries.set(key, (bySeries.get(key) ?? new Set()).add(`${i.studyInstanceUid}|${valueOf(d, '0020,0052')}`));
      for (const u of [i.sopInstanceUid, i.studyInstanceUid, i.seriesInstanceUid]) expect(isValidUid(u), u).to.equal(true);
    }
    expect(bySeries.size).to.equal(5 * 2 * 2);
    for (const s of bySeries.values()) expect(s.size).to.equal(1);
    expect(new Set(manifest.instances.map((i) => i.sopInstanceUid)).size).to.equal(40);
    expect(new Set(manifest.instances.map((i) => i.studyInstanceUid)).size).to.equal(10);
  });

  it('alternates male and female patients with an occasional other, and gives each a given name of that sex', async () => {
    expect(manifest.patients.map((p) => p.sex)).to.deep.equal(['M', 'F', 'M', 'F', 'O']);
    for (const p of manifest.patients) {
      const [family, given] = p.name.split('^');
      expect(family).to.match(/\S/);
      expect(GIVEN_NAMES[p.sex]).to.include(given);
      const file = manifest.instances.find((i) => i.patientId === p.patientId)!.path;
      const d = await dumpOf(file);
      expect(valueOf(d, '0010,0040')).to.equal(p.sex);
      expect(valueOf(d, '0010,0010')).to.equal(p.name);
      expect(valueOf(d, '0010,0030')).to.equal(p.birthDate);
    }
    expect(new Set(manifest.patients.map((p) => p.patientId)).size).to.equal(5);
  });

  it('puts fake PHI in the usual places, including the private block and nested sequences', async () => {
    const p = manifest.patients[1]!;
    const inst = manifest.instances.find((i) => i.patientId === p.patientId)!;
    const d = await dumpOf(inst.path);
    const [family, given] = p.name.split('^') as [string, string];
    const nonEmpty = ['0008,0050', '0008,0020', '0008,0030', '0008,0021', '0008,0022', '0008,0023', '0008,0080', '0008,0081',
      '0008,0090', '0008,1010', '0008,1030', '0008,1050', '0008,1070', '0010,0021', '0010,1000', '0010,1010', '0010,1040',
      '0010,2154', '0010,4000', '0018,1000', '0020,0010'];
    for (const t of nonEmpty) expect(valueOf(d, t), t).to.match(/\S/);
    expect(valueOf(d, '0010,0020')).to.equal(p.patientId);
    expect(valueOf(d, '0010,0021')).to.equal(p.issuerOfPatientId);
    expect(valueOf(d, '0010,1010')).to.match(/^\d{3}Y$/);
    expect(valueOf(d, '0008,103e')).to.contain(given).and.to.contain(family);
    expect(valueOf(d, '0008,0050')).to.equal(p.studies.find((s) => s.studyInstanceUid === inst.studyInstanceUid)!.accessionNumber);
    // private block: creator, ID as LO, name bytes as UN
    expect(valueOf(d, '0009,0010')).to.equal('DPHIANT SYNTH');
    expect(valueOf(d, '0009,1001')).to.equal(p.patientId);
    const un = Buffer.from(p.name.length % 2 ? p.name + ' ' : p.name, 'latin1');
    expect(d).to.contain(`(0009,1002) UN ${[...un].map((b) => b.toString(16).padStart(2, '0')).join('\\')}`);
    // nested sequences, by path
    const r = await dcmdump(inst.path, ['-Un', '+p', '+P', '0040,1001', '+P', '0040,0009', '+P', '0008,1155', '+P', '0010,0010', '+P', '0010,0020', '+P', '0010,0022']);
    const lines = r.stdout.split('\n');
    const has = (re: RegExp): void => void expect(lines.some((l) => re.test(l)), String(re)).to.equal(true);
    has(/^\(0040,0275\)\.\(0040,1001\) SH \[RP\d+\]/);
    has(/^\(0040,0275\)\.\(0040,0009\) SH \[SPS\d+\]/);
    has(new RegExp(`^\\(0040,0275\\)\\.\\(0008,1110\\)\\.\\(0008,1155\\) UI \\[${esc(inst.studyInstanceUid)}\\]`));
    has(/^\(0008,1120\)\.\(0008,1155\) UI \[2\.25\.\d+\]/);
    has(/^\(0010,1002\)\.\(0010,0022\) CS \[TEXT\]/);
    // depth 3, standard and private
    has(new RegExp(`^\\(0008,1140\\)\\.\\(0040,a170\\)\\.\\(0008,0121\\)\\.\\(0010,0010\\) PN \\[${esc(p.name)}\\]`));
    has(new RegExp(`^\\(0008,1140\\)\\.\\(0040,a170\\)\\.\\(0008,0121\\)\\.\\(0010,0020\\) LO \\[${esc(p.patientId)}\\]`));
    has(new RegExp(`^\\(0009,1010\\)\\.\\(0009,1011\\)\\.\\(0009,1012\\)\\.\\(0010,0010\\) PN \\[${esc(p.name)}\\]`));
  });

  it('makes CT instances with rescale slope and intercept and MR instances with MR acquisition attributes, 16 bits allocated, 12 stored', async () => {
    const ct = manifest.instances.find((i) => i.modality === 'CT')!;
    const mr = manifest.instances.find((i) => i.modality === 'MR')!;
    expect(ct.sopClassUid).to.equal(CT_IMAGE_STORAGE);
    expect(mr.sopClassUid).to.equal(MR_IMAGE_STORAGE);
    const c = await dumpOf(ct.path);
    const m = await dumpOf(mr.path);
    expect(valueOf(c, '0028,1052')).to.equal('-1024');
    expect(valueOf(c, '0028,1053')).to.equal('1');
    expect(valueOf(m, '0028,1052')).to.equal(undefined);
    expect(valueOf(m, '0018,0087')).to.equal('1.5');
    for (const d of [c, m]) {
      expect(valueOf(d, '0028,0100')).to.equal('16');
      expect(valueOf(d, '0028,0101')).to.equal('12');
      expect(valueOf(d, '0028,0004')).to.equal('MONOCHROME2');
      expect(d).to.match(/\(7fe0,0010\) OW .*# +2048, 1 PixelData/);
    }
  });

  it('is deterministic: the same seed gives byte-identical files, another seed other patients and UIDs', async () => {
    const again = await generateStudies({
      outDir: path.join(dir, 'b'), patients: 5, studiesPerPatient: 2, seriesPerStudy: 2, instancesPerSeries: 2, rows: 32, cols: 32, seed: 42,
    });
    const strip = (m: Manifest) => ({ ...m, instances: m.instances.map(({ path: _p, ...rest }) => rest) });
    expect(strip(again)).to.deep.equal(strip(manifest));
    for (let k = 0; k < manifest.instances.length; k++) {
      expect(readFileSync(again.instances[k]!.path).equals(readFileSync(manifest.instances[k]!.path))).to.equal(true);
    }
    const other = await generateStudies({ outDir: path.join(dir, 'c'), patients: 5, instancesPerSeries: 1, rows: 16, cols: 16, seed: 43 });
    expect(other.patients.map((p) => p.name)).to.not.deep.equal(manifest.patients.map((p) => p.name));
    const uids = new Set(manifest.instances.map((i) => i.sopInstanceUid));
    expect(other.instances.some((i) => uids.has(i.sopInstanceUid))).to.equal(false);
  });

  it('generateOne makes the same bytes as generateStudies for the same indices', () => {
    const i = manifest.instances.find((x) => x.file === `${manifest.patients[3]!.patientId}/2/1/2.dcm`)!;
    const one = generateOne({ seed: 42, patientIndex: 3, studyIndex: 1, seriesIndex: 0, instanceIndex: 1, rows: 32, cols: 32 });
    expect(one.equals(readFileSync(i.path))).to.equal(true);
  });

  it('makes 512×512 instances of about half a megabyte', () => {
    const size = generateOne({ seed: 1 }).length;
    expect(size).to.be.within(512 * 512 * 2, 512 * 512 * 2 + 8192);
  });

  it('writes every native transfer syntax and RLE so that dcmdump reads each file without errors', async () => {
    for (const ts of [TS.ImplicitVRLittleEndian, TS.ExplicitVRBigEndian, TS.DeflatedExplicitVRLittleEndian, TS.RLELossless]) {
      const m = await generateStudies({ outDir: path.join(dir, 'ts', ts), patients: 2, seriesPerStudy: 1, instancesPerSeries: 2, rows: 24, cols: 24, tsUid: ts });
      for (const i of m.instances) {
        expect(i.transferSyntaxUid).to.equal(ts);
        const r = await dcmdump(i.path, ['-Un']);
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stderr.split('\n').filter((l) => l && !/CP-246/.test(l))).to.deep.equal([]);
        expect(valueOf(r.stdout, '0002,0010')).to.equal(ts);
      }
    }
    expect(() => generateOne({ tsUid: TS.JPEGBaseline })).to.throw(/DCMTK/);
  });

  it('generateLarge streams a multi-frame CT of about the requested size', async () => {
    const file = path.join(dir, 'large.dcm');
    const r = await generateLarge(file, 5_000_000, { rows: 256, cols: 256, seed: 2 });
    const frameBytes = 256 * 256 * 2;
    expect(r.frames).to.equal(Math.round(5_000_000 / frameBytes));
    expect(statSync(file).size).to.equal(r.bytes);
    expect(Math.abs(r.bytes - 5_000_000)).to.be.below(frameBytes);
    const d = await dcmdump(file, ['-M', '-Un']);
    expect(d.code, d.stderr).to.equal(0);
    expect(valueOf(d.stdout, '0028,0008')).to.equal(String(r.frames));
    expect(valueOf(d.stdout, '0008,0060')).to.equal('CT');
    expect(valueOf(d.stdout, '0008,0018')).to.equal(r.sopInstanceUid);
    expect(d.stdout).to.match(new RegExp(`\\(7fe0,0010\\) OW .*# ${frameBytes * r.frames}, 1 PixelData`));
  });

  it('makeVariants yields a file per transfer syntax the SCP must accept, each declaring that syntax and readable by dcmdump', async () => {
    const input = path.join(dir, 'variant-input.dcm');
    writeFileSync(input, generateOne({ rows: 64, cols: 64, prefix: 'VT', seed: 4 }));
    const variants = await makeVariants(input, path.join(dir, 'variants'));
    expect(Object.keys(variants).sort()).to.deep.equal([...VARIANT_TRANSFER_SYNTAXES].sort());
    expect(VARIANT_TRANSFER_SYNTAXES).to.include.members([
      TS.ImplicitVRLittleEndian, TS.ExplicitVRLittleEndian, TS.ExplicitVRBigEndian, TS.DeflatedExplicitVRLittleEndian,
      TS.JPEGBaseline, TS.JPEGExtended, TS.JPEGLossless, TS.JPEGLosslessSV1, TS.JPEGLSLossless, TS.JPEGLSNearLossless, TS.RLELossless,
    ]);
    for (const [ts, file] of Object.entries(variants)) {
      expect(await transferSyntaxOf(file)).to.equal(ts);
      const r = await dcmdump(file, ['-Un']);
      expect(r.code, r.stderr).to.equal(0);
      expect(valueOf(r.stdout, '0002,0010')).to.equal(ts);
      expect(valueOf(r.stdout, '0010,0020')).to.equal(ts === TS.JPEGBaseline ? 'VAR0001' : 'VT0001');
      expect(valueOf(r.stdout, '0009,0010')).to.equal('DPHIANT SYNTH');
    }
    // and without an input file, as the forwarding tests use it
    const own = await makeVariants(path.join(dir, 'variants-own'));
    expect(Object.keys(own).sort()).to.deep.equal([...VARIANT_TRANSFER_SYNTAXES].sort());
  });

  it('the synth command prints one summary line with counts and none of the fake PHI', async () => {
    const out = path.join(dir, 'cli');
    const printed: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => void printed.push(a.join(' '));
    try {
      await yargs()
        .command(synthCommand)
        .strict()
        .exitProcess(false)
        .fail((msg, err) => {
          throw err ?? new Error(msg);
        })
        .parseAsync(['synth', '--out', out, '--patients', '5', '--series', '1', '--instances', '2', '--rows', '16', '--cols', '16', '--seed', '9', '--large-bytes', '100000']);
    } finally {
      console.log = log;
    }
    expect(printed).to.have.length(1);
    expect(printed[0]).to.match(/^synth: 10 files, \d+ bytes, 5 patients \(M 2, F 2, O 1\); large\.dcm \d+ bytes, \d+ frames in /);
    const m = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as Manifest;
    expect(existsSync(path.join(out, 'large.dcm'))).to.equal(true);
    for (const p of m.patients) {
      for (const secret of [p.patientId, p.birthDate, ...p.name.split('^'), ...p.studies.map((s) => s.accessionNumber)]) {
        expect(printed[0]).to.not.contain(secret);
      }
    }
  });

  it('the synth command writes images with burned-in text that our walker and dcmdump read', async () => {
    const out = path.join(dir, 'cli-burned-in');
    const log = console.log;
    console.log = () => undefined;
    try {
      await yargs().command(synthCommand).strict().exitProcess(false).parseAsync(['synth', '--out', out, '--patients', '0', '--burned-in', '3', '--seed', '4']);
    } finally {
      console.log = log;
    }
    const files = ['US-1.dcm', 'SC-2.dcm', 'US-3.dcm'].map((f) => path.join(out, 'burned-in', f));
    for (const f of files) {
      const { dataset } = parseFile(readFileSync(f));
      expect(dataset.elements.some((e) => e.tag === 0x7fe00010), `${f}: pixel data`).to.equal(true);
      expect((await dcmdump(f)).code, `${f}: dcmdump`).to.equal(0);
    }
    expect(new Set(files.map((f) => transferSyntaxOf(f))).size, 'native, RLE and JPEG lossless').to.equal(3);
  });
});
