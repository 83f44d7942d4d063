// The runtime DPHIANT declares (package.json "engines", issue 12 item 6) is one every locked package supports, and
// the one these tests run on: a dependency that drops the declared Node, or a declared Node older than a dependency
// needs, fails here rather than on a user's machine.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import { HEAP_FLAG } from '../src/cli/heap.js';
import { findUp } from '../src/paths.js';

interface LockedPackage {
  version?: string;
  dev?: boolean;
  engines?: { node?: string } | string[];
}

const pkg = JSON.parse(readFileSync(findUp('package.json'), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(findUp('package-lock.json'), 'utf8')) as { packages: Record<string, LockedPackage> };
const declared = pkg.engines.node;

/** Every locked package (the project itself left out) with an engines.node range, as name@version. */
function nodeRanges(): { id: string; range: string }[] {
  const out: { id: string; range: string }[] = [];
  for (const [where, p] of Object.entries(lock.packages)) {
    if (where === '' || !p.engines || Array.isArray(p.engines) || !p.engines.node) continue;
    out.push({ id: `${where.replace(/^.*node_modules\//, '')}@${p.version}${p.dev ? ' (dev)' : ''}`, range: p.engines.node });
  }
  return out;
}

describe('runtime: the declared Node.js, the lock file and the running node agree', () => {
  it('package.json declares a valid engines.node range, and the lock file records the same', () => {
    expect(semver.validRange(declared), `engines.node ${declared}`).to.not.equal(null);
    expect(lock.packages['']?.engines, 'package-lock.json is stale: run npm install').to.deep.equal({ node: declared });
  });

  it("the declared range's minimum satisfies every locked package's engines.node", () => {
    const min = semver.minVersion(declared)!.version;
    const ranges = nodeRanges();
    const refused = ranges.filter((r) => !semver.satisfies(min, r.range)).map((r) => `${r.id} needs node ${r.range}`);
    console.log(`      declared ${declared} (minimum ${min}); ${ranges.length} locked packages declare engines.node, ${refused.length} refuse ${min}`);
    expect(refused, `refuse Node ${min}`).to.deep.equal([]);
  });

  it('every Node.js in the declared range satisfies every locked package (the range is a subset of each)', () => {
    const narrower = nodeRanges().filter((r) => !semver.subset(declared, r.range)).map((r) => `${r.id} needs node ${r.range}`);
    expect(narrower, `not every Node.js in ${declared} is supported`).to.deep.equal([]);
  });

  it('the tests run on a Node.js in the declared range', () => {
    console.log(`      running ${process.version} (${process.execPath}), ABI ${process.versions.modules}`);
    expect(semver.gte(process.versions.node, semver.minVersion(declared)!), `${process.version} is older than the engines minimum`).to.equal(true);
    expect(semver.satisfies(process.versions.node, declared), `${process.version} is outside ${declared}`).to.equal(true);
  });
});

describe("runtime: V8's heap as the launchers size it (src/cli/heap.ts)", () => {
  it('every launcher of the middleman and the benchmark passes HEAP_FLAG to node', () => {
    const root = path.dirname(findUp('package.json'));
    const read = (f: string) => readFileSync(path.join(root, f), 'utf8');
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    const launchers: [string, string][] = [
      ['the CLI\'s shebang (src/cli/main.ts)', read('src/cli/main.ts').split('\n')[0]!],
      ['the Docker image (Dockerfile CMD)', read('Dockerfile').split('\n').find((l) => l.startsWith('CMD '))!],
      ['npm run dphiant', scripts.dphiant!],
      ['make bench (Makefile)', read('Makefile').split('\n').find((l) => l.includes('dist/bench/run.js'))!],
      ['make demo and make cluster (tools/devstack/node-process.ts)', read('tools/devstack/node-process.ts').split('\n').find((l) => l.includes("'serve']"))!],
    ];
    for (const [what, line] of launchers) expect(line, what).to.include(what.startsWith('make demo') ? 'HEAP_FLAG' : HEAP_FLAG);
    for (const script of ['scripts/demo.ts', 'scripts/cluster.ts']) expect(read(script), `${script} starts its nodes with tools/devstack/node-process.ts`).to.match(/startNodeProcess|processNodes/);
  });
});
