// Deterministic synthetic CT/MR studies full of FAKE PHI, for the demo, tests and benchmarks.
// Every value comes from a PRNG keyed by (seed, prefix, patient, study, series, instance), so an instance is the
// same whether it is made alone (generateOne) or within a batch, and adding patients does not change earlier ones.
import { Rng, uidFor } from './rng.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TS, encodingOf } from '../../src/dicom/transfer-syntax.js';
import { part10, type Element } from '../../src/dicom/writer.js';
import { writeLargeMultiframeFile } from './large.js';

export const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
export const MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4';
export const PRIVATE_CREATOR = 'DPHIANT SYNTH';

export type Sex = 'M' | 'F' | 'O';
export type Modality = 'CT' | 'MR';

export const GIVEN_NAMES: Record<Sex, readonly string[]> = {
  M: ['John', 'Michael', 'David', 'James', 'Robert', 'Thomas', 'Peter', 'Andreas', 'Lucas', 'Marco', 'Jan', 'Pierre', 'Jürgen'],
  F: ['Mary', 'Anna', 'Sarah', 'Laura', 'Emma', 'Julia', 'Sofia', 'Claire', 'Maria', 'Helen', 'Katrin', 'Elena', 'Zoë'],
  O: ['Alex', 'Sam', 'Robin', 'Kim', 'Jordan', 'Charlie', 'Dominique'],
};
const FAMILY_NAMES = ['Smith', 'Müller', 'Johnson', 'Garcia', 'Dubois', 'Rossi', 'Novak', 'Janssen', "O'Brien", 'Nilsson',
  'Kowalski', 'Ferreira', 'Brown', 'Schmidt', 'Martin', 'Lefèvre', 'Andersen', 'Weber', 'Moreau', 'Costa'];
const STREETS = ['Linden Street', 'Harbour Road', 'Elm Avenue', 'Mill Lane', 'Station Road', 'Church Street', 'Park Drive'];
const CITIES = ['Springfield', 'Riverton', 'Lakeside', 'Fairview', 'Greenville', 'Kingsport', 'Oakdale'];
const INSTITUTIONS = [
  ['Springfield General Hospital', '1 Hospital Plaza, Springfield'],
  ['Lakeside Medical Center', '200 Shore Road, Lakeside'],
  ['Saint Synthia Clinic', '5 Cathedral Square, Riverton'],
] as const;
const STUDY_KINDS: Record<Modality, readonly { study: string; series: readonly string[]; body: string }[]> = {
  CT: [
    { study: 'CT Thorax with contrast', series: ['Thorax 1.0 B31f', 'Thorax 3.0 B70f', 'Topogram'], body: 'CHEST' },
    { study: 'CT Abdomen native', series: ['Abdomen 5.0 B30f', 'Abdomen 1.0 B20f'], body: 'ABDOMEN' },
  ],
  MR: [
    { study: 'MR Brain', series: ['T1 SE sag', 'T2 FLAIR ax', 'DWI b1000'], body: 'BRAIN' },
    { study: 'MR Knee right', series: ['PD FS cor', 'T1 TSE sag'], body: 'KNEE' },
  ],
};

/** sfc32 seeded from SHA-256 of the key: independent, reproducible streams per patient/study/series/instance. */


const pad = (n: number, w: number): string => String(n).padStart(w, '0');
const da = (d: Date): string => `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCDate(), 2)}`;
const tm = (d: Date): string => `${pad(d.getUTCHours(), 2)}${pad(d.getUTCMinutes(), 2)}${pad(d.getUTCSeconds(), 2)}`;

export function sexOfPatient(index: number): Sex {
  return index % 5 === 4 ? 'O' : index % 2 === 0 ? 'M' : 'F';
}

interface PatientFacts {
  index: number; id: string; issuer: string; otherId: string; family: string; given: string; name: string; sex: Sex;
  birth: Date; address: string; phone: string; comments: string; weight: number;
}
interface StudyFacts {
  index: number; uid: string; accession: string; studyId: string; start: Date; modality: Modality; description: string;
  seriesNames: readonly string[]; body: string; referring: string; institution: string; institutionAddress: string;
  requestedProcedureId: string; scheduledStepId: string; station: string; deviceSerial: string;
}
interface SeriesFacts { index: number; uid: string; frameOfReferenceUid: string; description: string; performing: string; operator: string; start: Date }

interface Keying { seed: number; prefix: string }
const keyOf = (k: Keying, ...parts: (string | number)[]): string => [k.seed, k.prefix, ...parts].join('|');

function physician(r: Rng): string {
  return `${r.pick(FAMILY_NAMES)}^${r.pick([...GIVEN_NAMES.M, ...GIVEN_NAMES.F])}^^Dr.`;
}

function patientFacts(k: Keying, p: number): PatientFacts {
  const r = new Rng(keyOf(k, 'patient', p));
  const sex = sexOfPatient(p);
  const family = r.pick(FAMILY_NAMES);
  const given = r.pick(GIVEN_NAMES[sex]);
  const birth = new Date(Date.UTC(r.int(1935, 2012), r.int(0, 11), r.int(1, 28)));
  return {
    index: p, id: `${k.prefix}${pad(p + 1, 4)}`, issuer: 'SPRINGFIELD HIS', otherId: `MRN${r.digits(7)}`,
    family, given, name: `${family}^${given}`, sex, birth,
    address: `${r.int(1, 240)} ${r.pick(STREETS)}, ${r.pick(CITIES)} ${r.digits(5)}`,
    phone: `+1-555-01${r.digits(2)}-${r.digits(4)}`,
    comments: `Synthetic patient ${given} ${family}, contact ${r.pick(GIVEN_NAMES.F)} ${family} (relative)`,
    weight: r.int(45, 110),
  };
}

function studyFacts(k: Keying, pt: PatientFacts, s: number, modalities: readonly Modality[]): StudyFacts {
  const r = new Rng(keyOf(k, 'study', pt.index, s));
  const modality = modalities[(pt.index + s) % modalities.length]!;
  const kind = r.pick(STUDY_KINDS[modality]);
  const [institution, institutionAddress] = r.pick(INSTITUTIONS);
  const start = new Date(Date.UTC(r.int(2019, 2025), r.int(0, 11), r.int(1, 28), r.int(7, 19), r.int(0, 59), r.int(0, 59)));
  return {
    index: s, uid: uidFor(keyOf(k, 'study', pt.index, s)), accession: `ACC${r.digits(8)}`, studyId: String(r.int(1000, 99999)),
    start, modality, description: kind.study, seriesNames: kind.series, body: kind.body, referring: physician(r),
    institution, institutionAddress, requestedProcedureId: `RP${r.digits(6)}`, scheduledStepId: `SPS${r.digits(6)}`,
    station: `${modality}${pad(r.int(1, 9), 2)}-ROOM${r.int(1, 6)}`, deviceSerial: `SN-${r.digits(8)}`,
  };
}

function seriesFacts(k: Keying, pt: PatientFacts, st: StudyFacts, se: number): SeriesFacts {
  const r = new Rng(keyOf(k, 'series', pt.index, st.index, se));
  const description = `${st.seriesNames[se % st.seriesNames.length]} for ${pt.given} ${pt.family}`;
  return {
    index: se, uid: uidFor(keyOf(k, 'series', pt.index, st.index, se)), frameOfReferenceUid: uidFor(keyOf(k, 'for', pt.index, st.index, se)),
    description, performing: physician(r), operator: `${r.pick(FAMILY_NAMES)}^${r.pick(GIVEN_NAMES.O)}`,
    start: new Date(st.start.getTime() + (se * 6 + r.int(1, 4)) * 60_000),
  };
}

function ageAt(birth: Date, when: Date): string {
  let years = when.getUTCFullYear() - birth.getUTCFullYear();
  if (when.getUTCMonth() < birth.getUTCMonth() || (when.getUTCMonth() === birth.getUTCMonth() && when.getUTCDate() < birth.getUTCDate())) years--;
  return `${pad(Math.max(0, years), 3)}Y`;
}

/** A cheap "slice": a disc whose size depends on the slice index, textured, on an air background. LE words for 16 bits. */
function pixelPattern(rows: number, cols: number, bits: 8 | 16, slice: number): Buffer {
  const out = Buffer.alloc(rows * cols * (bits / 8));
  const cx = cols / 2, cy = rows / 2;
  const r = Math.min(rows, cols) * (0.3 + 0.1 * Math.sin(slice / 3));
  const r2 = r * r;
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < cols; x++) {
      const inside = (x - cx) * (x - cx) + (y - cy) * (y - cy) < r2;
      if (bits === 16) out.writeUInt16LE(inside ? 1000 + (((x ^ y) + slice) & 0x7f) : 24, (y * cols + x) * 2);
      else out[y * cols + x] = inside ? 100 + (((x ^ y) + slice) & 0x3f) : 4;
    }
  }
  return out;
}

/** PackBits per row, as RLE Lossless requires (PS3.5 G.3.1). */
function packBits(src: Uint8Array, rowLength: number): Buffer {
  const out = Buffer.alloc(src.length * 2 + 2);
  let o = 0;
  for (let rowStart = 0; rowStart < src.length; rowStart += rowLength) {
    const end = rowStart + rowLength;
    let i = rowStart;
    while (i < end) {
      let run = 1;
      while (i + run < end && run < 128 && src[i + run] === src[i]) run++;
      if (run >= 2) {
        out[o++] = 257 - run;
        out[o++] = src[i]!;
        i += run;
        continue;
      }
      let lit = 1;
      while (i + lit < end && lit < 128 && !(i + lit + 1 < end && src[i + lit] === src[i + lit + 1])) lit++;
      out[o++] = lit - 1;
      out.set(src.subarray(i, i + lit), o);
      o += lit;
      i += lit;
    }
  }
  if (o % 2) out[o++] = 0;
  return out.subarray(0, o);
}

/** One RLE Lossless frame: 64-byte header, then one segment per byte plane, most significant first. */
export function rleEncodeFrame(pixels: Uint8Array, rows: number, cols: number, bits: 8 | 16): Buffer {
  const planes = bits / 8;
  const segments: Buffer[] = [];
  for (let plane = 0; plane < planes; plane++) {
    const bytes = Buffer.alloc(rows * cols);
    const offset = planes - 1 - plane; // LE words: the most significant byte is the last one of each pixel
    for (let i = 0; i < rows * cols; i++) bytes[i] = pixels[i * planes + offset]!;
    segments.push(packBits(bytes, cols));
  }
  const header = Buffer.alloc(64);
  header.writeUInt32LE(planes, 0);
  let pos = 64;
  segments.forEach((s, i) => { header.writeUInt32LE(pos, 4 + i * 4); pos += s.length; });
  return Buffer.concat([header, ...segments]);
}

export interface InstanceOptions {
  seed?: number;
  prefix?: string;
  patientIndex?: number;
  studyIndex?: number;
  seriesIndex?: number;
  instanceIndex?: number;
  instancesPerSeries?: number;
  rows?: number;
  cols?: number;
  bitsAllocated?: 8 | 16;
  modalities?: Modality[];
  /** Native syntaxes and RLE Lossless (encoded here); other compressed syntaxes need DCMTK (test/support/variants.ts). */
  tsUid?: string;
}

interface InstanceContext { pt: PatientFacts; st: StudyFacts; se: SeriesFacts; sopClassUid: string; sopInstanceUid: string }

function context(o: InstanceOptions): InstanceContext & { k: Keying } {
  const k = { seed: o.seed ?? 1, prefix: o.prefix ?? 'SYN' };
  const pt = patientFacts(k, o.patientIndex ?? 0);
  const st = studyFacts(k, pt, o.studyIndex ?? 0, o.modalities?.length ? o.modalities : ['CT', 'MR']);
  const se = seriesFacts(k, pt, st, o.seriesIndex ?? 0);
  const i = o.instanceIndex ?? 0;
  return {
    k, pt, st, se, sopClassUid: st.modality === 'CT' ? CT_IMAGE_STORAGE : MR_IMAGE_STORAGE,
    sopInstanceUid: uidFor(keyOf(k, 'instance', pt.index, st.index, se.index, i)),
  };
}

/** Every element of one synthetic instance except PixelData (header elements, also used for large files). */
function headerElements(c: InstanceContext & { k: Keying }, o: InstanceOptions): Element[] {
  const { pt, st, se } = c;
  const i = o.instanceIndex ?? 0;
  const rows = o.rows ?? 512, cols = o.cols ?? 512, bits = o.bitsAllocated ?? 16;
  const r = new Rng(keyOf(c.k, 'instance', pt.index, st.index, se.index, i));
  const acquired = new Date(se.start.getTime() + i * 1500);
  const spacing = 0.7;
  const sliceLocation = -120 + i * 2.5;
  const localizer = uidFor(keyOf(c.k, 'localizer', pt.index, st.index, se.index)); // referenced, never generated
  const privateCreator: Element = { tag: 0x00090010, vr: 'LO', value: PRIVATE_CREATOR };

  const els: Element[] = [
    // SOP common
    { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 100' },
    { tag: 0x00080008, vr: 'CS', value: ['ORIGINAL', 'PRIMARY', 'AXIAL'] },
    { tag: 0x00080012, vr: 'DA', value: da(acquired) },
    { tag: 0x00080013, vr: 'TM', value: tm(acquired) },
    { tag: 0x00080016, vr: 'UI', value: c.sopClassUid },
    { tag: 0x00080018, vr: 'UI', value: c.sopInstanceUid },
    // study, series, equipment
    { tag: 0x00080020, vr: 'DA', value: da(st.start) },
    { tag: 0x00080021, vr: 'DA', value: da(se.start) },
    { tag: 0x00080022, vr: 'DA', value: da(acquired) },
    { tag: 0x00080023, vr: 'DA', value: da(acquired) },
    { tag: 0x00080030, vr: 'TM', value: tm(st.start) },
    { tag: 0x00080031, vr: 'TM', value: tm(se.start) },
    { tag: 0x00080032, vr: 'TM', value: tm(acquired) },
    { tag: 0x00080033, vr: 'TM', value: tm(acquired) },
    { tag: 0x00080050, vr: 'SH', value: st.accession },
    { tag: 0x00080060, vr: 'CS', value: st.modality },
    { tag: 0x00080070, vr: 'LO', value: 'DPHIANT Synthetic Imaging' },
    { tag: 0x00080080, vr: 'LO', value: st.institution },
    { tag: 0x00080081, vr: 'ST', value: st.institutionAddress },
    { tag: 0x00080090, vr: 'PN', value: st.referring },
    { tag: 0x00081010, vr: 'SH', value: st.station },
    { tag: 0x00081030, vr: 'LO', value: st.description },
    { tag: 0x0008103e, vr: 'LO', value: se.description },
    { tag: 0x00081050, vr: 'PN', value: se.performing },
    { tag: 0x00081070, vr: 'PN', value: se.operator },
    { tag: 0x00081090, vr: 'LO', value: st.modality === 'CT' ? 'SynthScan 64' : 'SynthMag 1.5T' },
    {
      tag: 0x00081120, vr: 'SQ', value: [[ // ReferencedPatientSequence
        { tag: 0x00081150, vr: 'UI', value: '1.2.840.10008.3.1.2.1.1' },
        { tag: 0x00081155, vr: 'UI', value: uidFor(keyOf(c.k, 'patient-ref', pt.index)) },
      ]],
    },
    {
      tag: 0x00081140, vr: 'SQ', value: [[ // ReferencedImageSequence > PurposeOfReferenceCode > EquivalentCode: PHI at depth 3
        { tag: 0x00081150, vr: 'UI', value: c.sopClassUid },
        { tag: 0x00081155, vr: 'UI', value: localizer },
        {
          tag: 0x0040a170, vr: 'SQ', value: [[
            { tag: 0x00080100, vr: 'SH', value: '121311' },
            { tag: 0x00080102, vr: 'SH', value: 'DCM' },
            { tag: 0x00080104, vr: 'LO', value: 'Localizer' },
            {
              tag: 0x00080121, vr: 'SQ', value: [[
                { tag: 0x00080100, vr: 'SH', value: 'LOC' },
                { tag: 0x00080102, vr: 'SH', value: '99DPHIANT' },
                { tag: 0x00080104, vr: 'LO', value: 'Localizer' },
                { tag: 0x00100010, vr: 'PN', value: pt.name },
                { tag: 0x00100020, vr: 'LO', value: pt.id },
              ]],
            },
          ]],
        },
      ]],
    },
    // private block; the nested private chain uses undefined lengths on purpose
    privateCreator,
    { tag: 0x00091001, vr: 'LO', value: pt.id },
    { tag: 0x00091002, vr: 'UN', value: Buffer.from(pt.name.length % 2 ? pt.name + ' ' : pt.name, 'latin1') },
    {
      tag: 0x00091010, vr: 'SQ', undefinedLength: true, value: [[
        privateCreator,
        {
          tag: 0x00091011, vr: 'SQ', undefinedLength: true, value: [[
            privateCreator,
            {
              tag: 0x00091012, vr: 'SQ', undefinedLength: true, value: [[
                privateCreator,
                { tag: 0x00091013, vr: 'LO', value: pt.id },
                { tag: 0x00100010, vr: 'PN', value: pt.name },
              ]],
            },
          ]],
        },
      ]],
    },
    // patient
    { tag: 0x00100010, vr: 'PN', value: pt.name },
    { tag: 0x00100020, vr: 'LO', value: pt.id },
    { tag: 0x00100021, vr: 'LO', value: pt.issuer },
    { tag: 0x00100030, vr: 'DA', value: da(pt.birth) },
    { tag: 0x00100040, vr: 'CS', value: pt.sex },
    { tag: 0x00101000, vr: 'LO', value: pt.otherId },
    {
      tag: 0x00101002, vr: 'SQ', value: [[ // OtherPatientIDsSequence
        { tag: 0x00100020, vr: 'LO', value: pt.otherId },
        { tag: 0x00100021, vr: 'LO', value: 'RIVERTON RIS' },
        { tag: 0x00100022, vr: 'CS', value: 'TEXT' },
      ]],
    },
    { tag: 0x00101010, vr: 'AS', value: ageAt(pt.birth, st.start) },
    { tag: 0x00101030, vr: 'DS', value: pt.weight },
    { tag: 0x00101040, vr: 'LO', value: pt.address },
    { tag: 0x00102154, vr: 'SH', value: pt.phone },
    { tag: 0x00104000, vr: 'LT', value: pt.comments },
    // acquisition
    { tag: 0x00180015, vr: 'CS', value: st.body },
    { tag: 0x00180050, vr: 'DS', value: 2.5 },
    { tag: 0x00181000, vr: 'LO', value: st.deviceSerial },
    { tag: 0x00181020, vr: 'LO', value: 'synth 0.1' },
    { tag: 0x00185100, vr: 'CS', value: 'HFS' },
    // relationship, plane
    { tag: 0x0020000d, vr: 'UI', value: st.uid },
    { tag: 0x0020000e, vr: 'UI', value: se.uid },
    { tag: 0x00200010, vr: 'SH', value: st.studyId },
    { tag: 0x00200011, vr: 'IS', value: se.index + 1 },
    { tag: 0x00200012, vr: 'IS', value: 1 },
    { tag: 0x00200013, vr: 'IS', value: i + 1 },
    { tag: 0x00200032, vr: 'DS', value: [-(cols * spacing) / 2, -(rows * spacing) / 2, sliceLocation] },
    { tag: 0x00200037, vr: 'DS', value: [1, 0, 0, 0, 1, 0] },
    { tag: 0x00200052, vr: 'UI', value: se.frameOfReferenceUid },
    { tag: 0x00201040, vr: 'LO', value: '' },
    { tag: 0x00201041, vr: 'DS', value: sliceLocation },
    // image pixel description
    { tag: 0x00280002, vr: 'US', value: 1 },
    { tag: 0x00280004, vr: 'CS', value: 'MONOCHROME2' },
    { tag: 0x00280010, vr: 'US', value: rows },
    { tag: 0x00280011, vr: 'US', value: cols },
    { tag: 0x00280030, vr: 'DS', value: [spacing, spacing] },
    { tag: 0x00280100, vr: 'US', value: bits },
    { tag: 0x00280101, vr: 'US', value: bits === 16 ? 12 : 8 },
    { tag: 0x00280102, vr: 'US', value: bits === 16 ? 11 : 7 },
    { tag: 0x00280103, vr: 'US', value: 0 },
    { tag: 0x00281050, vr: 'DS', value: bits === 16 ? 1064 : 128 },
    { tag: 0x00281051, vr: 'DS', value: bits === 16 ? 400 : 256 },
    // request
    { tag: 0x00321060, vr: 'LO', value: st.description },
    {
      tag: 0x00400275, vr: 'SQ', value: [[ // RequestAttributesSequence
        { tag: 0x00080050, vr: 'SH', value: st.accession },
        {
          tag: 0x00081110, vr: 'SQ', value: [[ // ReferencedStudySequence
            { tag: 0x00081150, vr: 'UI', value: '1.2.840.10008.3.1.2.3.1' },
            { tag: 0x00081155, vr: 'UI', value: st.uid },
          ]],
        },
        { tag: 0x00321060, vr: 'LO', value: st.description },
        { tag: 0x00400007, vr: 'LO', value: `${st.description} (${pt.family})` },
        { tag: 0x00400009, vr: 'SH', value: st.scheduledStepId },
        { tag: 0x00401001, vr: 'SH', value: st.requestedProcedureId },
      ]],
    },
  ];
  if (st.modality === 'CT') {
    els.push(
      { tag: 0x00180060, vr: 'DS', value: r.pick([100, 120, 140]) },
      { tag: 0x00181210, vr: 'SH', value: r.pick(['B30f', 'B70f', 'STANDARD']) },
      { tag: 0x00281052, vr: 'DS', value: -1024 },
      { tag: 0x00281053, vr: 'DS', value: 1 },
      { tag: 0x00281054, vr: 'LO', value: 'HU' },
    );
  } else {
    els.push(
      { tag: 0x00180020, vr: 'CS', value: 'SE' },
      { tag: 0x00180021, vr: 'CS', value: 'NONE' },
      { tag: 0x00180022, vr: 'CS', value: '' },
      { tag: 0x00180023, vr: 'CS', value: '2D' },
      { tag: 0x00180080, vr: 'DS', value: r.int(400, 4000) },
      { tag: 0x00180081, vr: 'DS', value: r.int(10, 120) },
      { tag: 0x00180084, vr: 'DS', value: 63.87 },
      { tag: 0x00180087, vr: 'DS', value: 1.5 },
      { tag: 0x00180091, vr: 'IS', value: r.int(1, 16) },
    );
  }
  return els;
}

/** The elements of one synthetic instance, PixelData included (native, or RLE fragments for RLE Lossless). */
export function generateElements(o: InstanceOptions = {}): Element[] {
  const c = context(o);
  const rows = o.rows ?? 512, cols = o.cols ?? 512, bits = o.bitsAllocated ?? 16;
  const pixels = pixelPattern(rows, cols, bits, o.instanceIndex ?? 0);
  const tsUid = o.tsUid ?? TS.ExplicitVRLittleEndian;
  let pixelData: Element;
  if (tsUid === TS.RLELossless) {
    pixelData = { tag: 0x7fe00010, vr: 'OB', value: { fragments: [rleEncodeFrame(pixels, rows, cols, bits)] } };
  } else if (encodingOf(tsUid).encapsulated) {
    throw new Error(`the generator cannot compress to ${tsUid}; use test/support/variants.ts (DCMTK)`);
  } else {
    pixelData = { tag: 0x7fe00010, vr: bits === 16 ? 'OW' : 'OB', value: pixels };
  }
  return [...headerElements(c, o), pixelData];
}

/** One synthetic instance as a P10 file. */
export function generateOne(o: InstanceOptions = {}): Buffer {
  return part10(generateElements(o), o.tsUid ?? TS.ExplicitVRLittleEndian);
}

export interface GenerateOptions {
  outDir: string;
  patients: number;
  studiesPerPatient?: number;
  seriesPerStudy?: number;
  instancesPerSeries?: number;
  rows?: number;
  cols?: number;
  seed?: number;
  prefix?: string;
  tsUid?: string;
  modalities?: Modality[];
}

export interface ManifestStudy { studyInstanceUid: string; accessionNumber: string; studyDate: string; modality: Modality }
export interface ManifestPatient { patientId: string; issuerOfPatientId: string; name: string; sex: Sex; birthDate: string; studies: ManifestStudy[] }
export interface ManifestInstance {
  /** The file: outDir joined with `file`. */
  path: string;
  /** Relative to the output directory, "/"-separated. */
  file: string;
  patientId: string;
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  modality: Modality;
  transferSyntaxUid: string;
  bytes: number;
}
export interface Manifest {
  generator: 'dphiant synth';
  seed: number;
  prefix: string;
  patients: ManifestPatient[];
  instances: ManifestInstance[];
  totals: { files: number; bytes: number };
}

/** Writes outDir/<PatientID>/<study>/<series>/<n>.dcm (1-based numbers) and outDir/manifest.json. */
export async function generateStudies(opts: GenerateOptions): Promise<Manifest> {
  const seed = opts.seed ?? 1, prefix = opts.prefix ?? 'SYN';
  const tsUid = opts.tsUid ?? TS.ExplicitVRLittleEndian;
  const manifest: Manifest = { generator: 'dphiant synth', seed, prefix, patients: [], instances: [], totals: { files: 0, bytes: 0 } };
  for (let p = 0; p < opts.patients; p++) {
    let patient: ManifestPatient | undefined;
    for (let s = 0; s < (opts.studiesPerPatient ?? 1); s++) {
      for (let se = 0; se < (opts.seriesPerStudy ?? 2); se++) {
        for (let i = 0; i < (opts.instancesPerSeries ?? 10); i++) {
          const o: InstanceOptions = {
            seed, prefix, patientIndex: p, studyIndex: s, seriesIndex: se, instanceIndex: i,
            rows: opts.rows, cols: opts.cols, tsUid, modalities: opts.modalities,
          };
          const c = context(o);
          if (!patient) {
            patient = { patientId: c.pt.id, issuerOfPatientId: c.pt.issuer, name: c.pt.name, sex: c.pt.sex, birthDate: da(c.pt.birth), studies: [] };
            manifest.patients.push(patient);
          }
          if (!patient.studies.some((x) => x.studyInstanceUid === c.st.uid)) {
            patient.studies.push({ studyInstanceUid: c.st.uid, accessionNumber: c.st.accession, studyDate: da(c.st.start), modality: c.st.modality });
          }
          const rel = `${c.pt.id}/${s + 1}/${se + 1}/${i + 1}.dcm`;
          const file = generateOne(o);
          await mkdir(dirname(join(opts.outDir, rel)), { recursive: true });
          await writeFile(join(opts.outDir, rel), file);
          manifest.instances.push({
            path: join(opts.outDir, rel), file: rel, patientId: c.pt.id, sopClassUid: c.sopClassUid, sopInstanceUid: c.sopInstanceUid,
            studyInstanceUid: c.st.uid, seriesInstanceUid: c.se.uid, modality: c.st.modality, transferSyntaxUid: tsUid, bytes: file.length,
          });
          manifest.totals.files++;
          manifest.totals.bytes += file.length;
        }
      }
    }
  }
  await mkdir(opts.outDir, { recursive: true });
  await writeFile(join(opts.outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

export interface LargeOptions { seed?: number; prefix?: string; rows?: number; cols?: number; tsUid?: string }

/**
 * A multi-frame CT of about `bytes` bytes (frames = bytes / frame size, rounded), streamed to disk.
 * The header is instance 0 of a dedicated series of patient 0 for the seed.
 */
export async function generateLarge(path: string, bytes: number, o: LargeOptions = {}): Promise<{ bytes: number; frames: number; sopInstanceUid: string }> {
  const rows = o.rows ?? 512, cols = o.cols ?? 512;
  const frames = Math.max(1, Math.round(bytes / (rows * cols * 2)));
  const io: InstanceOptions = { seed: o.seed, prefix: o.prefix, modalities: ['CT'], seriesIndex: 900, rows, cols };
  const c = context(io);
  const elements = headerElements(c, io);
  const written = await writeLargeMultiframeFile(path, { rows, cols, frames, bitsAllocated: 16, elements, tsUid: o.tsUid });
  return { bytes: written, frames, sopInstanceUid: c.sopInstanceUid };
}
