// Secure by default (issue 10 item 6): the Docker image holds the product only and, unconfigured, refuses to start
// naming the first missing setting; `dphiant serve` exits on a rejection nobody handled, as on an uncaught exception.
// Docker cannot run here: the image's runtime stage is read from the Dockerfile and its file tree assembled from
// this built checkout, then run as the image would run it.
import { expect } from 'chai';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../src/paths.js';
import { cleanEnv, CLI, DEV_STACK_ENV } from './support/cli.js';
import { run } from './support/dcmtk.js';
import { freePorts } from './support/ports.js';

interface Stage {
  from: string;
  lines: string[];
}

/** The Dockerfile's stages, each with its instructions (continuation lines joined, comments dropped). */
function dockerStages(): Stage[] {
  const text = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const stages: Stage[] = [];
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (!line || line.startsWith('#')) continue;
    if (/^FROM /i.test(line)) stages.push({ from: line, lines: [] });
    else stages.at(-1)?.lines.push(line);
  }
  return stages;
}

/** COPY --from=build <source> <destination> of a stage: sources relative to the build stage's WORKDIR /app. */
function copies(stage: Stage): { from?: string; source: string; dest: string }[] {
  return stage.lines
    .filter((l) => /^COPY /i.test(l))
    .map((l) => {
      const words = l.split(/\s+/).slice(1);
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const [source = '', dest = ''] = words.filter((w) => !w.startsWith('--'));
      return { from, source: path.posix.relative('/app', path.posix.resolve('/app', source)), dest };
    });
}

/** What the build stage deletes after building (rm -rf …), relative to /app. */
function removedInBuild(stage: Stage): string[] {
  return stage.lines.flatMap((l) => [...l.matchAll(/rm -rf ((?:[\w./-]+ ?)+)/g)].flatMap((m) => m[1]!.trim().split(/\s+/)));
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

describe('secure by default: the Docker image, its unconfigured start, and unhandled rejections', function () {
  this.timeout(120_000);
  const stages = dockerStages();
  const build = stages[0]!;
  const runtime = stages.at(-1)!;
  let image: string;

  before(function () {
    expect(stages.map((s) => s.from)).to.deep.equal(['FROM node:24-bookworm AS build', 'FROM node:24-bookworm-slim']);
    // the image's file tree: what the runtime stage copies out of the build stage, as this checkout has it built
    image = mkdtempSync(path.join(tmpdir(), 'dphiant-image-'));
    for (const c of copies(runtime)) {
      const dest = path.join(image, c.dest);
      mkdirSync(path.dirname(dest), { recursive: true });
      if (c.source === 'node_modules') symlinkSync(path.join(repoRoot, 'node_modules'), dest); // the same packages, dev ones too
      else cpSync(path.join(repoRoot, c.source), dest, { recursive: true });
    }
    for (const gone of removedInBuild(build)) rmSync(path.join(image, gone), { recursive: true, force: true });
  });

  it('copies into the runtime stage only from the build stage, and nothing of the dev stack, the generator, orthanc/, tests, benchmarks or scripts', () => {
    const copied = copies(runtime);
    console.log(`      runtime stage copies: ${copied.map((c) => c.source).join(', ')}; the build stage removes: ${removedInBuild(build).join(', ')}`);
    for (const c of copied) {
      expect(c.from, `COPY ${c.source}`).to.equal('build');
      expect(c.source, 'the whole build folder').not.to.equal('');
      expect(c.source).not.to.match(/(^|\/)(devstack|synth|orthanc|test|bench|scripts|tools)(\/|$)/);
      expect(existsSync(path.join(repoRoot, c.source)), `${c.source} exists after a build`).to.equal(true);
    }
    expect(copied.map((c) => c.source)).to.include.members(['dist/src', 'src/anonymize/data', 'src/crosswalk/data', 'src/dicom/data', 'src/web/static']);
    const tree = filesUnder(image).filter((f) => !f.startsWith('node_modules'));
    expect(tree.filter((f) => /(^|\/)(devstack|synth|orthanc|test|bench|scripts)(\/|$)/.test(f)), 'dev files in the image').to.deep.equal([]);
    expect(tree, 'the CLI is there').to.include('dist/src/cli/main.js');
  });

  it('the image runs the product: help and profile show work, no synth command, and serve without configuration exits 2 naming pacs.password', async () => {
    const cli = path.join(image, 'dist/src/cli/main.js');
    // the image's environment (Dockerfile ENV) with the data directory moved here
    const dataDir = path.join(image, 'var-lib-dphiant');
    const env = { ...cleanEnv, NODE_ENV: 'production', DPHIANT_DATA_DIR: dataDir };
    expect(runtime.lines.find((l) => l.startsWith('ENV '))).to.match(/^ENV NODE_ENV=production\s+DPHIANT_DATA_DIR=\/var\/lib\/dphiant$/);
    const help = await run(process.execPath, [cli, '--help'], { env });
    const profile = await run(process.execPath, [cli, 'profile', 'show'], { env: { ...env, ...DEV_STACK_ENV } });
    const serve = await run(process.execPath, [cli, 'serve'], { env, timeoutMs: 30_000 });
    console.log(`      help exit ${help.code}; profile show exit ${profile.code}; serve exit ${serve.code}: ${serve.stderr.trim()}`);
    expect(help.code, help.stderr).to.equal(0);
    expect(help.stdout).to.contain('dphiant serve');
    expect(profile.code, profile.stderr).to.equal(0);
    expect(help.stdout, 'the generator is dev tooling (tools/synth), not a product command').not.to.match(/dphiant synth/);
    expect(serve.code).to.equal(2);
    expect(serve.stderr).to.contain('invalid configuration: pacs.password: the default (demo) is allowed only in the dev stack');
    expect(existsSync(dataDir) ? readdirSync(dataDir) : [], 'serve created nothing (no key, no journal)').to.deep.equal([]);
  });

  describe('`dphiant serve` on a rejection nobody handled', () => {
    // rejects from a timer once serve has installed its handler: a promise nobody awaits, outside every try
    for (const [what, rejection, expected] of [
      ['an Error', "Promise.reject(new Error('planted rejection'))", 'planted rejection'],
      ['a value that is no Error (a string that could hold PHI)', "Promise.reject('DOE^JANE 19610203')", 'not an Error (string)'],
    ] as const) {
      it(`logs it (${what}: ${expected}) and exits 70, for its supervisor to restart it`, async () => {
        const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-rejection-'));
        const preload = path.join(dir, 'reject-later.mjs');
        writeFileSync(preload, `const t = setInterval(() => { if (process.listenerCount('unhandledRejection') > 0) { clearInterval(t); ${rejection}; } }, 50);\n`);
        const [scp, web, pacsDicom, pacsHttp] = await freePorts(4);
        const r = await run(process.execPath, ['--import', pathToFileURL(preload).href, CLI, 'serve'], {
          env: {
            ...cleanEnv,
            ...DEV_STACK_ENV,
            DPHIANT_DATA_DIR: path.join(dir, 'data'),
            DPHIANT_SCP_PORT: String(scp),
            DPHIANT_WEB_PORT: String(web),
            DPHIANT_PACS_PORT: String(pacsDicom),
            DPHIANT_PACS_URL: `http://127.0.0.1:${pacsHttp}`,
            DPHIANT_LOG_LEVEL: 'warn',
          },
          timeoutMs: 30_000,
        });
        expect(r.code, `exit code; output: ${r.stdout}${r.stderr}`).to.equal(70);
        const entry = r.stdout
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((e) => e.msg === 'unhandled rejection: exiting');
        expect(entry, r.stdout).to.exist;
        expect(entry).to.include({ err: expected, level: 60 });
        expect(r.stdout + r.stderr, 'the rejected value is not logged').not.to.contain('DOE^JANE');
      });
    }
  });
});
