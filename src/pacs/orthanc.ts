// Small typed Orthanc REST client (Orthanc 1.10.1, REST API version 16). Global fetch, basic auth.
// Error messages carry the method, path and HTTP status plus Orthanc's generic error name, never a
// response body: Orthanc's "Details" may quote tag values.
import { createHash } from 'node:crypto';
import { networkFailure, type ReasonCode } from '../reasons.js';

export interface OrthancClientOptions {
  url: string;
  username?: string;
  password?: string;
  /** per-request timeout; default 60 s */
  timeoutMs?: number;
}

export interface OrthancSystem {
  Name: string;
  Version: string;
  ApiVersion: number;
  DicomAet: string;
  DicomPort: number;
  HttpPort: number;
  DatabaseVersion: number;
  PluginsEnabled: boolean;
  [key: string]: unknown;
}

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

export interface UploadResult {
  ID: string;
  Path: string;
  Status: 'Success' | 'AlreadyStored' | string;
  ParentPatient: string;
  ParentStudy: string;
  ParentSeries: string;
}

export interface LookupResult {
  ID: string;
  Path: string;
  Type: 'Patient' | 'Study' | 'Series' | 'Instance';
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

/** A page of the change log; Last is the Seq of its last entry, or with no entry the log's last Seq. */
export interface ChangePage {
  Changes: { ChangeType: string; ID: string; ResourceType: string; Seq: number }[];
  Done: boolean;
  Last: number;
}

export class OrthancHttpError extends Error {
  /** The failure's code (src/reasons.ts): from the HTTP status, or for no answer, from the network error. */
  readonly code: ReasonCode;

  constructor(
    readonly method: string,
    readonly path: string,
    /** HTTP status, or 0 when no answer arrived */
    readonly status: number,
    readonly orthancStatus?: number,
    detail?: string,
    noAnswer: 'pacs-unavailable' | 'pacs-timeout' = 'pacs-unavailable',
  ) {
    super(`Orthanc ${method} ${path} failed: ${status ? `HTTP ${status}` : 'no answer'}${detail ? ` (${detail})` : ''}`);
    this.name = 'OrthancHttpError';
    this.code = status === 0 ? noAnswer : status === 401 || status === 403 ? 'pacs-auth' : 'pacs-error';
  }
}

interface RequestOptions {
  body?: string | Uint8Array;
  contentType?: string;
  timeoutMs?: number;
  /** statuses returned to the caller instead of thrown */
  allow?: number[];
}

export class OrthancClient {
  readonly url: string;
  private readonly authHeader?: string;
  private readonly timeoutMs: number;

  constructor(opts: OrthancClientOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    if (opts.username !== undefined) {
      this.authHeader = `Basic ${Buffer.from(`${opts.username}:${opts.password ?? ''}`).toString('base64')}`;
    }
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  system(): Promise<OrthancSystem> {
    return this.json('GET', '/system');
  }

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

  async instanceFile(id: string): Promise<Buffer> {
    const res = await this.request('GET', `/instances/${enc(id)}/file`);
    return Buffer.from(await res.arrayBuffer());
  }

  /** POST /instances; Status is "AlreadyStored" when the same SOP instance is already there */
  upload(bytes: Uint8Array): Promise<UploadResult> {
    return this.json('POST', '/instances', { body: bytes, contentType: 'application/dicom' });
  }

  /** true when deleted, false when the instance was not there (a repeated delete is not an error) */
  async deleteInstance(id: string): Promise<boolean> {
    const res = await this.request('DELETE', `/instances/${enc(id)}`, { allow: [404] });
    await res.arrayBuffer();
    return res.status !== 404;
  }

  /** deletes every patient (so every instance); returns how many patients were deleted */
  async deleteAll(): Promise<number> {
    const patients: string[] = await this.json('GET', '/patients');
    let n = 0;
    for (const p of patients) {
      const res = await this.request('DELETE', `/patients/${enc(p)}`, { allow: [404] });
      await res.arrayBuffer();
      if (res.status !== 404) n++;
    }
    return n;
  }

  /** POST /tools/lookup: which resources carry this UID (or PatientID / AccessionNumber) */
  lookup(uid: string): Promise<LookupResult[]> {
    return this.json('POST', '/tools/lookup', { body: uid, contentType: 'text/plain' });
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

  /** GET /instances/{id}: MainDicomTags (SOPInstanceUID…) and parent ids; null when it does not exist. */
  async instance(id: string): Promise<{ ID: string; ParentSeries: string; MainDicomTags: Record<string, string> } | null> {
    const res = await this.request('GET', `/instances/${enc(id)}`, { allow: [404] });
    return res.status === 404 ? null : ((await res.json()) as { ID: string; ParentSeries: string; MainDicomTags: Record<string, string> });
  }

  /** The raw value of one top-level tag ("0012-0062"), or null when the instance does not have it. */
  async tagValue(id: string, tag: string): Promise<string | null> {
    const res = await this.request('GET', `/instances/${enc(id)}/content/${tag}`, { allow: [404] });
    return res.status === 404 ? null : (await res.text()).replace(/[\0 ]+$/, '');
  }

  /** The change log from `since` (exclusive): its entries may have gaps where resources were deleted. */
  changes(since: number, limit = 1000): Promise<ChangePage> {
    return this.json('GET', `/changes?since=${since}&limit=${limit}`);
  }

  /**
   * GET /changes?last: the newest entry of the change log and its Seq as Last (0 when the log is empty). Entries of
   * deleted resources are gone from the log, so Last may be below sequence numbers already handed out.
   */
  lastChange(): Promise<ChangePage> {
    return this.json('GET', '/changes?last');
  }

  /** GET /instances/{id}/metadata?expand: Origin, RemoteAET (the calling AE of its C-STORE), …; null when absent. */
  async instanceMetadata(id: string): Promise<Record<string, string> | null> {
    const res = await this.request('GET', `/instances/${enc(id)}/metadata?expand`, { allow: [404] });
    return res.status === 404 ? null : ((await res.json()) as Record<string, string>);
  }

  private async json<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.request(method, path, opts);
    try {
      return (await res.json()) as T;
    } catch {
      throw new OrthancHttpError(method, path, res.status, undefined, 'answer is not JSON');
    }
  }

  private async request(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.authHeader) headers.authorization = this.authHeader;
    if (opts.body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers,
        body: opts.body,
        signal: AbortSignal.timeout(opts.timeoutMs ?? this.timeoutMs),
      });
    } catch (e) {
      const f = networkFailure(e);
      throw new OrthancHttpError(method, path, 0, undefined, f.message, f.code);
    }
    if (res.ok || opts.allow?.includes(res.status)) return res;
    throw new OrthancHttpError(method, path, res.status, ...(await orthancReason(res)));
  }

  /**
   * POST /tools/bulk-delete: removes these resources in one request. Orthanc 1.10.1 answers 200 and skips the IDs it
   * does not hold, so a resource already gone does not fail the batch; after a 200 none of them is there.
   */
  async bulkDelete(ids: string[]): Promise<void> {
    const res = await this.request('POST', '/tools/bulk-delete', { body: JSON.stringify({ Resources: ids }) });
    await res.arrayBuffer();
  }
}

function enc(id: string): string {
  return encodeURIComponent(id);
}

// Only the numeric OrthancStatus and its fixed OrthancError name; Details / Message may quote data.
async function orthancReason(res: Response): Promise<[number | undefined, string | undefined]> {
  try {
    const body = (await res.json()) as { OrthancStatus?: unknown; OrthancError?: unknown };
    const status = typeof body.OrthancStatus === 'number' ? body.OrthancStatus : undefined;
    const name = typeof body.OrthancError === 'string' ? body.OrthancError : undefined;
    return [status, name && status !== undefined ? `${name}, OrthancStatus ${status}` : name];
  } catch {
    return [undefined, undefined];
  }
}

/** Orthanc's resource id: SHA-1 of the pipe-joined identifiers, hex in 5 groups of 8 joined by '-' */
export function orthancResourceId(...parts: string[]): string {
  const hex = createHash('sha1').update(parts.join('|')).digest('hex');
  return hex.match(/.{8}/g)!.join('-');
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

export function orthancInstanceId(patientId: string, studyUid: string, seriesUid: string, sopUid: string): string {
  return orthancResourceId(patientId, studyUid, seriesUid, sopUid);
}
