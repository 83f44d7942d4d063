// The README stays equal to the code, as dicognito keeps its README equal to its command line: the settings table
// is the config schema with each default and doc comment, the command list is `dphiant --help`. On a difference,
// `npm run docs` rewrites both sections.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { settingKeys } from '../src/config/index.js';
import { repoRoot } from '../src/paths.js';
import { commandsHelp, readmeSection, settingsTable } from '../tools/docs/readme.js';

describe('README equals the code', () => {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');

  it('its settings table lists exactly the settings of the schema, with their defaults and meanings', () => {
    const table = readmeSection(readme, 'settings');
    expect(table, 'README.md has the generated settings section').to.be.a('string');
    const listed = [...table!.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]);
    expect(listed).to.deep.equal(settingKeys());
    expect(table, 'run `npm run docs`').to.equal(settingsTable());
    console.log(`      ${listed.length} settings in the README, as in src/config/index.ts`);
  });

  it('every setting has a meaning (a doc comment in src/config/index.ts)', () => {
    const empty = settingsTable().split('\n').filter((row) => /\| {2}\|$/.test(row)).map((row) => row.split('`')[1]);
    expect(empty).to.deep.equal([]);
  });

  it('its command list is `dphiant --help`', () => {
    const commands = readmeSection(readme, 'commands');
    expect(commands, 'README.md has the generated commands section').to.be.a('string');
    expect(commands, 'run `npm run docs`').to.equal(commandsHelp());
  });
});
