// The DIMSE server the modalities call: dcmjs-dimse's Scp on a net.Server of our own (its Server cannot bind a
// host and leaves Nagle on), plain, over TLS on a second port (scp.tls), or both. Accepts C-ECHO and C-STORE, spools
// each data set to a file, and answers a C-STORE only when the pipeline says what became of the instance. Before a
// connection has associated it is held to little: a cap on such connections (TLS handshakes included), a time limit,
// and small PDUs of three types (pdu-guard.ts). A TLS caller is refused at the handshake (a version below
// scp.tls.minVersion, no certificate when one is required, one the CA did not sign), or at A-ASSOCIATE when its
// certificate is not the one its AE is bound to; every such refusal goes through DicomServer.refusedTls.
import dimse, { ServerScp, type StorageContext } from '../dicom/dimse.js';
import net, { type AddressInfo, type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { Metrics } from '../metrics.js';
import { refusal, Status, type ReceivedInstance, type StoreReply } from '../dicom/c-store.js';
import { checkCaller, decideContext, plainAddress } from './negotiation.js';
import { PduGuard } from './pdu-guard.js';
import { BCP195_CIPHERS, handshakeRefusal, peerSubject, subjectLine, type Subject, type TlsRefusal } from '../dicom/tls.js';
import { SpoolBudget, SpoolFile } from './spool.js';

const { Dataset, Implementation } = dimse;
const { CEchoResponse, CStoreResponse } = dimse.responses;
const { PresentationContextResult, RejectResult, RejectSource, RejectReason } = dimse.constants;

type Association = InstanceType<typeof dimse.association.Association>;
type PresentationContext = InstanceType<typeof dimse.association.PresentationContext>;
type CStoreRequest = InstanceType<typeof dimse.requests.CStoreRequest>;
type CEchoRequest = InstanceType<typeof dimse.requests.CEchoRequest>;
type CStoreResponseT = InstanceType<typeof dimse.responses.CStoreResponse>;
type CEchoResponseT = InstanceType<typeof dimse.responses.CEchoResponse>;

/**
 * A forward begun while a data set arrives (cut-through): given each fragment the spool keeps, and aborted when the
 * instance is refused or its sender goes before it is whole.
 */
export interface EarlyForward {
  push(chunk: Buffer): void;
  abort(): void;
}

export interface ScpOptions<F extends EarlyForward = EarlyForward> {
  scp: Config['scp'];
  spoolDir: string;
  /** At a C-STORE's first data set fragment: a forward to begin at once, or undefined (the data set is forwarded whole). */
  begin?: (ctx: StorageContext & { sopInstanceUid: string; callingAet: string }) => F | undefined;
  /** The data set is whole: its answer, `early` the forward begun for it. */
  ingest: (inst: ReceivedInstance, early?: F) => Promise<StoreReply>;
  /** An instance refused while it arrived (over the size limit, spool full): journalled, its answer returned. */
  refused?: (inst: ReceivedInstance, reply: StoreReply) => StoreReply;
  metrics?: Metrics;
  log: Logger;
  /** Names a SOP Instance UID in the log (keyed: src/log.ts). */
  fingerprint: (uid: string) => string;
  /** Told of every TLS caller refused, after the log and the metric (a hook for an audit trail's security alert). */
  tlsRefused?: (refusal: TlsRefusalEvent) => void;
  /** Told of every association refused because of who called (a TLS subject mismatch goes to tlsRefused instead). */
  callerRefused?: (refusal: CallerRefusalEvent) => void;
}

/**
 * An A-ASSOCIATE-RQ rejected for its AE titles or host, or an AE bound to a certificate calling without TLS
 * (`subject`): AE titles and an address, no patient data.
 */
export interface CallerRefusalEvent {
  why: 'called-aet' | 'calling-aet' | 'host' | 'subject';
  from: string;
  callingAet: string;
  calledAet: string;
}

/** A TLS caller refused: why, from where, and what it presented (no patient data: a device's certificate). */
export interface TlsRefusalEvent {
  reason: TlsRefusal;
  from: string;
  /** The TLS error or certificate verification code (ERR_SSL_UNSUPPORTED_PROTOCOL, UNABLE_TO_VERIFY_LEAF_SIGNATURE…). */
  code?: string;
  /** The calling AE, when the refusal came at A-ASSOCIATE. */
  callingAet?: string;
  /** The subject of the certificate presented, when there was one. */
  subject?: string;
}

Implementation.setImplementationVersion('DPHIANT_0_1');

/** The data set handed to cStoreRequest: a reference to its spool file, never parsed, and its forward begun, if any. */
class SpoolReference<F extends EarlyForward> extends Dataset {
  constructor(
    readonly spool: SpoolFile,
    readonly transferSyntaxUid: string,
    readonly early: F | undefined,
  ) {
    super({}, transferSyntaxUid);
  }
}

/** One association. */
class StoreScp<F extends EarlyForward> extends ServerScp {
  opts!: ScpOptions<F>;
  server!: DicomServer<F>;
  id = 0;
  accepted = false;
  guard!: PduGuard;
  /** Over TLS: the subject of the verified certificate the caller presented (undefined: it presented none). */
  tls: { subject?: Subject } | undefined;
  private spool: SpoolFile | undefined;
  private early: F | undefined;

  override associationRequested(association: Association): void {
    // the guard dropped it (the library still reads the chunk it was in), or a second request (a protocol error)
    if (this.accepted || this.socket.destroyed) return;
    const { scp, log } = this.opts;
    const calling = association.getCallingAeTitle();
    const called = association.getCalledAeTitle();
    const from = plainAddress(this.socket.remoteAddress);
    const who = checkCaller(scp.callers, scp.aet, calling, called, from, this.tls?.subject);
    if (!who.ok) {
      const reason = who.why === 'called-aet' ? RejectReason.CalledAeNotRecognized : RejectReason.CallingAeNotRecognized;
      log.warn({ assoc: this.id, calling, called, from, tls: !!this.tls, why: who.why }, 'association rejected: caller not allowed');
      if (who.why === 'subject' && this.tls) this.server.refusedTls({ reason: 'subject-mismatch', from, callingAet: calling.trim(), subject: subjectLine(this.tls.subject) });
      else this.opts.callerRefused?.({ why: who.why, from, callingAet: calling.trim(), calledAet: called.trim() });
      this.reject(RejectResult.Permanent, RejectSource.ServiceUser, reason);
      return;
    }
    if (this.server.acceptedAssociations >= scp.maxAssociations) {
      log.warn({ assoc: this.id, calling, limit: scp.maxAssociations }, 'association rejected: too many associations');
      this.reject(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded);
      return;
    }
    let acceptedContexts = 0;
    for (const { id } of association.getPresentationContexts()) {
      const pc = association.getPresentationContext(id);
      const d = decideContext(pc.getAbstractSyntaxUid(), pc.getTransferSyntaxUids(), scp.acceptUnknownSopClasses);
      if (d.accept) {
        pc.setResult(PresentationContextResult.Accept, d.transferSyntaxUid);
        acceptedContexts++;
      } else {
        pc.setResult(
          d.reason === 'abstract-syntax'
            ? PresentationContextResult.RejectAbstractSyntaxNotSupported
            : PresentationContextResult.RejectTransferSyntaxesNotSupported,
        );
      }
    }
    this.accepted = true;
    this.server.acceptedAssociations++;
    this.server.pendingConnections--;
    this.guard.accepted();
    log.info({ assoc: this.id, calling, from, tls: !!this.tls, contexts: acceptedContexts }, 'association accepted');
    this.sendAssociationAccept();
  }

  private reject(result: number, source: number, reason: number): void {
    this.sendAssociationReject(result, source, reason);
    // the caller should close; do not wait for it forever
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  override associationReleaseRequested(): void {
    this.sendAssociationReleaseResponse();
  }

  override cEchoRequest(request: CEchoRequest, callback: (response: CEchoResponseT) => void): void {
    const response = CEchoResponse.fromRequest(request);
    response.setStatus(Status.Success);
    callback(response);
  }

  protected override openStoreSink(ctx: StorageContext & { sopInstanceUid: string }): SpoolFile {
    const early = ctx.sopInstanceUid ? this.opts.begin?.({ ...ctx, callingAet: this.association?.getCallingAeTitle() ?? '' }) : undefined;
    this.early = early;
    this.spool = new SpoolFile(this.opts.spoolDir, this.opts.scp.maxInstanceBytes, this.server.spoolBudget, early && ((chunk) => early.push(chunk)));
    return this.spool;
  }

  override createDatasetFromStoreWritableStream(
    _sink: unknown,
    pc: PresentationContext,
    callback: (dataset: InstanceType<typeof Dataset>) => void,
  ): void {
    const spool = this.spool!;
    const early = this.early;
    this.spool = undefined;
    this.early = undefined;
    callback(new SpoolReference(spool, pc.getAcceptedTransferSyntaxUid() ?? '', early));
  }

  override cStoreRequest(request: CStoreRequest, callback: (response: CStoreResponseT) => void): void {
    const answer = (reply: StoreReply) => {
      const response = CStoreResponse.fromRequest(request);
      response.setStatus(reply.status);
      if (reply.comment) response.setErrorComment(reply.comment);
      // the library's idle clock runs from the caller's last PDU, also while the caller waits for this answer:
      // restart it, so that the caller's idle time counts from our answer
      this.restartIdleClock();
      callback(response);
    };
    const failed = (e: unknown): StoreReply => {
      this.opts.log.error({ assoc: this.id, err: (e as Error).message }, 'C-STORE failed');
      return refusal('internal', 'DPHIANT internal error');
    };
    // no rejection may escape: serve exits on an unhandled one (the sender may be gone when the answer is sent)
    void Promise.resolve()
      .then(() => this.store(request))
      .catch(failed)
      .then(answer)
      .catch((e: Error) => this.opts.log.warn({ assoc: this.id, err: e.message }, 'C-STORE answer not sent'));
  }

  private async store(request: CStoreRequest): Promise<StoreReply> {
    const { log, scp } = this.opts;
    const ref = request.getDataset() as SpoolReference<F>;
    const spool = ref.spool;
    const sopInstanceUid = request.getAffectedSopInstanceUid() ?? '';
    const uid = this.opts.fingerprint(sopInstanceUid);
    const inst: ReceivedInstance = {
      sopClassUid: request.getAffectedSopClassUid() ?? '',
      sopInstanceUid,
      transferSyntaxUid: ref.transferSyntaxUid,
      callingAet: this.association?.getCallingAeTitle() ?? '',
      spoolPath: spool.path,
      data: spool.data,
      bytes: spool.bytes,
    };
    const refuse = (reply: StoreReply) => (sopInstanceUid && this.opts.refused ? this.opts.refused(inst, reply) : reply);
    try {
      if (spool.oversized) {
        log.warn({ assoc: this.id, uid, bytes: spool.bytes, limit: scp.maxInstanceBytes }, 'instance refused: over the size limit');
        return refuse(refusal('too-large', `instance over the size limit (${scp.maxInstanceBytes} bytes)`));
      }
      if (spool.noSpace) {
        const budget = this.server.spoolBudget;
        log.warn({ assoc: this.id, uid, bytes: spool.bytes, inFlight: budget.inFlight, limit: budget.maxBytes, err: spool.writeError }, 'instance refused: spool full');
        return refuse(refusal('spool-full', SPOOL_FULL));
      }
      if (spool.writeError) {
        log.error({ assoc: this.id, uid, err: spool.writeError }, 'instance refused: spool write failed');
        return refuse(refusal('disk', `DPHIANT spool: ${spool.writeError}`));
      }
      if (spool.bytes === 0 || !sopInstanceUid) return refusal('malformed', 'empty data set or no SOP Instance UID');
      return await this.opts.ingest(inst, ref.early);
    } finally {
      // whatever became of it: a forward begun and not committed is aborted (the PACS keeps nothing; after commit()
      // a no-op), and the spool's bytes go back to the budget (ingest removed the file; the hand-off may keep memory)
      ref.early?.abort();
      spool.drop();
    }
  }

  override abort(): void {
    this.opts.log.warn({ assoc: this.id }, 'association aborted by the caller');
  }

  /** Connection gone: a half-received data set is discarded. */
  closed(): void {
    this.early?.abort();
    this.early = undefined;
    this.spool?.drop();
    this.spool = undefined;
    if (this.accepted) {
      this.accepted = false;
      this.server.acceptedAssociations--;
    } else this.server.pendingConnections--;
  }
}

/** The sender's answer when the spool has no room (budget, free-space floor, or the disk itself). */
export const SPOOL_FULL = 'DPHIANT spool full';

/**
 * The longest PDU a caller may send (its length field): dcmjs-dimse accepts associations with a maximum PDU length
 * of 256 KiB, and a sender that ignores it gets room up to this before the connection is cut.
 */
const MAX_PDU_LENGTH = 2 * 1024 * 1024;

/** Closing lines about connections refused for the pending cap: at most one per this many ms (a flood). */
const PENDING_LOG_MS = 5000;

export class DicomServer<F extends EarlyForward = EarlyForward> {
  /** The plain listener (scp.port), unless scp.tls.plain is false. */
  private readonly server: net.Server | undefined;
  /** The TLS listener's own TCP server (scp.tls.port): its connections are counted, then handed to `tlsServer`. */
  private readonly tlsListener: net.Server | undefined;
  /** Never listens: does the handshakes of the connections tlsListener hands it. */
  private readonly tlsServer: tls.Server | undefined;
  /** TLS connections whose handshake is under way: they count as connections not associated. */
  private readonly handshaking = new Set<Socket>();
  private readonly sockets = new Set<Socket>();
  private nextId = 1;
  private readonly metrics: Metrics;
  /** Associations accepted and not yet closed. */
  acceptedAssociations = 0;
  /** Connections open that have not associated (yet). */
  pendingConnections = 0;
  readonly spoolBudget: SpoolBudget;
  private pendingRefusals = { loggedAt: 0, unlogged: 0 };

  constructor(private readonly opts: ScpOptions<F>) {
    // spool files left by a previous run belong to instances nobody was told were stored; the folder stays (it
    // may be a file system of its own)
    mkdirSync(opts.spoolDir, { recursive: true });
    for (const name of readdirSync(opts.spoolDir)) rmSync(path.join(opts.spoolDir, name), { recursive: true, force: true });
    this.spoolBudget = new SpoolBudget(opts.spoolDir, opts.scp.spoolMaxBytes, opts.scp.spoolMinFreeBytes, opts.scp.spoolMemoryMaxBytes);
    this.metrics = opts.metrics ?? new Metrics();
    this.metrics.gauge('dphiant_scp_pending_connections', 'connections open that have not associated yet', () => this.pendingConnections);
    this.metrics.gauge('dphiant_spool_bytes', 'bytes of data sets in the spool (memory and files), received and not yet forwarded', () => this.spoolBudget.inFlight);
    const t = opts.scp.tls;
    if (t.plain) this.server = net.createServer((socket) => !this.overPendingCap(socket) && this.connection(socket));
    if (t.port > 0) {
      // requestCert without rejectUnauthorized: Node would drop an untrusted caller after its handshake without a
      // word; here secured() refuses it, and says why
      this.tlsServer = tls.createServer(
        {
          cert: readFileSync(t.cert),
          key: readFileSync(t.key),
          ca: readFileSync(t.ca),
          requestCert: true,
          rejectUnauthorized: false,
          minVersion: t.minVersion,
          ciphers: BCP195_CIPHERS,
          handshakeTimeout: opts.scp.associationTimeoutMs,
        },
        (socket) => this.secured(socket),
      );
      this.tlsServer.on('tlsClientError', (e: NodeJS.ErrnoException, socket: TLSSocket) => this.handshakeFailed(e, socket));
      this.tlsListener = net.createServer((raw) => this.tlsConnection(raw));
    }
  }

  /** At the cap of connections not associated (handshakes included): `socket` is closed at once. */
  private overPendingCap(socket: Socket): boolean {
    const { scp, log } = this.opts;
    if (this.pendingConnections + this.handshaking.size < scp.maxPendingConnections) return false;
    socket.destroy();
    this.dropped('pending-limit');
    const r = this.pendingRefusals;
    if (Date.now() - r.loggedAt < PENDING_LOG_MS) r.unlogged++;
    else {
      log.warn({ from: plainAddress(socket.remoteAddress), limit: scp.maxPendingConnections, alsoRefused: r.unlogged }, 'connection refused: too many connections not associated');
      this.pendingRefusals = { loggedAt: Date.now(), unlogged: 0 };
    }
    return true;
  }

  /** A TCP connection to the TLS port: counted while its handshake runs, which tlsServer does. */
  private tlsConnection(raw: Socket): void {
    if (this.overPendingCap(raw)) return;
    raw.setNoDelay(true);
    this.handshaking.add(raw);
    this.sockets.add(raw);
    raw.once('close', () => {
      this.handshaking.delete(raw);
      this.sockets.delete(raw);
    });
    this.tlsServer!.emit('connection', raw);
  }

  /** A handshake is done: the certificate is checked here (not by Node), then the caller may associate. */
  private secured(socket: TLSSocket): void {
    // from here on it counts as a connection not associated, as a plain one does (matched by its peer's address)
    for (const raw of this.handshaking)
      if (raw.remotePort === socket.remotePort && raw.remoteAddress === socket.remoteAddress) {
        this.handshaking.delete(raw);
        break;
      }
    const from = plainAddress(socket.remoteAddress);
    const subject = peerSubject(socket);
    if (subject && !socket.authorized) {
      this.refusedTls({ reason: 'untrusted-certificate', from, code: String(socket.authorizationError ?? ''), subject: subjectLine(subject) });
      socket.destroy();
      return;
    }
    if (!subject && this.opts.scp.tls.requireClientCert) {
      this.refusedTls({ reason: 'no-certificate', from });
      socket.destroy();
      return;
    }
    this.connection(socket, { ...(subject ? { subject } : {}) });
  }

  private handshakeFailed(e: NodeJS.ErrnoException, socket: TLSSocket): void {
    const from = plainAddress(socket.remoteAddress);
    socket.destroy();
    // a caller gone before its ClientHello (a port probe, a balancer's TCP check) was refused nothing
    if (e.code === 'ECONNRESET') {
      this.opts.log.debug({ from }, 'connection closed before the TLS handshake');
      return;
    }
    this.refusedTls({ reason: handshakeRefusal(e.code), from, ...(e.code ? { code: e.code } : {}) });
  }

  /**
   * The one place a TLS caller's refusal is reported: the log (no patient data: the address, the TLS code, the
   * certificate's subject), dphiant_tls_refused_total{reason}, and the tlsRefused hook.
   */
  refusedTls(event: TlsRefusalEvent): void {
    this.opts.log.warn({ ...event }, 'TLS caller refused');
    this.metrics.inc('dphiant_tls_refused_total', { reason: event.reason });
    this.opts.tlsRefused?.(event);
  }

  /** `tls`: the connection came over the TLS listener, with the subject of its certificate, if any. */
  private connection(socket: Socket, tls?: { subject?: Subject }): void {
    const { scp, log } = this.opts;
    const from = plainAddress(socket.remoteAddress);
    this.pendingConnections++;
    socket.setNoDelay(true);
    this.sockets.add(socket);
    const id = this.nextId++;
    const guard = new PduGuard(socket, MAX_PDU_LENGTH, (why) => {
      log.warn({ assoc: id, from, why }, 'connection dropped: protocol violation');
      this.dropped('protocol');
      socket.destroy();
    });
    // dcmjs-dimse's own association timeout never runs on a server socket (it starts at a 'connect' event, which
    // only client sockets emit)
    const associationTimer = setTimeout(() => {
      if (assoc.accepted || socket.destroyed) return;
      log.warn({ assoc: id, from, ms: scp.associationTimeoutMs }, 'connection closed: no association in time');
      this.dropped('association-timeout');
      socket.destroy();
    }, scp.associationTimeoutMs);
    const assoc = new StoreScp<F>(socket, {
      associationTimeout: scp.associationTimeoutMs,
      pduTimeout: scp.pduTimeoutMs,
      connectTimeout: scp.pduTimeoutMs,
    }, MAX_PDU_LENGTH);
    assoc.opts = this.opts;
    assoc.server = this;
    assoc.id = id;
    assoc.guard = guard;
    assoc.tls = tls;
    assoc.on('networkError', (e: Error) => {
      log.warn({ assoc: id, err: e.message }, 'association network error');
      socket.destroy();
    });
    socket.on('close', () => {
      clearTimeout(associationTimer);
      this.sockets.delete(socket);
      assoc.closed();
    });
  }

  private dropped(reason: 'pending-limit' | 'protocol' | 'association-timeout'): void {
    this.metrics.inc('dphiant_scp_connections_dropped_total', { reason });
  }

  /** The TLS listener's address, once listening. */
  tlsAddress: AddressInfo | undefined;

  /** Opens the listeners; resolves with the plain one's address (the TLS one's when it is the only one). */
  async listen(): Promise<AddressInfo> {
    const { host, port, tls: t } = this.opts.scp;
    const open = (server: net.Server, at: number) =>
      new Promise<AddressInfo>((resolve, reject) => {
        server.once('error', reject);
        server.listen(at, host, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      });
    const plain = this.server && (await open(this.server, port));
    try {
      if (this.tlsListener) this.tlsAddress = await open(this.tlsListener, t.port);
    } catch (e) {
      this.server?.close();
      throw e;
    }
    return (plain ?? this.tlsAddress)!;
  }

  /** Stops accepting, then cuts open associations. */
  async close(): Promise<void> {
    const closing = [this.server, this.tlsListener].map((s) => s?.listening && new Promise<void>((resolve) => s.close(() => resolve())));
    for (const s of this.sockets) s.destroy();
    await Promise.all(closing);
  }
}
