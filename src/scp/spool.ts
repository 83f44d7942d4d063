// Where a C-STORE data set goes while it arrives: a file, written synchronously PDV by PDV, so memory stays flat
// whatever the instance size (dcmjs-dimse applies no backpressure to the socket; an async file stream would
// buffer the whole instance in memory). Bytes past the size limit, or past the spool's budget, are counted and
// dropped.
import { EventEmitter } from 'node:events';
import { closeSync, mkdirSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';

/** How often the free space is asked again (statfs): after this many bytes taken, or this long. */
const FREE_CHECK_BYTES = 16 * 1024 ** 2;
const FREE_CHECK_MS = 1000;

/** Write errors that mean the disk is full: answered like a full spool. */
export const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);

/**
 * The spool's room, shared by every association: the bytes of data sets in flight in spool files (received, not
 * yet forwarded and removed) under `maxBytes`, and the file system's free space over `minFreeBytes` (0: no floor).
 */
export class SpoolBudget {
  /** Bytes held by spool files now. */
  inFlight = 0;
  private freeAt = 0;
  private takenSinceCheck = Infinity;
  private free = Infinity;

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
    readonly minFreeBytes: number,
  ) {}

  /** Takes `n` bytes for a spool file; false, taking nothing, when they would pass the budget or the floor. */
  take(n: number): boolean {
    if (this.inFlight + n > this.maxBytes) return false;
    if (this.minFreeBytes > 0 && this.freeBytes() - n < this.minFreeBytes) return false;
    this.inFlight += n;
    this.takenSinceCheck += n;
    this.free -= n;
    return true;
  }

  release(n: number): void {
    this.inFlight -= n;
  }

  /** The spool file system's free space, as statfs said a moment ago (unknown: unlimited; a write then tells). */
  private freeBytes(): number {
    const now = Date.now();
    if (this.takenSinceCheck >= FREE_CHECK_BYTES || now - this.freeAt >= FREE_CHECK_MS) {
      try {
        const st = statfsSync(this.dir);
        this.free = st.bavail * st.bsize;
      } catch {
        this.free = Infinity;
      }
      this.freeAt = now;
      this.takenSinceCheck = 0;
    }
    return this.free;
  }
}

export class SpoolFile extends EventEmitter {
  readonly path: string;
  private fd: number | undefined;
  /** Bytes received, kept or not. */
  bytes = 0;
  /** Bytes this file holds of the budget. */
  private held = 0;
  /** Set when the data set grew past the limit; the file is then removed and the rest dropped. */
  oversized = false;
  /** Set when the spool's budget or free-space floor had no room for it; the file is then removed and the rest dropped. */
  full = false;
  /** Set when the disk refused to create or write the file (no space…); the rest is dropped. */
  writeError: string | undefined;

  constructor(
    dir: string,
    private readonly maxBytes: number,
    private readonly budget?: SpoolBudget,
  ) {
    super();
    this.path = path.join(dir, `${randomUUID()}.dcm`);
    try {
      mkdirSync(dir, { recursive: true });
      this.fd = openSync(this.path, 'w', 0o600);
    } catch (e) {
      this.writeError = (e as NodeJS.ErrnoException).code ?? 'open failed';
    }
  }

  /** Whether the disk had no room (a full spool to the sender), by the budget or by the file system. */
  get noSpace(): boolean {
    return this.full || (this.writeError !== undefined && NO_SPACE.has(this.writeError));
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
    if (this.budget) {
      if (!this.budget.take(chunk.length)) {
        this.full = true;
        this.drop();
        return true;
      }
      this.held += chunk.length;
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

  /** Closes and deletes the file and gives its bytes back to the budget (idempotent). */
  drop(): void {
    this.end();
    rmSync(this.path, { force: true });
    this.budget?.release(this.held);
    this.held = 0;
  }
}
