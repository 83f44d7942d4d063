// Watches the PDU framing of an incoming connection beside dcmjs-dimse, which would otherwise keep
// concatenating bytes for any declared PDU length (a 4 GB header would exhaust memory) and accepts
// any type byte until it fails. Calls `violation` once and stops watching.
import type { Socket } from 'node:net';

const PDU_TYPES = new Set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);

export class PduGuard {
  private header = Buffer.alloc(6);
  private headerFill = 0;
  /** Bytes of the current PDU body still to come. */
  private remaining = 0;
  private done = false;

  constructor(
    socket: Socket,
    private readonly maxPduLength: number,
    private readonly violation: (why: string) => void,
  ) {
    socket.on('data', (chunk: Buffer) => this.scan(chunk));
  }

  private scan(chunk: Buffer): void {
    let off = 0;
    while (!this.done && off < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - off);
        this.remaining -= n;
        off += n;
        continue;
      }
      const n = Math.min(6 - this.headerFill, chunk.length - off);
      chunk.copy(this.header, this.headerFill, off, off + n);
      this.headerFill += n;
      off += n;
      if (this.headerFill < 6) return;
      this.headerFill = 0;
      const type = this.header[0]!;
      const length = this.header.readUInt32BE(2);
      if (!PDU_TYPES.has(type)) return this.fail(`unknown PDU type 0x${type.toString(16)}`);
      if (length > this.maxPduLength) return this.fail(`PDU length ${length} over ${this.maxPduLength}`);
      this.remaining = length;
    }
  }

  private fail(why: string): void {
    this.done = true;
    this.violation(why);
  }
}
