// Where a C-STORE data set goes while it arrives: a file, written synchronously PDV by PDV, so memory stays flat
// whatever the instance size (dcmjs-dimse applies no backpressure to the socket; an async file stream would
// buffer the whole instance in memory). Bytes past the size limit are counted and dropped.
import { EventEmitter } from 'node:events';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';

export class SpoolFile extends EventEmitter {
  readonly path: string;
  private fd: number | undefined;
  /** Bytes received, kept or not. */
  bytes = 0;
  /** Set when the data set grew past the limit; the file is then removed and the rest dropped. */
  oversized = false;
  /** Set when the disk refused a write (no space…); the rest is dropped. */
  writeError: string | undefined;

  constructor(
    dir: string,
    private readonly maxBytes: number,
  ) {
    super();
    mkdirSync(dir, { recursive: true });
    this.path = path.join(dir, `${randomUUID()}.dcm`);
    this.fd = openSync(this.path, 'w', 0o600);
  }

  /** Called by dcmjs-dimse for each PDV of the data set. Always returns true: nothing is buffered. */
  write(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    if (this.fd === undefined) return true;
    if (this.bytes > this.maxBytes) {
      this.oversized = true;
      this.drop();
      return true;
    }
    try {
      for (let off = 0; off < chunk.length; ) off += writeSync(this.fd, chunk, off, chunk.length - off);
    } catch (e) {
      this.writeError = (e as NodeJS.ErrnoException).code ?? 'write failed';
      this.drop();
    }
    return true;
  }

  end(): this {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
    return this;
  }

  /** Closes and deletes the file (idempotent). */
  drop(): void {
    this.end();
    rmSync(this.path, { force: true });
  }
}
