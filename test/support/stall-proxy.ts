// A TCP proxy in front of a real DICOM SCP (the PACS Orthanc) that makes the PACS "stop answering" chosen C-STOREs:
// it passes every byte both ways, except that it swallows the C-STORE-RSP of the chosen ordinals (counted over all
// connections) and from then on passes nothing more from the server on that connection, which it keeps open — what
// Orthanc 1.10.1 does when its storage race makes a store fail (issue 10). The PACS has stored the instance; the
// sender just never hears so.
import net, { type Socket } from 'node:net';

export interface StallProxy {
  port: number;
  /** C-STORE-RSPs passed on. */
  answered: number;
  /** C-STORE-RSPs swallowed (their connections were left open, silent). */
  swallowed: number;
  /** Connections the proxy accepted (one per association). */
  connections: number;
  close(): Promise<void>;
}

const P_DATA_TF = 0x04;
const C_STORE_RSP = 0x8001;

/** The CommandField of a command PDV (implicit VR little endian group 0000), or undefined. */
function commandField(command: Buffer): number | undefined {
  for (let off = 0; off + 8 <= command.length; ) {
    const group = command.readUInt16LE(off);
    const element = command.readUInt16LE(off + 2);
    const length = command.readUInt32LE(off + 4);
    if (group === 0x0000 && element === 0x0100 && length === 2 && off + 10 <= command.length) return command.readUInt16LE(off + 8);
    off += 8 + length;
  }
  return undefined;
}

/** True when a P-DATA-TF PDU (header included) holds the last fragment of a C-STORE-RSP command. */
function isStoreResponse(pdu: Buffer): boolean {
  if (pdu[0] !== P_DATA_TF) return false;
  for (let off = 6; off + 6 <= pdu.length; ) {
    const itemLength = pdu.readUInt32BE(off);
    const control = pdu[off + 5]!;
    // a PDV holds the whole command in practice (Orthanc's responses are one PDV of ~200 bytes)
    if ((control & 0x03) === 0x03 && commandField(pdu.subarray(off + 6, off + 4 + itemLength)) === C_STORE_RSP) return true;
    off += 4 + itemLength;
  }
  return false;
}

/** `stallAt`: 1-based ordinals of the C-STORE-RSPs to swallow. */
export function startStallProxy(o: { port: number; target: { host: string; port: number }; stallAt: number[] }): Promise<StallProxy> {
  const stallAt = new Set(o.stallAt);
  let responses = 0;
  const sockets = new Set<Socket>();
  const proxy: StallProxy = {
    port: o.port,
    answered: 0,
    swallowed: 0,
    connections: 0,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
  const server = net.createServer((client) => {
    proxy.connections++;
    const upstream = net.connect(o.target.port, o.target.host);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    let pending = Buffer.alloc(0);
    let silent = false;
    upstream.on('data', (chunk: Buffer) => {
      if (silent) return;
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 6) {
        const size = 6 + pending.readUInt32BE(2);
        if (pending.length < size) break;
        const pdu = pending.subarray(0, size);
        pending = pending.subarray(size);
        if (isStoreResponse(pdu)) {
          responses++;
          if (stallAt.has(responses)) {
            proxy.swallowed++;
            silent = true;
            return;
          }
          proxy.answered++;
        }
        client.write(pdu);
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(proxy);
    });
  });
}
