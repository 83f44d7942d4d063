// How a pipeline step fails. What the SCP hands to the pipeline and what it answers are C-STORE shapes: src/dicom/c-store.ts.

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
