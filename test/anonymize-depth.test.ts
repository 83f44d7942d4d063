// De-identification in depth: PHI placed where Table E.1-1 does not look — SR text, attributes the table does not
// list (UIDs, dates, URLs, person names), issuer sequences, sequences hidden as UN, IDs inside tokens — with short,
// non-Latin and other people's names. Each row is one case; it fails when a planted value survives anywhere in the
// output bytes, or when the instance is rejected instead of de-identified.
import { expect } from 'chai';
import { deidentify, type Deidentified } from '../src/anonymize/deidentify.js';
import { Profile, type SiteProfile } from '../src/anonymize/profile.js';
import { remapUid } from '../src/anonymize/keyed.js';
import { splitPart10 } from '../src/dicom/part10.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { stringValue } from '../src/dicom/values.js';
import { parseFile, walk, type ParsedDataset } from '../src/dicom/walker.js';
import { part10, type Element } from '../src/dicom/writer.js';
import { CT_IMAGE_STORAGE } from '../tools/synth/generate.js';
import { datasetBytes } from './support/files.js';
import { SMALL_PIXEL_MODULE, withElements } from './support/instance.js';
import { unSequence } from './support/plant.js';
import { KeyedStandIn } from './support/standin.js';

const KEY = Buffer.from('1f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0', 'hex');
const BASIC_TEXT_SR = '1.2.840.10008.5.1.4.1.1.88.11';
const STUDY_UID = '1.2.826.0.1.3680043.2.1125.7.1';
const SERIES_UID = '1.2.826.0.1.3680043.2.1125.7.2';

interface Patient {
  name: string;
  id: string;
  sex: string;
  birthDate: string;
  charset?: string;
}

const LEE: Patient = { name: 'Lee^Ming', id: 'P55501', sex: 'F', birthDate: '19710203' };

/** A small CT (or another SOP class) instance of `p`, plus `extra` elements (replacing any of the same tag). */
function instance(p: Patient, sop: string, extra: Element[], tsUid = TS.ExplicitVRLittleEndian, sopClass = CT_IMAGE_STORAGE): Buffer {
  const els: Element[] = [
    { tag: 0x00080005, vr: 'CS', value: p.charset ?? 'ISO_IR 100' },
    { tag: 0x00080016, vr: 'UI', value: sopClass },
    { tag: 0x00080018, vr: 'UI', value: sop },
    { tag: 0x00080020, vr: 'DA', value: '20230405' },
    { tag: 0x00080060, vr: 'CS', value: sopClass === CT_IMAGE_STORAGE ? 'CT' : 'SR' },
    { tag: 0x00100010, vr: 'PN', value: p.name },
    { tag: 0x00100020, vr: 'LO', value: p.id },
    { tag: 0x00100030, vr: 'DA', value: p.birthDate },
    { tag: 0x00100040, vr: 'CS', value: p.sex },
    { tag: 0x0020000d, vr: 'UI', value: STUDY_UID },
    { tag: 0x0020000e, vr: 'UI', value: SERIES_UID },
    ...(sopClass === CT_IMAGE_STORAGE ? SMALL_PIXEL_MODULE : []),
  ];
  const all = withElements(els, extra).filter((e) => e.value !== ''); // '' = absent
  return part10(all, tsUid, { charset: p.charset === 'ISO_IR 192' ? 'utf8' : 'latin1' });
}

const textItem = (relationship: string, meaning: string, text: string): Element[] => [
  { tag: 0x0040a010, vr: 'CS', value: relationship },
  { tag: 0x0040a040, vr: 'CS', value: 'TEXT' },
  { tag: 0x0040a043, vr: 'SQ', value: [[{ tag: 0x00080100, vr: 'SH', value: '121071' }, { tag: 0x00080102, vr: 'SH', value: 'DCM' }, { tag: 0x00080104, vr: 'LO', value: meaning }]] },
  { tag: 0x0040a160, vr: 'UT', value: text },
];

const SR_TEXT = 'Ms Lee seen 2023-04-05 by Dr Kim at Mercy General Hospital; callback 555-0199';

/** An SR of `p` with a TEXT, PNAME, DATE, DATETIME and UIDREF item (Basic Text SR). */
function srOf(p: Patient, sop: string, text = SR_TEXT): Buffer {
  return instance(p, sop, [
    { tag: 0x00080090, vr: 'PN', value: 'Kim^Joon' },
    { tag: 0x00080080, vr: 'LO', value: 'Mercy General Hospital' },
    { tag: 0x0040a040, vr: 'CS', value: 'CONTAINER' },
    { tag: 0x0040a043, vr: 'SQ', value: [[{ tag: 0x00080100, vr: 'SH', value: '11528-7' }, { tag: 0x00080102, vr: 'SH', value: 'LN' }, { tag: 0x00080104, vr: 'LO', value: 'Radiology Report' }]] },
    { tag: 0x0040a050, vr: 'CS', value: 'SEPARATE' },
    {
      tag: 0x0040a730, vr: 'SQ', value: [
        textItem('CONTAINS', 'Finding', text),
        [{ tag: 0x0040a010, vr: 'CS', value: 'HAS OBS CONTEXT' }, { tag: 0x0040a040, vr: 'CS', value: 'PNAME' }, { tag: 0x0040a123, vr: 'PN', value: 'Okafor^Chidi' }],
        [{ tag: 0x0040a010, vr: 'CS', value: 'CONTAINS' }, { tag: 0x0040a040, vr: 'CS', value: 'DATE' }, { tag: 0x0040a121, vr: 'DA', value: '20230406' }],
        [{ tag: 0x0040a010, vr: 'CS', value: 'CONTAINS' }, { tag: 0x0040a040, vr: 'CS', value: 'DATETIME' }, { tag: 0x0040a120, vr: 'DT', value: '20230407101500' }],
        [{ tag: 0x0040a010, vr: 'CS', value: 'CONTAINS' }, { tag: 0x0040a040, vr: 'CS', value: 'UIDREF' }, { tag: 0x0040a124, vr: 'UI', value: '1.2.826.0.1.3680043.2.1125.7.99' }],
        [{ tag: 0x0040a010, vr: 'CS', value: 'CONTAINS' }, { tag: 0x0040a040, vr: 'CS', value: 'NUM' }, { tag: 0x0040a300, vr: 'SQ', value: [[{ tag: 0x0040a30a, vr: 'DS', value: '42.5' }]] }],
      ],
    },
  ], TS.ExplicitVRLittleEndian, BASIC_TEXT_SR);
}

interface Case {
  /** What is planted where, as a sentence. */
  what: string;
  input: () => Buffer;
  /** Strings that must appear nowhere in the output (checked in the input first). */
  planted: string[];
  profile?: () => Profile;
  /** Extra checks on the output data set. */
  check?: (out: ParsedDataset, d: Deidentified) => void;
}

/** Every value of every element at any depth with this tag, as text. */
function valuesOf(ds: ParsedDataset, tag: number): string[] {
  const out: string[] = [];
  walk(ds, (el) => {
    if (el.tag === tag && !el.items && !el.fragments) out.push(stringValue(ds, el));
  });
  return out;
}

const CASES: Case[] = [
  {
    what: 'SR TEXT item naming the patient (3-letter family name), a physician, a hospital, a date and a phone number',
    input: () => srOf(LEE, '2.25.9100001'),
    planted: ['Lee', 'Kim', 'Mercy', 'General Hospital', '2023-04-05', '555-0199', 'Okafor', 'Chidi', '20230406', '20230407', '1.2.826.0.1.3680043.2.1125.7.99'],
    check: (out) => {
      expect(valuesOf(out, 0x0040a040), 'the SR tree keeps its value types').to.include.members(['CONTAINER', 'TEXT', 'PNAME', 'DATE', 'DATETIME', 'UIDREF', 'NUM']);
      expect(valuesOf(out, 0x00080100), 'codes are kept').to.include.members(['11528-7', '121071']);
      expect(valuesOf(out, 0x0040a30a), 'numbers are kept').to.deep.equal(['42.5']);
      expect(valuesOf(out, 0x0040a160), 'the TEXT item keeps a (replaced) Text Value').to.have.length(1);
      expect(valuesOf(out, 0x0040a124)[0], 'the UIDREF is remapped').to.equal(remapUid(KEY, '1.2.826.0.1.3680043.2.1125.7.99'));
    },
  },
  {
    what: 'SR quoting the patient\'s own full name (rejected by the gate before)',
    input: () => srOf(LEE, '2.25.9100002', 'Patient Ming Lee, P55501, born 1971-02-03, no change'),
    planted: ['Ming', 'Lee', 'P55501', '1971-02-03'],
  },
  {
    what: 'SR TEXT under Clean Structured Content: redacted, the rest of the sentence kept',
    input: () => srOf(LEE, '2.25.9100003'),
    profile: () => new Profile({ cleanStructuredContent: true }),
    planted: ['Lee', 'Kim', 'Mercy General Hospital', '2023-04-05', '555-0199'],
    check: (out) => expect(valuesOf(out, 0x0040a160)[0], 'the text is redacted, not replaced').to.include('seen'),
  },
  {
    what: 'unlisted UIDs: Multi-frame Source SOP Instance UID, SOP Instance UID of Concatenation Source',
    input: () => instance(LEE, '2.25.9100004', [
      { tag: 0x00081167, vr: 'UI', value: '1.2.826.0.1.3680043.2.1125.7.41' },
      { tag: 0x00200242, vr: 'UI', value: '1.2.826.0.1.3680043.2.1125.7.42' },
    ]),
    planted: ['1.2.826.0.1.3680043.2.1125.7.41', '1.2.826.0.1.3680043.2.1125.7.42'],
    check: (out) => expect(valuesOf(out, 0x00081167)[0]).to.equal(remapUid(KEY, '1.2.826.0.1.3680043.2.1125.7.41')),
  },
  {
    what: 'Retrieve URL with the hospital host and the original Study UID',
    input: () => instance(LEE, '2.25.9100005', [{ tag: 0x00081190, vr: 'UR', value: `https://pacs.mercy-hospital.example.org/wado/studies/${STUDY_UID}` }]),
    planted: ['mercy-hospital', STUDY_UID],
  },
  {
    what: 'an unlisted date (Secondary Review Date) under the basic profile',
    input: () => instance(LEE, '2.25.9100006', [{ tag: 0x00140102, vr: 'DA', value: '20230405' }]),
    planted: ['20230405'],
  },
  {
    what: 'an unlisted date under Modified Dates: shifted by the same offset as Study Date',
    input: () => instance(LEE, '2.25.9100007', [{ tag: 0x00140102, vr: 'DA', value: '20230405' }]),
    profile: () => new Profile({ retainLongModifiedDates: true }),
    planted: ['20230405'],
    check: (out) => expect(valuesOf(out, 0x00140102)).to.deep.equal(valuesOf(out, 0x00080020)),
  },
  {
    what: 'Issuer of Patient ID Qualifiers Sequence with the hospital\'s Universal Entity ID',
    input: () => instance(LEE, '2.25.9100008', [{ tag: 0x00100024, vr: 'SQ', value: [[{ tag: 0x00400032, vr: 'UT', value: 'mercy-general.example.org' }, { tag: 0x00400033, vr: 'CS', value: 'DNS' }]] }]),
    planted: ['mercy-general'],
  },
  {
    what: 'an unlisted PN (Secondary Reviewer Name) of a 2-letter family name',
    input: () => instance(LEE, '2.25.9100009', [{ tag: 0x00140104, vr: 'PN', value: 'Wu^Kai' }]),
    planted: ['Wu^Kai'],
  },
  {
    what: 'a standard sequence written as UN with a defined length (CP-246): a Study UID and a name inside',
    input: () => instance(LEE, '2.25.9100010', [unSequence(0x0008114a, [[
      { tag: 0x00081150, vr: 'UI', value: CT_IMAGE_STORAGE },
      { tag: 0x00081155, vr: 'UI', value: '1.2.826.0.1.3680043.2.1125.7.77' },
      { tag: 0x00100010, vr: 'PN', value: 'Lee^Ming' },
      { tag: 0x0020000d, vr: 'UI', value: STUDY_UID },
    ]])]),
    planted: ['1.2.826.0.1.3680043.2.1125.7.77', 'Ming', STUDY_UID],
    check: (out) => expect(valuesOf(out, 0x00081155), 'the UN sequence is opened and its UIDs remapped, not dropped').to.deep.equal([remapUid(KEY, '1.2.826.0.1.3680043.2.1125.7.77')]),
  },
  {
    what: 'Patient\'s Name encoded as UN in explicit VR',
    input: () => instance(LEE, '2.25.9100011', [{ tag: 0x00100010, vr: 'UN', value: Buffer.from('Lee^Ming', 'latin1') }]),
    planted: ['Ming'],
  },
  {
    what: 'a UN element of no known attribute holding a name is removed; a known binary attribute written as UN (Rows) is kept',
    input: () => instance(LEE, '2.25.9100021', [
      { tag: 0x00289998, vr: 'UN', value: Buffer.from('Lee^Ming', 'latin1') },
      { tag: 0x00280010, vr: 'UN', value: Buffer.from([4, 0]) },
    ]),
    planted: ['Lee^Ming'],
    check: (out) => {
      expect(out.elements.some((e) => e.tag === 0x00289998), 'the unknown UN is removed').to.equal(false);
      expect(out.elements.some((e) => e.tag === 0x00280010), 'Rows (as UN) is kept').to.equal(true);
    },
  },
  {
    what: 'short names (Ng, Li) and another person\'s name in an unlisted short text',
    input: () => instance({ name: 'Ng^Li', id: 'Q8812', sex: 'M', birthDate: '19800101' }, '2.25.9100012', [
      { tag: 0x00081070, vr: 'PN', value: 'Abebe^Tsegaye' },
      { tag: 0x00281055, vr: 'LO', value: 'Ng Li window by Abebe' },
    ]),
    planted: ['Ng Li', 'Abebe', 'Tsegaye'],
    check: (out) => expect(valuesOf(out, 0x00281055)[0], 'the short text is redacted, not removed').to.include('window'),
  },
  {
    what: 'a CJK patient name (UTF-8) in an unlisted short text',
    input: () => instance({ name: '李^小龙', id: 'C2231', sex: 'M', birthDate: '19401127', charset: 'ISO_IR 192' }, '2.25.9100013', [{ tag: 0x00281055, vr: 'LO', value: '李小龙 WINDOW' }]),
    planted: ['李', '小龙'],
  },
  {
    what: 'the patient ID inside a larger token (MRN7654321)',
    input: () => instance({ name: 'Okonkwo^Ada', id: '7654321', sex: 'F', birthDate: '19550505' }, '2.25.9100014', [{ tag: 0x00281055, vr: 'LO', value: 'MRN7654321 lung' }]),
    planted: ['7654321'],
  },
  {
    what: 'an unlisted long text (Detector Description) naming a person: removed by default',
    input: () => instance(LEE, '2.25.9100015', [{ tag: 0x00187006, vr: 'LT', value: 'calibrated for Mrs Lee by J. Smith, jsmith@mercy.example.org' }]),
    planted: ['Lee', 'Smith', 'jsmith'],
    check: (out) => expect(valuesOf(out, 0x00187006), 'removed').to.deep.equal([]),
  },
  {
    what: 'an unlisted long text with a site policy of redaction',
    input: () => instance(LEE, '2.25.9100016', [{ tag: 0x00187006, vr: 'LT', value: 'calibrated for Mrs Lee, call 617-555-0147 or jsmith@mercy.example.org' }]),
    profile: () => new Profile({}, { safetyPass: { longText: 'redact' } } satisfies SiteProfile),
    planted: ['Lee', '555-0147', 'jsmith', 'mercy.example.org'],
    check: (out) => expect(valuesOf(out, 0x00187006)[0]).to.include('calibrated for'),
  },
  {
    what: 'an instance with no Patient ID, name, birth date or sex (a phantom)',
    input: () => instance({ name: '', id: '', sex: '', birthDate: '' }, '2.25.9100017', []),
    planted: [],
    check: (out) => {
      expect(valuesOf(out, 0x00100020)[0], 'Patient ID is written with the alias').to.match(/^DPH/);
      expect(valuesOf(out, 0x00100010)[0], "Patient's Name is written with the alias").to.not.equal('');
    },
  },
  {
    what: 'an instance without Patient ID (matched by demographics) gets Patient ID written',
    input: () => instance({ name: 'Haddad^Rami', id: '', sex: 'M', birthDate: '19621212' }, '2.25.9100018', []),
    planted: ['Haddad', 'Rami'],
    check: (out) => expect(valuesOf(out, 0x00100020)[0]).to.match(/^DPH/),
  },
  {
    what: 'standard registry UIDs are kept (SOP classes, a well-known frame of reference), class UIDs of vendors too',
    input: () => instance(LEE, '2.25.9100019', [
      { tag: 0x00200052, vr: 'UI', value: '1.2.840.10008.1.4.1.1' },
      { tag: 0x00081150, vr: 'UI', value: '1.2.840.113619.4.27' },
    ]),
    planted: [],
    check: (out) => {
      expect(valuesOf(out, 0x00080016)).to.deep.equal([CT_IMAGE_STORAGE]);
      expect(valuesOf(out, 0x00200052), 'Talairach is a frame of reference of the standard').to.deep.equal(['1.2.840.10008.1.4.1.1']);
      expect(valuesOf(out, 0x00081150), 'a private SOP class UID names a kind of object').to.deep.equal(['1.2.840.113619.4.27']);
    },
  },
  {
    what: 'an item with its own Specific Character Set (UTF-8) holding a non-Latin name in a Latin-1 data set',
    input: () => instance(LEE, '2.25.9100020', [{ tag: 0x0008114a, vr: 'SQ', value: [[
      { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 192' },
      { tag: 0x00081155, vr: 'UI', value: '1.2.826.0.1.3680043.2.1125.7.78' },
      { tag: 0x00140104, vr: 'PN', value: Buffer.from('Петров^Иван ', 'utf8') as unknown as string },
      { tag: 0x00281055, vr: 'LO', value: Buffer.from('Петров', 'utf8') as unknown as string },
    ]] }]),
    planted: ['Петров', 'Иван'],
  },
];

/** Planted strings found in the bytes (latin1 and utf8 readings, case-insensitively). */
function found(bytes: Buffer, planted: string[]): string[] {
  const texts = [bytes.toString('latin1').toLowerCase(), bytes.toString('utf8').toLowerCase()];
  return planted.filter((p) => texts.some((t) => t.includes(p.toLowerCase())));
}

function allBytes(file: Buffer): Buffer {
  return Buffer.concat([splitPart10(file).meta, datasetBytes(file).bytes]);
}

describe('de-identification in depth: PHI outside Table E.1-1', () => {
  for (const c of CASES) {
    it(`${c.what}: nothing planted survives and the instance is de-identified, not rejected`, async () => {
      const input = c.input();
      expect(found(allBytes(input), c.planted), 'every planted value is in the input').to.deep.equal(c.planted);
      const d = await deidentify(input, c.profile?.() ?? new Profile(), KEY, new KeyedStandIn(KEY));
      const output = Buffer.concat(d.chunks);
      expect(found(allBytes(output), c.planted), 'planted values in the output').to.deep.equal([]);
      const out = parseFile(output).dataset;
      c.check?.(out, d);
    });
  }
});
