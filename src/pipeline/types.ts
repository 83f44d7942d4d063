// What the SCP hands to the pipeline, and what the pipeline answers.

/** One instance received over C-STORE, its data set spooled to a file exactly as sent. */
export interface ReceivedInstance {
  sopClassUid: string;
  sopInstanceUid: string;
  /** Transfer syntax the data set was sent in (the accepted one of its presentation context). */
  transferSyntaxUid: string;
  callingAet: string;
  /** File holding the data set bytes (no file meta group). */
  spoolPath: string;
  bytes: number;
}

/** DIMSE status (and optional ErrorComment, never PHI) for the C-STORE-RSP to the sender. */
export interface StoreReply {
  status: number;
  comment?: string;
}

/** C-STORE statuses DPHIANT answers with (PS3.4 Annex B.2.3 and PS3.7 Annex C). */
export const Status = {
  Success: 0x0000,
  /** PACS unreachable, timed out, or no room: the sender keeps its copy and retries later. */
  OutOfResources: 0xa700,
  /** The PACS accepts neither the SOP class nor the exact transfer syntax (we never transcode). */
  SopClassNotSupported: 0x0122,
  /** The data set is empty or does not match its presentation context. */
  CannotUnderstand: 0xc000,
  /** Our own failure (journal not writable). */
  ProcessingFailure: 0x0110,
} as const;

export function isSuccessOrWarning(status: number): boolean {
  return status === 0x0000 || (status & 0xf000) === 0xb000 || status === 0x0001;
}

/**
 * How a pipeline step failed. transient: a dependency (PACS REST API, crosswalk, disk) failed; retried without a
 * limit on attempts. permanent: the same bytes, profile and aliases fail the same way every time (gate hit,
 * unreadable data set, unencodable value, a profile that cannot apply, an upload stored under another ID); the
 * instance goes to the quarantine.
 */
export type FailureKind = 'transient' | 'permanent';

/** What the worker depends on and tracks the health of (src/pipeline/health.ts). */
export type Dependency = 'pacs' | 'crosswalk';

/**
 * A failed step, classified where it happened, never from its message. `errorClass` is a fixed word (metric label,
 * status): unreachable, auth, server, http, crosswalk, disk, not-identified, internal (transient); verification,
 * malformed, charset, profile, pixels (burned-in text that cannot be cleaned), id-mismatch, pacs-refused (permanent). `message` names steps and codes, never values.
 */
export class PipelineError extends Error {
  constructor(
    readonly kind: FailureKind,
    readonly errorClass: string,
    message: string,
    readonly dependency?: Dependency,
  ) {
    super(message);
    this.name = 'PipelineError';
  }
}
