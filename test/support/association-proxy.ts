// A TCP proxy in front of a DICOM SCP that counts the associations a caller opens through it: connections, the PDUs
// the caller sends by type (A-ASSOCIATE-RQ, A-RELEASE-RQ, A-ABORT), the most connections open at once. It can also
// cut every open connection the moment its caller next sends on it (a TCP reset): what a caller sees of a PACS that
// closed an idle association when that close has not reached it yet. `bytesPerSecond` makes it a slow link: what
// the caller sends is passed on at that rate at most.
import { pduHeaders } from './pdu-scan.js';
import net, { type Socket } from 'node:net';
import { freePort } from './ports.js';

export interface AssociationProxy {
  port: number;
  /** Connections accepted (a DICOM caller opens one per association). */
  connections: number;
  /** Connections open now, and the most open at once. */
  open: number;
  peakOpen: number;
  /** PDUs the caller sent: A-ASSOCIATE-RQ, A-RELEASE-RQ, A-ABORT. */
  associateRequests: number;
  releaseRequests: number;
  aborts: number;
  /** Bytes the callers sent, in all. */
  bytesFromCallers: number;
  /** Connections reset by cutOnNextSend. */
  cut: number;
  /** Arms every open connection: the next bytes its caller sends reset it (caller and server side). Returns how many. */
  cutOnNextSend(): number;
  /** Resolves once no connection is open, or rejects after `timeoutMs`. */
  untilNoneOpen(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

const A_ASSOCIATE_RQ = 0x01;
const A_RELEASE_RQ = 0x05;
const A_ABORT = 0x07;

export async function startAssociationProxy(target: { host?: string; port: number; bytesPerSecond?: number }): Promise<AssociationProxy> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  const armed = new Set<Socket>();
  const proxy: AssociationProxy = {
    port,
    connections: 0,
    open: 0,
    peakOpen: 0,
    associateRequests: 0,
    releaseRequests: 0,
    aborts: 0,
    bytesFromCallers: 0,
    cut: 0,
    cutOnNextSend() {
      for (const s of sockets) armed.add(s);
      return armed.size;
    },
    async untilNoneOpen(timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (proxy.open > 0) {
        if (Date.now() > until) throw new Error(`${proxy.open} connection(s) still open after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
  const server = net.createServer((client) => {
    proxy.connections++;
    proxy.open++;
    proxy.peakOpen = Math.max(proxy.peakOpen, proxy.open);
    sockets.add(client);
    const upstream = net.connect(target.port, target.host ?? '127.0.0.1');
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      s.on('error', () => undefined);
    }
    client.on('close', () => {
      sockets.delete(client);
      armed.delete(client);
      proxy.open--;
      upstream.destroy();
    });
    upstream.on('close', () => client.destroy());
    upstream.pipe(client);
    // the caller's PDUs, counted by type
    const count = pduHeaders((type) => {
      if (type === A_ASSOCIATE_RQ) proxy.associateRequests++;
      else if (type === A_RELEASE_RQ) proxy.releaseRequests++;
      else if (type === A_ABORT) proxy.aborts++;
    });
    client.on('data', (chunk: Buffer) => {
      if (armed.has(client)) {
        armed.delete(client);
        proxy.cut++;
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      count(chunk);
      proxy.bytesFromCallers += chunk.length;
      if (target.bytesPerSecond) {
        // a slow link: the next chunk is read only once this one has had its time on the wire
        client.pause();
        const resume = () => (upstream.writableNeedDrain ? upstream.once('drain', () => client.resume()) : client.resume());
        upstream.write(chunk);
        setTimeout(resume, (chunk.length / target.bytesPerSecond) * 1000);
        return;
      }
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return proxy;
}
