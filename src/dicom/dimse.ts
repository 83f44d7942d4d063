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
// - StoreAssociation stays open between C-STOREs: Network#sendRequests queues and _sendNextRequests sends the next
//   at once and emits 'done' when the queue is empty (the library's Client releases then; ours does not), and
//   each request is kept in Network#pending to match its answer by message ID, never removed (removed here).
// checkDimseVersion() refuses any other version; `dphiant serve` calls it before it starts (src/middleman.ts).
// The library's INFO/ERROR lines name AE titles and UIDs per PDU: it is silenced here, DPHIANT logs what matters.
import dimse from 'dcmjs-dimse';
import { createRequire } from 'node:module';
import { EventEmitter } from 'node:events';
import { open } from 'node:fs/promises';
import net, { type Socket } from 'node:net';
import tls, { type SecureVersion } from 'node:tls';
import type { Writable } from 'node:stream';
import type { ReceivedInstance } from './c-store.js';
import { BCP195_CIPHERS } from './tls.js';

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
const { CStoreRequest, CEchoRequest } = dimse.requests;
const { Association } = dimse.association;
const { TransferSyntax, PresentationContextResult, AbortSource, AbortReason } = dimse.constants;

type AssociationT = InstanceType<typeof Association>;
/** What _sendPDataTF is given: a request or response (Command, which the library does not export). */
type CommandT = Pick<InstanceType<typeof CStoreRequest>, 'getDataset' | 'getCommandDataset'>;
type CStoreResponseT = InstanceType<typeof dimse.responses.CStoreResponse>;
type CStoreRequestT = InstanceType<typeof CStoreRequest>;
type PresentationContextT = InstanceType<typeof dimse.association.PresentationContext>;
type NetworkOptions = NonNullable<ConstructorParameters<typeof Scp>[1]>;

/** Network as 0.3.3 has it: its public methods (in the .d.ts, not exported) and the internals used here. */
interface NetworkInstance extends EventEmitterLike {
  sendAssociationRequest(association: AssociationT): void;
  sendRequests(requests: (InstanceType<typeof CStoreRequest> | InstanceType<typeof CEchoRequest>)[]): void;
  sendAssociationReleaseRequest(): void;
  sendAbort(source?: number, reason?: number): void;
  sendAssociationReleaseResponse(): void;
  getStatistics(): InstanceType<typeof dimse.Statistics>;
  /** Internal: every request sent, kept to match answers by message ID (the library never removes one). */
  pending: unknown[];
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
 * A data set that exists only as bytes, in a spool file or still arriving (ArrivingData), in one transfer syntax,
 * and refuses every other use: the library's own send path would parse and re-encode it (lossy) and hold it whole
 * in memory, and it transcodes when the exact syntax was not accepted; both fail loudly here instead of silently
 * storing something else.
 */
class SpooledDataset extends Dataset {
  constructor(
    readonly context: StorageContext & { sopInstanceUid: string },
    readonly source: ReceivedInstance | ArrivingData,
  ) {
    super({ SOPClassUID: context.sopClassUid, SOPInstanceUID: context.sopInstanceUid }, context.transferSyntaxUid);
  }
  override setTransferSyntaxUid(ts: string): void {
    if (ts !== this.context.transferSyntaxUid) throw new Error('spooled data set cannot be transcoded');
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
    const out: DataOut = {
      socket: this.sock,
      pcId,
      maxPduLength: pdu,
      sent: (bytes) => {
        this.getStatistics().addBytesSent(bytes);
        this.progress();
      },
      failed: (err) => {
        this.sock.destroy();
        this.emit('networkError', err);
      },
    };
    if (dataset.source instanceof ArrivingData) dataset.source.start(out);
    else sendFile(out, dataset.source, 0).catch(out.failed);
  }
}

/** Where a data set's fragments go: the PACS's socket, in one presentation context, in PDUs of at most maxPduLength. */
interface DataOut {
  socket: Socket;
  pcId: number;
  maxPduLength: number;
  /** Bytes written (PDU headers included). */
  sent: (bytes: number) => void;
  /** The data set cannot be sent whole: the connection is cut. */
  failed: (err: Error) => void;
}

/** Fragments of an arriving data set are written once this many wait (the latest, held back, not counted). */
export const ARRIVING_WRITE_BLOCK = 256 * 1024;

/** Socket bytes not yet sent beyond which an arriving data set stops being passed on (its rest goes at finish()). */
const ARRIVING_MAX_BUFFERED = 2 * 1024 * 1024;

/**
 * The data set of a C-STORE sent to the PACS while it still arrives (cut-through): each fragment pushed is written
 * as it comes, except the latest, which is held back, so that the PACS cannot take the data set as complete before
 * finish() marks its last fragment. What the socket cannot take at once (a slow PACS, an association not yet open)
 * waits, up to ARRIVING_MAX_BUFFERED; past that, fragments are no longer passed on, and finish() sends the rest from
 * the spool, which holds every byte. Memory stays bounded whatever the instance size.
 */
export class ArrivingData {
  private queue: Buffer[] = [];
  private queued = 0;
  /** Data set bytes written to the socket. */
  private written = 0;
  /** Fragments are no longer passed on: the rest goes from the spool at finish(). */
  private detached = false;
  private finished = false;
  private out: DataOut | undefined;

  /** One more fragment of the data set, in order (the spool keeps it too). */
  push(chunk: Buffer): void {
    if (this.finished || this.detached || chunk.length === 0) return;
    this.queue.push(chunk);
    this.queued += chunk.length;
    this.flush();
  }

  /** The C-STORE request is on the wire (StreamingNetwork): fragments may follow it. */
  start(out: DataOut): void {
    this.out = out;
    this.flush();
  }

  private flush(): void {
    const out = this.out;
    if (out?.socket.destroyed) this.detached = true; // the association is gone: finish() will fail and say so
    // written in blocks, as sendFile does: a write per fragment (16 KiB from most senders) costs both ends a syscall each
    if (out && !this.detached && this.queued - (this.queue.at(-1)?.length ?? 0) >= ARRIVING_WRITE_BLOCK) {
      out.socket.cork();
      while (this.queue.length > 1) {
        const chunk = this.queue.shift()!;
        this.queued -= chunk.length;
        this.written += chunk.length;
        out.sent(writePdvs(out.socket, chunk, out.pcId, out.maxPduLength, { command: false, last: false }));
      }
      out.socket.uncork();
    }
    if (this.queued + (out?.socket.writableLength ?? 0) > ARRIVING_MAX_BUFFERED) {
      this.detached = true;
      this.queue = [];
      this.queued = 0;
    }
  }

  /**
   * The data set is whole (`inst`, as the spool holds it): sends what was not sent yet, the last fragment marked.
   * Only after start(). Rejects when the spool and what was passed on disagree; the caller then drops the association.
   */
  async finish(inst: ReceivedInstance): Promise<void> {
    const out = this.out;
    if (!out || this.finished) throw new Error('arriving data set not started, or finished twice');
    this.finished = true;
    if (this.detached) return sendFile(out, inst, this.written);
    const rest = this.queue;
    this.queue = [];
    if (this.written + this.queued !== inst.bytes || rest.length === 0) throw new Error('arriving data set differs from its spool');
    out.socket.cork();
    for (const [i, chunk] of rest.entries()) out.sent(writePdvs(out.socket, chunk, out.pcId, out.maxPduLength, { command: false, last: i === rest.length - 1 }));
    out.socket.uncork();
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

/**
 * Writes the spooled data set from byte `from` on (from memory, or read from its file block by block) as data set
 * fragments, the last marked, waiting for the socket to drain; `sent` after each block.
 */
async function sendFile(out: DataOut, inst: ReceivedInstance, from: number): Promise<void> {
  const { socket, pcId, maxPduLength } = out;
  const chunk = maxPduLength - PDV_HEADER;
  const block = Math.max(chunk, Math.floor(READ_BLOCK / chunk) * chunk);
  const data = inst.data;
  if (data && data.length !== inst.bytes) throw new Error('spooled data set shorter than recorded');
  if (from >= inst.bytes) throw new Error('nothing left of the spooled data set to send');
  const file = data ? undefined : await open(inst.spoolPath, 'r');
  /** The `length` bytes at `at`: a view of the memory, or read from the file. */
  const blockAt = async (at: number, length: number): Promise<Buffer> => {
    if (data) return data.subarray(at, at + length);
    const buf = Buffer.allocUnsafe(length);
    const { bytesRead } = await file!.read(buf, 0, length, at);
    if (bytesRead !== length) throw new Error('spool file shorter than recorded');
    return buf;
  };
  try {
    for (let done = from; done < inst.bytes; ) {
      if (socket.destroyed) throw new Error('PACS connection closed while sending');
      const buf = await blockAt(done, Math.min(block, inst.bytes - done));
      done += buf.length;
      socket.cork();
      const written = writePdvs(socket, buf, pcId, maxPduLength, { command: false, last: done === inst.bytes });
      socket.uncork();
      if (socket.writableNeedDrain) await drained(socket);
      out.sent(written);
    }
  } finally {
    await file?.close();
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

export interface StoreAssociationOptions {
  host: string;
  port: number;
  callingAet: string;
  calledAet: string;
  /** The library's timers: the socket's idle timeout, A-ASSOCIATE-AC, and the time since the last PDU received. */
  connectTimeout: number;
  associationTimeout: number;
  pduTimeout: number;
  /** Associate over TLS: the certificate of the SCP is verified against `ca` (and its name against `servername`, else `host`). */
  tls?: ClientTls;
}

/** TLS towards an SCP: whom to trust, our client certificate, the lowest version, the name its certificate must carry. */
export interface ClientTls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
  minVersion: SecureVersion;
  /** The name checked in the SCP's certificate and sent as SNI; unset: the host (an IP address is not sent as SNI). */
  servername?: string;
}

/**
 * The one place a connection to an SCP is opened (the store pool, cut-through and C-ECHO all come here): TCP, or TLS
 * as `o.tls` says (BCP 195 cipher suites, the certificate verified). TCP_NODELAY either way: else each small PDU
 * waits for the peer's delayed ACK (about 40 ms per round trip on Linux).
 */
function connectToScp(o: Pick<StoreAssociationOptions, 'host' | 'port' | 'tls'>): Socket {
  const socket = o.tls
    ? tls.connect({
        host: o.host,
        port: o.port,
        ca: o.tls.ca,
        ...(o.tls.cert && o.tls.key ? { cert: o.tls.cert, key: o.tls.key } : {}),
        minVersion: o.tls.minVersion,
        ciphers: BCP195_CIPHERS,
        ...(o.tls.servername ? { servername: o.tls.servername } : {}),
        rejectUnauthorized: true,
      })
    : net.connect({ host: o.host, port: o.port });
  socket.setNoDelay(true);
  return socket;
}

/** The Verification SOP class with implicit VR LE: the context of an association opened for C-ECHO. */
export const VERIFICATION_CONTEXT: StorageContext = { sopClassUid: '1.2.840.10008.1.1', transferSyntaxUid: TransferSyntax.ImplicitVRLittleEndian };

/** What the PACS said to one C-STORE: its status and ErrorComment (0000,0902), or that no accepted context fits. */
export type StoreAnswer = { status: number; comment?: string } | 'not-accepted';

/** The PACS refused the association (A-ASSOCIATE-RJ). */
export class AssociationRejectedError extends Error {
  constructor(readonly rejection: { result: number; source: number; reason: number }) {
    super('association rejected');
  }
}

/** The association ended (closed, aborted or released by the PACS) before the answer. */
export class AssociationClosedError extends Error {
  constructor() {
    super('connection closed before response');
  }
}

export interface StoreAssociationEvents {
  /** Bytes moved: a chunk received, or a block of a data set written (and drained when it had to be). */
  progress: [];
  /** The connection is gone, whoever ended it. */
  closed: [];
}

/** How long an A-RELEASE-RQ waits for its A-RELEASE-RP before the connection is cut. */
const RELEASE_WAIT_MS = 2000;

/**
 * One association to a Storage SCP that sends spooled instances over C-STORE, one at a time, each byte for byte in
 * the transfer syntax it arrived in, the data set streamed from its file; it stays open between them until
 * release() or abort(). Proposed for the SOP class of the instance it is opened for, with implicit and explicit VR
 * LE and a context of exactly the received transfer syntax (what dcmjs-dimse's Client proposes with
 * addAdditionalPresentationContext(…, true)); it carries any instance whose SOP class and exact syntax the SCP
 * accepted. On a StreamingNetwork and a socket of our own (TCP_NODELAY, progress, destroy). Unlike the library's
 * Client it does not release when its request queue runs empty (Network's 'done'), and it sends the next request
 * only once the previous one is answered (no asynchronous operations are negotiated).
 */
export class StoreAssociation extends EventEmitter<StoreAssociationEvents> {
  readonly socket: Socket;
  /** Resolves when the SCP accepts the association; rejects (AssociationRejectedError, a network error) otherwise. */
  readonly accepted: Promise<void>;
  private readonly network: NetworkInstance;
  private readonly association: AssociationT;
  /** Contexts proposed with one transfer syntax only: their rejection is the SCP's answer for that syntax. */
  private readonly soleProposals = new Map<number, string>();
  private state: 'connecting' | 'open' | 'ending' | 'closed' = 'connecting';
  private wasAccepted = false;
  /** The C-STORE under way: settles its send(). */
  private current: { resolve: (a: StoreAnswer) => void; reject: (e: Error) => void } | undefined;
  private readonly closedPromise: Promise<void>;

  constructor(first: StorageContext, o: StoreAssociationOptions) {
    super();
    assertDimseVersion();
    const association = new Association(o.callingAet, o.calledAet);
    this.association = association;
    const any = association.addPresentationContext(first.sopClassUid);
    association.addTransferSyntaxToPresentationContext(any, TransferSyntax.ImplicitVRLittleEndian);
    association.addTransferSyntaxToPresentationContext(any, TransferSyntax.ExplicitVRLittleEndian);
    const exact = association.addPresentationContext(first.sopClassUid);
    association.addTransferSyntaxToPresentationContext(exact, first.transferSyntaxUid);
    this.soleProposals.set(exact, contextKey(first));

    const socket = connectToScp(o);
    socket.on('data', () => this.emit('progress'));
    // the library reports a socket error as a sentence that drops its code (ECONNREFUSED, a TLS verification code):
    // kept here, it is what the association fails with
    let socketError: Error | undefined;
    socket.once('error', (e) => (socketError = e));
    this.socket = socket;
    const network = new StreamingNetwork(socket, { connectTimeout: o.connectTimeout, associationTimeout: o.associationTimeout, pduTimeout: o.pduTimeout }, () =>
      this.emit('progress'),
    );
    this.network = network;

    let accept: () => void = () => undefined;
    let refuse: (e: Error) => void = () => undefined;
    this.accepted = new Promise<void>((resolve, reject) => {
      accept = resolve;
      refuse = reject;
    });
    this.accepted.catch(() => undefined); // a caller that never awaited it must not see an unhandled rejection
    this.closedPromise = new Promise<void>((resolve) => this.once('closed', resolve));

    /** The association is over: the call under way fails, nothing more is sent, the connection goes. */
    const end = (e: Error, how: 'end' | 'destroy') => {
      if (this.state === 'closed') return;
      this.state = 'ending';
      refuse(e);
      this.fail(e);
      if (how === 'destroy') socket.destroy();
      else socket.end();
    };
    network.on('connect', () => network.sendAssociationRequest(association));
    network.on('associationAccepted', () => {
      if (this.state !== 'connecting') return;
      this.state = 'open';
      this.wasAccepted = true;
      accept();
    });
    network.on('associationRejected', (rj: { result: number; source: number; reason: number }) => end(new AssociationRejectedError(rj), 'end'));
    network.on('associationReleaseResponse', () => socket.end());
    // a PACS that ends the association itself (A-RELEASE-RQ, A-ABORT): it carries nothing more
    network.on('associationReleaseRequested', () => {
      if (this.state === 'closed') return;
      network.sendAssociationReleaseResponse();
      end(new AssociationClosedError(), 'end');
    });
    network.on('abort', () => end(new AssociationClosedError(), 'destroy'));
    network.on('networkError', (e: Error) => end(socketError ?? e, 'destroy'));
    network.on('close', () => {
      end(new AssociationClosedError(), 'destroy');
      this.state = 'closed';
      this.emit('closed');
    });
  }

  /** Accepted, open, and no C-STORE under way: send() may be called. */
  get idle(): boolean {
    return this.state === 'open' && !this.current;
  }

  /** Open (accepted, neither released, aborted nor closed). */
  get open(): boolean {
    return this.state === 'open';
  }

  /** Whether the SCP ever accepted this association (a later loss is then worth a second attempt). */
  get associated(): boolean {
    return this.wasAccepted;
  }

  /**
   * Whether an instance of this SOP class in this transfer syntax goes over this association as it is: true (an
   * accepted context carries exactly that pair), false (it was proposed alone and the SCP refused it: a fresh
   * association would be refused the same), undefined (not proposed: only a new association can tell).
   */
  carries(ctx: StorageContext): boolean | undefined {
    if (!this.wasAccepted) return undefined;
    if (this.acceptedContextFor(ctx) !== undefined) return true;
    const key = contextKey(ctx);
    for (const [id, proposed] of this.soleProposals) if (proposed === key && this.association.getPresentationContext(id).getResult() !== PresentationContextResult.Accept) return false;
    return undefined;
  }

  private acceptedContextFor(ctx: StorageContext): number | undefined {
    for (const { id, context } of this.association.getPresentationContexts())
      if (context.getAbstractSyntaxUid() === ctx.sopClassUid && context.getResult() === PresentationContextResult.Accept && context.getAcceptedTransferSyntaxUid() === ctx.transferSyntaxUid)
        return id;
    return undefined;
  }

  /**
   * Sends one spooled instance and resolves with the PACS's answer, or 'not-accepted' (nothing sent) when no
   * accepted context has its SOP class and exact transfer syntax; rejects when the association ends first (the
   * network error, or AssociationClosedError). Only while idle.
   */
  send(inst: ReceivedInstance): Promise<StoreAnswer> {
    return this.request(new SpooledDataset(inst, inst));
  }

  /**
   * Begins the C-STORE of a data set that is still arriving: the request goes now, `data`'s fragments as they are
   * pushed, its last at data.finish(); resolves with the PACS's answer as send() does. A data set never finished
   * is ended by abort(), so the PACS stores nothing.
   */
  sendArriving(ctx: StorageContext & { sopInstanceUid: string }, data: ArrivingData): Promise<StoreAnswer> {
    return this.request(new SpooledDataset(ctx, data));
  }

  /**
   * C-ECHO on an association opened for VERIFICATION_CONTEXT: resolves with the SCP's status, or 'not-accepted' when
   * it refused the Verification context. Only while idle.
   */
  echo(): Promise<StoreAnswer> {
    return this.exchange(new CEchoRequest(), VERIFICATION_CONTEXT);
  }

  private request(dataset: SpooledDataset): Promise<StoreAnswer> {
    return this.exchange(new CStoreRequest(dataset), dataset.context);
  }

  /** Sends one request in an accepted context of exactly `ctx` and resolves with its answer. */
  private exchange(request: CStoreRequestT | InstanceType<typeof CEchoRequest>, ctx: StorageContext): Promise<StoreAnswer> {
    if (!this.idle) return Promise.reject(new Error(this.state === 'open' ? 'a request is under way on this association' : 'association not open'));
    // the library would pick another context of the SOP class and transcode into it: refused here, never sent
    if (this.acceptedContextFor(ctx) === undefined) return Promise.resolve('not-accepted');
    return new Promise<StoreAnswer>((resolve, reject) => {
      this.current = { resolve, reject };
      request.on('response', (rsp: Pick<CStoreResponseT, 'getStatus' | 'getErrorComment'>) => {
        // the library keeps every request it sent in `pending` (it matches answers by message ID, which wraps)
        const pending = this.network.pending;
        const at = pending.indexOf(request);
        if (at >= 0) pending.splice(at, 1);
        const comment = rsp.getErrorComment();
        this.settle({ status: rsp.getStatus(), ...(comment ? { comment } : {}) });
      });
      // done without a response: the library found no context for it after all (a backstop, see above)
      request.on('done', () => this.settle('not-accepted'));
      this.network.sendRequests([request]);
    });
  }

  private settle(answer: StoreAnswer): void {
    const call = this.current;
    this.current = undefined;
    call?.resolve(answer);
  }

  private fail(e: Error): void {
    const call = this.current;
    this.current = undefined;
    call?.reject(e);
  }

  /**
   * Ends the association politely: A-RELEASE-RQ when it is open and idle, the connection cut if no A-RELEASE-RP
   * comes within RELEASE_WAIT_MS; otherwise abort(). Resolves once the connection is closed.
   */
  release(): Promise<void> {
    if (this.state === 'closed' || this.state === 'ending') return this.closedPromise;
    if (!this.idle) {
      this.abort();
      return this.closedPromise;
    }
    this.state = 'ending';
    try {
      this.network.sendAssociationReleaseRequest();
    } catch {
      this.socket.destroy();
    }
    const cut = setTimeout(() => this.socket.destroy(), RELEASE_WAIT_MS);
    return this.closedPromise.finally(() => clearTimeout(cut));
  }

  /** Drops the association: an A-ABORT when there is one (the PACS may still read it), then the connection. */
  abort(source: number = AbortSource.ServiceUser, reason: number = AbortReason.NotSpecified): void {
    if (this.socket.destroyed) return;
    if (this.wasAccepted && this.state !== 'closed') {
      try {
        this.network.sendAbort(source, reason);
      } catch {
        // the connection is cut below anyway
      }
    }
    this.state = this.state === 'closed' ? 'closed' : 'ending';
    this.fail(new AssociationClosedError());
    this.socket.destroy();
  }

  /** Resolves once the connection is closed. */
  whenClosed(): Promise<void> {
    return this.closedPromise;
  }
}

/** A storage SOP class in one transfer syntax: what a presentation context carries. */
export interface StorageContext {
  sopClassUid: string;
  transferSyntaxUid: string;
}

function contextKey(ctx: StorageContext): string {
  return `${ctx.sopClassUid} ${ctx.transferSyntaxUid}`;
}

/**
 * A socket's chunks as whole PDUs: one inside a chunk is passed on as a view of it, one spanning chunks is copied
 * into a buffer of its own length. A PDU whose length field is over `maxPduLength` calls `tooLong` and ends the framing.
 */
export function wholePdus(maxPduLength: number, deliver: (pdu: Buffer) => void, tooLong: () => void): (chunk: Buffer) => void {
  const header = Buffer.alloc(PDU_HEADER);
  let headerFill = 0;
  let pdu: Buffer | undefined;
  let fill = 0;
  let stopped = false;
  return (chunk) => {
    let off = 0;
    while (!stopped && off < chunk.length) {
      if (!pdu) {
        let h = chunk;
        let at = off;
        if (headerFill > 0 || chunk.length - off < PDU_HEADER) {
          const n = Math.min(PDU_HEADER - headerFill, chunk.length - off);
          chunk.copy(header, headerFill, off, off + n);
          headerFill += n;
          off += n;
          if (headerFill < PDU_HEADER) return;
          h = header;
          at = 0;
        }
        const length = h.readUInt32BE(at + 2);
        const total = PDU_HEADER + length;
        if (length > maxPduLength) {
          stopped = true;
          tooLong();
          return;
        }
        if (h === chunk && chunk.length - off >= total) {
          const whole = chunk.subarray(off, off + total);
          off += total;
          deliver(whole);
          continue;
        }
        pdu = Buffer.allocUnsafe(total);
        if (h === header) {
          header.copy(pdu, 0);
          fill = PDU_HEADER;
          headerFill = 0;
        } else fill = 0;
      }
      const n = Math.min(pdu.length - fill, chunk.length - off);
      chunk.copy(pdu, fill, off, off + n);
      fill += n;
      off += n;
      if (fill === pdu.length) {
        const whole = pdu;
        pdu = undefined;
        deliver(whole);
      }
    }
  };
}

/** A PDU's header: type, reserved byte, 4-byte length of what follows (PS3.8 9.3). */
const PDU_HEADER = 6;

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

  /** `maxPduLength`: the largest PDU length field the connection may bring; a longer one cuts it. */
  constructor(socket: Socket, opts: NetworkOptions, maxPduLength: number) {
    assertDimseVersion();
    const before = new Set(socket.listeners('data'));
    super(socket, opts);
    // the library's PduAccumulator copies the PDU so far onto every chunk received (a 256 KiB PDU arriving in 64 KiB
    // chunks is copied 2.5 times, and that garbage cost more CPU in GC than the rest of receiving): its listener is
    // given whole PDUs instead, each copied at most once
    const library = socket.listeners('data').filter((l) => !before.has(l));
    if (library.length !== 1) throw new Error(`dcmjs-dimse registered ${library.length} data listeners, the adapter expects 1`);
    const deliver = library[0] as (pdu: Buffer) => void;
    socket.off('data', deliver);
    socket.on('data', wholePdus(maxPduLength, deliver, () => socket.destroy()));
    // what the library's Server does: its once-a-second timer drops an association silent for pduTimeout (with an
    // A-ABORT) only while `connected`. (Its association timeout never runs here: it counts from the 'connect' event.)
    this.connected = true;
  }

  /** Restarts the library's idle clock, as if a PDU had just arrived. */
  restartIdleClock(): void {
    this.lastPduTime = Date.now();
  }

  /** Where the next C-STORE's data set goes: `ctx`, what its request and presentation context say it is. */
  protected abstract openStoreSink(ctx: StorageContext & { sopInstanceUid: string }): StoreSink;

  override createStoreWritableStream(pc: PresentationContextT, request: CStoreRequestT): Writable {
    const ctx = { sopClassUid: request.getAffectedSopClassUid() ?? '', sopInstanceUid: request.getAffectedSopInstanceUid() ?? '', transferSyntaxUid: pc.getAcceptedTransferSyntaxUid() ?? '' };
    return this.openStoreSink(ctx) as unknown as Writable; // the library uses only the StoreSink methods of it
  }
}
