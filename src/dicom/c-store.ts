// One C-STORE as the SCP received it, and the answer it gets: the shapes the SCP, the SCU and the pipeline share.

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
