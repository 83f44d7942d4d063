// Web sessions and the login limit shared by two middleman nodes (issue 14) on one FerretDB database, as behind a
// load balancer that sends each HTTP request to any node: a login on one node holds on the other, a logout on
// either ends it on both, failed logins count over both, the idle time runs over both, the database holds only
// hashes of the session tokens, and a database outage is a 503, not a crash or a logout.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { DEV_USERS } from '../src/config/index.js';
import { writeKeyFile } from '../src/keys.js';
import { hashPassword } from '../src/web/auth.js';
import { startMongoServer, type MongoServer } from './support/ferretdb.js';
import { startTestMiddleman, type TestMiddleman } from './support/middleman.js';
import { freePorts } from './support/ports.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const IDLE = 3_000;

interface Answer {
  status: number;
  cookie?: string;
  body: Record<string, unknown>;
}

async function call(base: string, route: string, opts: { method?: string; cookie?: string; csrf?: string; body?: unknown; poll?: boolean } = {}): Promise<Answer> {
  const headers: Record<string, string> = {
    ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
    ...(opts.cookie ? { cookie: opts.cookie } : {}),
    ...(opts.csrf ? { 'x-csrf-token': opts.csrf } : {}),
    ...(opts.poll ? { 'x-dphiant-poll': '1' } : {}),
  };
  const res = await fetch(`${base}${route}`, { method: opts.method ?? 'GET', headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // a page or an empty answer
  }
  return { status: res.status, cookie: res.headers.get('set-cookie')?.split(';')[0], body };
}

describe('web sessions shared by two nodes on one database (FerretDB)', function () {
  this.timeout(180_000);
  let ferret: MongoServer | undefined;
  let work: string;
  let nodes: TestMiddleman[] = [];
  let logs: string[];
  let db: MongoClient;
  const alice = 'alice-password';
  /** Every session token a test saw: none may be found in the database or a log. */
  const tokens: string[] = [];
  const base = (i: number) => `http://127.0.0.1:${nodes[i]!.web.port}`;

  const login = async (i: number, username: string, password: string) => {
    const r = await call(base(i), '/api/login', { method: 'POST', body: { username, password } });
    if (r.cookie) tokens.push(r.cookie.split('=')[1]!);
    return { ...r, csrf: r.body.csrf as string | undefined };
  };

  before(async function () {
    const server = await startMongoServer();
    if ('skip' in server) {
      console.log(`      (skipped: ${server.skip})`);
      this.skip();
    }
    ferret = server;
    work = mkdtempSync(path.join(tmpdir(), 'dphiant-websessions-'));
    // both nodes: one database, one site key, one crosswalk key, as in test/support/cluster.ts; no PACS answers
    const siteKey = path.join(work, 'site.key');
    const crosswalkKey = path.join(work, 'crosswalk.key');
    writeKeyFile(siteKey);
    writeKeyFile(crosswalkKey);
    const [pacsDicom, pacsHttp] = await freePorts(2);
    const users = [...DEV_USERS.map((u) => `${u.username}:${u.role}:${u.passwordHash}`), `alice:viewer:${hashPassword(alice)}`].join(',');
    const url = `${ferret.url}/websessions`;
    logs = [0, 1].map((i) => path.join(work, `node${i + 1}.log`));
    for (const i of [0, 1]) {
      nodes.push(
        await startTestMiddleman(
          {
            DPHIANT_CROSSWALK_URL: url,
            DPHIANT_KEY_FILE: siteKey,
            DPHIANT_CROSSWALK_KEY_FILE: crosswalkKey,
            DPHIANT_PACS_PORT: String(pacsDicom),
            DPHIANT_PACS_URL: `http://127.0.0.1:${pacsHttp}`,
            DPHIANT_PACS_CALLING_AET: `DPHIANT${i + 1}`,
            DPHIANT_WEB_USERS: users,
            DPHIANT_WEB_SESSION_IDLE_MS: String(IDLE),
          },
          undefined,
          logs[i],
        ),
      );
    }
    db = new MongoClient(url, { serverSelectionTimeoutMS: 10_000 });
    await db.connect();
  });

  after(async () => {
    await db?.close();
    for (const mm of nodes) await mm.close();
    nodes = [];
    await ferret?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('a login on node 1 works on node 2, a logout on node 2 (with the CSRF token) ends it on node 1 too', async () => {
    const a = await login(0, 'demo', 'demo');
    expect(a.status).to.equal(200);
    const onB = await call(base(1), '/api/session', { cookie: a.cookie });
    expect(onB.status, 'the cookie of node 1 on node 2').to.equal(200);
    expect(onB.body).to.include({ username: 'demo', role: 'reidentifier', csrf: a.csrf });
    const noCsrf = await call(base(1), '/api/logout', { method: 'POST', cookie: a.cookie, body: {} });
    expect(noCsrf.status, 'logout without the CSRF token').to.equal(403);
    const out = await call(base(1), '/api/logout', { method: 'POST', cookie: a.cookie, csrf: a.csrf, body: {} });
    expect(out.status).to.equal(200);
    const afterA = await call(base(0), '/api/session', { cookie: a.cookie });
    const afterB = await call(base(1), '/api/session', { cookie: a.cookie });
    const page = await fetch(`${base(0)}/`, { headers: { cookie: a.cookie! }, redirect: 'manual' });
    console.log(`      login on 1: ${a.status}; session on 2: ${onB.status}; logout on 2: ${noCsrf.status} without CSRF, ${out.status} with; then session on 1: ${afterA.status}, on 2: ${afterB.status}, dashboard on 1: ${page.status}`);
    expect(afterA.status, 'after the logout on node 2, on node 1').to.equal(401);
    expect(afterB.status).to.equal(401);
    expect(page.status, 'the dashboard redirects to the login').to.equal(302);
  });

  it('5 wrong passwords spread over both nodes: the 6th attempt is refused (429) on either, with the right password', async () => {
    const wrong: number[] = [];
    for (let i = 0; i < 5; i++) wrong.push((await login(i % 2, 'alice', `wrong-${i}`)).status);
    const sixth = [(await login(1, 'alice', alice)).status, (await login(0, 'alice', alice)).status];
    const recorded = await db.db().collection('web_login_failures').countDocuments({ key: 'user:alice' });
    console.log(`      wrong passwords on 1, 2, 1, 2, 1: ${wrong.join(', ')}; then the right one on 2 and on 1: ${sixth.join(', ')}; failures of alice in the database: ${recorded}`);
    expect(wrong).to.deep.equal([401, 401, 401, 401, 401]);
    expect(sixth).to.deep.equal([429, 429]);
    expect(recorded, 'the refused attempts are not kept as failures').to.equal(5);
    expect((await login(1, 'viewer', 'viewer')).status, 'another user from the same address').to.equal(200);
  });

  it('stores only SHA-256 hashes of the session tokens, no password, and never a token in a log', async () => {
    const a = await login(0, 'viewer', 'viewer');
    expect(a.status).to.equal(200);
    const token = a.cookie!.split('=')[1]!;
    const docs = await db.db().collection('web_sessions').find({}).toArray();
    const text = JSON.stringify(docs);
    const hashes = docs.map((d) => String(d._id));
    console.log(`      ${docs.length} sessions in web_sessions, keys ${hashes.map((h) => `${h.slice(0, 8)}…`).join(', ')}; fields ${Object.keys(docs[0]!).join(', ')}`);
    expect(hashes).to.include(createHash('sha256').update(token).digest('hex'));
    for (const h of hashes) expect(h).to.match(/^[0-9a-f]{64}$/);
    for (const t of tokens) expect(text, 'a session token in the database').not.to.contain(t);
    for (const p of [alice, 'wrong-0', 'scrypt$']) expect(text, 'a password or its hash').not.to.contain(p);
    const failures = JSON.stringify(await db.db().collection('web_login_failures').find({}).toArray());
    for (const p of [alice, 'wrong-0', 'scrypt$']) expect(failures).not.to.contain(p);
    for (const log of logs) for (const t of tokens) expect(readFileSync(log, 'utf8'), `a session token in ${log}`).not.to.contain(t);
  });

  it(`ends a session idle for ${IDLE / 1000} s over both nodes: a request on one node keeps it alive on the other, polls do not`, async () => {
    const a = await login(0, 'demo', 'demo');
    const at = Date.now();
    expect(a.status).to.equal(200);
    await sleep(2_000);
    const touch = await call(base(1), '/api/session', { cookie: a.cookie }); // the user, on node 2
    const touchedAt = Date.now();
    await sleep(at + IDLE + 1_000 - Date.now());
    // past the idle time since the login, within it since the request on node 2
    const poll = await call(base(0), '/api/summary', { cookie: a.cookie, poll: true });
    const pollAge = Date.now() - touchedAt;
    await sleep(touchedAt + IDLE + 1_000 - Date.now());
    const late = await call(base(1), '/api/summary', { cookie: a.cookie, poll: true });
    const lateAge = Date.now() - touchedAt;
    const gone = await call(base(0), '/api/session', { cookie: a.cookie });
    console.log(`      user request on 2 at ${touchedAt - at} ms: ${touch.status}; poll on 1 at ${touchedAt - at + pollAge} ms (${pollAge} ms after it): ${poll.status}; poll on 2 ${lateAge} ms after it: ${late.status}; then on 1: ${gone.status}`);
    expect(touch.status).to.equal(200);
    expect(poll.status, "node 1 knows node 2's request").to.equal(200);
    expect(late.status, 'idle for longer than the idle time: the poll in between did not count').to.equal(401);
    expect(gone.status).to.equal(401);
    expect(await db.db().collection<{ _id: string }>('web_sessions').countDocuments({ _id: createHash('sha256').update(a.cookie!.split('=')[1]!).digest('hex') }), 'the expired session is deleted').to.equal(0);
  });

  it('answers 503 with a JSON error while the database is down, and works again once it is back', async function () {
    if (!ferret!.restart) {
      console.log('      (skipped: an external MongoDB cannot be stopped by the test)');
      this.skip();
    }
    const a = await login(0, 'demo', 'demo');
    expect(a.status).to.equal(200);
    await ferret!.stop();
    const started = Date.now();
    let down: Answer[];
    try {
      down = await Promise.all([call(base(1), '/api/session', { cookie: a.cookie }), call(base(0), '/api/login', { method: 'POST', body: { username: 'demo', password: 'demo' } })]);
    } finally {
      await ferret!.restart();
    }
    const downMs = Date.now() - started;
    let back: Answer | undefined;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(500)) {
      back = await login(1, 'demo', 'demo');
      if (back.status === 200) break;
    }
    const onA = await call(base(0), '/api/session', { cookie: back!.cookie });
    console.log(`      database down: session on 2 ${down[0]!.status}, login on 1 ${down[1]!.status} (${downMs} ms); back: login on 2 ${back!.status}, its session on 1 ${onA.status}`);
    for (const r of down) {
      expect(r.status).to.equal(503);
      expect(r.body.error).to.match(/sessions are unavailable/);
    }
    expect(back!.status).to.equal(200);
    expect(onA.status).to.equal(200);
    const logged = logs.map((l) => readFileSync(l, 'utf8')).join('\n');
    expect(logged).to.contain('web sessions: the shared database is unavailable');
    for (const t of tokens) expect(logged).not.to.contain(t);
  });
});
