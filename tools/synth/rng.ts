// A small seeded PRNG (sfc32, seeded from SHA-256 of a key) for synthetic data and seeded tests: the same key
// gives the same sequence on every machine, so a generated study or a failing seeded run can be replayed.
import { createHash } from 'node:crypto';
import { uidFromUuid } from '../../src/dicom/uid.js';

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(key: string) {
    const h = createHash('sha256').update(key).digest();
    [this.a, this.b, this.c, this.d] = [h.readUInt32LE(0), h.readUInt32LE(4), h.readUInt32LE(8), h.readUInt32LE(12)];
    for (let i = 0; i < 12; i++) this.next();
  }
  /** In [0, 1). */
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return (t >>> 0) / 4294967296;
  }
  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(list: readonly T[]): T {
    return list[Math.floor(this.next() * list.length)]!;
  }
  digits(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String(this.int(0, 9));
    return s;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }
}

/** A 2.25 UID from a UUIDv8 whose 122 free bits are SHA-256 of the key: deterministic and practically unique. */
export function uidFor(key: string): string {
  const h = createHash('sha256').update('dphiant-uid|' + key).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  return uidFromUuid(h.subarray(0, 16).toString('hex'));
}
