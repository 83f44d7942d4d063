// Certificates of the dev stack's DICOM TLS, made with the openssl command line: a CA, a certificate for the
// middleman (its SCP's server certificate, and its client certificate towards the PACS), one for the PACS Orthanc,
// one for the modality (Orthanc or storescu), each for 127.0.0.1 and localhost. Kept in .stack/tls/ and made only
// when missing; tests make other CAs and peers of their own with the same functions. Development only: the keys
// are unencrypted files, and a site's certificates come from its own CA (README, DICOM TLS).
//   node dist/tools/devstack/tls.js [dir]   makes what is missing and prints the files and the middleman's settings
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../../src/paths.js';
import type { ModalityEntry } from './orthanc.js';

export const DEV_TLS_DIR = path.join(repoRoot, '.stack', 'tls');

/** A PEM certificate and its unencrypted PEM private key. */
export interface CertifiedKey {
  cert: string;
  key: string;
  /** The certificate's subject as DPHIANT binds a calling AE to it (scp.callers, `AET@host#CN=…`). */
  subject: string;
}

export interface DevCertificates {
  dir: string;
  /** The dev CA: the one certificate every peer trusts. */
  ca: CertifiedKey;
  middleman: CertifiedKey;
  pacs: CertifiedKey;
  modality: CertifiedKey;
}

/** Days a dev certificate is valid: long enough never to expire under a working checkout. */
const DAYS = '3650';

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile('openssl', args, { cwd }, (err, _out, stderr) =>
      err ? reject(new Error(`openssl ${args[0]} failed (${err.message.split('\n')[0]}): ${stderr.trim()}`)) : resolve(),
    ),
  );
}

/**
 * RSA 2048 keys (BCP 195's floor): with an EC key, DCMTK 3.6.7's BCP 195 profiles (Orthanc 1.10.1, storescu) share no
 * TLS 1.2 cipher suite with the peer (measured: "no shared cipher"; TLS 1.3 works with either).
 */
const NEW_KEY = ['-newkey', 'rsa:2048', '-nodes'];

/** A self-signed CA `<name>.crt`/`<name>.key` in `dir`, unless both exist. */
export async function makeCa(dir: string, name: string, cn: string): Promise<CertifiedKey> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const out = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`), subject: `CN=${cn}` };
  if (existsSync(out.cert) && existsSync(out.key)) return out;
  await openssl(
    ['req', '-x509', ...NEW_KEY, '-keyout', out.key, '-out', out.cert, '-days', DAYS, '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  return out;
}

/**
 * A certificate `<name>.crt`/`<name>.key` in `dir` issued by `ca` to `/CN=<cn>`, for 127.0.0.1 and localhost, good
 * as a TLS server and as a client; unless both exist.
 */
export async function issue(dir: string, name: string, cn: string, ca: CertifiedKey): Promise<CertifiedKey> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const out = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`), subject: `CN=${cn}` };
  if (existsSync(out.cert) && existsSync(out.key)) return out;
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  writeFileSync(
    ext,
    ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=serverAuth,clientAuth', 'subjectAltName=IP:127.0.0.1,DNS:localhost', ''].join('\n'),
  );
  await openssl(['req', '-new', ...NEW_KEY, '-keyout', out.key, '-out', csr, '-subj', `/CN=${cn}`], dir);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', out.cert, '-days', DAYS, '-sha256', '-extfile', ext], dir);
  rmSync(csr);
  rmSync(ext);
  return out;
}

/** The dev stack's certificates in `dir` (.stack/tls), made when missing. */
export async function devCertificates(dir = DEV_TLS_DIR): Promise<DevCertificates> {
  const ca = await makeCa(dir, 'ca', 'DPHIANT dev CA');
  // one after the other: they share the CA's serial file
  const middleman = await issue(dir, 'middleman', 'dphiant', ca);
  const pacs = await issue(dir, 'pacs', 'pacs', ca);
  const modality = await issue(dir, 'modality', 'modality', ca);
  return { dir, ca, middleman, pacs, modality };
}

/**
 * Orthanc 1.10.1's DICOM TLS (configOverrides of startOrthanc): its DICOM port then speaks TLS only, with `own` as
 * its certificate (server and client), peers verified against `trusted`, a certificate required of every caller.
 */
export function orthancTls(own: CertifiedKey, trusted: string): Record<string, unknown> {
  return { DicomTlsEnabled: true, DicomTlsCertificate: own.cert, DicomTlsPrivateKey: own.key, DicomTlsTrustedCertificates: trusted, DicomTlsRemoteCertificateRequired: true };
}

/** A DicomModalities entry that Orthanc calls over TLS. */
export function overTls(entry: ModalityEntry): ModalityEntry {
  return { ...entry, UseDicomTls: true };
}

/**
 * The middleman's DPHIANT_* settings for TLS on both links: a TLS listener on `scpTlsPort` (beside the plain one)
 * with the middleman's certificate, callers' certificates verified against the CA; and TLS to the PACS, verified
 * against the CA, with the same certificate as its client certificate.
 */
export function middlemanTlsEnv(certs: Pick<DevCertificates, 'ca' | 'middleman'>, scpTlsPort: number): Record<string, string> {
  return {
    DPHIANT_SCP_TLS_PORT: String(scpTlsPort),
    DPHIANT_SCP_TLS_CERT: certs.middleman.cert,
    DPHIANT_SCP_TLS_KEY: certs.middleman.key,
    DPHIANT_SCP_TLS_CA: certs.ca.cert,
    DPHIANT_PACS_TLS_ENABLED: 'true',
    DPHIANT_PACS_TLS_CA: certs.ca.cert,
    DPHIANT_PACS_TLS_CERT: certs.middleman.cert,
    DPHIANT_PACS_TLS_KEY: certs.middleman.key,
  };
}

// run as a program: make what is missing, say where it is
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const certs = await devCertificates(process.argv[2] ? path.resolve(process.argv[2]) : DEV_TLS_DIR);
  console.log(`dev CA and certificates in ${certs.dir}:`);
  for (const k of ['ca', 'middleman', 'pacs', 'modality'] as const) console.log(`  ${k.padEnd(9)} ${certs[k].cert}  (${certs[k].subject})`);
  console.log('middleman settings for TLS on both links (TLS listener on 11113):');
  for (const [k, v] of Object.entries(middlemanTlsEnv(certs, 11113))) console.log(`  ${k}=${v}`);
}
