// A bit-preserving DCMTK storescp: records exactly the data set bytes a sender puts on the wire.
// DCMTK senders re-encode while sending (storescu drops Data Set Trailing Padding and gives sequences explicit
// lengths; Orthanc re-deflates), so "the original" a forwarder must preserve is what this capture receives
// from the same sender, not the file the sender read.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { datasetBytes } from './files.js';
import { freePort } from './ports.js';
import { echoscu } from './dcmtk.js';

export interface Capture {
  aet: string;
  port: number;
  /** Data set bytes received for this SOP Instance UID (deflated ones inflated). */
  received(sopInstanceUid: string): { ts: string; bytes: Buffer };
  stop(): Promise<void>;
}

/**
 * `maxPdu`: the largest PDU it takes (DCMTK's default 16384); `accept`: the transfer syntaxes it accepts, every one
 * it knows (the default), the uncompressed ones, or implicit VR little endian only; `fork`: one process per
 * association, so that several are served at once (without it storescp serves one association at a time, and
 * the next caller waits for its A-ASSOCIATE-AC until the current one is released).
 */
export async function startCapture(dir: string, aet = 'CAPTURE', o: { maxPdu?: number; accept?: 'all' | 'uncompressed' | 'implicit'; fork?: boolean } = {}): Promise<Capture> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const args = [
    '-aet',
    aet,
    '+B',
    ...{ all: ['+xa'], uncompressed: [], implicit: ['+xi'] }[o.accept ?? 'all'],
    ...(o.maxPdu ? ['-pdu', String(o.maxPdu)] : []),
    ...(o.fork ? ['--fork'] : []),
    '-od',
    dir,
    String(port),
  ];
  const child: ChildProcess = spawn('storescp', args, {
    env: { ...process.env, TCP_NODELAY: '1' },
    stdio: 'ignore',
  });
  for (let i = 0; i < 100; i++) {
    if ((await echoscu({ port, callingAet: 'PROBE', calledAet: aet })).code === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    aet,
    port,
    received(uid) {
      const name = readdirSync(dir).find((f) => f.endsWith('.' + uid));
      if (!name) throw new Error(`capture has no instance ${uid}`);
      return datasetBytes(readFileSync(path.join(dir, name)));
    },
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
