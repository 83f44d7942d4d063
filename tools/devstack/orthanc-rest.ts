// The dev stack's extra Orthanc REST calls (tests, demo, benchmarks): statistics, emptying a server, C-STORE jobs
// from the modality Orthanc. The product's client (src/pacs/orthanc.ts) keeps only what the pipeline and web use.
import { OrthancClient, orthancResourceId } from '../../src/pacs/orthanc.js';

export interface OrthancStatistics {
  CountInstances: number;
  CountPatients: number;
  CountSeries: number;
  CountStudies: number;
  TotalDiskSize: string;
  TotalDiskSizeMB: number;
  TotalUncompressedSize: string;
  TotalUncompressedSizeMB: number;
  [key: string]: unknown;
}


export interface JobRef {
  ID: string;
  Path: string;
}

export interface StoreResult {
  Description: string;
  FailedInstancesCount: number;
  InstancesCount: number;
  LocalAet: string;
  RemoteAet: string;
  ParentResources: string[];
  [key: string]: unknown;
}

export interface StoreOptions {
  /** run as a job and return its id at once (default: synchronous) */
  asynchronous?: boolean;
  synchronous?: boolean;
  /** DICOM timeout in seconds for this store (Orthanc's "Timeout") */
  timeoutSec?: number;
  /** Orthanc's "Permissive": carry on after a failed instance */
  permissive?: boolean;
  priority?: number;
  /** HTTP timeout of a synchronous store; default 10 min */
  httpTimeoutMs?: number;
}

export type JobState = 'Pending' | 'Running' | 'Success' | 'Failure' | 'Paused' | 'Retry';

export interface OrthancJob {
  ID: string;
  State: JobState;
  Type: string;
  Progress: number;
  ErrorCode: number;
  ErrorDescription: string;
  Content: Record<string, unknown>;
  CreationTime: string;
  CompletionTime?: string;
  [key: string]: unknown;
}


export class DevOrthanc extends OrthancClient {
  statistics(): Promise<OrthancStatistics> {
    return this.json('GET', '/statistics');
  }

  listInstances(opts: { since?: number; limit?: number } = {}): Promise<string[]> {
    const q = new URLSearchParams();
    if (opts.since !== undefined) q.set('since', String(opts.since));
    if (opts.limit !== undefined) q.set('limit', String(opts.limit));
    const qs = q.toString();
    return this.json('GET', qs ? `/instances?${qs}` : '/instances');
  }


  /** deletes every patient (so every instance); returns how many patients were deleted */
  async deleteAll(): Promise<number> {
    const patients: string[] = await this.json('GET', '/patients');
    let n = 0;
    for (const p of patients) {
      const res = await this.request('DELETE', `/patients/${enc(p)}`, { allow: [404] });
      if (res.status !== 404) n++;
    }
    return n;
  }


  /** POST /tools/find at study level; returns study ids */
  findStudies(query: Record<string, string>): Promise<string[]> {
    return this.json('POST', '/tools/find', { body: JSON.stringify({ Level: 'Study', Query: query }) });
  }

  storeToModality(modality: string, resources: string[], opts: StoreOptions & { asynchronous: true }): Promise<JobRef>;
  storeToModality(modality: string, resources: string[], opts?: StoreOptions): Promise<StoreResult>;
  storeToModality(modality: string, resources: string[], opts: StoreOptions = {}): Promise<StoreResult | JobRef> {
    const body: Record<string, unknown> = { Resources: resources };
    if (opts.asynchronous) body.Asynchronous = true;
    else body.Synchronous = true;
    if (opts.timeoutSec !== undefined) body.Timeout = opts.timeoutSec;
    if (opts.permissive !== undefined) body.Permissive = opts.permissive;
    if (opts.priority !== undefined) body.Priority = opts.priority;
    return this.json('POST', `/modalities/${enc(modality)}/store`, {
      body: JSON.stringify(body),
      timeoutMs: opts.asynchronous ? undefined : (opts.httpTimeoutMs ?? 600_000),
    });
  }

  job(id: string): Promise<OrthancJob> {
    return this.json('GET', `/jobs/${enc(id)}`);
  }

  async resubmitJob(id: string): Promise<void> {
    await this.json('POST', `/jobs/${enc(id)}/resubmit`, { body: '{}' });
  }

  /** polls a job until Success or Failure */
  async waitForJob(id: string, opts: { timeoutMs?: number; pollMs?: number } = {}): Promise<OrthancJob> {
    const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
    for (;;) {
      const j = await this.job(id);
      if (j.State === 'Success' || j.State === 'Failure') return j;
      if (Date.now() > deadline) throw new Error(`Orthanc job ${id} still ${j.State} after ${opts.timeoutMs ?? 120_000} ms`);
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
    }
  }

  /** GET /instances/{id}/simplified-tags: keyword → value (sequences as arrays of objects) */
  instanceTags(id: string): Promise<Record<string, unknown>> {
    return this.json('GET', `/instances/${enc(id)}/simplified-tags`);
  }
}

function enc(id: string): string {
  return encodeURIComponent(id);
}

export function orthancPatientId(patientId: string): string {
  return orthancResourceId(patientId);
}

export function orthancStudyId(patientId: string, studyUid: string): string {
  return orthancResourceId(patientId, studyUid);
}

export function orthancSeriesId(patientId: string, studyUid: string, seriesUid: string): string {
  return orthancResourceId(patientId, studyUid, seriesUid);
}
