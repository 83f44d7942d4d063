// How the crosswalk protects what it stores: PHI fields are sealed with AES-256-GCM under the crosswalk key
// (which can be rotated), and patients are found by a blind index, HMAC-SHA-256 of the match key under the site
// key, so no plain identifier is ever stored or compared.
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

/** A short public name of a key, stored beside each sealed value, so a wrong or stale key is detected. */
export function keyId(key: Buffer): string {
  return createHmac('sha256', key).update('dphiant crosswalk key id').digest('hex').slice(0, 12);
}

export class Sealer {
  readonly keyId: string;
  private readonly others = new Map<string, Buffer>();

  /** `previous`: keys that may still have sealed some values (during a rekey). */
  constructor(
    private readonly key: Buffer,
    previous: Buffer[] = [],
  ) {
    this.keyId = keyId(key);
    for (const k of previous) this.others.set(keyId(k), k);
  }

  /** "v1:<key id>:<base64 of iv | tag | ciphertext>" */
  seal(value: unknown): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
    return `v1:${this.keyId}:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64')}`;
  }

  open<T>(sealed: string): T {
    const [version, id, data] = sealed.split(':');
    if (version !== 'v1' || !id || !data) throw new Error('crosswalk: not a sealed value');
    const key = id === this.keyId ? this.key : this.others.get(id);
    if (!key) throw new Error(`crosswalk: value sealed with key ${id}, not with the configured crosswalk key ${this.keyId}`);
    const raw = Buffer.from(data, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    return JSON.parse(Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')) as T;
  }

  sealedWith(sealed: string): string {
    return sealed.split(':')[1] ?? '';
  }
}

/** The blind index of a match key (hex HMAC-SHA-256 under the site key). */
export function blindIndex(siteKey: Buffer, kind: string, parts: string[]): string {
  const h = createHmac('sha256', siteKey).update(kind);
  for (const p of parts) h.update('\0').update(p);
  return h.digest('hex');
}

/** Seals bytes (quarantined instances) under a key: iv | tag | ciphertext. */
export function sealBytes(key: Buffer, data: Uint8Array): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([cipher.update(data), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

export function openBytes(key: Buffer, sealed: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  decipher.setAuthTag(sealed.subarray(12, 28));
  return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]);
}
