// Keyed, deterministic replacements: the same input and site key give the same output in every process and on
// every node, and nobody without the key can compute one from an original value (an unkeyed hash of a known UID
// can be recomputed by anyone).
import { createHmac } from 'node:crypto';

// Study, series and frame-of-reference UIDs repeat across a study's instances: remember recent results
// (an HMAC costs more than the rest of a UID's handling). Keyed by key and UID; bounded.
const caches = new WeakMap<Buffer, Map<string, string>>();
const CACHE_SIZE = 50_000;

/** `2.25.` + the decimal value of the first 128 bits of HMAC-SHA-256(key, uid): ≤ 44 characters, no leading zero. */
export function remapUid(key: Buffer, uid: string): string {
  const clean = uid.replace(/[\0 ]+$/, '');
  let cache = caches.get(key);
  if (!cache) caches.set(key, (cache = new Map()));
  let mapped = cache.get(clean);
  if (mapped === undefined) {
    const digest = createHmac('sha256', key).update(clean).digest();
    mapped = '2.25.' + BigInt('0x' + digest.subarray(0, 16).toString('hex')).toString(10);
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
    cache.set(clean, mapped);
  }
  return mapped;
}

/** Hex HMAC-SHA-256 of a value, for the site profile's "hash" action. */
export function keyedHash(key: Buffer, value: string, maxLength = 64): string {
  return createHmac('sha256', key).update(value).digest('hex').slice(0, maxLength);
}
