// The burned-in text risk gate, the site file and its conditions, and what `dphiant profile show` lists of them.
import { expect } from 'chai';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeDataset, type Element } from '../src/dicom/writer.js';
import { parseDataset } from '../src/dicom/walker.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { assessRisk } from '../src/anonymize/pixels/risk.js';
import { loadBurnedInSite, meets } from '../src/anonymize/pixels/site.js';
import { framesToRead } from '../src/anonymize/pixels/clean.js';
import { dphiant } from './support/cli.js';

const US = '1.2.840.10008.5.1.4.1.1.6.1';
const CT = '1.2.840.10008.5.1.4.1.1.2';
const PDF = '1.2.840.10008.5.1.4.1.1.104.1';

function dataset(sopClassUid: string, more: Element[] = []) {
  const els: Element[] = [
    { tag: 0x00080016, vr: 'UI', value: sopClassUid },
    { tag: 0x00080018, vr: 'UI', value: '1.2.3.4' },
    ...more,
  ].sort((a, b) => a.tag - b.tag);
  return parseDataset(encodeDataset(els, TS.ExplicitVRLittleEndian), TS.ExplicitVRLittleEndian);
}
const modality = (m: string): Element => ({ tag: 0x00080060, vr: 'CS', value: m });
const manufacturer = (m: string): Element => ({ tag: 0x00080070, vr: 'LO', value: m });
const bia = (v: string): Element => ({ tag: 0x00280301, vr: 'CS', value: v });
const rows = (n: number): Element => ({ tag: 0x00280010, vr: 'US', value: n });

function siteFile(json: unknown): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-site-'));
  const file = path.join(dir, 'site.json');
  writeFileSync(file, JSON.stringify(json));
  return file;
}

describe('burned-in text: the risk gate', () => {
  const defaults = loadBurnedInSite();

  it('puts ultrasound, secondary capture and Burned In Annotation YES at risk, and a plain CT not', () => {
    expect(assessRisk(dataset(US), US, defaults)).to.include({ atRisk: true, declared: false });
    expect(assessRisk(dataset(US), US, defaults).why).to.deep.equal(['SOP class Ultrasound Image Storage']);
    expect(assessRisk(dataset('1.2.840.10008.5.1.4.1.1.7', [modality('OT')]), '1.2.840.10008.5.1.4.1.1.7', defaults).why).to.deep.equal(['SOP class Secondary Capture Image Storage', 'Modality OT']);
    expect(assessRisk(dataset(CT, [modality('CT')]), CT, defaults).atRisk).to.equal(false);
    const declared = assessRisk(dataset(CT, [modality('CT'), bia('YES')]), CT, defaults);
    expect(declared).to.include({ atRisk: true, declared: true });
    expect(declared.why).to.deep.equal(['Burned In Annotation YES']);
    // a CT from a modality listed as risky (an ultrasound-guided biopsy CT would not be; a Modality US would)
    expect(assessRisk(dataset(CT, [modality('US')]), CT, defaults).why).to.deep.equal(['Modality US']);
  });

  it('does not believe Burned In Annotation NO on a risky class unless a site rule trusts the device', () => {
    const ds = dataset(US, [modality('US'), manufacturer('ACME SONO'), bia('NO')]);
    expect(assessRisk(ds, US, defaults).atRisk).to.equal(true);
    const trusting = loadBurnedInSite(siteFile({ rules: [{ name: 'ACME cleans its own', when: { Manufacturer: 'acme sono' }, then: 'trust' }] }));
    expect(assessRisk(ds, US, trusting).atRisk).to.equal(false);
    // trust covers NO only: the same device saying YES, or saying nothing, stays at risk
    expect(assessRisk(dataset(US, [modality('US'), manufacturer('ACME SONO'), bia('YES')]), US, trusting).atRisk).to.equal(true);
    expect(assessRisk(dataset(US, [modality('US'), manufacturer('ACME SONO')]), US, trusting).atRisk).to.equal(true);
  });

  it('holds encapsulated documents unless a rule allows them', () => {
    const pdf = dataset(PDF, [modality('DOC'), manufacturer('SCANNER CO')]);
    expect(assessRisk(pdf, PDF, defaults)).to.include({ atRisk: true, document: true });
    const allowing = loadBurnedInSite(siteFile({ rules: [{ name: 'scanned consent forms are reviewed upstream', when: { Manufacturer: { contains: 'scanner' } }, then: 'allow-document' }] }));
    expect(assessRisk(pdf, PDF, allowing).atRisk).to.equal(false);
  });

  it('lets a site rule put another device at risk, and a site list replace the default one', () => {
    const site = loadBurnedInSite(siteFile({ modalities: ['XA'], rules: [{ name: 'this CR burns names', when: { Modality: 'CR', Rows: [2048, 2500] }, then: 'at-risk' }] }));
    expect(assessRisk(dataset('1.2.840.10008.5.1.4.1.1.1', [modality('CR'), rows(2500)]), '1.2.840.10008.5.1.4.1.1.1', site).why).to.deep.equal(['site rule this CR burns names']);
    expect(assessRisk(dataset('1.2.840.10008.5.1.4.1.1.1', [modality('CR'), rows(1024)]), '1.2.840.10008.5.1.4.1.1.1', site).atRisk).to.equal(false);
    expect(assessRisk(dataset(CT, [modality('US')]), CT, site).atRisk, 'the site list replaced US').to.equal(false);
    expect(site.sources).to.have.length(2);
  });
});

describe('burned-in text: the site file', () => {
  it('matches conditions by text (case and padding ignored), number, list, part and SOP class keyword', () => {
    const ds = dataset(US, [modality('US'), manufacturer('Acme Sono '), rows(480)]);
    expect(meets(ds, { Manufacturer: 'ACME SONO', Rows: 480 }, US)).to.equal(true);
    expect(meets(ds, { Manufacturer: { contains: 'sono' } }, US)).to.equal(true);
    expect(meets(ds, { Rows: [512, 480] }, US)).to.equal(true);
    expect(meets(ds, { SOPClassUID: 'UltrasoundImageStorage' }, US)).to.equal(true);
    expect(meets(ds, { SOPClassUID: 'SecondaryCaptureImageStorage' }, US)).to.equal(false);
    expect(meets(ds, { Manufacturer: 'ACME', Rows: 480 }, US), 'every condition must hold').to.equal(false);
    expect(meets(ds, { StationName: 'ROOM1' }, US), 'an absent attribute meets no condition').to.equal(false);
  });

  it('refuses a file it cannot apply, naming the key', () => {
    const bad = (json: unknown, msg: RegExp) => expect(() => loadBurnedInSite(siteFile(json))).to.throw(msg);
    bad({ mask: [] }, /unknown key mask/);
    bad({ masks: [{ name: 'x', when: { Manufactrer: 'A' }, regions: [{ x: 0, y: 0, w: 1, h: 1 }] }] }, /Manufactrer is not a DICOM keyword/);
    bad({ masks: [{ name: 'x', when: { Manufacturer: 'A' }, regions: [{ x: 0, y: 0, w: 0, h: 1 }] }] }, /regions\[0\] must be/);
    bad({ masks: [{ name: 'x', when: {}, regions: [{ x: 0, y: 0, w: 1, h: 1 }] }] }, /when must be an object/);
    bad({ rules: [{ name: 'x', when: { Modality: 'US' }, then: 'ignore' }] }, /then must be one of/);
    bad({ sopClasses: ['UltrasoundStorage'] }, /not a SOP class of PS3.6/);
    expect(() => loadBurnedInSite('/nonexistent/site.json')).to.throw(/burned-in text file \/nonexistent\/site.json/);
  });

  it('samples long multi-frame images evenly, first and last frame included', () => {
    expect(framesToRead(3, 16)).to.deep.equal([0, 1, 2]);
    const s = framesToRead(100, 16);
    expect(s).to.have.length(16);
    expect(s[0]).to.equal(0);
    expect(s.at(-1)).to.equal(99);
  });

  it('`dphiant profile show` lists the gate, the masks and the rules', async () => {
    const file = siteFile({ masks: [{ name: 'Acme Sono 5 top band', when: { Manufacturer: 'ACME SONO', Rows: 600 }, regions: [{ x: 0, y: 0, w: 800, h: 40 }] }] });
    const r = await dphiant(['profile', 'show'], { DPHIANT_ANONYMIZE_PIXELS_SITE_FILE: file });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/setting\tgate\ton/);
    expect(r.stdout).to.match(/at risk\tSOP class Ultrasound Multi-frame Image Storage\t1\.2\.840\.10008\.5\.1\.4\.1\.1\.3\.1/);
    expect(r.stdout).to.match(/mask\texample: DPHIANT SYNTH SynthSound 1/);
    expect(r.stdout).to.match(/mask\tAcme Sono 5 top band\twhen Manufacturer "ACME SONO", Rows 600: blank 800x40\+0\+0/);
    expect(r.stdout).to.match(/rule\texample: fluoroscopy/);
    const bad = await dphiant(['profile', 'show'], { DPHIANT_ANONYMIZE_PIXELS_SITE_FILE: siteFile({ masks: 3 }) });
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr).to.match(/burned-in text file/);
  });
});
