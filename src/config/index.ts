// The one home of DPHIANT's configuration: defaults (the addresses of the dev stack in the README, but devStack off,
// so its credentials and created keys are refused), a JSON file, then DPHIANT_* environment variables, validated
// once at start-up. Every setting is documented where it is defined.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';

/** The PS3.15 Table E.1-1 options, as the configuration names them (columns of the table's data file, src/anonymize/table.ts). */
export const OPTION_KEYS = [
  'retainSafePrivate',
  'retainUIDs',
  'retainDeviceIdentity',
  'retainInstitutionIdentity',
  'retainPatientCharacteristics',
  'retainLongFullDates',
  'retainLongModifiedDates',
  'cleanDescriptors',
  'cleanStructuredContent',
  'cleanGraphics',
] as const;
export type OptionKey = (typeof OPTION_KEYS)[number];

export interface Caller {
  /** Calling AE title the SCP accepts. */
  aet: string;
  /** IP address the association must come from; '*' accepts any host. */
  host: string;
  /**
   * Binds the AE to a certificate: attribute=value pairs separated by '/' (`CN=ct1` or `O=Hospital/CN=ct1`), each of
   * which the subject of the caller's certificate must have. Such an AE is accepted over TLS only; unset: any
   * trusted certificate, or none on the plain listener. Written `AET@host#O=Hospital/CN=ct1` in DPHIANT_SCP_CALLERS.
   */
  subject?: string;
}

/** The TLS versions DICOM TLS may be set to start at: BCP 195 (RFC 8996) forbids TLS 1.0 and 1.1. */
export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];

export interface WebUser {
  username: string;
  /** scrypt$N$r$p$<salt hex>$<hash hex> */
  passwordHash: string;
  /** viewer: aliases, pipeline, quarantine; reidentifier: also reveals identities and reads the audit log. */
  role: 'viewer' | 'reidentifier';
}

/** The dev stack's users, demo/demo (reidentifier) and viewer/viewer; refused outside the dev stack. */
export const DEV_USERS: WebUser[] = [
  { username: 'demo', role: 'reidentifier', passwordHash: 'scrypt$16384$8$1$64706869616e742d6465762d64656d6f$cd5ba46bba91f6f9cc146dbc7c53e01e58376561978a8c2fc3d565da3e7ee449' },
  { username: 'viewer', role: 'viewer', passwordHash: 'scrypt$16384$8$1$64706869616e742d6465762d766965776572$8e85c84562c02ec12fc0fc6f69e80ee89b3cf86cae9498ed79d36e8d85c32aef' },
];

export interface Config {
  /** Holds the journal, the embedded crosswalk, the development key, the spool and the quarantine. */
  dataDir: string;
  /** pino level: fatal, error, warn, info, debug, trace, silent. */
  logLevel: string;
  /**
   * True only in the dev stack (`make demo`, the tests, the demo compose file): allows the default PACS and web
   * credentials and creates missing keys in the data directory. Off by default, so a site's middleman refuses both.
   */
  devStack: boolean;
  scp: {
    /** Our AE title: the called AE the modalities must use. */
    aet: string;
    /** Address the DICOM listener binds. */
    host: string;
    /** Port of the DICOM listener. */
    port: number;
    /** Calling AEs (with their hosts, and the certificate subject an AE may be bound to: `AET@host#CN=ct1`) allowed to associate. */
    callers: Caller[];
    /** Associations served at once; more are rejected (transient, local limit exceeded). */
    maxAssociations: number;
    /** Larger instances are refused with status 0xA700 after their bytes are discarded. */
    maxInstanceBytes: number;
    /** Accept SOP classes that are not storage classes of the standard (vendor-private storage). */
    acceptUnknownSopClasses: boolean;
    /** Time allowed between connect and an accepted association; the connection is then closed. */
    associationTimeoutMs: number;
    /** Connections that have not (yet) associated, at once; more are closed at once (a flood of idle sockets). */
    maxPendingConnections: number;
    /**
     * Bytes of data sets in flight in spool files, all associations together; an instance whose bytes would pass it
     * is drained, dropped and refused with 0xA700 "DPHIANT spool full". At least scp.maxInstanceBytes.
     */
    spoolMaxBytes: number;
    /** Free space the spool's file system keeps (statfs); below it instances are refused like a full spool. 0 = no floor. */
    spoolMinFreeBytes: number;
    /**
     * Of scp.spoolMaxBytes, the bytes of data sets in flight kept in memory instead of spool files, all associations
     * together; a data set that outgrows it, or 16 MiB, moves to its spool file. 0: every data set goes to a file.
     */
    spoolMemoryMaxBytes: number;
    /**
     * Idle time allowed on an association: since the last PDU of the caller or our last answer. The caller is
     * silent while it waits for our C-STORE answer, so this must exceed the longest wait for one
     * (longestStoreAnswerMs: pacs.storeTimeoutMs + the REST identify bound + a margin); checked at start-up.
     */
    pduTimeoutMs: number;
    /** DICOM TLS (README, DICOM TLS): a second listener beside the plain one, on scp.host. */
    tls: {
      /** Port of the TLS listener; 0 = none. */
      port: number;
      /** PEM file of its certificate (chain). */
      cert: string;
      /** PEM file of its private key (without a passphrase). */
      key: string;
      /** PEM file of the CA certificates (or the callers' own certificates) a caller's certificate must chain to. */
      ca: string;
      /** A caller without a certificate is refused at the handshake; false: let it associate, unless its AE is bound to a subject. */
      requireClientCert: boolean;
      /** The lowest TLS version accepted: TLSv1.2 or TLSv1.3 (BCP 195: never lower). */
      minVersion: TlsVersion;
      /** The plain listener (scp.port) stays on beside the TLS one; false: TLS only. */
      plain: boolean;
    };
  };
  pacs: {
    /** The PACS's AE title: where raw instances are forwarded over C-STORE. */
    aet: string;
    /** The PACS's DICOM host. */
    host: string;
    /** The PACS's DICOM port. */
    port: number;
    /** Our AE title when we call the PACS. */
    callingAet: string;
    /** TCP connect and A-ASSOCIATE-AC of one forward. */
    connectTimeoutMs: number;
    /**
     * A forward in which no byte moves to or from the PACS for this long is aborted; one that had its association
     * is made once more on a fresh one (the PACS de-duplicates the SOP Instance UID), else the sender is refused.
     */
    noProgressTimeoutMs: number;
    /** Bound on the whole forward of one instance, its retry included; then the sender is refused (0xA700). */
    storeTimeoutMs: number;
    /**
     * Associations to the PACS kept open and reused between forwards, at most (a forward beyond them waits for a
     * free one, within pacs.storeTimeoutMs). Orthanc serves DicomThreadsCount (default 4) associations at a time,
     * each holding a thread while open, idle ones too.
     */
    maxAssociations: number;
    /**
     * An association to the PACS idle this long is released; keep it well under the PACS's own idle limit
     * (Orthanc: DicomScpTimeout, 30 s). 0: each association is released after its instance (no reuse).
     */
    idleTimeoutMs: number;
    /**
     * Cut-through forwarding: the C-STORE to the PACS begins at the data set's first fragment and carries each as it
     * arrives, its last held back until the instance is checked and journalled (the sender's answer is still the
     * PACS's). false: each data set is forwarded once it has arrived whole (store and forward).
     */
    cutThrough: boolean;
    /** Orthanc REST base URL. */
    url: string;
    /** Login of the REST API. */
    username: string;
    /** Its password; the dev stack's demo password is refused outside the dev stack. */
    password: string;
    /** DICOM TLS to the PACS (README, DICOM TLS): every association to it, forwards and C-ECHO alike. */
    tls: {
      /** Associate with the PACS over TLS (its DICOM port must speak TLS: Orthanc's DicomTlsEnabled). */
      enabled: boolean;
      /** PEM file of the CA certificates (or the PACS's own certificate) the PACS's certificate must chain to. */
      ca: string;
      /** PEM file of our client certificate (chain), when the PACS asks for one (Orthanc: DicomTlsRemoteCertificateRequired). */
      cert: string;
      /** PEM file of its private key (without a passphrase). */
      key: string;
      /** The lowest TLS version accepted: TLSv1.2 or TLSv1.3. */
      minVersion: TlsVersion;
      /** The name the PACS's certificate must carry (subjectAltName), also sent as SNI; '' = pacs.host. */
      servername: string;
    };
  };
  web: {
    /** Address of the web UI, its REST API, /metrics, /healthz and /readyz. */
    host: string;
    /** Their port. */
    port: number;
    /** Who may log in: scrypt password hashes (`dphiant web hash-password`), role viewer or reidentifier. */
    users: WebUser[];
    /** Sessions end after this long without a request of the user (the dashboard's polls do not count). */
    sessionIdleMs: number;
    /** Sessions end this long after the login, however active. */
    sessionMaxAgeMs: number;
    /**
     * Which proxies in front of the web UI to believe about the client address (X-Forwarded-For), as fastify's
     * trustProxy: false = none (the peer is the client), true = any, a hop count, or a list of addresses/CIDRs
     * (or loopback, linklocal, uniquelocal). The per-address login limit counts the address found this way.
     */
    trustProxy: boolean | number | string[];
    tls: {
      /** PEM file of the web UI's certificate (chain): with tls.key set too, HTTPS only and cookies Secure. */
      cert: string;
      /** PEM file of its private key. */
      key: string;
    };
    /** Orthanc Explorer of the modality, linked from the dashboard (the PACS's comes from pacs.url). */
    modalityExplorerUrl: string;
  };
  /** IHE ATNA audit records (src/audit): PS3.15 A.5 messages over syslog to the hospital's audit record repository. */
  audit: {
    /** '' = none; tls://host:port (RFC 5425, the ATNA default) or udp://host:port (RFC 5426). */
    repository: string;
    /** PEM file of the CA that signed the repository's certificate (needed over TLS). */
    ca: string;
    /** PEM file of this node's client certificate, when the repository asks for one. */
    cert: string;
    /** PEM file of its private key. */
    key: string;
    /** AuditSourceID of the messages; '' = the host name. */
    sourceId: string;
  };
  /** Site key file (64 hex characters) behind UID remapping and keyed hashes; '' = the data directory's development key. */
  keyFile: string;
  pipeline: {
    /** false: forward only, jobs stay IN_PACS and the PACS keeps raw instances (diagnosis and tests, never production). */
    enabled: boolean;
    /** Instances de-identified at once, at most: one, and one more for every 4 waiting. */
    concurrency: number;
    /**
     * Worker threads the engine runs in (parsing, burned-in text, de-identification, verification), off the thread
     * that serves DICOM and the web; 0: one per CPU, at most 4.
     */
    threads: number;
    /**
     * Failed attempts of a transient failure (PACS REST API, crosswalk, disk) after which the job is reported stuck:
     * logged at error level and counted in status and metrics. It keeps retrying: only permanent failures quarantine.
     */
    stuckAfterAttempts: number;
    /**
     * While the PACS REST API or the crosswalk has failed for longer than this, new C-STOREs are refused with 0xA700
     * before forwarding (the sender keeps its copy) and /readyz answers 503.
     */
    backpressureAfterMs: number;
    /** Unfinished jobs (IN_PACS + DEIDENTIFIED) at which new C-STOREs are refused with 0xA700; 0 = no bound. */
    maxBacklog: number;
    /** Backoff between attempts: base × 2^(attempt-1), capped. */
    retryBaseMs: number;
    /** The cap of that backoff. */
    retryMaxMs: number;
    /** Received bytes kept in memory for the worker (larger instances are fetched back from the PACS). */
    handoffMaxBytes: number;
    /** Larger instances are never kept in memory: the worker fetches them back from the PACS. */
    handoffMaxInstanceBytes: number;
    /** How often the reconciler looks for raw instances in the PACS that no job covers (0 = only at start-up). */
    reconcileIntervalMs: number;
    /**
     * Which raw instances without a job the reconciler takes in. 'own': only those this middleman stored (Orthanc's
     * RemoteAET metadata = pacs.callingAet, Origin DicomProtocol); others are reported and left alone. 'all': every
     * raw instance, REST uploads and other senders' included, for a PACS that receives through DPHIANT only.
     */
    reconcileAdopt: 'own' | 'all';
    /**
     * Days the journal keeps finished jobs (DONE, REJECTED, PURGED) after their last change; pruned at start-up and
     * hourly. QUARANTINED and unfinished jobs are always kept. 0 = keep forever.
     */
    retainFinishedDays: number;
    /**
     * Several nodes (src/pipeline/cluster.ts): the grace time after which a node that stopped renewing its lease in
     * the shared crosswalk database (crosswalk.url) is presumed dead, and one other node takes over its unfinished
     * instances. The same on every node; far above the nodes' clock skew and the longest step of one instance.
     * 0 = off: a node's unfinished instances wait for it to come back.
     */
    takeoverAfterMs: number;
  };
  crosswalk: {
    /** '' = embedded SQLite file <dataDir>/crosswalk.sqlite; a mongodb:// or mongodb+srv:// URL selects MongoDB. */
    url: string;
    /** File of the AES-256-GCM key sealing the crosswalk's PHI (64 hex characters, mode 0600). */
    keyFile: string;
    /** The same key given directly (64 hex characters); for containers. */
    key: string;
    /** id: PatientID + IssuerOfPatientID; demographics: PatientName + PatientBirthDate + PatientSex. */
    matchKey: 'id' | 'demographics';
    /**
     * Instances with no patient identity at all (no PatientID, name, birth date or sex: phantoms, secondary
     * captures, test objects). per-study: one alias per Study Instance UID; single: one "unknown patient" alias.
     */
    unidentified: 'per-study' | 'single';
    /** random: prefix + 8 random base-32 characters; counter: prefix + an 8-digit counter. */
    aliasPattern: 'random' | 'counter';
    /** The alias IDs' prefix: 1-8 upper-case letters or digits. */
    aliasPrefix: string;
    /** Range of the random per-patient date offset, in days (Modified Dates option). */
    dateOffsetMinDays: number;
    /** Its upper end. */
    dateOffsetMaxDays: number;
  };
  /** De-identification: the PS3.15 options (all off = the basic profile) and an optional site profile file. */
  anonymize: {
    /** A site profile file (JSON) that overrides the action of any attribute; '' = none. */
    profile: string;
    /** Burned-in text in pixels (README, Burned-in text). */
    pixels: {
      /** on: instances at risk (Burned In Annotation YES, a risky SOP class or modality, a site rule) are cleaned or quarantined; off: pixels pass unexamined. */
      gate: 'on' | 'off';
      /** tesseract: OCR with Debian's tesseract-ocr in a child process; off: site masks only (an at-risk instance no mask covers is quarantined). */
      ocr: 'tesseract' | 'off';
      /** The tesseract program (a name on PATH or a path). */
      ocrCommand: string;
      /** One instance's OCR may take this long before it counts as failed (quarantine). */
      ocrTimeoutMs: number;
      /** Frames OCR reads per instance; longer multi-frame images are sampled evenly and blanked with the union of what was found. */
      ocrFrames: number;
      /** Site masks and rules (JSON) on top of the shipped src/anonymize/data/burned-in.json; '' = the shipped file alone. */
      siteFile: string;
    };
  } & Record<OptionKey, boolean>;
}

export const DEFAULT_CONFIG: Config = {
  dataDir: './data',
  logLevel: 'info',
  devStack: false,
  scp: {
    aet: 'DPHIANT',
    host: '127.0.0.1',
    port: 11112,
    callers: [{ aet: 'MODALITY', host: '127.0.0.1' }],
    maxAssociations: 32,
    maxInstanceBytes: 2 * 1024 ** 3,
    acceptUnknownSopClasses: false,
    associationTimeoutMs: 30_000,
    maxPendingConnections: 16,
    spoolMaxBytes: 4 * 1024 ** 3,
    spoolMinFreeBytes: 1024 ** 3,
    spoolMemoryMaxBytes: 256 * 1024 ** 2,
    pduTimeoutMs: 150_000,
    tls: { port: 0, cert: '', key: '', ca: '', requireClientCert: true, minVersion: 'TLSv1.2', plain: true },
  },
  pacs: {
    aet: 'PACS',
    host: '127.0.0.1',
    port: 4242,
    callingAet: 'DPHIANT',
    connectTimeoutMs: 10_000,
    noProgressTimeoutMs: 20_000,
    storeTimeoutMs: 120_000,
    maxAssociations: 4,
    idleTimeoutMs: 5000,
    cutThrough: true,
    url: 'http://127.0.0.1:8042',
    username: 'demo',
    password: 'demo',
    tls: { enabled: false, ca: '', cert: '', key: '', minVersion: 'TLSv1.2', servername: '' },
  },
  web: { host: '127.0.0.1', port: 8043, users: DEV_USERS, sessionIdleMs: 30 * 60_000, sessionMaxAgeMs: 8 * 3_600_000, trustProxy: false, tls: { cert: '', key: '' }, modalityExplorerUrl: 'http://127.0.0.1:8044/app/explorer.html' },
  audit: { repository: '', ca: '', cert: '', key: '', sourceId: '' },
  keyFile: '',
  pipeline: { enabled: true, concurrency: 4, threads: 0, stuckAfterAttempts: 10, backpressureAfterMs: 60_000, maxBacklog: 10_000, retryBaseMs: 1000, retryMaxMs: 30_000, handoffMaxBytes: 256 * 1024 ** 2, handoffMaxInstanceBytes: 64 * 1024 ** 2, reconcileIntervalMs: 30_000, reconcileAdopt: 'own', retainFinishedDays: 30, takeoverAfterMs: 0 },
  crosswalk: { url: '', keyFile: '', key: '', matchKey: 'id', unidentified: 'per-study', aliasPattern: 'random', aliasPrefix: 'DPH', dateOffsetMinDays: -3650, dateOffsetMaxDays: -365 },
  anonymize: { profile: '', pixels: { gate: 'on', ocr: 'tesseract', ocrCommand: 'tesseract', ocrTimeoutMs: 60_000, ocrFrames: 16, siteFile: '' }, ...(Object.fromEntries(OPTION_KEYS.map((k) => [k, false])) as Record<OptionKey, boolean>) },
};

/** Keys whose values are masked by `config show`. */
const SECRET_KEYS = new Set(['pacs.password', 'crosswalk.key']);

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`invalid configuration: ${key}: ${reason}`);
    this.name = 'ConfigError';
  }
}

type Check = (value: unknown, key: string) => void;

const AET = /^[\x21-\x5b\x5d-\x7e](?:[\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?$/; // PS3.5 AE: ≤16, no backslash
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const isString: Check = (v, k) => {
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(k, 'must be a non-empty string');
};
const isOptionalString: Check = (v, k) => {
  if (typeof v !== 'string') throw new ConfigError(k, 'must be a string (empty for none)');
};
const isBoolean: Check = (v, k) => {
  if (typeof v !== 'boolean') throw new ConfigError(k, 'must be true or false');
};
const intIn =
  (min: number, max: number): Check =>
  (v, k) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      throw new ConfigError(k, `must be an integer from ${min} to ${max}`);
  };
const isPort = intIn(1, 65535);
const isAet: Check = (v, k) => {
  if (typeof v !== 'string' || !AET.test(v))
    throw new ConfigError(k, 'must be an AE title of 1-16 printable characters without backslash');
};
const isHost: Check = (v, k) => {
  if (typeof v !== 'string' || !/^[A-Za-z0-9.:\-\[\]]+$/.test(v)) throw new ConfigError(k, 'must be a host name or IP address');
};
const isUrl: Check = (v, k) => {
  isString(v, k);
  let u: URL;
  try {
    u = new URL(v as string);
  } catch {
    throw new ConfigError(k, 'must be an absolute http(s) URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(k, 'must be an http(s) URL');
};
const oneOf =
  (choices: string[]): Check =>
  (v, k) => {
    if (typeof v !== 'string' || !choices.includes(v)) throw new ConfigError(k, `must be one of ${choices.join(', ')}`);
  };
const isCallers: Check = (v, k) => {
  if (!Array.isArray(v) || v.length === 0) throw new ConfigError(k, 'must list at least one {aet, host}');
  v.forEach((c, i) => {
    if (typeof c !== 'object' || c === null) throw new ConfigError(`${k}[${i}]`, 'must be an object {aet, host}');
    isAet((c as Caller).aet, `${k}[${i}].aet`);
    if ((c as Caller).host !== '*') isHost((c as Caller).host, `${k}[${i}].host`);
    const subject = (c as Caller).subject;
    if (subject !== undefined && (typeof subject !== 'string' || subjectAttributes(subject) === undefined))
      throw new ConfigError(`${k}[${i}].subject`, 'must be attribute=value pairs separated by / (CN=modality or O=Hospital/CN=ct1)');
  });
};

/**
 * A caller's subject binding as [attribute, value] pairs, attribute names upper-cased (CN, O, OU, C…); undefined when
 * it is not attribute=value pairs separated by '/' (a leading '/', as openssl's -subj writes it, is allowed).
 */
export function subjectAttributes(subject: string): [string, string][] | undefined {
  const parts = subject.replace(/^\//, '').split('/');
  const pairs: [string, string][] = [];
  for (const part of parts) {
    const m = /^\s*([A-Za-z][A-Za-z0-9.]*)\s*=\s*(\S(?:.*\S)?)\s*$/.exec(part);
    if (!m) return undefined;
    pairs.push([m[1]!.toUpperCase(), m[2]!]);
  }
  return pairs;
}

/** An entry of web.trustProxy as fastify (proxy-addr) reads it: an address, address/prefix, or a named range. */
function isProxyAddress(a: unknown): boolean {
  if (typeof a !== 'string') return false;
  if (['loopback', 'linklocal', 'uniquelocal'].includes(a)) return true;
  const [addr = '', prefix, ...rest] = a.split('/');
  const family = isIP(addr);
  if (!family || rest.length) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}

/** Every setting: its validator. Its environment variable is derived from the path (scp.maxAssociations → DPHIANT_SCP_MAX_ASSOCIATIONS). */
const SCHEMA: Record<string, Check> = {
  dataDir: isString,
  logLevel: oneOf(LOG_LEVELS),
  devStack: isBoolean,
  'scp.aet': isAet,
  'scp.host': isHost,
  'scp.port': isPort,
  'scp.callers': isCallers,
  'scp.maxAssociations': intIn(1, 1000),
  'scp.maxInstanceBytes': intIn(1024, 64 * 1024 ** 3),
  'scp.acceptUnknownSopClasses': isBoolean,
  'scp.associationTimeoutMs': intIn(100, 3_600_000),
  'scp.maxPendingConnections': intIn(1, 10_000),
  'scp.spoolMaxBytes': intIn(1024, 1024 ** 5),
  'scp.spoolMinFreeBytes': intIn(0, 1024 ** 5),
  'scp.spoolMemoryMaxBytes': intIn(0, Number.MAX_SAFE_INTEGER),
  'scp.pduTimeoutMs': intIn(100, 3_600_000),
  'scp.tls.port': intIn(0, 65535),
  'scp.tls.cert': isOptionalString,
  'scp.tls.key': isOptionalString,
  'scp.tls.ca': isOptionalString,
  'scp.tls.requireClientCert': isBoolean,
  'scp.tls.minVersion': oneOf([...TLS_VERSIONS]),
  'scp.tls.plain': isBoolean,
  'pacs.aet': isAet,
  'pacs.host': isHost,
  'pacs.port': isPort,
  'pacs.callingAet': isAet,
  'pacs.connectTimeoutMs': intIn(100, 600_000),
  'pacs.noProgressTimeoutMs': intIn(100, 600_000),
  'pacs.storeTimeoutMs': intIn(100, 3_600_000),
  'pacs.maxAssociations': intIn(1, 64),
  'pacs.idleTimeoutMs': intIn(0, 600_000),
  'pacs.cutThrough': isBoolean,
  'pacs.url': isUrl,
  'pacs.username': isString,
  'pacs.password': isString,
  'pacs.tls.enabled': isBoolean,
  'pacs.tls.ca': isOptionalString,
  'pacs.tls.cert': isOptionalString,
  'pacs.tls.key': isOptionalString,
  'pacs.tls.minVersion': oneOf([...TLS_VERSIONS]),
  'pacs.tls.servername': (v, k) => {
    isOptionalString(v, k);
    if (v) isHost(v, k);
  },
  'web.host': isHost,
  'web.port': isPort,
  'web.users': (v, k) => {
    if (!Array.isArray(v) || v.length === 0) throw new ConfigError(k, 'must list at least one {username, passwordHash, role}');
    v.forEach((u, i) => {
      const w = u as WebUser;
      if (!w || typeof w.username !== 'string' || !/^[\w.@-]{1,64}$/.test(w.username)) throw new ConfigError(`${k}[${i}].username`, 'must be 1-64 letters, digits or . _ @ -');
      if (typeof w.passwordHash !== 'string' || !/^scrypt\$\d+\$\d+\$\d+\$[0-9a-f]+\$[0-9a-f]{64}$/.test(w.passwordHash))
        throw new ConfigError(`${k}[${i}].passwordHash`, 'must be a hash from `dphiant web hash-password`');
      if (w.role !== 'viewer' && w.role !== 'reidentifier') throw new ConfigError(`${k}[${i}].role`, 'must be viewer or reidentifier');
    });
  },
  // from 1 s: tests prove the expiry in seconds; a site's values are minutes and hours
  'web.sessionIdleMs': intIn(1_000, 7 * 86_400_000),
  'web.sessionMaxAgeMs': intIn(1_000, 30 * 86_400_000),
  'web.trustProxy': (v, k) => {
    if (typeof v === 'boolean') return;
    if (typeof v === 'number') return intIn(1, 64)(v, k);
    if (!Array.isArray(v) || v.length === 0) throw new ConfigError(k, 'must be true, false, a hop count from 1 to 64, or a list of proxy addresses/CIDRs');
    for (const a of v) if (!isProxyAddress(a)) throw new ConfigError(k, `${JSON.stringify(a)} is not an IP address, a CIDR, loopback, linklocal or uniquelocal`);
  },
  'web.tls.cert': isOptionalString,
  'web.tls.key': isOptionalString,
  'web.modalityExplorerUrl': isUrl,
  'audit.repository': (v, k) => {
    isOptionalString(v, k);
    if (v && !/^(tls|udp):\/\/[^/:]+:\d{1,5}$/.test(v as string)) throw new ConfigError(k, 'must be empty, tls://host:port or udp://host:port');
  },
  'audit.ca': isOptionalString,
  'audit.cert': isOptionalString,
  'audit.key': isOptionalString,
  'audit.sourceId': isOptionalString,
  keyFile: isOptionalString,
  'pipeline.enabled': isBoolean,
  'pipeline.concurrency': intIn(1, 64),
  'pipeline.threads': intIn(0, 64),
  'pipeline.stuckAfterAttempts': intIn(1, 1_000_000),
  'pipeline.backpressureAfterMs': intIn(1_000, 86_400_000),
  'pipeline.maxBacklog': intIn(0, 100_000_000),
  'pipeline.retryBaseMs': intIn(10, 3_600_000),
  'pipeline.retryMaxMs': intIn(10, 86_400_000),
  'pipeline.handoffMaxBytes': intIn(0, 64 * 1024 ** 3),
  'pipeline.handoffMaxInstanceBytes': intIn(0, 64 * 1024 ** 3),
  'pipeline.reconcileIntervalMs': intIn(0, 86_400_000),
  'pipeline.reconcileAdopt': oneOf(['own', 'all']),
  'pipeline.retainFinishedDays': intIn(0, 36_500),
  'pipeline.takeoverAfterMs': (v, k) => {
    intIn(0, 86_400_000)(v, k);
    if ((v as number) > 0 && (v as number) < 1000) throw new ConfigError(k, 'must be 0 (off) or at least 1000');
  },
  'crosswalk.url': (v, k) => {
    isOptionalString(v, k);
    if (v && !/^mongodb(\+srv)?:\/\//.test(v as string)) throw new ConfigError(k, 'must be empty (embedded SQLite) or a mongodb:// URL');
  },
  'crosswalk.keyFile': isOptionalString,
  'crosswalk.key': (v, k) => {
    isOptionalString(v, k);
    if (v && !/^[0-9a-fA-F]{64}$/.test(v as string)) throw new ConfigError(k, 'must be 64 hex characters');
  },
  'crosswalk.matchKey': oneOf(['id', 'demographics']),
  'crosswalk.unidentified': oneOf(['per-study', 'single']),
  'crosswalk.aliasPattern': oneOf(['random', 'counter']),
  'crosswalk.aliasPrefix': (v, k) => {
    if (typeof v !== 'string' || !/^[A-Z0-9]{1,8}$/.test(v)) throw new ConfigError(k, 'must be 1-8 upper-case letters or digits');
  },
  'crosswalk.dateOffsetMinDays': intIn(-36500, 36500),
  'crosswalk.dateOffsetMaxDays': intIn(-36500, 36500),
  'anonymize.profile': isOptionalString,
  'anonymize.pixels.gate': oneOf(['on', 'off']),
  'anonymize.pixels.ocr': oneOf(['tesseract', 'off']),
  'anonymize.pixels.ocrCommand': (v, k) => {
    if (typeof v !== 'string' || v === '') throw new ConfigError(k, 'must name the tesseract program');
  },
  'anonymize.pixels.ocrTimeoutMs': intIn(1_000, 3_600_000),
  'anonymize.pixels.ocrFrames': intIn(2, 10_000),
  'anonymize.pixels.siteFile': isOptionalString,
  ...Object.fromEntries(OPTION_KEYS.map((k) => [`anonymize.${k}`, isBoolean])),
};

export function envName(key: string): string {
  return 'DPHIANT_' + key.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

function getPath(obj: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let o = obj;
  for (const p of parts.slice(0, -1)) o = (o[p] ??= {}) as Record<string, unknown>;
  o[parts[parts.length - 1]!] = value;
}

/** Parses an environment value by the type of the default it replaces. */
function parseEnv(key: string, raw: string): unknown {
  const def = getPath(DEFAULT_CONFIG, key);
  if (key === 'web.trustProxy') {
    // "false", "true", a hop count "1", or "10.0.0.1,10.1.0.0/16"
    const t = raw.trim();
    if (t === 'true' || t === 'false') return t === 'true';
    if (/^-?\d+$/.test(t)) return Number(t);
    return t.split(',').map((x) => x.trim()).filter(Boolean);
  }
  if (typeof def === 'number') {
    if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(key, `${envName(key)}=${JSON.stringify(raw)} is not an integer`);
    return Number(raw);
  }
  if (typeof def === 'boolean') {
    if (!['true', 'false', '1', '0'].includes(raw)) throw new ConfigError(key, `${envName(key)} must be true or false`);
    return raw === 'true' || raw === '1';
  }
  if (key === 'web.users') {
    // "alice:reidentifier:scrypt$…,bob:viewer:scrypt$…"
    return raw
      .split(',')
      .filter((x) => x.trim())
      .map((x) => {
        const [username, role, ...hash] = x.trim().split(':');
        return { username, role, passwordHash: hash.join(':') };
      });
  }
  if (key === 'scp.callers') {
    // "MODALITY@127.0.0.1,CT1@10.1.2.3#O=Hospital/CN=ct1"
    return raw
      .split(',')
      .filter((s) => s.trim())
      .map((s) => {
        const [caller = '', subject] = s.trim().split(/#(.*)/s);
        const [aet, host] = caller.split('@');
        return { aet, host: host ?? '*', ...(subject !== undefined ? { subject } : {}) };
      });
  }
  return raw;
}

/**
 * Settings of earlier versions that mean nothing now: accepted in a file or the environment with a warning, so an
 * old configuration still starts.
 */
const RETIRED: Record<string, string> = {
  'pipeline.maxAttempts':
    'pipeline.maxAttempts is ignored: transient failures (PACS REST API, crosswalk, disk) are retried without a limit and only permanent ones quarantine; pipeline.stuckAfterAttempts sets when a retrying job is reported stuck',
};

function mergeFile(target: Record<string, unknown>, file: Record<string, unknown>, warn: (msg: string) => void, prefix = ''): void {
  for (const [k, v] of Object.entries(file)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (Object.hasOwn(RETIRED, key)) {
      warn(RETIRED[key]!);
      continue;
    }
    // own keys only: `in` would take "constructor" and "__proto__" for settings and write into prototypes
    if (Object.hasOwn(SCHEMA, key)) setPath(target, key, v);
    else if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(SCHEMA).some((s) => s.startsWith(key + '.')))
      mergeFile(target, v as Record<string, unknown>, warn, key);
    else throw new ConfigError(key, 'unknown setting');
  }
}

export interface LoadOptions {
  /** JSON file; when absent, DPHIANT_CONFIG names it; when that is absent too, defaults + environment only. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Where warnings about retired settings go; default standard error. */
  warn?: (msg: string) => void;
  /**
   * The command talks to neither the PACS nor web users (`dphiant anonymize`, `verify`, `profile`): the checks of
   * their dev-stack credentials do not apply; the keys are still required outside the dev stack.
   */
  offline?: boolean;
}

/** Builds and validates the effective configuration. Throws ConfigError naming the key and the reason. */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const warn = opts.warn ?? ((msg: string) => console.error(`dphiant: warning: ${msg}`));
  const cfg = structuredClone(DEFAULT_CONFIG) as unknown as Record<string, unknown>;
  const file = opts.file ?? env.DPHIANT_CONFIG;
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new ConfigError('config file', `${file}: ${(e as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new ConfigError('config file', `${file}: must hold a JSON object`);
    mergeFile(cfg, parsed as Record<string, unknown>, warn);
  }
  for (const key of Object.keys(RETIRED)) if (env[envName(key)]) warn(`${envName(key)}: ${RETIRED[key]}`);
  for (const key of Object.keys(SCHEMA)) {
    const raw = env[envName(key)];
    if (raw !== undefined && raw !== '') setPath(cfg, key, parseEnv(key, raw));
  }
  for (const [key, check] of Object.entries(SCHEMA)) check(getPath(cfg, key), key);
  const config = cfg as unknown as Config;
  config.dataDir = path.resolve(config.dataDir);
  if (config.crosswalk.dateOffsetMinDays > config.crosswalk.dateOffsetMaxDays)
    throw new ConfigError('crosswalk.dateOffsetMinDays', 'must not be greater than crosswalk.dateOffsetMaxDays');
  if (config.scp.spoolMaxBytes < config.scp.maxInstanceBytes)
    throw new ConfigError('scp.spoolMaxBytes', 'must be at least scp.maxInstanceBytes (else an instance within the size limit is always refused)');
  if (!config.devStack && !opts.offline && config.pacs.password === DEFAULT_CONFIG.pacs.password)
    throw new ConfigError('pacs.password', 'the default (demo) is allowed only in the dev stack (devStack: true); set the PACS password (DPHIANT_PACS_PASSWORD)');
  if (!config.devStack && !config.crosswalk.keyFile && !config.crosswalk.key)
    throw new ConfigError('crosswalk.keyFile', 'outside the dev stack a crosswalk key is required (dphiant keygen, then crosswalk.keyFile or DPHIANT_CROSSWALK_KEY)');
  if (!config.devStack && !config.keyFile) throw new ConfigError('keyFile', 'outside the dev stack a site key file is required (dphiant keygen)');
  if (!config.devStack && !opts.offline && config.web.users.some((u) => DEV_USERS.some((d) => d.passwordHash === u.passwordHash)))
    throw new ConfigError('web.users', 'the dev stack passwords (demo, viewer) are allowed only in the dev stack');
  if (config.audit.repository.startsWith('tls:') && !config.audit.ca)
    throw new ConfigError('audit.ca', 'audit over TLS needs the CA that signed the repository certificate');
  if (!config.audit.cert !== !config.audit.key) throw new ConfigError('audit.cert', 'audit.cert and audit.key go together');
  if (config.pipeline.takeoverAfterMs > 0 && !config.crosswalk.url)
    throw new ConfigError('pipeline.takeoverAfterMs', 'needs a crosswalk shared by the nodes (crosswalk.url): the leases live there');
  checkTimeouts(config);
  checkKeyPair('web.tls', config.web.tls);
  checkDicomTls(config);
  if (config.anonymize.retainLongFullDates && config.anonymize.retainLongModifiedDates)
    throw new ConfigError('anonymize.retainLongModifiedDates', 'cannot be on together with anonymize.retainLongFullDates (PS3.15 E.3.6)');
  return config;
}

/** How long ingest waits for the PACS's REST API to identify a raw copy before it answers the sender anyway. */
export const IDENTIFY_TIMEOUT_MS = 10_000;
/** Reading and checking the spool file, journal writes: what else happens before a C-STORE is answered. */
const ANSWER_MARGIN_MS = 5_000;

/** The longest DPHIANT takes to answer one C-STORE: the forward (its retry included), identifying the raw copy, a margin. */
export function longestStoreAnswerMs(pacs: Config['pacs']): number {
  return pacs.storeTimeoutMs + IDENTIFY_TIMEOUT_MS + ANSWER_MARGIN_MS;
}

/**
 * The forward's bound leaves room for a stalled attempt and its retry, and the SCP never drops an association
 * while its caller waits for an answer DPHIANT is still working on.
 */
function checkTimeouts(config: Config): void {
  const { pacs, scp } = config;
  const twoAttempts = 2 * (pacs.connectTimeoutMs + pacs.noProgressTimeoutMs);
  if (pacs.storeTimeoutMs < twoAttempts)
    throw new ConfigError(
      'pacs.storeTimeoutMs',
      `must be at least 2 × (pacs.connectTimeoutMs + pacs.noProgressTimeoutMs) = ${twoAttempts} ms, room for a stalled attempt and its retry; raise it or lower pacs.noProgressTimeoutMs`,
    );
  const longest = longestStoreAnswerMs(pacs);
  if (scp.pduTimeoutMs <= longest)
    throw new ConfigError(
      'scp.pduTimeoutMs',
      `must exceed pacs.storeTimeoutMs + ${IDENTIFY_TIMEOUT_MS + ANSWER_MARGIN_MS} ms = ${longest} ms, the longest a sender may wait for a C-STORE answer (else the SCP drops its association while DPHIANT is still forwarding); raise scp.pduTimeoutMs or lower pacs.storeTimeoutMs`,
    );
}

/** A setting's file, read; a ConfigError naming the setting when it cannot be. */
function readSettingFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new ConfigError(key, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/**
 * `<prefix>.cert` and `<prefix>.key` both or neither; each readable and PEM of its kind, and the key the certificate's.
 * Read here so a wrong path stops the start with the setting's name, not later as a server or connection error.
 */
function checkKeyPair(prefix: string, pair: { cert: string; key: string }): void {
  if (!pair.cert && !pair.key) return;
  if (!pair.cert) throw new ConfigError(`${prefix}.cert`, `must be set together with ${prefix}.key`);
  if (!pair.key) throw new ConfigError(`${prefix}.key`, `must be set together with ${prefix}.cert`);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readSettingFile(`${prefix}.cert`, pair.cert));
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`${prefix}.cert`, `${pair.cert} is not a PEM certificate`);
  }
  let key;
  try {
    key = createPrivateKey(readSettingFile(`${prefix}.key`, pair.key));
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`${prefix}.key`, `${pair.key} is not a PEM private key (without a passphrase)`);
  }
  if (!cert.checkPrivateKey(key)) throw new ConfigError(`${prefix}.key`, `${pair.key} is not the private key of ${pair.cert}`);
}

/** The file of `key` holds PEM certificates (one at least), each of which parses: a CA bundle or peers' certificates. */
function checkCaFile(key: string, file: string): void {
  const pem = readSettingFile(key, file).toString('latin1');
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError(key, `${file} holds no PEM certificate`);
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch {
      throw new ConfigError(key, `certificate ${i + 1} of ${file} does not parse`);
    }
  });
}

/**
 * DICOM TLS: a listener somewhere, the TLS one with its certificate, key and CA (without a CA of its own, Node would
 * trust every certificate a public CA issued), AEs bound to a subject only with it; TLS to the PACS with its CA.
 */
function checkDicomTls(config: Config): void {
  const { scp, pacs } = config;
  const t = scp.tls;
  if (t.port === 0) {
    if (!t.plain) throw new ConfigError('scp.tls.plain', 'cannot be false without a TLS listener (scp.tls.port): the SCP would listen nowhere');
    const bound = scp.callers.findIndex((c) => c.subject !== undefined);
    if (bound >= 0) throw new ConfigError(`scp.callers[${bound}].subject`, 'binds the AE to a certificate, which needs the TLS listener (scp.tls.port)');
  } else {
    if (t.plain && t.port === scp.port) throw new ConfigError('scp.tls.port', 'must differ from scp.port while the plain listener is on (scp.tls.plain)');
    if (!t.cert || !t.key) throw new ConfigError(t.cert ? 'scp.tls.key' : 'scp.tls.cert', 'the TLS listener (scp.tls.port) needs its certificate and private key');
    checkKeyPair('scp.tls', t);
    if (!t.ca) throw new ConfigError('scp.tls.ca', "the TLS listener needs the CA (or the peers' certificates) a caller's certificate must chain to");
    checkCaFile('scp.tls.ca', t.ca);
  }
  if (pacs.tls.enabled) {
    if (!pacs.tls.ca) throw new ConfigError('pacs.tls.ca', "TLS to the PACS needs the CA (or the PACS's certificate) its certificate must chain to");
    checkCaFile('pacs.tls.ca', pacs.tls.ca);
    checkKeyPair('pacs.tls', pacs.tls);
  }
}

/** The effective configuration with secrets masked, for `dphiant config show`. */
export function describeConfig(config: Config): Record<string, unknown> {
  const copy = structuredClone(config) as unknown as Record<string, unknown>;
  for (const key of SECRET_KEYS) if (getPath(copy, key)) setPath(copy, key, '********');
  copy.web = { ...(copy.web as object), users: config.web.users.map((u) => ({ username: u.username, role: u.role, passwordHash: '********' })) };
  // a database URL may carry a password
  copy.crosswalk = { ...(copy.crosswalk as object), url: config.crosswalk.url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:********@') };
  return copy;
}

/** Lines "key = value  (ENV_NAME)" for every setting. */
/** Every setting's dotted path, in the schema's order (the README's table lists exactly these). */
export function settingKeys(): string[] {
  return Object.keys(SCHEMA);
}

export function configLines(config: Config): string[] {
  const shown = describeConfig(config);
  return Object.keys(SCHEMA).map((key) => `${key} = ${JSON.stringify(getPath(shown, key))}  (${envName(key)})`);
}
