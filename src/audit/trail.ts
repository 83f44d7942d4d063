// The audit trail to the hospital's audit record repository (IHE ATNA ITI-20): each message is written to a spool
// file first (fsync), then sent as one RFC 5424 syslog message, over TLS with RFC 5425 octet-counting framing or
// over UDP (RFC 5426), in the order recorded. Syslog has no acknowledgement, and a TCP write to a connection the
// repository has just dropped succeeds locally: so a file is removed only once the connection has stayed up for
// CONFIRM_MS after its message was written; a connection that fails within that window has its messages sent again
// on the next one.
// While the repository is unreachable the spool keeps them and the sender tries again every few seconds, so none is
// lost across outages and restarts (the spool is in the data directory).
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import dgram from 'node:dgram';
import net from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { auditMessage, type AuditEvent, type AuditSource } from './messages.js';

export interface AuditTrailSettings {
  /** tls://host:port or udp://host:port */
  repository: string;
  /** PEM files for TLS: the CA that signed the repository's certificate, and this node's client certificate. */
  ca: string;
  cert: string;
  key: string;
  spoolDir: string;
  source: AuditSource;
  /** How long to wait before reconnecting after a failure. */
  retryMs?: number;
  /**
   * A command's own trail (`dphiant crosswalk reveal`): what it could not send by close() moves into this spool, a
   * running middleman's, which sends it later. Only one process sends from a spool.
   */
  handOver?: string;
}

/** How long a TLS connection must stay up after a batch is written before its files are removed. */
const CONFIRM_MS = 250;

/** facility 10 (authpriv); severity 5 (notice) on success, 4 (warning) otherwise. */
const priority = (failed: boolean) => 10 * 8 + (failed ? 4 : 5);

/** One RFC 5424 message: the audit message as MSG, MSGID IHE+RFC-3881 (ITI TF-2 3.20.7.1), no structured data. */
export function syslogMessage(xml: string, failed: boolean, at = new Date()): string {
  return `<${priority(failed)}>1 ${at.toISOString()} ${hostname() || '-'} DPHIANT ${process.pid} IHE+RFC-3881 - \uFEFF${xml}`;
}

const read = (file: string) => readFileSync(file);

export class AuditTrail {
  private seq = 0;
  private sending: Promise<void> | undefined;
  private again = false;
  private socket: tls.TLSSocket | undefined;
  private udp: dgram.Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly url: URL;

  constructor(private readonly s: AuditTrailSettings) {
    this.url = new URL(s.repository);
    if (!['tls:', 'udp:'].includes(this.url.protocol)) throw new Error(`audit.repository: ${s.repository} is neither tls://host:port nor udp://host:port`);
    mkdirSync(s.spoolDir, { recursive: true, mode: 0o700 });
    // records a previous run could not send go first
    this.seq = Math.max(0, ...this.spooled().map((f) => Number(f.split('-')[1]!.split('.')[0])));
    this.flush();
  }

  /** Spools the event's message durably and sends it (and anything before it) as soon as the repository answers. */
  record(e: AuditEvent): void {
    const failed = ('outcome' in e && e.outcome !== 0) || e.kind === 'security-alert';
    const file = path.join(this.s.spoolDir, `${Date.now().toString().padStart(15, '0')}-${String(++this.seq).padStart(12, '0')}.log`);
    const fd = openSync(file, 'wx', 0o600);
    try {
      writeSync(fd, syslogMessage(auditMessage(e, this.s.source), failed));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.flush();
  }

  /** Records not sent yet. */
  pending(): number {
    return this.spooled().length;
  }

  private spooled(): string[] {
    return readdirSync(this.s.spoolDir).filter((f) => f.endsWith('.log')).sort();
  }

  private flush(): void {
    if (this.closed) return;
    if (this.sending) {
      this.again = true;
      return;
    }
    this.sending = this.sendAll()
      .catch(() => {
        // unreachable: the spool keeps them; tried again shortly
        this.drop();
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.flush(), this.s.retryMs ?? 5000);
        this.timer.unref();
      })
      .finally(() => {
        this.sending = undefined;
        if (this.again) {
          this.again = false;
          this.flush();
        }
      });
  }

  private async sendAll(): Promise<void> {
    for (let files = this.spooled(); files.length; files = this.spooled()) {
      const batch = files.slice(0, 100).map((f) => path.join(this.s.spoolDir, f));
      if (this.url.protocol === 'udp:') for (const file of batch) await this.sendUdp(read(file));
      else await this.sendTls(batch.map(read));
      for (const file of batch) rmSync(file, { force: true });
    }
  }

  private async sendUdp(msg: Buffer): Promise<void> {
    const host = this.url.hostname;
    this.udp ??= dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => this.udp!.send(msg, Number(this.url.port), host, (e) => (e ? reject(e) : resolve())));
  }

  /** Writes the messages on one connection and resolves once it stayed up CONFIRM_MS after them. */
  private async sendTls(msgs: Buffer[]): Promise<void> {
    const socket = this.socket && !this.socket.destroyed ? this.socket : await this.connect(this.url.hostname, Number(this.url.port));
    // RFC 5425: MSG-LEN SP SYSLOG-MSG, the length in octets
    const frames = Buffer.concat(msgs.flatMap((m) => [Buffer.from(`${m.length} `), m]));
    await new Promise<void>((resolve, reject) => socket.write(frames, (e) => (e ? reject(e) : resolve())));
    await new Promise((r) => setTimeout(r, CONFIRM_MS));
    if (socket.destroyed || this.socket !== socket) throw new Error('audit repository: the connection closed after a write');
  }

  private connect(host: string, port: number): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const pem = (f: string) => (f ? readFileSync(f) : undefined);
      // SNI only for a host name (RFC 6066); the certificate is checked against an address either way
      const sni = net.isIP(host) ? {} : { servername: host };
      const socket = tls.connect({ host, port, ...sni, ca: pem(this.s.ca), cert: pem(this.s.cert), key: pem(this.s.key), minVersion: 'TLSv1.2' }, () => {
        this.socket = socket;
        resolve(socket);
      });
      socket.setTimeout(30_000, () => socket.destroy(new Error('audit repository: no progress for 30 s')));
      // every error, not only the first: a connection that fails after a write must not crash the process
      socket.on('error', (e) => {
        if (this.socket === socket) this.socket = undefined;
        reject(e);
      });
      // the repository closing its end: the next batch goes on a new connection
      for (const ev of ['end', 'close'] as const)
        socket.once(ev, () => {
          if (this.socket === socket) this.socket = undefined;
        });
    });
  }

  private drop(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  /** Sends what it can within `waitMs`, then stops; what is left stays spooled (or is handed over). Once only. */
  close(waitMs = 2000): Promise<void> {
    return (this.closing ??= this.shut(waitMs));
  }

  private async shut(waitMs: number): Promise<void> {
    await Promise.race([this.sending, new Promise((r) => setTimeout(r, waitMs).unref())]);
    this.closed = true;
    clearTimeout(this.timer);
    if (this.socket) await new Promise<void>((r) => this.socket!.end(() => r()));
    this.udp?.close();
    if (this.s.handOver) {
      mkdirSync(this.s.handOver, { recursive: true, mode: 0o700 });
      for (const f of this.spooled()) renameSync(path.join(this.s.spoolDir, f), path.join(this.s.handOver, f));
      rmSync(this.s.spoolDir, { recursive: true, force: true });
    }
  }
}
