// One C-STORE as the SCP received it, and the answer it gets: the shapes the SCP, the SCU and the pipeline share.
import type { ReasonCode } from '../reasons.js';

/** One instance received over C-STORE, its data set spooled to a file exactly as sent. */
export interface ReceivedInstance {
  sopClassUid: string;
  sopInstanceUid: string;
  /** Transfer syntax the data set was sent in (the accepted one of its presentation context). */
  transferSyntaxUid: string;
  callingAet: string;
  /** File holding the data set bytes (no file meta group), unless `data` holds them. */
  spoolPath: string;
  /** The data set bytes, when the spool kept them in memory. */
  data?: Buffer;
  bytes: number;
}

/**
 * DIMSE status (and optional ErrorComment, never PHI) for the C-STORE-RSP to the sender; a failure carries its
 * reason code (src/reasons.ts), which metrics and the journal use: the comment is free text.
 */
export interface StoreReply {
  status: number;
  comment?: string;
  code?: RefusalCode;
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

/**
 * The C-STORE status of every reason a sender can be refused for: the one place a refusal's status is chosen.
 * null: the PACS's own failure status is passed on.
 */
export const REFUSAL_STATUS = {
  'too-large': Status.OutOfResources,
  'spool-full': Status.OutOfResources,
  disk: Status.OutOfResources,
  backpressure: Status.OutOfResources,
  'pacs-unavailable': Status.OutOfResources,
  'pacs-timeout': Status.OutOfResources,
  'pacs-unsupported': Status.SopClassNotSupported,
  'pacs-refused': null,
  malformed: Status.CannotUnderstand,
  'sop-instance-mismatch': Status.CannotUnderstand,
  /** Data Set does not match SOP Class (PS3.4 B.2.3). */
  'sop-class-mismatch': 0xa900,
  'journal-unavailable': Status.ProcessingFailure,
  internal: Status.ProcessingFailure,
} as const satisfies Partial<Record<ReasonCode, number | null>>;

export type RefusalCode = keyof typeof REFUSAL_STATUS;

/** A failure answer for `code`; `pacsStatus` is the PACS's own status, which pacs-refused passes on. */
export function refusal(code: RefusalCode, comment: string, pacsStatus?: number): StoreReply & { code: RefusalCode; comment: string } {
  const status = REFUSAL_STATUS[code] ?? pacsStatus ?? Status.ProcessingFailure;
  // ErrorComment is LO: 64 characters
  return { status, comment: comment.slice(0, 64), code };
}

export function isSuccessOrWarning(status: number): boolean {
  return status === 0x0000 || (status & 0xf000) === 0xb000 || status === 0x0001;
}

/** A DIMSE status as the standard writes it: 0xA700. */
export function formatStatus(status: number): string {
  return '0x' + status.toString(16).toUpperCase().padStart(4, '0');
}
