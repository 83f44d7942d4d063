// The middleman assembled: configuration → keys → journal, crosswalk, PACS client → ingest (forward to the PACS)
// → DICOM server; the de-identification worker and the reconciler behind it.
import { availableParallelism } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { ConfigError, type Config } from './config/index.js';
import { DeidentifyThreads } from './anonymize/pool.js';
import { profileFromSettings } from './anonymize/profile.js';
import type { PixelPolicy } from './anonymize/pixels/clean.js';
import { DEFAULT_OCR, ocrAvailable } from './anonymize/pixels/ocr.js';
import { loadKeys, openCrosswalk, sharedDatabase } from './crosswalk/open.js';
import { NodeLeases } from './crosswalk/leases.js';
import { ClusterMember } from './pipeline/cluster.js';
import type { CrosswalkStore } from './crosswalk/store.js';
import type { Logger } from './log.js';
import { OrthancClient, OrthancHttpError } from './pacs/orthanc.js';
import { Backpressure, DependencyHealth, HEALTH_META_KEY } from './pipeline/health.js';
import { Ingest } from './pipeline/ingest.js';
import { Journal, journalPath, type Job } from './pipeline/journal.js';
import { Quarantine, quarantineDir, quarantineEntry } from './pipeline/quarantine.js';
import { Reconciler } from './pipeline/reconciler.js';
import { DeidentificationWorker, Handoff } from './pipeline/worker.js';
import { DicomServer, type CallerRefusalEvent } from './scp/server.js';
import { checkDimseVersion } from './dicom/dimse.js';
import { Metrics } from './metrics.js';
import { REASONS, type ReasonCode } from './reasons.js';
import { secureDataDir } from './datadir.js';
import { fingerprint } from './log.js';
import { createWebServer } from './web/server.js';
import { AuditBatcher } from './audit/batcher.js';
import { auditSource, type AuditEvent, type Peer } from './audit/messages.js';
import { AuditTrail } from './audit/trail.js';
import { MongoSessionStore } from './web/sessions.js';
import { DataDirBusyError, ServeLock } from './serve-lock.js';
import { pacsTls, type PacsTarget } from './scu/store.js';
import { AssociationPool } from './scu/pool.js';

export interface Middleman {
  journal: Journal;
  metrics: Metrics;
  /** The web UI's address. */
  web: { host: string; port: number };
  crosswalk: CrosswalkStore;
  worker: DeidentificationWorker;
  backpressure: Backpressure;
  pacsRest: OrthancClient;
  dicom: AddressInfo;
  /** The DICOM TLS listener's address (scp.tls.port), when there is one. */
  dicomTls?: AddressInfo;
  /** On a shared crosswalk: this node's record there (and its lease, under pipeline.takeoverAfterMs > 0). */
  cluster?: ClusterMember;
  close(): Promise<void>;
}

export function pacsTarget(config: Config): PacsTarget {
  const { host, port, aet, callingAet, connectTimeoutMs, noProgressTimeoutMs, storeTimeoutMs } = config.pacs;
  const tls = pacsTls(config.pacs.tls);
  return { host, port, aet, callingAet, connectTimeoutMs, noProgressTimeoutMs, storeTimeoutMs, ...(tls ? { tls } : {}) };
}

export function pacsRestClient(config: Config): OrthancClient {
  return new OrthancClient({ url: config.pacs.url, username: config.pacs.username, password: config.pacs.password });
}

/** The phrase of an audit record for each reason an association is refused for who called. */
const CALLER_REFUSALS: Record<CallerRefusalEvent['why'], string> = {
  'called-aet': 'called AE title is not ours',
  'calling-aet': 'calling AE title not allowed',
  host: 'calling AE title not allowed from this address',
  subject: 'AE title bound to a certificate called without TLS',
};

/**
 * The audit records of a raw copy the worker removed from the PACS: de-identified, its study transferred and its raw
 * copy deleted (by new study UID and alias); quarantined, its deletion (by keyed hash) and, for a gate hit, an alert
 * (`alert`: not when a restart records it again: the alert went at once). False: nothing to record.
 */
function auditRemoval(events: AuditBatcher, pacs: Peer, job: Job, outcome: 'DONE' | 'QUARANTINED', alert = true): boolean {
  if (outcome === 'DONE') {
    // a job journalled before the new study UID was kept (an upgrade mid-job) has no record: nothing to name it by
    if (!job.aliasId || !job.newStudyInstanceUid) return false;
    events.transferred(job.id, { aet: job.callingAet }, pacs, job.newStudyInstanceUid, job.aliasId, job.sopClassUid);
    events.rawDeleted(job.id, pacs, job.newStudyInstanceUid, job.aliasId);
    return true;
  }
  events.rawQuarantined(job.id, pacs, job.callingAet, quarantineEntry(job));
  if (alert && job.reasonCode === 'gate-hit') events.alert({ type: 'gate', peer: job.callingAet, address: '', why: REASONS['gate-hit'] });
  return true;
}

/**
 * The audit trail of audit.repository, spooled in the data directory; undefined when none is configured. `command`:
 * a command's own, in a spool of its own that hands what it could not send to the middleman's.
 */
export function auditTrail(config: Config, command = false): AuditTrail | undefined {
  const a = config.audit;
  if (!a.repository) return undefined;
  const spool = path.join(config.dataDir, 'audit');
  return new AuditTrail({
    repository: a.repository,
    ca: a.ca,
    cert: a.cert,
    key: a.key,
    spoolDir: command ? path.join(spool, `command-${process.pid}`) : spool,
    ...(command ? { handOver: spool } : {}),
    source: auditSource(a.sourceId, config.scp.aet),
  });
}

/** One ATNA record of a command (`dphiant crosswalk …`, `quarantine …`): sent now, or handed to the middleman's spool. */
export async function auditCommand(config: Config, e: AuditEvent): Promise<void> {
  const trail = auditTrail(config, true);
  if (!trail) return;
  trail.record(e);
  await trail.close(5000);
}

/** How long the start-up check waits for the PACS REST API. */
const CHECK_TIMEOUT_MS = 10_000;

/**
 * GET /system with the configured credentials. Wrong ones (401/403) stop the start with a ConfigError naming the
 * settings (`dphiant serve` exits 2); an API that does not answer lets the middleman start, its failure recorded
 * (backpressure applies after pipeline.backpressureAfterMs): an outage at start-up must not stop the node.
 * Returns the reason code of a failure, or null when the API answered.
 */
async function checkPacsRest(config: Config, log: Logger): Promise<ReasonCode | null> {
  const { url, username, password } = config.pacs;
  try {
    await new OrthancClient({ url, username, password, timeoutMs: CHECK_TIMEOUT_MS }).system();
    return null;
  } catch (e) {
    if (!(e instanceof OrthancHttpError)) throw e;
    if (e.status === 401 || e.status === 403)
      throw new ConfigError('pacs.username/pacs.password', `the PACS REST API at ${url} answered HTTP ${e.status} to GET /system: the credentials are wrong or lack access`);
    log.warn({ url, err: e.message }, 'PACS REST API not reachable at start-up; starting anyway (backpressure applies if it stays down)');
    return e.code;
  }
}

export async function startMiddleman(config: Config, log: Logger): Promise<Middleman> {
  // before anything is opened: the SCP and SCU rely on internals of one dcmjs-dimse version (src/dicom/dimse.ts)
  checkDimseVersion();
  secureDataDir(config.dataDir, (msg) => log.warn(msg));
  // one middleman per data directory, and none during a crosswalk rekey (src/serve-lock.ts)
  let lock: ServeLock;
  try {
    lock = ServeLock.acquire(config.dataDir);
  } catch (e) {
    if (e instanceof DataDirBusyError) throw new Error(`${e.message}: another dphiant serve, or a crosswalk rekey, is running on ${config.dataDir}`);
    throw e;
  }
  try {
    return await startLocked(config, log, lock);
  } catch (e) {
    lock.release();
    throw e;
  }
}

/** Without the OCR engine every instance at risk of burned-in text is quarantined: say so at start, not per instance. */
async function checkOcr(policy: PixelPolicy, log: Logger): Promise<void> {
  const s = policy.settings;
  if (s.gate === 'off') return log.warn('anonymize.pixels.gate is off: pixels are not examined for burned-in text');
  if (s.ocr === 'off') return log.info('burned-in text: OCR is off; at-risk instances no site mask covers are quarantined');
  const engine = await ocrAvailable({ ...DEFAULT_OCR, command: s.ocrCommand, timeoutMs: s.ocrTimeoutMs });
  if (engine.ok) log.info({ ocr: engine.version }, 'burned-in text: OCR ready');
  else log.error({ ocr: s.ocrCommand, reason: engine.reason }, 'burned-in text: the OCR engine does not run, so every at-risk instance (ultrasound, secondary capture…) is quarantined; install tesseract-ocr or set anonymize.pixels.ocr');
}

async function startLocked(config: Config, log: Logger, lock: ServeLock): Promise<Middleman> {
  const restDown = await checkPacsRest(config, log);
  const keys = loadKeys(config, (msg) => log.warn(msg));
  const { profile } = profileFromSettings(config.anonymize);
  await checkOcr(profile.pixels, log);
  const crosswalk = await openCrosswalk(config, keys);
  const journal = new Journal(journalPath(config.dataDir), keys.site, (msg) => log.warn(msg));
  // a crosswalk file the store has just created has the process's default mode
  secureDataDir(config.dataDir, () => undefined);
  const pacsRest = pacsRestClient(config);
  const p = config.pipeline;
  const handoff = new Handoff(p.handoffMaxBytes, p.handoffMaxInstanceBytes);
  const metrics = new Metrics();
  const health = new DependencyHealth((snapshot) => journal.setMeta(HEALTH_META_KEY, JSON.stringify(snapshot)));
  if (restDown) health.failed('pacs', restDown);
  else health.succeeded('pacs');
  // what a previous run left in the journal is not this run's health
  journal.setMeta(HEALTH_META_KEY, JSON.stringify(health.snapshot()));
  const backpressure = new Backpressure(
    health,
    () => {
      const c = journal.counts();
      return c.IN_PACS + c.DEIDENTIFIED;
    },
    p,
  );
  const quarantine = new Quarantine(quarantineDir(config.dataDir), keys.crosswalk);
  quarantine.removeTemps(); // a crash's half-written files; ours to remove under the lock
  const audit = auditTrail(config);
  const auditEvents =
    audit &&
    new AuditBatcher(
      (e) => audit.record(e),
      {},
      (jobs) => journal.audited(jobs),
      (e) => log.error({ err: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, 'audit: a record could not be spooled; its instances stay audit-pending for the next start'),
    );
  const pacsPeer: Peer = { aet: config.pacs.aet, address: config.pacs.host };
  const auditRemoved = (job: Job, outcome: 'DONE' | 'QUARANTINED', alert = true) => {
    if (auditEvents && !auditRemoval(auditEvents, pacsPeer, job, outcome, alert)) journal.audited([job.id]);
  };
  // removals a crash kept from their records (folded in memory for a few seconds): recorded now
  for (const job of auditEvents ? journal.auditPending() : []) auditRemoved(job, job.state === 'DONE' ? 'DONE' : 'QUARANTINED', false);
  const me = config.pacs.callingAet;
  const shared = sharedDatabase(crosswalk);
  // every node of a shared crosswalk reports there; loadConfig allows takeover only with one
  const leases = shared ? new NodeLeases(shared, p.takeoverAfterMs) : undefined;
  const takeover = !!leases && p.takeoverAfterMs > 0;
  const worker = new DeidentificationWorker({
    metrics,
    journal,
    pacs: pacsRest,
    crosswalk,
    engine: (aliases) => new DeidentifyThreads(p.threads || Math.min(4, availableParallelism()), { key: keys.site.toString('hex'), settings: config.anonymize, flags: {}, rememberAliases: false }, aliases),
    quarantine,
    handoff,
    settings: p,
    log,
    health,
    ...(leases && takeover ? { takenOver: (job) => leases.takenOver(me, journal.rawKey(job.rawId!)) } : {}),
    removed: (job, outcome) => {
      if (takeover) cluster?.removed(job.rawId, outcome);
      auditRemoved(job, outcome);
    },
    auditsRemovals: !!auditEvents,
  });
  const reconciler = new Reconciler(journal, pacsRest, log, (id) => worker.enqueue(id), { callingAet: me, adopt: p.reconcileAdopt, metrics });
  const cluster = leases
    ? new ClusterMember({
        leases,
        me,
        graceMs: p.takeoverAfterMs,
        journal,
        pacs: pacsRest,
        reconciler,
        log,
        takeOver: p.enabled,
        retainRecordsDays: p.retainFinishedDays || 30,
        fence: (held) => {
          backpressure.setLeaseHeld(held);
          if (!p.enabled) return;
          if (held) {
            worker.resume();
            void reconciler.start(p.reconcileIntervalMs);
          } else {
            worker.pause();
            reconciler.stop();
          }
        },
      })
    : undefined;
  backpressure.setLeaseHeld(!takeover); // a node under leases stores nothing before it holds its own
  // associations to the PACS stay open between forwards (src/scu/pool.ts); released when the middleman stops
  const pool = new AssociationPool(pacsTarget(config), { maxAssociations: config.pacs.maxAssociations, idleTimeoutMs: config.pacs.idleTimeoutMs });
  const ingest = new Ingest(journal, pacsTarget(config), log, {
    forward: (_target, inst) => pool.store(inst),
    ...(config.pacs.cutThrough ? { cutThrough: (ctx) => pool.begin(ctx) } : {}),
    metrics,
    checkMaxBytes: p.handoffMaxInstanceBytes,
    pacsRest,
    backpressure,
    inPacs: (jobId, bytes) => {
      if (!p.enabled) return;
      if (bytes) handoff.offer(jobId, bytes);
      worker.enqueue(jobId);
    },
  });
  const server = new DicomServer({
    scp: config.scp,
    spoolDir: path.join(config.dataDir, 'spool'),
    begin: (ctx) => ingest.begin(ctx),
    ingest: (inst, early) => ingest.store(inst, early),
    refused: (inst, reply) => ingest.refuseReceived(inst, reply),
    metrics,
    log,
    fingerprint: (uid) => fingerprint(keys.site, uid),
    ...(auditEvents
      ? {
          tlsRefused: (r) => auditEvents.alert({ type: 'node', peer: r.callingAet || r.subject || '-', address: r.from, why: `TLS refused: ${r.reason}${r.code ? ` (${r.code})` : ''}` }),
          callerRefused: (r) => auditEvents.alert({ type: 'node', peer: r.callingAet || '-', address: r.from, why: `association rejected: ${CALLER_REFUSALS[r.why]}` }),
        }
      : {}),
  });
  const web = createWebServer({ audit, config, journal, crosswalk, pacs: pacsRest, worker, backpressure, quarantine, metrics, log, sessions: shared ? new MongoSessionStore(shared) : undefined, nodes: leases && (() => leases.list()) });
  let dicom: AddressInfo;
  try {
    dicom = await server.listen();
    await web.listen({ host: config.web.host, port: config.web.port });
  } catch (e) {
    await server.close();
    await pool.close();
    journal.close();
    await crosswalk.close();
    await audit?.close();
    throw e;
  }
  audit?.record({ kind: 'application', action: 'start' });
  const prune = () => {
    try {
      const n = journal.pruneFinished(p.retainFinishedDays);
      if (n > 0) log.info({ jobs: n, days: p.retainFinishedDays }, 'finished jobs past pipeline.retainFinishedDays deleted from the journal');
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'journal retention: prune failed, retried in an hour');
    }
  };
  let closing: Promise<void> | undefined;
  const retention = p.retainFinishedDays > 0 ? (prune(), setInterval(prune, 3_600_000).unref()) : undefined;
  // under leases the worker runs and the reconciler starts only while this node holds its own
  await cluster?.start();
  if (p.enabled) {
    worker.start(); // jobs a previous run left unfinished resume here
    if (!takeover) void reconciler.start(p.reconcileIntervalMs);
  } else log.warn('pipeline disabled: instances are forwarded and left raw in the PACS');
  log.info({ host: dicom.address, port: dicom.port, ...(server.tlsAddress ? { tlsPort: server.tlsAddress.port } : {}), plain: config.scp.tls.plain, pacsTls: config.pacs.tls.enabled, aet: config.scp.aet, pacs: `${config.pacs.aet}@${config.pacs.host}:${config.pacs.port}`, crosswalk: crosswalk.backend }, 'DICOM server listening');
  return {
    journal,
    metrics,
    web: { host: config.web.host, port: config.web.port },
    crosswalk,
    worker,
    backpressure,
    pacsRest,
    dicom,
    ...(server.tlsAddress ? { dicomTls: server.tlsAddress } : {}),
    ...(cluster ? { cluster } : {}),
    close() {
      return (closing ??= stop());
    },
  };
  /** Once only: a second close() gets the first one's promise (no second Application Stop record). */
  async function stop(): Promise<void> {
    clearInterval(retention);
    await cluster?.stop(); // its lease is left to expire: after the grace time another node takes over what is left
    await server.close();
    await pool.close(); // no sender is left to forward for: A-RELEASE for every association to the PACS
    await web.close();
    reconciler.stop();
    await worker.stop();
    await crosswalk.close();
    auditEvents?.flush(); // the journal hears which jobs' records are written
    journal.close();
    audit?.record({ kind: 'application', action: 'stop' });
    await audit?.close();
    lock.release();
  }
}
