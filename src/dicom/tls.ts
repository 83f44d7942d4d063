// DICOM TLS as both links speak it (PS3.15 B.9 points to BCP 195, RFC 9325; RFC 8996 retires TLS 1.0 and 1.1): the
// cipher suites offered, why a peer's handshake was refused, and a peer certificate's subject.
import type { TLSSocket } from 'node:tls';

/**
 * TLS 1.2 cipher suites: forward secret (ECDHE, DHE) with an AEAD cipher only, RFC 9325 section 4.2. TLS 1.3's suites
 * are all of that kind and stay Node's defaults. DCMTK's BCP 195 profiles (storescu, Orthanc 1.10.1) offer
 * ECDHE-RSA and DHE-RSA AES-GCM.
 */
export const BCP195_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
].join(':');

/** Why a TLS caller was refused: the reason label of dphiant_tls_refused_total. */
export type TlsRefusal =
  /** It offered only versions below the minimum (TLS 1.0, 1.1). */
  | 'protocol-version'
  /** It sent no certificate where one is required. */
  | 'no-certificate'
  /** Its certificate does not chain to the configured CA, or is expired, or not yet valid. */
  | 'untrusted-certificate'
  /** Its certificate is trusted but not the one its calling AE is bound to. */
  | 'subject-mismatch'
  /** Any other failed handshake: no common cipher suite, not TLS at all, too slow, gone before the end. */
  | 'handshake';

/** The refusal a failed server-side handshake stands for, from the error's code. */
export function handshakeRefusal(code: string | undefined): TlsRefusal {
  if (!code) return 'handshake';
  if (/UNSUPPORTED_PROTOCOL|PROTOCOL_VERSION|VERSION_TOO_LOW/.test(code)) return 'protocol-version';
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_REQUIRED/.test(code)) return 'no-certificate';
  return 'handshake';
}

/** A certificate's subject: each attribute (CN, O, OU… upper-cased) with its values. */
export type Subject = Record<string, string[]>;

/** The subject of the certificate the peer presented, or undefined when it presented none. */
export function peerSubject(socket: TLSSocket): Subject | undefined {
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.subject || Object.keys(cert).length === 0) return undefined;
  const subject: Subject = {};
  for (const [k, v] of Object.entries(cert.subject as unknown as Record<string, string | string[]>)) subject[k.toUpperCase()] = Array.isArray(v) ? v : [v];
  return subject;
}

/** A subject as one line (`CN=modality, O=Hospital`), for the log: a device's certificate, no patient data. */
export function subjectLine(subject: Subject | undefined): string {
  if (!subject) return '';
  return Object.entries(subject)
    .flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`))
    .join(', ');
}
