// `make demo`: the dev stack of docs/design.md on this machine, without Docker. Starts the PACS and the modality
// (Orthanc), the middleman (`dphiant serve`), generates synthetic studies, uploads them to the modality, sends
// them through the middleman, prints where to look, and runs until Ctrl-C, which stops everything it started.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { devStackDefaults, middlemanEnv, repoRoot, startOrthanc, stopAll, type OrthancProcess } from '../tools/devstack/orthanc.js';
import { DevOrthanc } from '../tools/devstack/orthanc-rest.js';
import { echo } from '../src/scu/echo.js';
import { generateStudies } from '../tools/synth/generate.js';
import { burnedInFile } from '../tools/synth/burned-in.js';
import { GIVEN_NAMES } from '../src/crosswalk/aliases.js';
import { HEAP_FLAG } from '../src/cli/heap.js';

const d = devStackDefaults;
const work = path.join(repoRoot, '.stack');
const say = (msg: string) => console.log(`==> ${msg}`);

let middleman: ChildProcess | undefined;
const orthancs: OrthancProcess[] = [];

async function shutdown(code: number): Promise<never> {
  say('stopping the middleman and both Orthanc servers');
  if (middleman && middleman.exitCode === null) {
    const exited = new Promise((r) => middleman!.once('exit', r));
    middleman.kill('SIGTERM');
    await exited;
  }
  await Promise.all(orthancs.map((o) => o.stop()));
  await stopAll();
  process.exit(code);
}

async function waitForMiddleman(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (middleman?.exitCode !== null) throw new Error(`the middleman exited (${middleman?.exitCode}); see .stack/middleman.log`);
    try {
      const modalityAet = d.middleman.callers.split('@')[0]!;
      if ((await echo({ host: d.middleman.host, port: d.middleman.dicomPort, aet: d.middleman.aet, callingAet: modalityAet, connectTimeoutMs: 1000 })) === 0) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the middleman did not answer C-ECHO within 10 s; see .stack/middleman.log');
}

/** Waits until the PACS holds `expected` instances, all de-identified; returns its patients (aliases). */
async function waitForDeidentified(pacs: DevOrthanc, expected: number) {
  const auth = { authorization: `Basic ${Buffer.from(`${d.credentials.username}:${d.credentials.password}`).toString('base64')}` };
  for (let i = 0; ; i++) {
    const res = await fetch(`${pacs.url}/tools/find`, { method: 'POST', headers: auth, body: JSON.stringify({ Level: 'Instance', Query: {}, Expand: false }) });
    const ids = (await res.json()) as string[];
    let deidentified = 0;
    for (const id of ids) if ((await pacs.tagValue(id, '0012-0062')) === 'YES') deidentified++;
    if (ids.length === expected && deidentified === expected) break;
    if (i > 240) throw new Error(`after 2 minutes the PACS holds ${ids.length} instances, ${deidentified} de-identified (see dphiant status)`);
    await new Promise((r) => setTimeout(r, 500));
  }
  const res = await fetch(`${pacs.url}/patients?expand`, { headers: auth });
  const patients = (await res.json()) as { ID: string; MainDicomTags: Record<string, string>; Studies: string[] }[];
  const rows = [];
  for (const p of patients) {
    const name = p.MainDicomTags.PatientName ?? '';
    const given = name.split('^')[1] ?? '';
    const sex = GIVEN_NAMES.M.some((n) => n.toUpperCase() === given) ? 'M' : GIVEN_NAMES.F.some((n) => n.toUpperCase() === given) ? 'F' : 'O';
    let instances = 0;
    for (const st of p.Studies) instances += ((await (await fetch(`${pacs.url}/studies/${st}/instances`, { headers: auth })).json()) as unknown[]).length;
    rows.push({ id: p.MainDicomTags.PatientID ?? '', name, sex, studies: p.Studies.length, instances });
  }
  return rows.sort((a, b) => a.id.localeCompare(b.id));
}

async function main(): Promise<void> {
  process.once('SIGINT', () => void shutdown(0));
  process.once('SIGTERM', () => void shutdown(0));

  say(`fresh dev stack in ${path.relative(process.cwd(), work) || work} (previous demo data removed)`);
  for (const entry of ['pacs', 'modality', 'data', 'samples', 'middleman.log']) rmSync(path.join(work, entry), { recursive: true, force: true });
  mkdirSync(work, { recursive: true });

  say(`starting the PACS (Orthanc, HTTP ${d.pacs.httpPort}, DICOM ${d.pacs.aet}:${d.pacs.dicomPort})`);
  const pacs = await startOrthanc({ role: 'pacs', workDir: path.join(work, 'pacs') });
  orthancs.push(pacs);
  say(`starting the modality (Orthanc, HTTP ${d.modality.httpPort}, DICOM ${d.modality.aet}:${d.modality.dicomPort})`);
  const modality = await startOrthanc({ role: 'modality', workDir: path.join(work, 'modality') });
  orthancs.push(modality);

  say(`starting the middleman (DICOM ${d.middleman.aet}:${d.middleman.dicomPort}; log in .stack/middleman.log)`);
  const log = openSync(path.join(work, 'middleman.log'), 'a');
  middleman = spawn(process.execPath, [HEAP_FLAG, path.join(repoRoot, 'dist/src/cli/main.js'), 'serve'], {
    env: { ...process.env, ...middlemanEnv({ dataDir: path.join(work, 'data') }) },
    stdio: ['ignore', log, log],
  });
  middleman.once('exit', (code) => {
    if (code !== 0 && code !== null) console.error(`middleman exited with ${code}; see .stack/middleman.log`);
  });
  await waitForMiddleman();

  say('generating synthetic studies (fake PHI: several patients of each sex, CT and MR, private tags, nested sequences)');
  const manifest = await generateStudies({ outDir: path.join(work, 'samples'), patients: 6, studiesPerPatient: 2, seriesPerStudy: 2, instancesPerSeries: 4, rows: 256, cols: 256, seed: 2026 });
  const bySex = manifest.patients.reduce<Record<string, number>>((m, p) => ((m[p.sex] = (m[p.sex] ?? 0) + 1), m), {});

  const auth = { username: d.credentials.username, password: d.credentials.password };
  const modalityRest = new DevOrthanc({ url: modality.httpUrl, ...auth });
  const pacsRest = new DevOrthanc({ url: pacs.httpUrl, ...auth });
  say(`uploading ${manifest.instances.length} instances of ${manifest.patients.length} patients (${Object.entries(bySex).map(([s, n]) => `${n} ${s}`).join(', ')}) to the modality`);
  const { readFile } = await import('node:fs/promises');
  for (const inst of manifest.instances) await modalityRest.upload(await readFile(inst.path));
  // at-risk images: the name, ID and birth date are in the pixels, where only OCR and masks see them
  const patient = { name: 'GARCIA^ELENA', id: 'US7700123', birthDate: '19810317' };
  const ultrasound = [
    await burnedInFile({ kind: 'US', frames: 1, encoding: 'native', patient, allowWords: ['5.0 MHZ', '12 CM'], seed: 1 }),
    await burnedInFile({ kind: 'US', frames: 3, encoding: 'rle', patient, allowWords: ['L'], seed: 2 }),
  ];
  for (const u of ultrasound) await modalityRest.upload(u.file);
  say(`uploading ${ultrasound.length} ultrasound images of one more patient with the name, ID and birth date burned into the pixels (cleaned by OCR and a mask before they reach the archive)`);
  const expected = manifest.instances.length + ultrasound.length;

  const studies = await modalityRest.findStudies({});
  say(`the modality sends ${studies.length} studies to the middleman (POST /modalities/${d.middleman.modalityEntry}/store)`);
  const started = Date.now();
  const result = await modalityRest.storeToModality(d.middleman.modalityEntry, studies);
  const seconds = (Date.now() - started) / 1000;
  say(`${result.InstancesCount ?? expected} sent in ${seconds.toFixed(1)} s, failed ${result.FailedInstancesCount}; the middleman now de-identifies them in the PACS`);
  const table = await waitForDeidentified(pacsRest, expected);
  say(`the PACS holds only de-identified instances, stacked under sex-consistent aliases (no real PHI below):`);
  console.log('\n  alias ID      alias name                      alias sex  studies  instances');
  for (const r of table) console.log(`  ${r.id.padEnd(13)} ${r.name.padEnd(31)} ${r.sex.padEnd(10)} ${String(r.studies).padStart(7)}  ${String(r.instances).padStart(9)}`);
  console.log('');

  const status = spawn(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'status'], {
    env: { ...process.env, ...middlemanEnv({ dataDir: path.join(work, 'data') }) },
    stdio: 'inherit',
  });
  await new Promise((r) => status.once('exit', r));

  const spool = readdirSync(path.join(work, 'data', 'spool'));
  console.log(`
The dev stack is running (login demo/demo everywhere):

  modality  Orthanc Explorer  ${modality.httpUrl}/app/explorer.html
  PACS      Orthanc Explorer  ${pacs.httpUrl}/app/explorer.html
  middleman web UI            ${d.middleman.webUrl}   (demo/demo may reveal identities; viewer/viewer may not)
  middleman DICOM             ${d.middleman.aet}@${d.middleman.host}:${d.middleman.dicomPort}

What to click:
  1. In the modality's explorer, open a patient, then a study, and press "Send to DICOM modality" → "middleman".
  2. In the PACS's explorer the study appears under its alias patient, de-identified (PatientIdentityRemoved YES);
     a few seconds after arriving raw, it is replaced by its de-identified copy.
  3. The middleman's dashboard (${d.middleman.webUrl}) shows the jobs as they flow, the crosswalk page the aliases;
     revealing an identity asks for a reason and is written to the audit log.
  4. After \`export DPHIANT_DEV_STACK=true DPHIANT_DATA_DIR=.stack/data${nodeOnPath()}\` (the demo's settings):
     \`npx dphiant status\` shows the journal and the quarantine; \`npx dphiant crosswalk list\` the aliases;
     \`npx dphiant crosswalk reveal <alias> --reason "…"\` re-identifies (audited).
     .stack/middleman.log is the middleman's log (aliases and hashes of UIDs, no PHI values).
${spool.length ? `\nwarning: ${spool.length} spool file(s) left in .stack/data/spool` : ''}
Press Ctrl-C to stop everything.`);
}

/** The PATH entry of the Node.js running the demo when the shell would find another one (make installs 24 in .stack/node). */
function nodeOnPath(): string {
  const dir = path.dirname(process.execPath);
  return (process.env.PATH ?? '').split(':')[0] === dir && dir.startsWith(repoRoot) ? ` PATH="$PWD/${path.relative(repoRoot, dir)}:$PATH"` : '';
}

main().catch(async (e: Error) => {
  console.error(`demo failed: ${e.message}`);
  await shutdown(1);
});
