// The dev stack's sample data, as `make demo` and `make cluster` send it: synthetic studies with fake PHI and two
// ultrasound images with the identity burned into the pixels, uploaded to the modality, sent from there to the
// middleman's address, then awaited in the PACS until every instance is de-identified; and the table of aliases.
import { readFile } from 'node:fs/promises';
import { GIVEN_NAMES } from '../../src/crosswalk/aliases.js';
import { burnedInFile } from '../synth/burned-in.js';
import { generateStudies } from '../synth/generate.js';
import { devStackDefaults as d } from './orthanc.js';
import type { DevOrthanc } from './orthanc-rest.js';

export interface AliasRow {
  id: string;
  name: string;
  sex: string;
  studies: number;
  instances: number;
}

const authHeader = () => ({ authorization: `Basic ${Buffer.from(`${d.credentials.username}:${d.credentials.password}`).toString('base64')}` });

/** Waits until the PACS holds `expected` instances, all de-identified; returns its patients (aliases). */
export async function waitForDeidentified(pacs: DevOrthanc, expected: number): Promise<AliasRow[]> {
  const auth = authHeader();
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
  const rows: AliasRow[] = [];
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

export function printAliasTable(rows: AliasRow[]): void {
  console.log('\n  alias ID      alias name                      alias sex  studies  instances');
  for (const r of rows) console.log(`  ${r.id.padEnd(13)} ${r.name.padEnd(31)} ${r.sex.padEnd(10)} ${String(r.studies).padStart(7)}  ${String(r.instances).padStart(9)}`);
  console.log('');
}

export interface SendSamplesOptions {
  /** the synthetic studies are written there */
  outDir: string;
  modality: DevOrthanc;
  pacs: DevOrthanc;
  say: (msg: string) => void;
  /** CT/MR patients, two studies of 16 instances each (the demo: 6) */
  patients?: number;
  /** one C-STORE job, so one association, per study: a TCP balancer spreads them over the nodes (else one job for all) */
  perStudy?: boolean;
  /** what the modality sends to, for the messages */
  target?: string;
}

/** Generates, uploads and sends the samples; resolves once the PACS holds them all de-identified, with the aliases. */
export async function sendSamples(o: SendSamplesOptions): Promise<{ expected: number; rows: AliasRow[] }> {
  const { say } = o;
  const target = o.target ?? 'the middleman';
  say('generating synthetic studies (fake PHI: several patients of each sex, CT and MR, private tags, nested sequences)');
  const manifest = await generateStudies({ outDir: o.outDir, patients: o.patients ?? 6, studiesPerPatient: 2, seriesPerStudy: 2, instancesPerSeries: 4, rows: 256, cols: 256, seed: 2026 });
  const bySex = manifest.patients.reduce<Record<string, number>>((m, p) => ((m[p.sex] = (m[p.sex] ?? 0) + 1), m), {});

  say(`uploading ${manifest.instances.length} instances of ${manifest.patients.length} patients (${Object.entries(bySex).map(([s, n]) => `${n} ${s}`).join(', ')}) to the modality`);
  for (const inst of manifest.instances) await o.modality.upload(await readFile(inst.path));
  // at-risk images: the name, ID and birth date are in the pixels, where only OCR and masks see them
  const patient = { name: 'GARCIA^ELENA', id: 'US7700123', birthDate: '19810317' };
  const ultrasound = [
    await burnedInFile({ kind: 'US', frames: 1, encoding: 'native', patient, allowWords: ['5.0 MHZ', '12 CM'], seed: 1 }),
    await burnedInFile({ kind: 'US', frames: 3, encoding: 'rle', patient, allowWords: ['L'], seed: 2 }),
  ];
  for (const u of ultrasound) await o.modality.upload(u.file);
  say(`uploading ${ultrasound.length} ultrasound images of one more patient with the name, ID and birth date burned into the pixels (cleaned by OCR and a mask before they reach the archive)`);
  const expected = manifest.instances.length + ultrasound.length;

  const studies = await o.modality.findStudies({});
  const entry = d.middleman.modalityEntry;
  say(`the modality sends ${studies.length} studies to ${target} (POST /modalities/${entry}/store${o.perStudy ? ', one association per study' : ''})`);
  const started = Date.now();
  let sent = 0;
  let failed = 0;
  for (const batch of o.perStudy ? studies.map((s) => [s]) : [studies]) {
    const result = await o.modality.storeToModality(entry, batch);
    sent += result.InstancesCount ?? 0;
    failed += result.FailedInstancesCount ?? 0;
  }
  const seconds = (Date.now() - started) / 1000;
  say(`${sent || expected} sent in ${seconds.toFixed(1)} s, failed ${failed}; ${target === 'the middleman' ? 'the middleman now de-identifies' : 'the nodes now de-identify'} them in the PACS`);
  const rows = await waitForDeidentified(o.pacs, expected);
  return { expected, rows };
}
