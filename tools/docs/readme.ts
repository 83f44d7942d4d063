// The README's generated parts, kept equal to the code by test/readme.test.ts: the table of every setting (its
// path, default and doc comment, read from src/config/index.ts) and the command list (`dphiant --help`).
// `npm run docs` rewrites them in README.md.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { DEFAULT_CONFIG, envName, settingKeys } from '../../src/config/index.js';
import { repoRoot } from '../../src/paths.js';

/** Doc comment of every leaf setting of `interface Config`, by its dotted path. */
function settingDocs(): Map<string, string> {
  const file = path.join(repoRoot, 'src/config/index.ts');
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const docs = new Map<string, string>();
  const docOf = (node: ts.Node) =>
    ts.getJSDocCommentsAndTags(node).map((d) => (ts.isJSDoc(d) && typeof d.comment === 'string' ? d.comment : '')).join(' ').replace(/\s+/g, ' ').trim();
  const walk = (members: ts.NodeArray<ts.TypeElement>, prefix: string) => {
    for (const m of members) {
      if (!ts.isPropertySignature(m) || !m.name) continue;
      const key = prefix + m.name.getText(source);
      const literal = m.type && (ts.isTypeLiteralNode(m.type) ? m.type : ts.isIntersectionTypeNode(m.type) ? m.type.types.find(ts.isTypeLiteralNode) : undefined);
      if (literal) walk(literal.members, key + '.');
      else docs.set(key, docOf(m));
    }
  };
  source.forEachChild((n) => {
    if (ts.isInterfaceDeclaration(n) && n.name.text === 'Config') walk(n.members, '');
  });
  return docs;
}

function valueAt(key: string): unknown {
  return key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], DEFAULT_CONFIG);
}

/** A default as it is written in a configuration file; the users by name and role (their hashes are long). */
function shownDefault(key: string): string {
  const v = valueAt(key);
  if (key === 'web.users') return (v as { username: string; role: string }[]).map((u) => `${u.username} (${u.role})`).join(', ') + ', dev stack only';
  if (key === 'scp.callers') return (v as { aet: string; host: string }[]).map((c) => `\`${c.aet}@${c.host}\``).join(', ');
  return '`' + JSON.stringify(v) + '`';
}

const cell = (s: string) => s.replace(/\|/g, '\\|');

/** The settings table: one row per key of the schema, in its order. */
export function settingsTable(): string {
  const docs = settingDocs();
  const rows = settingKeys().map((key) => {
    const option = key.startsWith('anonymize.') && !key.startsWith('anonymize.pixels.') && key !== 'anonymize.profile';
    const doc = docs.get(key) || (option ? 'A PS3.15 Table E.1-1 option: its column of the table applies instead of the basic profile.' : '');
    return `| \`${key}\` | \`${envName(key)}\` | ${shownDefault(key)} | ${cell(doc)} |`;
  });
  return ['| setting | variable | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** `dphiant --help` as a newcomer sees it. */
export function commandsHelp(): string {
  const cli = path.join(repoRoot, 'dist/src/cli/main.js');
  const out = execFileSync(process.execPath, [cli, '--help'], { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' } });
  return '```\n' + out.trimEnd() + '\n```';
}

const SECTIONS = { settings: settingsTable, commands: commandsHelp } as const;

/** The text between `<!-- generated: NAME -->` and `<!-- end: NAME -->` in the README. */
export function readmeSection(readme: string, name: keyof typeof SECTIONS): string | undefined {
  const m = readme.match(new RegExp(`<!-- generated: ${name} [^>]*-->\\n([\\s\\S]*?)<!-- end: ${name} -->`));
  return m?.[1]?.replace(/\n$/, '');
}

export function regenerate(readme: string): string {
  let out = readme;
  for (const [name, make] of Object.entries(SECTIONS)) {
    const section = new RegExp(`(<!-- generated: ${name} [^>]*-->\\n)[\\s\\S]*?(<!-- end: ${name} -->)`);
    if (!section.test(out)) throw new Error(`README.md has no <!-- generated: ${name} … --> section`);
    out = out.replace(section, (_, open: string, close: string) => `${open}${make()}\n${close}`);
  }
  return out;
}

// run as a program (npm run docs), not when the test imports it
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = path.join(repoRoot, 'README.md');
  writeFileSync(file, regenerate(readFileSync(file, 'utf8')));
  console.log('README.md: settings and commands regenerated');
}
