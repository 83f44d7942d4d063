// The data the product ships is what its folder's README says: each file whose SHA-256 a README records has that
// checksum, and the dictionary supplement holds exactly the table's attributes that dcmjs does not know.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../src/paths.js';

const DATA_FOLDERS = ['src/dicom/data', 'src/anonymize/data'];

describe('shipped data files', () => {
  it('have the SHA-256 their README records', () => {
    const checked: string[] = [];
    for (const folder of DATA_FOLDERS) {
      const readme = readFileSync(path.join(repoRoot, folder, 'README.md'), 'utf8');
      for (const m of readme.matchAll(/SHA-256 of the file: `([0-9a-f]{64})`\s*\(`sha256sum ([^`]+)`\)/g)) {
        const actual = createHash('sha256').update(readFileSync(path.join(repoRoot, m[2]!))).digest('hex');
        expect(actual, m[2]).to.equal(m[1]);
        checked.push(m[2]!);
      }
    }
    console.log(`      checked: ${checked.join(', ')}`);
    expect(checked).to.include.members(['src/dicom/data/ps3.6-uid-registry.json', 'src/dicom/data/dictionary-supplement.json']);
  });

  it('the dictionary supplement is every attribute of Table E.1-1 that the dcmjs dictionary lacks', () => {
    const dcmjs = createRequire(import.meta.url)('dcmjs') as { data: { DicomMetaDictionary: { nameMap: Record<string, { tag: string }> } } };
    const known = new Set(Object.values(dcmjs.data.DicomMetaDictionary.nameMap).map((e) => e.tag.replace(/[(),]/g, '').toUpperCase()));
    const tableFile = path.join(repoRoot, 'src/anonymize/data/ps3.15-table-e1-1.json');
    const table = JSON.parse(readFileSync(tableFile, 'utf8')) as { attributes: { tagValue: string | null; isPattern: boolean; isPrivate: boolean; keyword: string | null }[] };
    const missing = [...new Set(table.attributes.filter((r) => !r.isPattern && !r.isPrivate && r.keyword && r.tagValue && !known.has(r.tagValue.toUpperCase())).map((r) => r.tagValue!.toUpperCase()))];
    const supplement = JSON.parse(readFileSync(path.join(repoRoot, 'src/dicom/data/dictionary-supplement.json'), 'utf8')) as { source: { sha256: string }; attributes: { tag: string }[] };
    expect(supplement.attributes.map((a) => a.tag).sort()).to.deep.equal(missing.sort());
    expect(supplement.source.sha256, 'made from this table').to.equal(createHash('sha256').update(readFileSync(tableFile)).digest('hex'));
  });
});
