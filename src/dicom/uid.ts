// UIDs under the 2.25 root (PS3.5 B.2): "2.25." + the decimal value of a 128-bit UUID. No registration needed.
import { randomUUID } from 'node:crypto';

/** Fixed Implementation Class UID of DPHIANT (derived once from a random UUID; never change it). */
export const DPHIANT_IMPLEMENTATION_CLASS_UID = '2.25.169292558653409072031009511042254988814';
export const DPHIANT_IMPLEMENTATION_VERSION = 'DPHIANT_0.1';

/** The 2.25 UID of a UUID given as 32 hex digits, with or without dashes. At most 44 characters. */
export function uidFromUuid(uuid: string): string {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error(`not a UUID: ${uuid}`);
  return '2.25.' + BigInt('0x' + hex).toString(10);
}

/** A new random UID (2.25 + decimal of a random v4 UUID). */
export function newUid(): string {
  return uidFromUuid(randomUUID());
}

/** True when s is syntactically a UID: ≤ 64 chars, dot-separated numbers without leading zeros. */
export function isValidUid(s: string): boolean {
  return s.length > 0 && s.length <= 64 && /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(s);
}
