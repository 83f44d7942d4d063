// The one door to dcmjs-dimse. Everything else in src/ imports the library through here, and everything that relies
// on what its .d.ts does not promise lives here, next to the version it was read from (0.3.3, build/ of the npm
// package; the library exports no Network class and no way to give Client one, so the streaming send is a subclass
// of the Network that Scp extends, and a small client of our own drives it):
// - Network is taken as Scp's prototype; StreamingNetwork overrides Network#_sendPDataTF, the internal hook
//   _sendDimse calls with a command, its presentation context id and the peer's maximum PDU length;
// - ServerScp sets Network#connected (what the library's Server does for each socket) and writes
//   Network#lastPduTime, and reads the `socket` and `association` fields every Network has;
// - ServerScp hands the library a sink that is not a stream.Writable: the library calls only write(), once('drain')
//   and end() on it.
// checkDimseVersion() refuses any other version; `dphiant serve` calls it before it starts (src/middleman.ts).
// The library's INFO/ERROR lines name AE titles and UIDs per PDU: it is silenced here, DPHIANT logs what matters.
import dimse from 'dcmjs-dimse';
import { createRequire } from 'node:module';
import { EventEmitter } from 'node:events';
import { open } from 'node:fs/promises';
import net, { type Socket } from 'node:net';
import type { Writable } from 'node:stream';
import type { ReceivedInstance } from './c-store.js';

dimse.log.setLevel('silent');

export default dimse;

/** The dcmjs-dimse version the internals used here were read from (package.json pins it exactly). */
export const SUPPORTED_DIMSE_VERSION = '0.3.3';

/** The version of the dcmjs-dimse that Node resolves from here: its package.json. */
export function installedDimseVersion(): string {
  const pkg = createRequire(import.meta.url)('dcmjs-dimse/package.json') as { version: string };
  return pkg.version;
}

/** Throws, naming both versions, unless `installed` is the version this adapter was written against. */
export function checkDimseVersion(installed: string = installedDimseVersion()): void {
  if (installed !== SUPPORTED_DIMSE_VERSION)
    throw new Error(
      `dcmjs-dimse ${installed} is installed, but DPHIANT's adapter (src/dicom/dimse.ts) relies on internals of dcmjs-dimse ${SUPPORTED_DIMSE_VERSION}: install ${SUPPORTED_DIMSE_VERSION}, or review the adapter against ${installed} and raise SUPPORTED_DIMSE_VERSION`,
    );
}

let versionChecked = false;
/** checkDimseVersion once per process: the classes below rely on the internals, whoever constructs them. */
function assertDimseVersion(): void {
  if (versionChecked) return;
  checkDimseVersion();
  versionChecked = true;
}

const { Scp, Dataset } = dimse;
const { CStoreRequest } = dimse.requests;
const { Association } = dimse.association;
const { TransferSyntax } = dimse.constants;

type AssociationT = InstanceType<typeof Association>;
/** What _sendPDataTF is given: a request or response (Command, which the library does not export). */
type CommandT = Pick<InstanceType<typeof CStoreRequest>, 'getDataset' | 'getCommandDataset'>;
type CStoreResponseT = InstanceType<typeof dimse.responses.CStoreResponse>;
type NetworkOptions = NonNullable<ConstructorParameters<typeof Scp>[1]>;

/** Network as 0.3.3 has it: its public methods (in the .d.ts, not exported) and the internals used here. */
interface NetworkInstance extends EventEmitterLike {
  sendAssociationRequest(association: AssociationT): void;
  sendRequests(requests: InstanceType<typeof CStoreRequest>[]): void;
  sendAssociationReleaseRequest(): void;
  sendAbort(source?: number, reason?: number): void;
  getStatistics(): InstanceType<typeof dimse.Statistics>;
  /** Internal: sends a command and its data set as P-DATA-TF PDUs of at most `maxPduLength` (0: the library's 4 MiB). */
  _sendPDataTF(command: CommandT, pcId: number, maxPduLength: number): void;
}
interface EventEmitterLike {
  on(event: string, listener: (...args: never[]) => void): unknown;
  emit(event: string, ...args: unknown[]): unknown;
}
/** The library's Network class: not exported, but it is the class Scp extends. */
const Network = Object.getPrototypeOf(Scp) as new (socket: Socket, opts?: NetworkOptions) => NetworkInstance;

// --- C-STORE SCU: a spooled data set streamed from its file ---------------------------------------------------

/**
 * A data set that exists only as bytes in a spool file, in one transfer syntax, and refuses every other use: the
 * library's own send path would parse and re-encode it (lossy) and hold it whole in memory, and it transcodes when
 * the exact syntax was not accepted; both fail loudly here instead of silently storing something else.
 */
class SpooledDataset extends Dataset {
  constructor(readonly instance: ReceivedInstance) {
    super({ SOPClassUID: instance.sopClassUid, SOPInstanceUID: instance.sopInstanceUid }, instance.transferSyntaxUid);
  }
  override setTransferSyntaxUid(ts: string): void {
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

/** The library's own cap on a P-DATA-TF PDU, used when the peer sets no maximum (0). */
const LIBRARY_MAX_PDU = 4 * 1024 * 1024;
/** How much of the spool file is read and written to the socket at a time. */
const READ_BLOCK = 1024 * 1024;
/** A PDV item's header inside a P-DATA-TF PDU: 4-byte item length, context id, message control header. */
const PDV_HEADER = 6;

/** A Network whose P-DATA sender streams a SpooledDataset from disk; anything else goes the library's way. */
class StreamingNetwork extends Network {
  constructor(
    private readonly sock: Socket,
    opts: NetworkOptions,
    private readonly progress: () => void,
  ) {
    super(sock, opts);
  }

  override _sendPDataTF(command: CommandT, pcId: number, maxPduLength: number): void {
    const dataset = command.getDataset();
    if (!(dataset instanceof SpooledDataset)) return super._sendPDataTF(command, pcId, maxPduLength);
    const pdu = maxPduLength === 0 ? LIBRARY_MAX_PDU : Math.min(maxPduLength, LIBRARY_MAX_PDU);
    const commandBytes = command.getCommandDataset().getDenaturalizedCommandDataset();
    this.sock.cork();
    const sent = writePdvs(this.sock, commandBytes, pcId, pdu, { command: true, last: true });
    this.sock.uncork();
    this.getStatistics().addBytesSent(sent);
    sendFile(this.sock, dataset.instance, pcId, pdu, (bytes) => {
      this.getStatistics().addBytesSent(bytes);
      this.progress();
    }).catch((err: Error) => {
      this.sock.destroy();
      this.emit('networkError', err);
    });
  }
}

/**
 * Writes `bytes` as P-DATA-TF PDUs of at most `maxPduLength`, one PDV each; `last` marks the final fragment of the
 * command or data set. Returns the bytes written.
 */
function writePdvs(socket: Socket, bytes: Buffer, pcId: number, maxPduLength: number, mark: { command: boolean; last: boolean }): number {
  const chunk = maxPduLength - PDV_HEADER;
  let written = 0;
  for (let off = 0; off < bytes.length; off += chunk) {
    const data = bytes.subarray(off, Math.min(off + chunk, bytes.length));
    const last = mark.last && off + data.length >= bytes.length;
    const header = Buffer.allocUnsafe(12);
    header.writeUInt8(0x04, 0); // P-DATA-TF
    header.writeUInt8(0, 1);
    header.writeUInt32BE(data.length + PDV_HEADER, 2);
    header.writeUInt32BE(data.length + 2, 6);
    header.writeUInt8(pcId, 10);
    header.writeUInt8((mark.command ? 0x01 : 0x00) | (last ? 0x02 : 0x00), 11);
    socket.write(header);
    socket.write(data);
    written += header.length + data.length;
  }
  return written;
}

/** Writes the spool file as data set fragments, waiting for the socket to drain; `sent` after each block. */
async function sendFile(socket: Socket, inst: ReceivedInstance, pcId: number, maxPduLength: number, sent: (bytes: number) => void): Promise<void> {
  const chunk = maxPduLength - PDV_HEADER;
  const block = Math.max(chunk, Math.floor(READ_BLOCK / chunk) * chunk);
  const file = await open(inst.spoolPath, 'r');
  try {
    for (let done = 0; done < inst.bytes; ) {
      if (socket.destroyed) throw new Error('PACS connection closed while sending');
      const buf = Buffer.allocUnsafe(Math.min(block, inst.bytes - done));
      const { bytesRead } = await file.read(buf, 0, buf.length, done);
      if (bytesRead !== buf.length) throw new Error('spool file shorter than recorded');
      done += buf.length;
      socket.cork();
      const written = writePdvs(socket, buf, pcId, maxPduLength, { command: false, last: done === inst.bytes });
      socket.uncork();
      if (socket.writableNeedDrain) await drained(socket);
      sent(written);
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

export interface SpooledStoreOptions {
  host: string;
  port: number;
  callingAet: string;
  calledAet: string;
  /** The library's timers: the socket's idle timeout, A-ASSOCIATE-AC, and the time since the last PDU received. */
  connectTimeout: number;
  associationTimeout: number;
  pduTimeout: number;
  /** Called whenever bytes move: a chunk received, or a block of the data set written (and drained when it had to be). */
  progress?: () => void;
}

export interface SpooledStoreEvents {
  associationAccepted: [];
  associationRejected: [{ result: number; source: number; reason: number }];
  /** The C-STORE-RSP: its status and ErrorComment (0000,0902), when it has one. */
  response: [{ status: number; comment?: string }];
  /** The request ended without a response: no presentation context the data set can go in as it is. */
  done: [];
  networkError: [Error];
  closed: [];
}

/**
 * One association that sends one spooled instance over C-STORE, byte for byte in the transfer syntax it arrived
 * in, the data set streamed from its file. What dcmjs-dimse's Client does (it proposes the same contexts and
 * reacts the same way), on a StreamingNetwork and a socket of our own (TCP_NODELAY, progress, destroy).
 */
export class SpooledStore extends EventEmitter<SpooledStoreEvents> {
  readonly socket: Socket;
  private readonly network: NetworkInstance;
  private associated = false;

  constructor(inst: ReceivedInstance, o: SpooledStoreOptions) {
    super();
    assertDimseVersion();
    const request = new CStoreRequest(new SpooledDataset(inst));
    const association = new Association(o.callingAet, o.calledAet);
    association.addPresentationContextFromRequest(request, [TransferSyntax.ImplicitVRLittleEndian, TransferSyntax.ExplicitVRLittleEndian]);
    // and a context with exactly the received transfer syntax, as Client.addAdditionalPresentationContext(…, true)
    association.addTransferSyntaxToPresentationContext(association.addPresentationContext(inst.sopClassUid), inst.transferSyntaxUid);

    const progress = o.progress ?? (() => undefined);
    const socket = net.connect({ host: o.host, port: o.port });
    socket.setNoDelay(true); // else each small PDU waits for the peer's delayed ACK (about 40 ms per round trip on Linux)
    socket.on('data', progress);
    this.socket = socket;
    const network = new StreamingNetwork(socket, { connectTimeout: o.connectTimeout, associationTimeout: o.associationTimeout, pduTimeout: o.pduTimeout }, progress);
    this.network = network;

    request.on('response', (rsp: CStoreResponseT) => {
      const comment = rsp.getErrorComment();
      this.emit('response', { status: rsp.getStatus(), ...(comment ? { comment } : {}) });
    });
    request.on('done', () => this.emit('done'));
    network.on('connect', () => network.sendAssociationRequest(association));
    network.on('associationAccepted', () => {
      this.associated = true;
      this.emit('associationAccepted');
      network.sendRequests([request]);
    });
    network.on('associationRejected', (rj: { result: number; source: number; reason: number }) => {
      this.emit('associationRejected', rj);
      socket.end();
    });
    network.on('done', () => network.sendAssociationReleaseRequest());
    network.on('associationReleaseResponse', () => socket.end());
    network.on('networkError', (e: Error) => {
      socket.end();
      this.emit('networkError', e);
    });
    network.on('close', () => this.emit('closed'));
  }

  /** Drops the association: an A-ABORT when there is one (the PACS may still read it), then the connection. */
  abort(source: number, reason: number): void {
    if (this.socket.destroyed) return;
    if (this.associated) {
      try {
        this.network.sendAbort(source, reason);
      } catch {
        // the connection is cut below anyway
      }
    }
    this.socket.destroy();
  }
}

// --- SCP: an association on a socket DPHIANT accepted itself --------------------------------------------------

/** Where the data set of a C-STORE goes PDV by PDV: a false write() makes the library wait for 'drain'. */
export interface StoreSink {
  write(chunk: Buffer): boolean;
  end(): unknown;
  once(event: 'drain', listener: () => void): unknown;
}

/**
 * The base of DPHIANT's SCP: dcmjs-dimse's Scp on a socket from a net.Server of our own (the library's Server
 * cannot bind a host and leaves Nagle on).
 */
export abstract class ServerScp extends Scp {
  /** The connection (a Network field the .d.ts does not declare). */
  declare readonly socket: Socket;
  /** The association once requested (a Network field the .d.ts does not declare). */
  declare association: AssociationT | undefined;
  /** Network's flag for a connected socket: set on a client socket's 'connect' event, by Server for an accepted one. */
  declare private connected: boolean;
  /** When the last PDU arrived: the library aborts the association pduTimeout after it. */
  declare private lastPduTime: number | undefined;

  constructor(socket: Socket, opts: NetworkOptions) {
    assertDimseVersion();
    super(socket, opts);
    // what the library's Server does: its once-a-second timer drops an association silent for pduTimeout (with an
    // A-ABORT) only while `connected`. (Its association timeout never runs here: it counts from the 'connect' event.)
    this.connected = true;
  }

  /** Restarts the library's idle clock, as if a PDU had just arrived. */
  restartIdleClock(): void {
    this.lastPduTime = Date.now();
  }

  /** Where the next C-STORE's data set goes. */
  protected abstract openStoreSink(): StoreSink;

  override createStoreWritableStream(): Writable {
    return this.openStoreSink() as unknown as Writable; // the library uses only the StoreSink methods of it
  }
}
