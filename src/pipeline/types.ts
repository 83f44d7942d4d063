// How a pipeline step fails. What the SCP hands to the pipeline and what it answers are C-STORE shapes: src/dicom/c-store.ts.
import type { Failure, ReasonCode } from '../reasons.js';

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
 * A failed step, classified where it happened, never from its message. `code` (src/reasons.ts) is what metrics, the
 * journal and the UI use: pacs-unavailable, pacs-timeout, pacs-auth, pacs-error, crosswalk-unavailable, disk,
 * raw-not-identified, internal (transient); gate-hit, malformed, charset, profile, pixels, id-mismatch, pacs-refused
 * (permanent). `message` names steps and attribute paths, never values.
 */
export class PipelineError extends Error implements Failure {
  constructor(
    readonly kind: FailureKind,
    readonly code: ReasonCode,
    message: string,
    readonly dependency?: Dependency,
  ) {
    super(message);
    this.name = 'PipelineError';
  }
}
