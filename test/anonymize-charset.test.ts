// Replaced person names are written in the data set's own Specific Character Set, which stays as it was.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { deidentify } from '../src/anonymize/deidentify.js';
import { Profile } from '../src/anonymize/profile.js';
import { KeyedStandIn } from './support/standin.js';
import { parseFile, type ParsedDataset } from '../src/dicom/walker.js';
import { rawValue, specificCharacterSet, stringValue } from '../src/dicom/values.js';
import { part10, type Element } from '../src/dicom/writer.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { SHARED_DICOM, sharedDicomFiles } from './support/files.js';

const KEY = Buffer.alloc(32, 3);

function top(ds: ParsedDataset, tag: number) {
  return ds.elements.find((e) => e.tag === tag)!;
}

async function roundTrip(file: Buffer) {
  const input = parseFile(file).dataset;
  const d = await deidentify(file, new Profile(), KEY, new KeyedStandIn(KEY));
  const output = parseFile(Buffer.concat(d.chunks)).dataset;
  return { input, output, alias: d.alias.aliasName };
}

function synthetic(charset: string, name: string): Buffer {
  const elements: Element[] = [
    { tag: 0x00080005, vr: 'CS', value: charset },
    { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' },
    { tag: 0x00080018, vr: 'UI', value: '1.2.826.0.1.3680043.2.1125.77.1' },
    { tag: 0x00100010, vr: 'PN', value: Buffer.from(name, charset === 'ISO_IR 192' ? 'utf8' : 'latin1') },
    { tag: 0x00100020, vr: 'LO', value: 'CHARSET-1' },
  ];
  return part10(elements, TS.ExplicitVRLittleEndian);
}

describe('person names in the data set character set', () => {
  const cases: [string, () => Buffer][] = [
    ['ISO_IR 100 (Latin-1), synthetic', () => synthetic('ISO_IR 100', 'Müller^Jörg')],
    ['ISO_IR 192 (UTF-8), synthetic', () => synthetic('ISO_IR 192', 'Wang^XiaoDong=王^小東')],
  ];
  if (sharedDicomFiles().length) {
    for (const f of ['chrFren.dcm', 'chrX1.dcm', 'chrJapMulti.dcm']) cases.push([`${f} (shared)`, () => readFileSync(path.join(SHARED_DICOM, f))]);
  }
  for (const [name, make] of cases) {
    it(`writes the alias name readable in ${name}, keeping Specific Character Set`, async () => {
      const { input, output, alias } = await roundTrip(make());
      expect(specificCharacterSet(output)).to.deep.equal(specificCharacterSet(input));
      expect(stringValue(output, top(output, 0x00100010))).to.equal(alias);
      const originalBytes = rawValue(input, top(input, 0x00100010));
      expect(rawValue(output, top(output, 0x00100010)).equals(originalBytes)).to.equal(false);
    });
  }
});
