// The architecture as a test: every relative import in src/ points down the layers (README, Layout). A new
// import that points up or sideways fails here, naming the file and the import.
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { findUp } from '../src/paths.js';

/** Each layer and what it may import (besides itself and the shared helpers at the root of src/). */
const MAY_IMPORT: Record<string, string[]> = {
  config: [],
  dicom: [],
  anonymize: ['dicom', 'config'],
  crosswalk: ['dicom', 'config'],
  audit: ['dicom', 'config'],
  scp: ['dicom', 'config'],
  scu: ['dicom', 'config'],
  pacs: ['dicom', 'config'],
  pipeline: ['dicom', 'config', 'anonymize', 'crosswalk', 'audit', 'scp', 'scu', 'pacs'],
  web: ['dicom', 'config', 'anonymize', 'crosswalk', 'audit', 'scp', 'scu', 'pacs', 'pipeline'],
  'middleman.ts': ['dicom', 'config', 'anonymize', 'crosswalk', 'audit', 'scp', 'scu', 'pacs', 'pipeline', 'web'],
  cli: ['dicom', 'config', 'anonymize', 'crosswalk', 'audit', 'scp', 'scu', 'pacs', 'pipeline', 'web', 'middleman.ts'],
};
/** Helpers at the root of src/ that depend on nothing of the product: every layer may use them. */
const SHARED = new Set(['paths.ts', 'log.ts', 'metrics.ts', 'keys.ts', 'datadir.ts', 'serve-lock.ts', 'reasons.ts']);

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/** The layer of a file under src/: its top folder, or the file's own name at the root. */
const layerOf = (rel: string) => (rel.includes('/') ? rel.split('/')[0]! : rel);

describe('layers: imports point down', () => {
  const src = findUp('src');

  it('every layer and root file of src/ is known to the test', () => {
    const layers = new Set(filesUnder(src).map((f) => layerOf(path.relative(src, f))));
    const unknown = [...layers].filter((l) => !(l in MAY_IMPORT) && !SHARED.has(l));
    expect(unknown, 'add them to MAY_IMPORT or SHARED with what they may import').to.deep.equal([]);
  });

  it('no import points up or sideways, and the shared helpers import nothing of the product', () => {
    const wrong: string[] = [];
    for (const file of filesUnder(src)) {
      const rel = path.relative(src, file);
      const from = layerOf(rel);
      for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
        const target = path.relative(src, path.resolve(path.dirname(file), m[1]!)).replace(/\.js$/, '.ts');
        if (target.startsWith('..')) {
          wrong.push(`${rel} imports ${m[1]} (outside the product: src/ never uses tools/, test/ or bench/)`);
          continue;
        }
        const to = layerOf(target);
        if (to === from) continue;
        const ok = SHARED.has(from) ? false : SHARED.has(to) || (MAY_IMPORT[from] ?? []).includes(to);
        if (!ok) wrong.push(`${rel} imports ${m[1]} (${from} → ${to})`);
      }
    }
    expect(wrong).to.deep.equal([]);
  });

  it('the dev tooling in tools/ uses the product and itself, never the tests', () => {
    const root = path.dirname(src);
    const wrong: string[] = [];
    for (const file of filesUnder(path.join(root, 'tools'))) {
      for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
        const target = path.relative(root, path.resolve(path.dirname(file), m[1]!));
        if (!target.startsWith('src/') && !target.startsWith('tools/')) wrong.push(`${path.relative(root, file)} imports ${m[1]}`);
      }
    }
    expect(wrong).to.deep.equal([]);
  });
});
