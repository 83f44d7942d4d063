// Throughput of the whole pipeline, measured in one run on this machine (not asserted anywhere), same instances,
// same PACS: storescu → PACS directly (the physical limit); storescu → middleman → PACS until every job is DONE;
// and Orthanc's own de-identification (POST /studies/{id}/anonymize) of the same instances stored directly.
// While storescu sends to the middleman, DPHIANT's own C-ECHO SCU in a worker thread (./echo-probe.ts) asks it for a
// C-ECHO every ~100 ms: the latency a modality's verification sees during a burst, next to the same probe idle.
import { rmSync } from 'node:fs';
import path from 'node:path';
import type { DevOrthanc } from '../tools/devstack/orthanc-rest.js';
import { generateStudies } from '../tools/synth/generate.js';
import { storescu } from '../test/support/dcmtk.js';
import { pacsInventory, waitUntilSettled } from '../test/support/pipeline.js';
import { startStack } from '../test/support/stack.js';
import { echoLatencies, latencies } from './echo-probe.js';

export async function benchPipeline(opts: { instances: number; senders?: number; cutThrough?: boolean }): Promise<string[]> {
  const senders = opts.senders ?? 1;
  const cutThrough = opts.cutThrough ?? true;
  const stack = await startStack({ env: { DPHIANT_PACS_CUT_THROUGH: String(cutThrough) } });
  let middlemanOpen = true;
  try {
    const manifest = await generateStudies({ outDir: path.join(stack.work, 'bench'), patients: 5, studiesPerPatient: 2, seriesPerStudy: 2, instancesPerSeries: Math.ceil(opts.instances / 20), rows: 512, cols: 512, seed: 3000, modalities: ['CT'] });
    const instances = manifest.instances.slice(0, opts.instances);
    const files = instances.map((i) => i.path);
    const mb = instances.reduce((s, i) => s + i.bytes, 0) / 1e6;
    const studies = new Set(instances.map((i) => i.studyInstanceUid)).size;
    const pacs = stack.pacsRest;
    const send = async (port: number, callingAet: string, calledAet: string) => {
      const share = Math.ceil(files.length / senders);
      const runs = await Promise.all(
        Array.from({ length: senders }, (_, k) => storescu(files.slice(k * share, (k + 1) * share), { port, callingAet, calledAet, timeoutMs: 1_800_000 })),
      );
      for (const r of runs) if (r.code !== 0) throw new Error(`storescu failed: ${r.stderr.slice(-300)}`);
    };

    // 2. the pipeline first: its reconciler would adopt the raw instances stored directly below and
    // de-identify them itself, so the middleman is closed before the PACS gets anything directly
    await pacs.deleteAll();
    // BENCH_ECHO=0: no probe (to see what the probe's own processes cost the burst on this machine)
    const probing = process.env.BENCH_ECHO !== '0';
    const idleEcho = probing ? await echoLatencies(stack.mm.port, new Promise((r) => setTimeout(r, 2000))) : null;
    let t = process.hrtime.bigint();
    const sending = send(stack.mm.port, 'MODALITY', 'DPHIANT');
    const [burstEcho] = await Promise.all([probing ? echoLatencies(stack.mm.port, sending) : null, sending]);
    const forwardedSec = since(t);
    await settled(stack.mm.journal, files.length);
    const pipelineSec = since(t);
    await expectDeidentified(pacs, files.length, 'pipeline');
    await stack.mm.close();
    middlemanOpen = false;

    // 1. storescu → PACS directly
    await pacs.deleteAll();
    t = process.hrtime.bigint();
    await send(stack.pacs.dicomPort, 'STORESCU', 'PACS');
    const directSec = since(t);
    const stored = (await pacs.statistics()).CountInstances;
    if (stored !== files.length) throw new Error(`PACS holds ${stored} of ${files.length}`);

    // 3. Orthanc's anonymization of what (1) stored, one study at a time
    const studyIds = (await (await orthanc(stack.pacs.httpUrl, 'GET', '/studies')).json()) as string[];
    if (studyIds.length !== studies) throw new Error(`PACS holds ${studyIds.length} studies, expected ${studies}`);
    t = process.hrtime.bigint();
    for (const [n, id] of studyIds.entries()) {
      const body = { KeepSource: false, Force: true, Replace: { PatientID: `BENCH-${n}`, PatientName: `BENCH^${n}` } };
      await (await orthanc(stack.pacs.httpUrl, 'POST', `/studies/${id}/anonymize`, JSON.stringify(body))).arrayBuffer();
    }
    const anonymizeSec = since(t);
    await expectDeidentified(pacs, files.length, 'Orthanc anonymize');

    const rate = (sec: number) => `${(files.length / sec).toFixed(1).padStart(7)} inst/s  (${sec.toFixed(1)} s)`;
    return [
      `pipeline, ${files.length} CT instances (${mb.toFixed(0)} MB, ${studies} studies), ${senders} storescu process(es), ${cutThrough ? 'cut-through' : 'store and forward'}:`,
      `  storescu → PACS directly                      ${rate(directSec)}`,
      `  storescu → DPHIANT → PACS, all jobs DONE      ${rate(pipelineSec)}, storescu done after ${forwardedSec.toFixed(1)} s`,
      `  Orthanc /studies/{id}/anonymize, sequential   ${rate(anonymizeSec)}`,
      `  direct store + Orthanc anonymize              ${rate(directSec + anonymizeSec)}`,
      `  ratio pipeline / direct                       ${(directSec / pipelineSec).toFixed(2).padStart(7)}`,
      `  ratio pipeline / (store + Orthanc anonymize)  ${((directSec + anonymizeSec) / pipelineSec).toFixed(2).padStart(7)}`,
      ...(idleEcho && burstEcho
        ? [`  C-ECHO to DPHIANT, idle                      ${latencies(idleEcho)}`, `  C-ECHO to DPHIANT, during the burst          ${latencies(burstEcho)}`]
        : ['  C-ECHO probe off (BENCH_ECHO=0)']),
    ];
  } finally {
    if (middlemanOpen) await stack.stop();
    else await stack.pacs.stop();
    rmSync(stack.work, { recursive: true, force: true });
  }
}

function since(t: bigint): number {
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** Waits until no job has work left, then requires every job DONE; otherwise throws with the counts and reasons. */
async function settled(journal: Parameters<typeof waitUntilSettled>[0], expected: number): Promise<void> {
  const report = () => {
    const reasons = new Map<string, number>();
    for (const state of ['QUARANTINED', 'REJECTED', 'IN_PACS', 'RECEIVED', 'DEIDENTIFIED'] as const)
      for (const j of journal.byState(state, 100_000)) reasons.set(`${state}: ${j.reason}`, (reasons.get(`${state}: ${j.reason}`) ?? 0) + 1);
    return `${JSON.stringify(journal.counts())} ${JSON.stringify(Object.fromEntries(reasons))}`;
  };
  try {
    await waitUntilSettled(journal, 1_800_000);
  } catch (e) {
    throw new Error(`${(e as Error).message}; reasons ${report()}`);
  }
  const c = journal.counts();
  if (c.DONE !== expected) throw new Error(`pipeline settled with ${c.DONE} of ${expected} jobs DONE: ${report()}`);
}

async function expectDeidentified(pacs: DevOrthanc, expected: number, what: string): Promise<void> {
  const inv = await pacsInventory(pacs);
  const raw = inv.instances.filter((i) => i.identityRemoved?.toUpperCase() !== 'YES').length;
  if (inv.instances.length !== expected || raw) throw new Error(`${what}: PACS holds ${inv.instances.length} of ${expected} instances, ${raw} without PatientIdentityRemoved YES`);
}

async function orthanc(url: string, method: string, route: string, body?: string): Promise<Response> {
  const res = await fetch(url.replace(/\/+$/, '') + route, {
    method,
    body,
    headers: { authorization: `Basic ${Buffer.from('demo:demo').toString('base64')}`, ...(body ? { 'content-type': 'application/json' } : {}) },
  });
  if (!res.ok) throw new Error(`Orthanc ${method} ${route}: HTTP ${res.status}`);
  return res;
}
