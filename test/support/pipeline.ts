// Waiting for the pipeline, and what the PACS holds.
import type { Journal } from '../../src/pipeline/journal.js';
import type { DevOrthanc } from '../../tools/devstack/orthanc-rest.js';

/** Resolves when no job has work left; rejects after `timeoutMs` with the counts. */
export async function waitUntilSettled(journal: Journal, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const c = journal.counts();
    if (c.RECEIVED + c.IN_PACS + c.DEIDENTIFIED === 0) return;
    if (Date.now() > end) throw new Error(`pipeline not settled after ${timeoutMs} ms: ${JSON.stringify(c)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface Inventory {
  instances: { id: string; sopInstanceUid: string; identityRemoved: string | null }[];
  patients: { id: string; patientId: string; patientName: string; studies: number }[];
}

/** Every instance of the PACS with its PatientIdentityRemoved, and every patient with its study count. */
export async function pacsInventory(pacs: DevOrthanc): Promise<Inventory> {
  const instances: Inventory['instances'] = [];
  for (const id of await pacs.listInstances({})) {
    const inst = await pacs.instance(id);
    if (!inst) continue;
    instances.push({ id, sopInstanceUid: inst.MainDicomTags.SOPInstanceUID ?? '', identityRemoved: await pacs.tagValue(id, '0012-0062') });
  }
  const res = await fetch(`${pacs.url}/patients?expand`, { headers: { authorization: `Basic ${Buffer.from('demo:demo').toString('base64')}` } });
  const patients = ((await res.json()) as { ID: string; MainDicomTags: Record<string, string>; Studies: string[] }[]).map((p) => ({
    id: p.ID,
    patientId: p.MainDicomTags.PatientID ?? '',
    patientName: p.MainDicomTags.PatientName ?? '',
    studies: p.Studies.length,
  }));
  return { instances, patients };
}
