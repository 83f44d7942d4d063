// Where a C-STORE data set goes while it arrives: memory, while the spool's memory budget has room, else a file,
// written synchronously PDV by PDV, so memory stays bounded whatever the instance size (dcmjs-dimse applies no
// backpressure to the socket; an async file stream would buffer the whole instance in memory). An instance that
// outgrows the memory budget moves to its file. Neither outlives the process: a data set nobody was told is stored
// has no need to survive a crash (the sender still has it), so memory is as safe as the disk here, and spares
// a write, a read and an unlink per instance on the thread that serves DICOM. Bytes past the size limit, or past
// the spool's budget, are counted and dropped.
import { EventEmitter } from 'node:events';
import { closeSync, mkdirSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';

/** How often the free space is asked again (statfs): after this many bytes taken, or this long. */
const FREE_CHECK_BYTES = 16 * 1024 ** 2;
const FREE_CHECK_MS = 1000;

/**
 * A data set larger than this goes to its file whatever the memory budget: a large instance gains little from memory
 * (its write is small beside moving its bytes) and would hold much of the budget (and of the RSS) alone.
 */
export const MEMORY_MAX_INSTANCE_BYTES = 16 * 1024 ** 2;

/** Write errors that mean the disk is full: answered like a full spool. */
export const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);

/**
 * The spool's room, shared by every association: the bytes of data sets in flight in spool files (received, not
 * yet forwarded and removed) under `maxBytes`, and the file system's free space over `minFreeBytes` (0: no floor).
 */
export class SpoolBudget {
  /** Bytes held by spool files and in memory now. */
  inFlight = 0;
  /** Of those, bytes held in memory. */
  inMemory = 0;
  private freeAt = 0;
  private takenSinceCheck = Infinity;
  private free = Infinity;

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
    readonly minFreeBytes: number,
    /** Bytes of data sets held in memory at most, together (0: every data set goes to a file). */
    readonly memoryMaxBytes = 0,
  ) {}

  /** Takes `n` bytes of memory (already taken of the budget); false, taking nothing, when they do not fit. */
  takeMemory(n: number): boolean {
    if (this.inMemory + n > this.memoryMaxBytes) return false;
    this.inMemory += n;
    return true;
  }

  releaseMemory(n: number): void {
    this.inMemory -= n;
  }

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
  /** Where the bytes go now: memory, the file, or nowhere (refused, failed or dropped). */
  private sink: 'memory' | 'file' | 'none' = 'memory';
  /** The file was (or may have been) created: drop() removes it. */
  private onDisk = false;
  private fd: number | undefined;
  private chunks: Buffer[] = [];
  /** The whole data set, once ended, when it stayed in memory. */
  data: Buffer | undefined;
  /** Bytes received, kept or not. */
  bytes = 0;
  /** Bytes this spool holds of the budget, and of those in memory. */
  private held = 0;
  private heldInMemory = 0;
  /** Set when the data set grew past the limit; the file is then removed and the rest dropped. */
  oversized = false;
  /** Set when the spool's budget or free-space floor had no room for it; the file is then removed and the rest dropped. */
  full = false;
  /** Set when the disk refused to create or write the file (no space…); the rest is dropped. */
  writeError: string | undefined;

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
    private readonly budget?: SpoolBudget,
    /** Given each chunk the spool keeps, as it is kept (a forward under way while the data set arrives). */
    private readonly tap?: (chunk: Buffer) => void,
  ) {
    super();
    this.path = path.join(dir, `${randomUUID()}.dcm`);
    if (!budget?.memoryMaxBytes) this.toFile();
  }

  /** Whether the disk had no room (a full spool to the sender), by the budget or by the file system. */
  get noSpace(): boolean {
    return this.full || (this.writeError !== undefined && NO_SPACE.has(this.writeError));
  }

  /** Moves to the file: what memory held is written first and given back to the memory budget. False: it failed. */
  private toFile(): boolean {
    const held = this.chunks;
    this.chunks = [];
    this.budget?.releaseMemory(this.heldInMemory);
    this.heldInMemory = 0;
    this.onDisk = true;
    try {
      mkdirSync(this.dir, { recursive: true });
      this.fd = openSync(this.path, 'w', 0o600);
      this.sink = 'file';
      for (const c of held) this.writeFile(c);
      return true;
    } catch (e) {
      this.failed(e, 'open failed');
      return false;
    }
  }

  private writeFile(chunk: Buffer): void {
    for (let off = 0; off < chunk.length; ) off += writeSync(this.fd!, chunk, off, chunk.length - off);
  }

  private failed(e: unknown, what: string): void {
    this.writeError = (e as NodeJS.ErrnoException).code ?? what;
    this.drop();
  }

  /** Called by dcmjs-dimse for each PDV of the data set. Always returns true: nothing is buffered beyond the budget. */
  write(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    if (this.sink === 'none') return true;
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
    if (this.sink === 'memory') {
      if (this.heldInMemory + chunk.length <= MEMORY_MAX_INSTANCE_BYTES && this.budget!.takeMemory(chunk.length)) {
        this.chunks.push(chunk);
        this.heldInMemory += chunk.length;
        this.tap?.(chunk);
        return true;
      }
      if (!this.toFile()) return true;
    }
    try {
      this.writeFile(chunk);
      this.tap?.(chunk);
    } catch (e) {
      this.failed(e, 'write failed');
    }
    return true;
  }

  end(): this {
    if (this.sink === 'memory') {
      this.data = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.heldInMemory);
      this.chunks = [];
    }
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
    return this;
  }

  /** Closes and deletes the file, lets go of the bytes in memory, gives both back to the budget (idempotent). */
  drop(): void {
    this.end();
    if (this.onDisk) rmSync(this.path, { force: true });
    this.sink = 'none';
    this.data = undefined;
    this.budget?.release(this.held);
    this.budget?.releaseMemory(this.heldInMemory);
    this.held = 0;
    this.heldInMemory = 0;
  }
}
