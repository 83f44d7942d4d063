// Every sample file de-identified: the real-world files of ../shared/data/dicom, DCMTK copies of a synthetic
// instance in 11 transfer syntaxes and synthetic CT/MR instances, so a clone without ../shared still covers every
// encoding. The output must read cleanly in DCMTK, keep its transfer syntax and its pixel data byte for byte (unless
// burned-in text was cleaned: 113101, Burned In Annotation NO, lossless), name
// its new SOP Instance UID in the file meta, and say PatientIdentityRemoved YES; and a profile that keeps
// everything must give back the input's data set byte for byte, apart from the attributes the engine adds.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deidentify, type Deidentified } from '../src/anonymize/deidentify.js';
import { Profile } from '../src/anonymize/profile.js';
import { KeyedStandIn } from './support/standin.js';
import { splitPart10 } from '../src/dicom/part10.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { stringValue } from '../src/dicom/values.js';
import { parseFile, walk, type DicomElement, type ParsedDataset } from '../src/dicom/walker.js';
import { generateOne, type InstanceOptions } from '../tools/synth/generate.js';
import { sharedDicomFiles } from './support/files.js';
import { VARIANT_TRANSFER_SYNTAXES, dcmdump, makeVariants } from './support/variants.js';
import { pixelsCleaned } from './support/burned-in.js';
import { LOSSLESS_OUTPUT_SYNTAX } from '../src/anonymize/pixels/frames.js';

const KEY = Buffer.from('7d1c0a6f2e9b4c38a5f0d2e1b3c4a5968778695a4b3c2d1e0f1a2b3c4d5e6f70', 'hex');
const BASIC = new Profile({});
const KEEP_EVERYTHING = new Profile({}, { default: 'keep' });

const PIXEL_DATA = 0x7fe00010;
/** Lossy inputs: cleaned, they are re-encoded once, losslessly. */
const LOSSY = new Set<string>([TS.JPEGBaseline, TS.JPEGExtended, TS.JPEGLSNearLossless, TS.JPEG2000]);
const WAVEFORM_DATA = 0x54001010;
const SOP_INSTANCE_UID = 0x00080018;
const PATIENT_IDENTITY_REMOVED = 0x00120062;
/** What the engine adds to every output: PatientIdentityRemoved, DeidentificationMethod(CodeSequence), LongitudinalTemporalInformationModified. */
const ADDED = new Set([0x00120062, 0x00120063, 0x00120064, 0x00280303]);
const ADDED_GROUPS = new Set([...ADDED].map((t) => t >>> 16));

const hexTag = (t: number) => `(${(t >>> 16).toString(16).padStart(4, '0')},${(t & 0xffff).toString(16).padStart(4, '0')})`.toUpperCase();

function top(ds: ParsedDataset, tag: number): DicomElement | undefined {
  return ds.elements.find((e) => e.tag === tag);
}

function topString(ds: ParsedDataset, tag: number): string | undefined {
  const el = top(ds, tag);
  return el ? stringValue(ds, el) : undefined;
}

/** The whole (7FE0,0010) element as stored (header, value, and for encapsulated data every fragment and the delimiter). */
function pixelBytes(ds: ParsedDataset): Buffer | null {
  const el = top(ds, PIXEL_DATA);
  return el ? ds.buffer.subarray(el.start, el.end) : null;
}

/** Every Waveform Data value at any depth, in file order (the bulk data of files without pixels). */
function waveformBytes(ds: ParsedDataset): Buffer[] {
  const out: Buffer[] = [];
  walk(ds, (el) => {
    if (el.tag === WAVEFORM_DATA) out.push(ds.buffer.subarray(el.start, el.end));
  });
  return out;
}

/** The raw bytes of every top-level element except those the engine adds and the group lengths of their groups. */
function withoutAddedElements(ds: ParsedDataset): Buffer {
  const parts: Buffer[] = [];
  for (const el of ds.elements) {
    if (ADDED.has(el.tag)) continue;
    if ((el.tag & 0xffff) === 0 && ADDED_GROUPS.has(el.tag >>> 16)) continue;
    parts.push(ds.buffer.subarray(el.start, el.end));
  }
  return Buffer.concat(parts);
}

/** The tags of the top-level elements on which two byte strings of element runs first differ, for the message. */
function firstDifference(a: ParsedDataset, b: ParsedDataset): string {
  const keep = (ds: ParsedDataset) => ds.elements.filter((e) => !ADDED.has(e.tag) && !((e.tag & 0xffff) === 0 && ADDED_GROUPS.has(e.tag >>> 16)));
  const ea = keep(a);
  const eb = keep(b);
  for (let i = 0; i < Math.max(ea.length, eb.length); i++) {
    const x = ea[i];
    const y = eb[i];
    if (!x || !y) return `element counts differ (${ea.length} in the input, ${eb.length} in the output)`;
    if (x.tag !== y.tag) return `input has ${hexTag(x.tag)} where the output has ${hexTag(y.tag)}`;
    if (!a.buffer.subarray(x.start, x.end).equals(b.buffer.subarray(y.start, y.end))) return `${hexTag(x.tag)} differs`;
  }
  return 'no element differs';
}

async function run(file: Buffer, profile: Profile): Promise<Deidentified> {
  return deidentify(file, profile, KEY, new KeyedStandIn(KEY));
}

interface Sample {
  name: string;
  /** Reads the input; only valid once the suite's before hooks ran. */
  load: () => Buffer;
}

describe('every file of ../shared/data/dicom de-identified', function () {
  this.timeout(300_000);
  let dir: string;
  let variants: Record<string, string> = {};

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'dphiant-anonymize-files-'));
    variants = await makeVariants(path.join(dir, 'variants'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const shared: Sample[] = sharedDicomFiles().map((f) => ({ name: path.basename(f), load: () => readFileSync(f) }));
  const variantSamples: Sample[] = VARIANT_TRANSFER_SYNTAXES.map((ts) => ({
    name: `the DCMTK variant in ${Object.entries(TS).find(([, uid]) => uid === ts)?.[0] ?? ts}`,
    load: () => {
      const f = variants[ts];
      if (!f) throw new Error(`makeVariants made no file in ${ts}`);
      return readFileSync(f);
    },
  }));
  const synthetic: [string, InstanceOptions][] = [
    ['a synthetic CT in explicit VR little endian', { modalities: ['CT'], rows: 64, cols: 64 }],
    ['a synthetic MR in explicit VR little endian', { modalities: ['MR'], rows: 64, cols: 64, patientIndex: 1 }],
    ['a synthetic CT in implicit VR little endian', { modalities: ['CT'], rows: 64, cols: 64, patientIndex: 2, tsUid: TS.ImplicitVRLittleEndian }],
    ['a synthetic CT in explicit VR big endian', { modalities: ['CT'], rows: 64, cols: 64, patientIndex: 3, tsUid: TS.ExplicitVRBigEndian }],
    ['a synthetic CT in deflated explicit VR little endian', { modalities: ['CT'], rows: 64, cols: 64, patientIndex: 7, tsUid: TS.DeflatedExplicitVRLittleEndian }],
    ['a synthetic MR in RLE Lossless', { modalities: ['MR'], rows: 64, cols: 64, patientIndex: 6, tsUid: TS.RLELossless }],
  ];
  const syntheticSamples: Sample[] = synthetic.map(([name, o]) => ({ name, load: () => generateOne(o) }));

  const groups: [string, Sample[]][] = [
    ['the shared sample files', shared],
    ['synthetic transfer-syntax variants made with DCMTK', variantSamples],
    ['synthetic CT and MR instances of the generator', syntheticSamples],
  ];

  for (const [groupName, samples] of groups) {
    describe(groupName, () => {
      for (const sample of samples) {
        it(`${sample.name} comes out readable by dcmdump with its transfer syntax, its pixel data and a matching file meta, marked PatientIdentityRemoved YES`, async () => {
          const input = sample.load();
          const d = await run(input, BASIC);
          const output = Buffer.concat(d.chunks);
          expect(output.length, 'byteLength is the length of the chunks').to.equal(d.byteLength);
          const outFile = path.join(dir, `${sample.name.replace(/[^A-Za-z0-9._-]+/g, '_')}.basic.dcm`);
          writeFileSync(outFile, output);

          const dump = await dcmdump(outFile);
          expect(dump.code, `dcmdump exit code; stderr: ${dump.stderr}`).to.equal(0);
          expect(dump.stderr.trim(), 'dcmdump wrote to stderr').to.equal('');
          const complaints = `${dump.stdout}\n${dump.stderr}`.split('\n').filter((l) => /^(W|E|F): /.test(l));
          expect(complaints, 'dcmdump error or warning lines').to.deep.equal([]);

          const inMeta = splitPart10(input);
          const outMeta = splitPart10(output);
          const a = parseFile(input).dataset;
          const b = parseFile(output).dataset;
          // burned-in text found and blanked (113101): the pixel data differs, losslessly; a lossy input is re-encoded once, losslessly
          const cleaned = pixelsCleaned(b);
          const expectedTs = cleaned && LOSSY.has(inMeta.transferSyntaxUid) ? LOSSLESS_OUTPUT_SYNTAX : inMeta.transferSyntaxUid;
          expect(outMeta.transferSyntaxUid, '(0002,0010) Transfer Syntax UID').to.equal(expectedTs);
          expect(cleaned, '113101 exactly when the burned-in text step cleaned').to.equal(d.pixels.kind === 'cleaned');
          const newSop = topString(b, SOP_INSTANCE_UID);
          expect(newSop, 'the output has a SOP Instance UID').to.be.a('string').and.not.equal('');
          expect(outMeta.sopInstanceUid, '(0002,0003) equals the new (0008,0018)').to.equal(newSop);
          expect(newSop, 'the new SOP Instance UID is the one the report names').to.equal(d.report.sopInstanceUid);
          expect(newSop, 'the SOP Instance UID was replaced').to.not.equal(topString(a, SOP_INSTANCE_UID));

          const pa = pixelBytes(a);
          const pb = pixelBytes(b);
          if (pa === null) {
            expect(pb, `${sample.name} has no Pixel Data (7FE0,0010): the output must have none either`).to.equal(null);
            const wa = waveformBytes(a);
            const wb = waveformBytes(b);
            expect(wb.length, `${sample.name} has no Pixel Data; its Waveform Data elements must all stay`).to.equal(wa.length);
            wa.forEach((w, i) => expect(wb[i]!.equals(w), `${sample.name} has no Pixel Data; Waveform Data #${i + 1} must be byte-identical`).to.equal(true));
          } else {
            expect(pb, 'the output has Pixel Data').to.not.equal(null);
            if (cleaned) expect(topString(b, 0x00280301)?.trim(), 'Burned In Annotation after cleaning').to.equal('NO');
            else {
              expect(pb!.length, 'Pixel Data element length in bytes').to.equal(pa.length);
              expect(pb!.equals(pa), 'Pixel Data (7FE0,0010) bytes are identical to the input').to.equal(true);
            }
          }

          expect(topString(b, PATIENT_IDENTITY_REMOVED), 'PatientIdentityRemoved (0012,0062)').to.equal('YES');
        });

        it(`${sample.name} through the keep-everything profile gives back the input data set byte for byte, apart from the engine's own attributes`, async () => {
          const input = sample.load();
          const d = await run(input, KEEP_EVERYTHING);
          const output = Buffer.concat(d.chunks);
          expect(splitPart10(output).transferSyntaxUid).to.equal(splitPart10(input).transferSyntaxUid);
          const a = parseFile(input).dataset;
          const b = parseFile(output).dataset;
          const ka = withoutAddedElements(a);
          const kb = withoutAddedElements(b);
          expect(kb.length, `data set length without the added attributes; ${firstDifference(a, b)}`).to.equal(ka.length);
          expect(kb.equals(ka), `data set bytes without the added attributes; ${firstDifference(a, b)}`).to.equal(true);
          for (const t of ADDED) expect(top(b, t), `the output carries ${hexTag(t)}`).to.not.equal(undefined);
        });
      }
    });
  }
});
