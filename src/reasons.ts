// Every failure of the middleman as a fixed code: metrics, the journal, the C-STORE status, the web UI and the CLI
// use the code; the message beside it names steps and attribute paths (never values) and may be reworded freely.
// The README's table of failure codes lists exactly these (test/reasons.test.ts).

/** Each code with its one-line meaning. */
export const REASONS = {
  // refused before forwarding or by the PACS: the sender keeps its copy (journalled REJECTED)
  'too-large': 'the instance is larger than scp.maxInstanceBytes',
  'spool-full': 'the spool budget (scp.spoolMaxBytes) or free-space floor (scp.spoolMinFreeBytes) was passed, or the disk was full',
  malformed: 'the data set cannot be read (structure, lengths, encoding), or is empty or names no SOP Instance UID',
  'sop-instance-mismatch': "the data set's SOP Instance UID differs from the C-STORE request's",
  'sop-class-mismatch': "the data set's SOP Class UID differs from the C-STORE request's",
  backpressure: 'new instances are refused while the PACS REST API or the crosswalk fails, the backlog is at its bound, or the node does not hold its lease',
  'journal-unavailable': 'the journal could not be written, so the sender cannot be told the instance is safe',
  interrupted: 'DPHIANT stopped while forwarding the instance and the PACS does not hold it (found at restart)',
  // the PACS, over DICOM or REST
  'pacs-unavailable': 'the PACS does not answer: connection refused or lost, association rejected or aborted',
  'pacs-timeout': 'the PACS took too long: no progress within pacs.noProgressTimeoutMs, past pacs.storeTimeoutMs, or a REST request timed out',
  'pacs-unsupported': 'the PACS accepts neither the SOP class nor the exact transfer syntax (DPHIANT never transcodes)',
  'pacs-refused': 'the PACS answered a failure: a C-STORE failure status, or HTTP 400 to the de-identified upload',
  'pacs-auth': 'the PACS REST API answered HTTP 401 or 403 (pacs.username / pacs.password)',
  'pacs-error': 'the PACS REST API answered another error (HTTP 5xx or an unexpected 4xx), or an answer that is not JSON',
  // the worker's other dependencies and its own state (transient: retried)
  'crosswalk-unavailable': 'a crosswalk call failed or gave no answer within 30 s',
  'raw-not-identified': "the raw copy's Orthanc ID is not known yet (the reconciler identifies it)",
  disk: 'a local file operation failed (spool write, sealing in the quarantine)',
  // de-identification (permanent: quarantined)
  'gate-hit': 'the verification gate found an identifying value of the input in the output',
  charset: "a new value cannot be encoded in the data set's Specific Character Set",
  profile: 'the profile cannot apply to the instance',
  pixels: 'burned-in text cannot be cleaned (no mask and OCR off, OCR failing, no lossless codec, a document no rule allows)',
  'id-mismatch': 'the PACS stored the de-identified instance under another Orthanc ID than computed',
  'raw-absent': 'the raw copy is absent from the PACS and nothing was sealed: nothing to keep',
  'taken-over': "another node quarantined the instance while it held this node's lease: that node's quarantine holds it",
  // the rest
  internal: "DPHIANT's own unexpected failure (a bug): see the log",
  other: 'a reason journalled by an older version that maps to none of these codes',
} as const;

export type ReasonCode = keyof typeof REASONS;

export const REASON_CODES = Object.keys(REASONS) as ReasonCode[];

export function isReasonCode(s: unknown): s is ReasonCode {
  return typeof s === 'string' && Object.hasOwn(REASONS, s);
}

/** A failure as it is recorded: its code, and a message that names no value. */
export interface Failure {
  code: ReasonCode;
  message: string;
}

/**
 * A network failure talking to the PACS (DICOM socket or REST fetch) as a code and a short message: the error's
 * code (ECONNREFUSED…) when it has one, never a data value.
 */
export function networkFailure(e: unknown): Failure & { code: 'pacs-unavailable' | 'pacs-timeout' } {
  const err = (e ?? {}) as { name?: string; code?: unknown; message?: string; cause?: { code?: unknown; message?: string } };
  const code = typeof err.code === 'string' ? err.code : typeof err.cause?.code === 'string' ? err.cause.code : undefined;
  const text = `${err.message ?? ''} ${err.cause?.message ?? ''}`;
  if (err.name === 'TimeoutError' || code === 'ETIMEDOUT' || /_TIMEOUT$/.test(code ?? '') || (!code && /timeout|timed out/i.test(text)))
    return { code: 'pacs-timeout', message: 'timeout' };
  if (code) return { code: 'pacs-unavailable', message: code };
  const m = /(ECONN\w+|EPIPE|EHOSTUNREACH|ENETUNREACH|closed)/i.exec(text);
  return { code: 'pacs-unavailable', message: m ? m[1]! : 'network error' };
}
