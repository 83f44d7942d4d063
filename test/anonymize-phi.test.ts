// Planted PHI: one patient's name, ID and birth date hidden where de-identifiers miss them — a 3-level nested
// sequence, a private block, UN elements, free-text descriptions, attributes the confidentiality table does not
// list — and the synthetic generator's own instances. For every place, with the basic profile and with the Clean
// Descriptors option, either no planted string is left anywhere in the output bytes, or the verification gate
// rejects the instance with a message that names where the values are and repeats none of them.
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deidentify, type Deidentified } from '../src/anonymize/deidentify.js';
import { VerificationError } from '../src/anonymize/gate.js';
import { identityOf } from '../src/anonymize/phi.js';
import { Profile, loadSiteProfile } from '../src/anonymize/profile.js';
import { KeyedStandIn } from './support/standin.js';
import { splitPart10 } from '../src/dicom/part10.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { stringValue } from '../src/dicom/values.js';
import { parseFile, type ParsedDataset } from '../src/dicom/walker.js';
import { part10, type Element } from '../src/dicom/writer.js';
import { CT_IMAGE_STORAGE, PRIVATE_CREATOR, generateElements } from '../tools/synth/generate.js';
import { datasetBytes } from './support/files.js';
import { SMALL_PIXEL_MODULE, withElements } from './support/instance.js';

const KEY = Buffer.from('0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0', 'hex');

const FAMILY = 'Quintarelli';
const GIVEN = 'Benedetta';
const MIDDLE = 'Ottavia';
const PATIENT_ID = 'QX7781234';
const BIRTH_DATE = '19670412';
const NAME = `${FAMILY}^${GIVEN}^${MIDDLE}`;
/** The planted values as someone would type them into a free-text field (59 characters: fits LO). */
const FREE_TEXT = `${GIVEN} ${MIDDLE} ${FAMILY} ${PATIENT_ID} 1967-04-12 ${BIRTH_DATE}`;

interface Planted {
  label: string;
  text: string;
}

/** What must not be in the output: the name components, the ID, and the birth date in DA and YYYY-MM-DD forms. */
function plantedOf(name: string, id: string, birthDate: string): Planted[] {
  const [family = '', given = '', middle = ''] = name.split('^');
  const out: Planted[] = [
    { label: 'family name', text: family },
    { label: 'given name', text: given },
    { label: 'middle name', text: middle },
    { label: 'patient ID', text: id },
    { label: 'birth date (DA)', text: birthDate },
    { label: 'birth date (YYYY-MM-DD)', text: `${birthDate.slice(0, 4)}-${birthDate.slice(4, 6)}-${birthDate.slice(6, 8)}` },
  ];
  return out.filter((p) => p.text !== '');
}

const PLANTED = plantedOf(NAME, PATIENT_ID, BIRTH_DATE);

/** Labels of the planted values found in the output bytes (file meta + data set, inflated when deflated), case-insensitively. */
function leaks(output: Buffer, planted: Planted[]): string[] {
  const meta = splitPart10(output).meta;
  const { bytes } = datasetBytes(output);
  const hay = Buffer.concat([meta, bytes]);
  const texts = [hay.toString('latin1').toLowerCase(), hay.toString('utf8').toLowerCase()];
  return planted.filter((p) => texts.some((t) => t.includes(p.text.toLowerCase()))).map((p) => `${p.label} ${JSON.stringify(p.text)}`);
}

/** A small CT instance of the planted patient plus `extra` elements. */
function instance(uidSuffix: number, extra: Element[], tsUid: string): Buffer {
  const els: Element[] = [
    { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 100' },
    { tag: 0x00080016, vr: 'UI', value: CT_IMAGE_STORAGE },
    { tag: 0x00080018, vr: 'UI', value: `2.25.4711000${uidSuffix}` },
    { tag: 0x00080060, vr: 'CS', value: 'CT' },
    { tag: 0x00100010, vr: 'PN', value: NAME },
    { tag: 0x00100020, vr: 'LO', value: PATIENT_ID },
    { tag: 0x00100030, vr: 'DA', value: BIRTH_DATE },
    { tag: 0x00100040, vr: 'CS', value: 'F' },
    { tag: 0x0020000d, vr: 'UI', value: '2.25.4711001' },
    { tag: 0x0020000e, vr: 'UI', value: '2.25.4711002' },
    ...SMALL_PIXEL_MODULE,
  ];
  return part10(withElements(els, extra), tsUid);
}

/** ReferencedImageSequence > PurposeOfReferenceCodeSequence > EquivalentCodeSequence, with `deepest` in the innermost item. */
function nested(deepest: Element[], undefinedLength = false): Element {
  return {
    tag: 0x00081140, vr: 'SQ', undefinedLength, value: [[
      { tag: 0x00081150, vr: 'UI', value: CT_IMAGE_STORAGE },
      { tag: 0x00081155, vr: 'UI', value: '2.25.4711003' },
      {
        tag: 0x0040a170, vr: 'SQ', undefinedLength, value: [[
          { tag: 0x00080100, vr: 'SH', value: '121311' },
          { tag: 0x00080102, vr: 'SH', value: 'DCM' },
          { tag: 0x00080104, vr: 'LO', value: 'Localizer' },
          {
            tag: 0x00080121, vr: 'SQ', undefinedLength, value: [[
              { tag: 0x00080100, vr: 'SH', value: 'LOC' },
              { tag: 0x00080102, vr: 'SH', value: '99DPHIANT' },
              ...deepest,
            ]],
          },
        ]],
      },
    ]],
  };
}

const DEPTH_3 = 'ReferencedImageSequence > PurposeOfReferenceCodeSequence > EquivalentCodeSequence > ';
const creator: Element = { tag: 0x00090010, vr: 'LO', value: PRIVATE_CREATOR };
const WINDOW_EXPLANATION = 0x00281055; // WindowCenterWidthExplanation: not in Table E.1-1

interface Case {
  /** Where the values are planted, as a sentence fragment. */
  where: string;
  extra: Element[];
  /** Attribute paths a VerificationError may name for this instance (the gate must name where the values are). */
  paths: RegExp;
  /** The case needs explicit VR (a UN element of a standard tag); implicit VR would read it with its dictionary VR. */
  explicitOnly?: boolean;
}

const CASES: Case[] = [
  {
    where: 'PatientName, PatientID and PatientBirthDate in a 3-level nested sequence',
    extra: [nested([
      { tag: 0x00100010, vr: 'PN', value: NAME },
      { tag: 0x00100020, vr: 'LO', value: PATIENT_ID },
      { tag: 0x00100030, vr: 'DA', value: BIRTH_DATE },
    ])],
    paths: new RegExp(`^${DEPTH_3}(PatientName|PatientID|PatientBirthDate)$`),
  },
  {
    where: 'PatientName, PatientID and PatientBirthDate in a 3-level nested sequence of undefined lengths',
    extra: [nested([
      { tag: 0x00100010, vr: 'PN', value: NAME },
      { tag: 0x00100020, vr: 'LO', value: PATIENT_ID },
      { tag: 0x00100030, vr: 'DA', value: BIRTH_DATE },
    ], true)],
    paths: new RegExp(`^${DEPTH_3}(PatientName|PatientID|PatientBirthDate)$`),
  },
  {
    where: 'a private block (LO, PN, DA elements and an undefined-length private sequence chain)',
    extra: [
      creator,
      { tag: 0x00091001, vr: 'LO', value: PATIENT_ID },
      { tag: 0x00091003, vr: 'PN', value: NAME },
      { tag: 0x00091004, vr: 'DA', value: BIRTH_DATE },
      {
        tag: 0x00091010, vr: 'SQ', undefinedLength: true, value: [[
          creator,
          {
            tag: 0x00091011, vr: 'SQ', undefinedLength: true, value: [[
              creator,
              { tag: 0x00091013, vr: 'LO', value: FREE_TEXT },
              { tag: 0x00100010, vr: 'PN', value: NAME },
            ]],
          },
        ]],
      },
    ],
    paths: /^\(0009,10\d\d\)/,
  },
  {
    where: 'a private UN element',
    extra: [creator, { tag: 0x00091002, vr: 'UN', value: Buffer.from(FREE_TEXT.length % 2 ? FREE_TEXT + ' ' : FREE_TEXT, 'latin1') }],
    paths: /^\(0009,1002\)$/,
  },
  {
    where: 'a UN element of a standard attribute the table does not list',
    extra: [{ tag: WINDOW_EXPLANATION, vr: 'UN', value: Buffer.from(FREE_TEXT + ' ', 'latin1') }],
    paths: /^WindowCenterWidthExplanation$/,
    explicitOnly: true,
  },
  {
    where: 'a UN element of a standard attribute the table removes (OtherPatientNames)',
    extra: [{ tag: 0x00101001, vr: 'UN', value: Buffer.from(`${NAME} `, 'latin1') }],
    paths: /^OtherPatientNames$/,
    explicitOnly: true,
  },
  ...(
    [
      [0x00081030, 'LO', 'StudyDescription'],
      [0x0008103e, 'LO', 'SeriesDescription'],
      [0x00204000, 'LT', 'ImageComments'],
      [0x00104000, 'LT', 'PatientComments'],
    ] as const
  ).map(([tag, vr, keyword]): Case => ({
    where: `the free text of ${keyword}`,
    extra: [{ tag, vr, value: FREE_TEXT }],
    paths: new RegExp(`^${keyword}$`),
  })),
  {
    where: 'the text of WindowCenterWidthExplanation, an attribute the table does not list',
    extra: [{ tag: WINDOW_EXPLANATION, vr: 'LO', value: FREE_TEXT }],
    paths: /^WindowCenterWidthExplanation$/,
  },
  {
    where: 'the CodeMeaning of a 3-level nested code sequence, an attribute the table does not list (as the synthetic generator plants it)',
    extra: [nested([{ tag: 0x00080104, vr: 'LO', value: FREE_TEXT }])],
    paths: new RegExp(`^${DEPTH_3}CodeMeaning$`),
  },
];

const SYNTAXES: [string, string][] = [
  ['explicit VR little endian', TS.ExplicitVRLittleEndian],
  ['implicit VR little endian', TS.ImplicitVRLittleEndian],
  ['deflated explicit VR little endian', TS.DeflatedExplicitVRLittleEndian],
];

const PROFILES: [string, () => Profile][] = [
  ['the basic profile', () => new Profile({})],
  ['the Clean Descriptors option', () => new Profile({ cleanDescriptors: true })],
];

type Outcome = { kind: 'output'; d: Deidentified } | { kind: 'rejected'; error: VerificationError };

async function outcomeOf(file: Buffer, profile: Profile): Promise<Outcome> {
  try {
    return { kind: 'output', d: await deidentify(file, profile, KEY, new KeyedStandIn(KEY)) };
  } catch (e) {
    if (e instanceof VerificationError) return { kind: 'rejected', error: e };
    throw e;
  }
}

/** The planted-PHI property: no planted string in the output, or a rejection naming only `paths` and holding no value. */
function expectNoPlantedValue(o: Outcome, planted: Planted[], paths: RegExp | null): void {
  if (o.kind === 'output') {
    const found = leaks(Buffer.concat(o.d.chunks), planted);
    expect(found, 'planted values left in the de-identified output (and the gate let it pass)').to.deep.equal([]);
    return;
  }
  const { error } = o;
  expect(error.hits, 'a VerificationError names at least one attribute').to.not.be.empty;
  for (const h of error.hits) {
    expect(error.message, 'the message names the attribute path').to.include(h.path);
    if (paths) expect(h.path, 'the gate names the attribute where the values were planted').to.match(paths);
  }
  const inMessage = planted.filter((p) => error.message.toLowerCase().includes(p.text.toLowerCase())).map((p) => p.label);
  expect(inMessage, 'planted values repeated in the VerificationError message').to.deep.equal([]);
}

function top(ds: ParsedDataset, tag: number): string | undefined {
  const el = ds.elements.find((e) => e.tag === tag);
  return el ? stringValue(ds, el) : undefined;
}

describe('planted PHI is removed or the instance is rejected', function () {
  this.timeout(120_000);

  it('WindowCenterWidthExplanation is an attribute the confidentiality table does not list (the premise of the unlisted cases)', () => {
    expect(new Profile({}).ruleFor(WINDOW_EXPLANATION).action.kind, 'decided by the safety pass').to.equal('safety');
    expect(new Profile({}).isVocabulary(0x00080104), 'CodeMeaning is vocabulary').to.equal(true);
  });

  CASES.forEach((c, ci) => {
    describe(`planted in ${c.where}`, () => {
      for (const [tsName, tsUid] of SYNTAXES) {
        if (c.explicitOnly && tsUid === TS.ImplicitVRLittleEndian) continue;
        for (const [profileName, profile] of PROFILES) {
          it(`leaves none of the name, ID and birth date in the output, or is rejected naming the attribute (${profileName}, ${tsName})`, async () => {
            const file = instance(ci, c.extra, tsUid);
            // the input really holds every planted value where the case says (else the test proves nothing)
            expect(leaks(file, PLANTED).length, 'planted values found in the input by the same search').to.be.at.least(5);
            expectNoPlantedValue(await outcomeOf(file, profile()), PLANTED, c.paths);
          });
        }
      }
    });
  });

  describe('in a synthetic instance as the generator makes it', () => {
    // the generator plants its patient's name, ID and birth date in a 3-level nested sequence, a private block with
    // a UN element and an undefined-length chain, descriptions and comments
    for (const [modality, patientIndex] of [['CT', 0], ['MR', 1]] as const) {
      for (const [profileName, profile] of PROFILES) {
        it(`a generated ${modality} keeps none of its patient's name, ID and birth date, or is rejected without repeating them (${profileName})`, async () => {
          const els = generateElements({ modalities: [modality], patientIndex, rows: 16, cols: 16 });
          const value = (tag: number) => String(els.find((e) => e.tag === tag)!.value);
          const planted = plantedOf(value(0x00100010), value(0x00100020), value(0x00100030));
          const file = part10(els, TS.ExplicitVRLittleEndian);
          expect(leaks(file, planted).length, 'planted values found in the input by the same search').to.be.at.least(4);
          expectNoPlantedValue(await outcomeOf(file, profile()), planted, null);
        });
      }
    }
  });

  describe('a site profile that keeps StudyDescription', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'dphiant-phi-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('gets an instance with the patient name in StudyDescription rejected with a VerificationError naming StudyDescription but not the name', async () => {
      const file = path.join(dir, 'keep-study-description.json');
      writeFileSync(file, JSON.stringify({ attributes: { StudyDescription: 'keep' } }));
      const profile = new Profile({}, loadSiteProfile(file));
      const input = instance(90, [{ tag: 0x00081030, vr: 'LO', value: `CT Thorax for ${GIVEN} ${FAMILY}` }], TS.ExplicitVRLittleEndian);
      let error: unknown;
      try {
        await deidentify(input, profile, KEY, new KeyedStandIn(KEY));
      } catch (e) {
        error = e;
      }
      expect(error, 'deidentify throws a VerificationError').to.be.instanceOf(VerificationError);
      const v = error as VerificationError;
      expect(v.hits).to.deep.include({ path: 'StudyDescription', kind: 'patient name' });
      expect(v.message).to.match(/\bStudyDescription\b/);
      for (const part of [GIVEN, FAMILY, NAME]) expect(v.message.toLowerCase(), 'the message holds no part of the name').to.not.include(part.toLowerCase());
    });

    it('lets the same instance through when StudyDescription holds no identifying value, keeping it as the site asked', async () => {
      const file = path.join(dir, 'keep-study-description.json');
      writeFileSync(file, JSON.stringify({ attributes: { StudyDescription: 'keep' } }));
      const profile = new Profile({}, loadSiteProfile(file));
      const input = instance(91, [{ tag: 0x00081030, vr: 'LO', value: 'CT Thorax with contrast' }], TS.ExplicitVRLittleEndian);
      const d = await deidentify(input, profile, KEY, new KeyedStandIn(KEY));
      const out = parseFile(Buffer.concat(d.chunks)).dataset;
      expect(top(out, 0x00081030)).to.equal('CT Thorax with contrast');
      expect(leaks(Buffer.concat(d.chunks), PLANTED)).to.deep.equal([]);
    });
  });

  describe("the gate and the engine's own replacement values", () => {
    it("does not reject an instance because the crosswalk's alias name shares a word with the operator's name", async () => {
      // the alias the stand-in crosswalk gives this patient under KEY; an operator who shares its given name
      const probe = instance(92, [], TS.ExplicitVRLittleEndian);
      const alias = await new KeyedStandIn(KEY).patient(identityOf(parseFile(probe).dataset));
      const aliasGiven = alias.aliasName.split('^')[1]!;
      const aliasGivenCased = aliasGiven[0] + aliasGiven.slice(1).toLowerCase();
      const input = instance(92, [{ tag: 0x00081070, vr: 'PN', value: `Doe^${aliasGivenCased}` }], TS.ExplicitVRLittleEndian);
      const o = await outcomeOf(input, new Profile({}));
      expect(o.kind, `the instance is rejected: ${o.kind === 'rejected' ? o.error.message : ''}`).to.equal('output');
      if (o.kind !== 'output') return;
      const out = parseFile(Buffer.concat(o.d.chunks)).dataset;
      expect(top(out, 0x00100010), 'PatientName is the alias').to.equal(alias.aliasName);
      expect(top(out, 0x00081070) ?? '', 'OperatorsName no longer holds the operator').to.not.include('Doe');
    });
  });
});
