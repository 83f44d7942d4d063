// C-STORE SCU to the PACS. Sends a spooled data set byte for byte in the transfer syntax it arrived in:
// dcmjs-dimse's own send path would parse and re-encode it (lossy) and hold it whole in memory, so the data set
// is streamed from its spool file in P-DATA-TF PDUs, and any attempt of the library to transcode it fails
// loudly instead of silently storing a placeholder (field notes §0.2, §8.5).
import dimse from '../dicom/dimse.js';
import { open } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { ReceivedInstance } from '../dicom/c-store.js';
import { networkFailure, type Failure } from '../reasons.js';

const { Client, Dataset } = dimse;
const { CStoreRequest } = dimse.requests;
const { PresentationContext } = dimse.association;
const { AbortSource, AbortReason } = dimse.constants;

export interface PacsTarget {
  host: string;
  port: number;
  aet: string;
  callingAet: string;
  /** TCP connect and A-ASSOCIATE-AC. */
  connectTimeoutMs: number;
  /** An attempt in which no byte moves to or from the PACS for this long is aborted. */
  noProgressTimeoutMs: number;
  /** Bound on the whole forward of one instance, its retry included. */
  storeTimeoutMs: number;
}

export type StoreOutcome = (
  /** The PACS answered; `status` is its C-STORE status (success, warning or failure). */
  | { kind: 'answered'; status: number; comment?: string }
  /** The PACS accepted neither the SOP class nor the exact transfer syntax. */
  | { kind: 'not-accepted' }
  /** No answer: connection refused, association rejected or aborted, no progress, timeout. `reason` holds no PHI. */
  | { kind: 'unavailable'; code: 'pacs-unavailable' | 'pacs-timeout'; reason: string }
) & {
  /** Set when a first attempt failed and the outcome is the second's: why the first failed (a fixed text). */
  retried?: string;
};

/** A data set that exists only as bytes in a file, in one transfer syntax, and refuses every other use. */
class SpooledDataset extends Dataset {
  constructor(readonly instance: ReceivedInstance) {
    super({ SOPClassUID: instance.sopClassUid, SOPInstanceUID: instance.sopInstanceUid }, instance.transferSyntaxUid);
  }
  override setTransferSyntaxUid(ts: string): void {
    // the library calls this to transcode when the exact syntax was not accepted: never
    if (ts !== this.instance.transferSyntaxUid) throw new Error('spooled data set cannot be transcoded');
    super.setTransferSyntaxUid(ts);
  }
  override getElements(): Record<string, unknown> {
    throw new Error('spooled data set cannot be parsed');
  }
  override getDenaturalizedDataset(): Buffer {
    throw new Error('spooled data set is streamed, not encoded');
  }
}

/** Internals of dcmjs-dimse's Network that the streaming send replaces (not in its .d.ts). */
interface NetworkInternals {
  socket: Socket;
  emit(event: string, ...args: unknown[]): boolean;
  _sendPDataTF(command: CommandInternals, pcId: number, maxPduLength: number): void;
}
interface CommandInternals {
  dataset?: unknown;
  getDataset(): unknown;
}

const MAX_PDU = 4 * 1024 * 1024; // the library's own cap
const READ_BLOCK = 1024 * 1024;

/**
 * Replaces the network's P-DATA sender: the command as the library encodes it, the data set streamed from disk.
 * `progress` is called whenever a block has gone to the socket (written, and drained when it had to be).
 */
function streamDatasetsFromFiles(network: NetworkInternals, progress: () => void): void {
  const original = network._sendPDataTF.bind(network);
  network._sendPDataTF = (command, pcId, maxPduLength) => {
    const dataset = command.getDataset();
    if (!(dataset instanceof SpooledDataset)) return original(command, pcId, maxPduLength);
    command.dataset = undefined; // send the command PDU alone
    try {
      original(command, pcId, maxPduLength);
    } finally {
      command.dataset = dataset;
    }
    const pdu = maxPduLength === 0 ? MAX_PDU : Math.min(maxPduLength, MAX_PDU);
    sendFile(network.socket, dataset.instance, pcId, pdu, progress).catch((err: Error) => {
      network.socket.destroy();
      network.emit('networkError', err);
    });
  };
}

/** Writes the spool file as P-DATA-TF PDUs of at most `maxPduLength`, waiting for the socket to drain. */
async function sendFile(socket: Socket, inst: ReceivedInstance, pcId: number, maxPduLength: number, progress: () => void): Promise<void> {
  const chunk = maxPduLength - 6; // PDV item: 4-byte length, context id, control header
  const block = Math.max(chunk, Math.floor(READ_BLOCK / chunk) * chunk);
  const file = await open(inst.spoolPath, 'r');
  try {
    let sent = 0;
    while (sent < inst.bytes) {
      if (socket.destroyed) throw new Error('PACS connection closed while sending');
      const buf = Buffer.allocUnsafe(Math.min(block, inst.bytes - sent));
      const { bytesRead } = await file.read(buf, 0, buf.length, sent);
      if (bytesRead !== buf.length) throw new Error('spool file shorter than recorded');
      socket.cork();
      for (let off = 0; off < buf.length; off += chunk) {
        const data = buf.subarray(off, Math.min(off + chunk, buf.length));
        const last = sent + off + data.length === inst.bytes;
        const header = Buffer.allocUnsafe(12);
        header.writeUInt8(0x04, 0); // P-DATA-TF
        header.writeUInt8(0, 1);
        header.writeUInt32BE(data.length + 6, 2);
        header.writeUInt32BE(data.length + 2, 6);
        header.writeUInt8(pcId, 10);
        header.writeUInt8(last ? 0x02 : 0x00, 11); // data set fragment, last or not
        socket.write(header);
        socket.write(data);
      }
      sent += buf.length;
      socket.uncork();
      if (socket.writableNeedDrain) await drained(socket);
      progress();
    }
  } finally {
    await file.close();
  }
}

function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

/** Why an attempt ended without an answer, when a second attempt on a fresh association may well succeed. */
type Retryable = 'no progress' | 'connection lost after association';

type AttemptResult = StoreOutcome & { retryable?: Retryable };

/**
 * Stores one spooled instance in the PACS, within `storeTimeoutMs` in all. An attempt in which no byte moves to or
 * from the PACS for `noProgressTimeoutMs`, or whose association is lost before the answer, is aborted and made once
 * more on a fresh association: the PACS de-duplicates by SOP Instance UID, so a copy it stored without answering is
 * answered for (Orthanc says success again). An attempt that never got an association (connection refused,
 * association rejected, no answer to A-ASSOCIATE) is not repeated: the PACS is down or refuses us, the sender is
 * answered at once and retries later. `retry: false` makes one attempt only (a modality stand-in in tests). Never
 * throws; the outcome says what happened.
 */
export async function storeInstance(target: PacsTarget, inst: ReceivedInstance, opts: { retry?: boolean } = {}): Promise<StoreOutcome> {
  const deadline = Date.now() + target.storeTimeoutMs;
  const first = await attempt(target, inst, deadline);
  if (!first.retryable || opts.retry === false || deadline - Date.now() < RETRY_MIN_MS) return outcomeOf(first);
  const second = outcomeOf(await attempt(target, inst, deadline));
  // fixed texts: the reason ends in the sender's ErrorComment (LO, 64 characters)
  if (second.kind === 'unavailable') return { ...second, reason: `${second.reason} (retried)`, retried: first.retryable };
  return { ...second, retried: first.retryable };
}

/** A retry with less time than this left would only delay the sender's answer. */
const RETRY_MIN_MS = 1000;

function outcomeOf(r: AttemptResult): StoreOutcome {
  const { retryable: _, ...outcome } = r;
  return outcome;
}

/** One association: connect, associate, send, wait for the answer. */
function attempt(target: PacsTarget, inst: ReceivedInstance, deadline: number): Promise<AttemptResult> {
  return new Promise((resolve) => {
    let settled = false;
    let associated = false;
    let network: NetworkInternals | undefined;
    const client = new Client();
    const finish = (outcome: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(overall);
      clearTimeout(stalled);
      if (outcome.kind !== 'answered' && network && !network.socket.destroyed) {
        // an A-ABORT tells the PACS to drop the association (when it still reads), then the connection goes
        try {
          if (associated) client.abort(AbortSource.ServiceUser, AbortReason.NotSpecified);
        } catch {
          // the connection is cut below anyway
        }
        network.socket.destroy();
      }
      resolve(outcome);
    };
    /** The association is gone before the answer: worth a second attempt only once the PACS had accepted it. */
    const lost = (f: Failure & { code: 'pacs-unavailable' | 'pacs-timeout' }) =>
      finish({ kind: 'unavailable', code: f.code, reason: f.message, ...(associated ? { retryable: 'connection lost after association' as const } : {}) });
    const overall = setTimeout(() => finish({ kind: 'unavailable', code: 'pacs-timeout', reason: 'PACS timeout' }), Math.max(0, deadline - Date.now()));
    // restarted by every byte to or from the PACS (progress); before the association, a silent PACS is a down one
    const stalled = setTimeout(
      () => finish({ kind: 'unavailable', code: 'pacs-timeout', reason: 'no progress', ...(associated ? { retryable: 'no progress' as const } : {}) }),
      target.noProgressTimeoutMs,
    );
    const progress = () => {
      if (!settled) stalled.refresh();
    };

    const request = new CStoreRequest(new SpooledDataset(inst));
    // a context with exactly the received transfer syntax; the library adds implicit/explicit LE ones itself
    client.addAdditionalPresentationContext(new PresentationContext(0, inst.sopClassUid, inst.transferSyntaxUid), true);
    request.on('response', (rsp) => {
      const comment = (rsp as unknown as { getErrorComment?: () => string | undefined }).getErrorComment?.();
      finish({ kind: 'answered', status: rsp.getStatus(), ...(comment ? { comment } : {}) });
    });
    request.on('done', () => finish({ kind: 'not-accepted' })); // done without a response: no usable context
    client.on('associationAccepted', () => {
      associated = true;
    });
    client.on('associationRejected', (rj: { result: number; source: number; reason: number }) =>
      finish({ kind: 'unavailable', code: 'pacs-unavailable', reason: `association rejected (result ${rj.result}, source ${rj.source}, reason ${rj.reason})` }),
    );
    client.on('networkError', (e: Error) => lost(networkFailure(e)));
    client.on('closed', () => lost({ code: 'pacs-unavailable', message: 'connection closed before response' }));
    client.addRequest(request);
    try {
      // the library's own timers are only a backstop: the no-progress timer and the deadline above decide.
      // Its "connectTimeout" is the socket's idle timeout for the whole association, its pduTimeout counts from
      // the last PDU received (none arrives while a large data set is sent): both get the whole forward's bound.
      client.send(target.host, target.port, target.callingAet, target.aet, {
        connectTimeout: target.storeTimeoutMs,
        associationTimeout: target.connectTimeoutMs,
        pduTimeout: target.storeTimeoutMs,
      });
      network = (client as unknown as { network: NetworkInternals }).network;
      network.socket.setNoDelay(true); // else every round trip waits for a delayed ACK (field notes §0.3)
      network.socket.on('data', progress);
      streamDatasetsFromFiles(network, progress);
    } catch (e) {
      const f = networkFailure(e);
      finish({ kind: 'unavailable', code: f.code, reason: f.message });
    }
  });
}
