// The middleman's web side on web.port: the dashboard, the crosswalk browser with audited reveal, the audit log,
// and the operations endpoints /healthz, /readyz and /metrics. Pages and APIs need a session; only /healthz,
// /readyz, /metrics (no PHI, no crosswalk data) and the login page do not. HTTPS only when web.tls is set.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { readFileSync } from 'node:fs';
import type { Config } from '../config/index.js';
import type { CrosswalkStore } from '../crosswalk/store.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { OrthancClient } from '../pacs/orthanc.js';
import { findUp } from '../paths.js';
import { JOB_STATES, type Job, type Journal } from '../pipeline/journal.js';
import { purgeQuarantined, quarantineEntry, requeueQuarantined, type Quarantine } from '../pipeline/quarantine.js';
import type { DeidentificationWorker } from '../pipeline/worker.js';
import { DEPENDENCIES, type Backpressure } from '../pipeline/health.js';
import { REASONS } from '../reasons.js';
import { Auth, cookie, SESSION_COOKIE, type Role, type Session } from './auth.js';
import { SessionStoreUnavailable, type SessionStore } from './sessions.js';
import type { NodeLease } from '../crosswalk/leases.js';
import type { AuditTrail } from '../audit/trail.js';

export interface WebDeps {
  config: Config;
  /** Logins and re-identifications go there too (src/audit), when audit.repository is set. */
  audit?: AuditTrail;
  journal: Journal;
  crosswalk: CrosswalkStore;
  pacs: OrthancClient;
  worker: DeidentificationWorker;
  /** Whether new C-STOREs are refused, and the dependency health behind it. */
  backpressure: Backpressure;
  quarantine: Quarantine;
  metrics: Metrics;
  log: Logger;
  /** Where sessions and failed logins live: this process's memory when absent (one node). */
  sessions?: SessionStore;
  /** Every node's record in the shared database (src/crosswalk/leases.ts); absent on one node. */
  nodes?: () => Promise<NodeLease[]>;
}

const PAGES = ['dashboard', 'crosswalk', 'audit', 'login'] as const;

/**
 * What a job shows in the UI: its alias and new UID, never the original SOP Instance UID; a failure as its code
 * (src/reasons.ts) with the code's meaning, and the message.
 */
function publicJob(j: Job) {
  return {
    id: j.id, state: j.state, aliasId: j.aliasId, newSopInstanceUid: j.newSopInstanceUid, callingAet: j.callingAet, bytes: j.bytes, receivedAt: j.receivedAt, updatedAt: j.updatedAt, attempts: j.attempts,
    reasonCode: j.reasonCode, reasonMeaning: j.reasonCode && REASONS[j.reasonCode], reason: j.reason,
  };
}

/** The header app.js sets on the dashboard's timed refreshes: they read the session without extending its idle time. */
export const POLL_HEADER = 'x-dphiant-poll';

export function createWebServer(d: WebDeps): FastifyInstance {
  const w = d.config.web;
  // loadConfig has read and checked both files; the server gets their contents
  const https = w.tls.cert ? { cert: readFileSync(w.tls.cert), key: readFileSync(w.tls.key) } : null;
  // fastify 5 takes a number for trustProxy but then trusts nothing; a hop count is the first n peers, as proxy-addr counts them
  const hops = w.trustProxy;
  const trustProxy = typeof hops === 'number' ? (_address: string, hop: number) => hop < hops : hops;
  // an https fastify has another server type; the routes below use nothing that differs
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024, trustProxy, ...(https ? { https } : {}) }) as unknown as FastifyInstance;
  const auth = new Auth(w.users, w.sessionIdleMs, w.sessionMaxAgeMs, d.sessions);
  // the browser keeps the cookie for the absolute lifetime; the server ends idle sessions earlier
  const cookieAttributes = `HttpOnly; SameSite=Strict; Path=/${https ? '; Secure' : ''}`;
  const page = (name: (typeof PAGES)[number]) => readFileSync(findUp(`src/web/static/${name}.html`), 'utf8');
  const links = { modality: d.config.web.modalityExplorerUrl, pacs: `${d.config.pacs.url.replace(/\/+$/, '')}/app/explorer.html` };

  const sessionOf = (req: FastifyRequest) => auth.session(cookie(req.headers.cookie, SESSION_COOKIE), req.headers[POLL_HEADER] !== '1');

  /** API guard: 401 without a session, 403 without the role, 403 without the CSRF token on state changes. */
  const api =
    (role: Role | 'any', handler: (req: FastifyRequest, reply: FastifyReply, s: Session) => unknown) =>
    async (req: FastifyRequest, reply: FastifyReply) => {
      const s = await sessionOf(req);
      if (!s) return reply.code(401).send({ error: 'login required' });
      if (role === 'reidentifier' && s.role !== 'reidentifier') {
        d.log.warn({ user: s.username, path: req.routeOptions.url }, 'forbidden: needs the reidentifier role');
        return reply.code(403).send({ error: 'the reidentifier role is required' });
      }
      if (req.method !== 'GET' && req.headers['x-csrf-token'] !== s.csrf) return reply.code(403).send({ error: 'missing or wrong CSRF token' });
      return handler(req, reply, s);
    };

  // the shared database of the sessions down: no request can be authenticated, none is answered as if logged out
  app.setErrorHandler((e, req, reply) => {
    if (!(e instanceof SessionStoreUnavailable)) throw e;
    d.log.warn({ path: req.routeOptions.url, err: (e.cause as Error | undefined)?.name }, 'web sessions: the shared database is unavailable');
    return reply.code(503).send({ error: 'sessions are unavailable: the shared database does not answer; try again shortly' });
  });

  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('x-frame-options', 'DENY');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('cache-control', 'no-store');
    reply.header('content-security-policy', "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
    return payload;
  });

  // ---- pages ----
  for (const name of ['dashboard', 'crosswalk', 'audit'] as const) {
    app.get(name === 'dashboard' ? '/' : `/${name}`, async (req, reply) => {
      if (!(await sessionOf(req))) return reply.redirect(`/login?next=${encodeURIComponent(req.url)}`);
      return reply.type('text/html; charset=utf-8').send(page(name));
    });
  }
  app.get('/login', async (_req, reply) => reply.type('text/html; charset=utf-8').send(page('login')));
  app.get('/static/:file', async (req, reply) => {
    const file = (req.params as { file: string }).file;
    if (!/^[a-z]+\.(js|css)$/.test(file)) return reply.code(404).send();
    return reply.type(file.endsWith('.js') ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8').send(readFileSync(findUp(`src/web/static/${file}`), 'utf8'));
  });

  // ---- session ----
  app.post('/api/login', async (req, reply) => {
    const { username, password } = (req.body ?? {}) as { username?: unknown; password?: unknown };
    if (typeof username !== 'string' || typeof password !== 'string') return reply.code(400).send({ error: 'username and password required' });
    const address = req.ip;
    const s = await auth.login(username, password, address);
    if (s === 'throttled' || !s) d.audit?.record({ kind: 'login', user: username, address, outcome: 4 });
    if (s === 'throttled') {
      d.log.warn({ user: username, from: address }, 'login refused: too many failures');
      return reply.code(429).send({ error: 'too many failed logins; wait a few minutes' });
    }
    if (!s) {
      d.log.warn({ user: username, from: address }, 'login failed'); // never the password
      return reply.code(401).send({ error: 'wrong user name or password' });
    }
    d.log.info({ user: s.username, role: s.role, from: address }, 'login');
    d.audit?.record({ kind: 'login', user: s.username, address, outcome: 0 });
    reply.header('set-cookie', `${SESSION_COOKIE}=${s.token}; ${cookieAttributes}; Max-Age=${Math.ceil(w.sessionMaxAgeMs / 1000)}`);
    return { username: s.username, role: s.role, csrf: s.csrf };
  });
  app.post('/api/logout', api('any', async (req, reply, s) => {
    await auth.logout(cookie(req.headers.cookie, SESSION_COOKIE));
    d.audit?.record({ kind: 'login', action: 'logout', user: s.username, address: req.ip, outcome: 0 });
    reply.header('set-cookie', `${SESSION_COOKIE}=; ${cookieAttributes}; Max-Age=0`);
    return { ok: true };
  }));
  app.get('/api/session', api('any', async (_req, _reply, s) => ({ username: s.username, role: s.role, csrf: s.csrf, links })));

  // ---- pipeline ----
  app.get('/api/summary', api('any', async () => {
    const [pacs, crosswalk] = await Promise.all(reachability(d));
    const counts = d.journal.counts();
    return { counts, states: JOB_STATES, oldestUnfinished: d.journal.oldestUnfinished(), perMinute: d.journal.donePerMinute(10), queueDepth: d.worker.depth, pacs, crosswalk, quarantine: counts.QUARANTINED, ...pipelineHealth(d) };
  }));
  // every node's journal counts at its last heartbeat, and who works its instances: this node alone when not shared
  app.get('/api/nodes', api('any', async () => {
    const me = d.config.pacs.callingAet;
    if (!d.nodes) return { me, nodes: [{ node: me, holder: me, live: true, heartbeatSecondsAgo: 0, settled: false, counts: d.journal.counts() }] };
    const now = Date.now();
    const nodes = (await d.nodes()).map((n) => ({
      node: n._id,
      holder: n.holder,
      // a node without takeover has no expiry: live while it reports (within three report periods)
      live: n.holder === n._id && (n.expiresAt === null ? now - n.heartbeatAt < 15_000 : n.expiresAt > now),
      heartbeatSecondsAgo: Math.round((now - n.heartbeatAt) / 1000),
      settled: n.settled,
      counts: n.counts,
    }));
    return { me, nodes };
  }));
  app.get('/api/jobs', api('any', async (req) => {
    const q = req.query as { search?: string; limit?: string };
    return d.journal.recent(String(q.search ?? '').slice(0, 80), Math.min(500, Number(q.limit ?? 50) || 50)).map(publicJob);
  }));
  app.get('/api/quarantine', api('any', async () => {
    const kept = new Set(d.quarantine.jobIds());
    return d.journal.byState('QUARANTINED', 1000).map((j) => ({ ...publicJob(j), kept: kept.has(j.id) }));
  }));
  app.post('/api/quarantine/:id/:action', api('reidentifier', async (req, reply, s) => {
    const { id, action } = req.params as { id: string; action: string };
    const job = d.journal.get(Number(id));
    if (job?.state !== 'QUARANTINED') return reply.code(404).send({ error: 'no such quarantined job' });
    if (action === 'requeue') await requeueQuarantined(job, d);
    else if (action === 'purge') purgeQuarantined(job, d, `${s.username} (web)`);
    else return reply.code(404).send({ error: 'unknown action' });
    d.audit?.record({ kind: 'quarantine', action, user: s.username, address: req.ip, pacs: { aet: d.config.pacs.aet, address: d.config.pacs.host }, entries: [quarantineEntry(job)] });
    d.log.warn({ job: job.id, user: s.username, action }, 'quarantine action');
    return { ok: true };
  }));

  // ---- crosswalk ----
  app.get('/api/patients', api('any', async (req) => {
    const q = req.query as { search?: string; offset?: string; limit?: string };
    const page = await d.crosswalk.listPatients({ search: String(q.search ?? '').slice(0, 40), offset: Number(q.offset ?? 0) || 0, limit: Math.min(200, Number(q.limit ?? 50) || 50) });
    const instances = d.journal.instancesPerAlias(page.items.map((p) => p.aliasId));
    return { total: page.total, items: page.items.map((p) => ({ ...p, instances: instances.get(p.aliasId) ?? 0 })) };
  }));
  app.get('/api/patients/:alias/studies', api('any', async (req) => d.crosswalk.listStudies((req.params as { alias: string }).alias)));
  app.post('/api/patients/:alias/reveal', api('reidentifier', async (req, reply, s) => {
    const { reason } = (req.body ?? {}) as { reason?: unknown };
    const alias = (req.params as { alias: string }).alias;
    try {
      const revealed = await d.crosswalk.reveal(alias, `${s.username} (web)`, typeof reason === 'string' ? reason : '');
      // the ATNA record is spooled before the identity is shown (a spool that cannot be written refuses the reveal)
      d.audit?.record({ kind: 'reveal', user: s.username, address: req.ip, aliasId: alias });
      d.log.warn({ user: s.username, alias }, 'identity revealed (audited)');
      return revealed;
    } catch (e) {
      return reply.code(400).send({ error: (e as Error).message });
    }
  }));
  app.get('/api/audit', api('reidentifier', async (req) => d.crosswalk.audit({ aliasId: (req.query as { alias?: string }).alias || undefined, limit: 500 })));

  // ---- operations ----
  app.get('/healthz', async () => ({ status: 'ok' }));
  // not ready while either is unreachable now, or while new C-STOREs are refused (a dependency failing longer than
  // pipeline.backpressureAfterMs, or the backlog at its bound)
  app.get('/readyz', async (_req, reply) => {
    const [pacs, crosswalk] = await Promise.all(reachability(d));
    const health = pipelineHealth(d);
    return reply.code(pacs && crosswalk && !health.refusing ? 200 : 503).send({ pacs, crosswalk, ...health });
  });
  app.get('/metrics', async (_req, reply) => {
    const counts = d.journal.counts();
    const text = d.metrics.render({
      dphiant_jobs: { help: 'jobs in the journal per state', values: JOB_STATES.map((s) => [{ state: s }, counts[s]] as [Record<string, string>, number]) },
      dphiant_queue_depth: { help: 'jobs waiting for or in the de-identification worker', values: [[{}, d.worker.depth]] },
      ...d.backpressure.gauges(),
    });
    return reply.type('text/plain; version=0.0.4; charset=utf-8').send(text);
  });
  return app;
}

/** The worker's view of its dependencies and whether ingest refuses new instances now (no values, no UIDs). */
function pipelineHealth(d: WebDeps) {
  const now = Date.now();
  const snap = d.backpressure.health.snapshot(now);
  const dependencies = Object.fromEntries(
    DEPENDENCIES.map((dep) => {
      const s = snap.dependencies[dep];
      return [dep, { failing: s.failingSince !== null, failingSince: s.failingSince && new Date(s.failingSince).toISOString(), failingSeconds: Math.round(d.backpressure.health.failingMs(dep, now) / 1000), lastErrorClass: s.lastErrorClass }];
    }),
  );
  return { dependencies, stuckJobs: snap.stuckJobs, backlog: d.backpressure.backlog(), refusing: d.backpressure.cause(now) };
}

function reachability(d: WebDeps): [Promise<boolean>, Promise<boolean>] {
  return [
    d.pacs.system().then(() => true, () => false),
    d.crosswalk.listPatients({ limit: 1 }).then(() => true, () => false),
  ];
}
