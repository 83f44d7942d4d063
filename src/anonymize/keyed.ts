// Keyed, deterministic replacements: the same input and site key give the same output in every process and on
// every node, and nobody without the key can compute one from an original value (an unkeyed hash of a known UID
// can be recomputed by anyone).
import { createHmac } from 'node:crypto';

/** `2.25.` + the decimal value of the first 128 bits of HMAC-SHA-256(key, uid): ≤ 44 characters, no leading zero. */
export function remapUid(key: Buffer, uid: string): string {
  const digest = createHmac('sha256', key).update(uid.replace(/[\0 ]+$/, '')).digest();
  return '2.25.' + BigInt('0x' + digest.subarray(0, 16).toString('hex')).toString(10);
}

/** Hex HMAC-SHA-256 of a value, for the site profile's "hash" action. */
export function keyedHash(key: Buffer, value: string, maxLength = 64): string {
  return createHmac('sha256', key).update(value).digest('hex').slice(0, maxLength);
}
