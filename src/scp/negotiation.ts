// Association negotiation: who may call, and which presentation contexts are accepted.
import { ACCEPTED_TRANSFER_SYNTAXES } from '../dicom/transfer-syntax.js';
import type { Caller } from '../config/index.js';
import { isStorageSopClass } from './storage-sop-classes.js';

export const VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1';

export type CallerCheck = { ok: true } | { ok: false; why: 'calling-aet' | 'called-aet' | 'host' };

/** Normalises '::ffff:127.0.0.1' to '127.0.0.1'. */
export function plainAddress(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

export function checkCaller(callers: Caller[], ourAet: string, callingAet: string, calledAet: string, remoteAddress: string): CallerCheck {
  if (calledAet.trim() !== ourAet) return { ok: false, why: 'called-aet' };
  const byAet = callers.filter((c) => c.aet === callingAet.trim());
  if (byAet.length === 0) return { ok: false, why: 'calling-aet' };
  const from = plainAddress(remoteAddress);
  if (!byAet.some((c) => c.host === '*' || c.host === from)) return { ok: false, why: 'host' };
  return { ok: true };
}

export type ContextDecision =
  | { accept: true; transferSyntaxUid: string }
  | { accept: false; reason: 'abstract-syntax' | 'transfer-syntax' };

/**
 * Verification with implicit LE (what PS3.7 requires everyone to support), every storage SOP class (and unknown
 * ones when allowed) with the first proposed transfer syntax we can forward as is; the caller's order is its
 * preference, and we never need to decode, so there is no reason to override it.
 */
export function decideContext(abstractSyntax: string, proposed: string[], acceptUnknownSopClasses: boolean): ContextDecision {
  if (abstractSyntax === VERIFICATION_SOP_CLASS) {
    const ts = proposed.find((t) => t === '1.2.840.10008.1.2') ?? proposed.find((t) => t === '1.2.840.10008.1.2.1');
    return ts ? { accept: true, transferSyntaxUid: ts } : { accept: false, reason: 'transfer-syntax' };
  }
  if (!isStorageSopClass(abstractSyntax) && !(acceptUnknownSopClasses && isPrivateSopClass(abstractSyntax)))
    return { accept: false, reason: 'abstract-syntax' };
  const ts = proposed.find((t) => ACCEPTED_TRANSFER_SYNTAXES.includes(t));
  return ts ? { accept: true, transferSyntaxUid: ts } : { accept: false, reason: 'transfer-syntax' };
}

/**
 * An unknown SOP class is a private one (a vendor's storage class): any valid UID outside the standard's root.
 * Standard UIDs missing from the storage list are other services (Q/R, worklist, print…) that we do not serve.
 */
function isPrivateSopClass(uid: string): boolean {
  return /^[0-9]+(\.[0-9]+)*$/.test(uid) && uid.length <= 64 && !uid.startsWith('1.2.840.10008.');
}
