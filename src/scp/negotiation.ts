// Association negotiation: who may call, and which presentation contexts are accepted.
import { ACCEPTED_TRANSFER_SYNTAXES } from '../dicom/transfer-syntax.js';
import { subjectAttributes, type Caller } from '../config/index.js';
import type { Subject } from '../dicom/tls.js';
import { isStorageSopClass } from './storage-sop-classes.js';

export const VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1';

export type CallerCheck = { ok: true } | { ok: false; why: 'calling-aet' | 'called-aet' | 'host' | 'subject' };

/** Normalises '::ffff:127.0.0.1' to '127.0.0.1'. */
export function plainAddress(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/**
 * Whether the caller may associate: our AE called, its calling AE listed with its host, and, for an entry bound to a
 * certificate subject, a certificate with that subject (`peer`: the subject of the verified certificate the caller
 * presented over TLS; undefined on the plain listener or without a certificate).
 */
export function checkCaller(callers: Caller[], ourAet: string, callingAet: string, calledAet: string, remoteAddress: string, peer?: Subject): CallerCheck {
  if (calledAet.trim() !== ourAet) return { ok: false, why: 'called-aet' };
  const byAet = callers.filter((c) => c.aet === callingAet.trim());
  if (byAet.length === 0) return { ok: false, why: 'calling-aet' };
  const from = plainAddress(remoteAddress);
  const byHost = byAet.filter((c) => c.host === '*' || c.host === from);
  if (byHost.length === 0) return { ok: false, why: 'host' };
  if (!byHost.some((c) => c.subject === undefined || subjectMatches(c.subject, peer))) return { ok: false, why: 'subject' };
  return { ok: true };
}

/** Every attribute=value of the binding is among the subject's values (attributes the binding does not name are free). */
export function subjectMatches(binding: string, subject: Subject | undefined): boolean {
  const wanted = subjectAttributes(binding);
  if (!subject || !wanted) return false;
  return wanted.every(([attribute, value]) => subject[attribute]?.includes(value) ?? false);
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
