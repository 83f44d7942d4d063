// The web UI outside the demo: HTTPS with a configured certificate (Secure cookie, no plain HTTP), the login limit
// behind a proxy (web.trustProxy), the absolute and the idle session lifetime with the dashboard's polls not
// counting as activity, scrypt off the event loop, and `dphiant serve` exiting on an uncaught exception.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { ConfigError, DEV_USERS, loadConfig } from '../src/config/index.js';
import { hashPassword } from '../src/web/auth.js';
import { cleanEnv, CLI, DEV_STACK_ENV } from './support/cli.js';
import { run } from './support/dcmtk.js';
import { startTestMiddleman, type TestMiddleman } from './support/middleman.js';
import { freePorts } from './support/ports.js';

const CHROMIUM = '/usr/bin/chromium';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Answer {
  status: number;
  setCookie: string[];
  body: string;
}

/** One HTTPS request trusting only the test's own certificate. */
function httpsCall(url: string, ca: Buffer, opts: { method?: string; headers?: Record<string, string>; body?: unknown } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = request(url, { method: opts.method ?? 'GET', ca, headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...opts.headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, setCookie: res.headers['set-cookie'] ?? [], body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A PACS nobody answers on: the middleman starts without one, and nothing here sends it an instance. */
async function noPacs(): Promise<Record<string, string>> {
  const [dicom, http] = await freePorts(2);
  return { DPHIANT_PACS_PORT: String(dicom), DPHIANT_PACS_URL: `http://127.0.0.1:${http}` };
}

describe('web hardening: HTTPS, behind a proxy, session lifetimes, a login does not stall the SCP', function () {
  this.timeout(120_000);
  let dir: string;
  let cert: string;
  let key: string;
  let ca: Buffer;

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'dphiant-tls-'));
    cert = path.join(dir, 'cert.pem');
    key = path.join(dir, 'key.pem');
    // a throwaway self-signed certificate for 127.0.0.1, trusted by this test only
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    ca = readFileSync(cert);
  });

  describe('with web.tls and web.trustProxy set', () => {
    let mm: TestMiddleman;
    let base: string;
    const alice = 'alice-password';

    before(async () => {
      const users = [...DEV_USERS.map((u) => `${u.username}:${u.role}:${u.passwordHash}`), `alice:viewer:${hashPassword(alice)}`].join(',');
      mm = await startTestMiddleman({ ...(await noPacs()), DPHIANT_WEB_TLS_CERT: cert, DPHIANT_WEB_TLS_KEY: key, DPHIANT_WEB_TRUST_PROXY: '127.0.0.1', DPHIANT_WEB_USERS: users });
      base = `https://127.0.0.1:${mm.web.port}`;
    });
    after(async () => mm?.close());

    /** A login as a request the proxy at 127.0.0.1 forwards for `from`. */
    const login = (username: string, password: string, from: string) =>
      httpsCall(`${base}/api/login`, ca, { method: 'POST', headers: { 'x-forwarded-for': from }, body: { username, password } });

    it('serves HTTPS with the configured certificate and sets the session cookie Secure, HttpOnly, SameSite=Strict', async () => {
      const r = await login('demo', 'demo', '198.51.100.1');
      expect(r.status, r.body).to.equal(200);
      const session = r.setCookie.find((c) => c.startsWith('dphiant_session='));
      expect(session, 'session cookie').to.exist;
      expect(session).to.match(/; Secure(;|$)/);
      expect(session).to.match(/; HttpOnly(;|$)/);
      expect(session).to.match(/; SameSite=Strict(;|$)/);
      const cookie = session!.split(';')[0]!;
      expect((await httpsCall(`${base}/api/session`, ca, { headers: { cookie } })).status, 'the session works over HTTPS').to.equal(200);
      expect((await httpsCall(`${base}/healthz`, ca)).status).to.equal(200);
    });

    it('answers no plain HTTP request on the web port', async () => {
      const plain = await fetch(`http://127.0.0.1:${mm.web.port}/healthz`, { signal: AbortSignal.timeout(10_000) }).then(
        (res) => `HTTP ${res.status}`,
        (e: Error) => `refused: ${(e.cause as Error | undefined)?.message ?? e.message}`,
      );
      expect(plain).to.match(/^refused/);
    });

    it('limits 5 wrong passwords per user name and 50 failures per forwarded client address, while another forwarded address still logs in', async () => {
      for (let i = 1; i <= 5; i++) expect((await login('alice', `wrong-${i}`, '203.0.113.7')).status, `wrong password ${i}`).to.equal(401);
      expect((await login('alice', alice, '203.0.113.7')).status, 'alice after 5 failures, right password').to.equal(429);
      expect((await login('alice', alice, '203.0.113.8')).status, 'the limit is per user name, whatever the address').to.equal(429);
      // 45 more failures from 203.0.113.7 over other names: 50 from that address
      await Promise.all(Array.from({ length: 45 }, (_, i) => login(`nobody${Math.floor(i / 5)}`, 'wrong', '203.0.113.7').then((r) => expect(r.status).to.equal(401))));
      expect((await login('viewer', 'viewer', '203.0.113.7')).status, 'the spraying address is limited').to.equal(429);
      // without trustProxy every request would come from the proxy's 127.0.0.1, and this one would be refused too
      const other = await login('viewer', 'viewer', '203.0.113.8');
      expect(other.status, `another forwarded address: ${other.body}`).to.equal(200);
    });

    it('keeps a 10 ms timer on time (every gap under 60 ms) while 5 logins check their passwords', async () => {
      let last = performance.now();
      let worst = 0;
      let ticks = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        worst = Math.max(worst, now - last);
        last = now;
        ticks++;
      }, 10);
      try {
        await sleep(50);
        const results = await Promise.all(Array.from({ length: 5 }, (_, i) => login('demo', 'demo', `198.51.100.${10 + i}`)));
        expect(results.map((r) => r.status)).to.deep.equal([200, 200, 200, 200, 200]);
        await sleep(30);
      } finally {
        clearInterval(timer);
      }
      console.log(`      10 ms timer during 5 logins: ${ticks} ticks, worst gap ${worst.toFixed(1)} ms`);
      expect(worst, 'the longest the event loop was held').to.be.below(60);
    });
  });

  describe('with short session lifetimes (idle 3 s, absolute 8 s; the dashboard polls every 2 s)', () => {
    let mm: TestMiddleman;
    let base: string;
    const IDLE = 3_000;
    const MAX_AGE = 8_000;

    before(async () => {
      mm = await startTestMiddleman({ ...(await noPacs()), DPHIANT_WEB_SESSION_IDLE_MS: String(IDLE), DPHIANT_WEB_SESSION_MAX_AGE_MS: String(MAX_AGE) });
      base = `http://127.0.0.1:${mm.web.port}`;
    });
    after(async () => mm?.close());

    const login = async () => {
      const res = await fetch(`${base}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'demo', password: 'demo' }) });
      expect(res.status).to.equal(200);
      const setCookie = res.headers.get('set-cookie')!;
      expect(setCookie, 'the browser keeps the cookie for the absolute lifetime').to.contain(`Max-Age=${MAX_AGE / 1000}`);
      expect(setCookie, 'no Secure on plain HTTP: the browser would drop it').not.to.contain('Secure');
      return { cookie: setCookie.split(';')[0]!, at: Date.now() };
    };

    /** Requests every 250 ms (polls or not) until the first 401 or `forMs`: the session's age at that 401. */
    const keepCalling = async (cookie: string, at: number, poll: boolean, forMs: number) => {
      while (Date.now() - at < forMs) {
        const res = await fetch(`${base}/api/summary`, { headers: { cookie, ...(poll ? { 'x-dphiant-poll': '1' } : {}) } });
        if (res.status === 401) return Date.now() - at;
        expect(res.status).to.equal(200);
        await sleep(250);
      }
      return null;
    };

    it('ends a session that only the dashboard polls after the idle time, though every poll was answered', async () => {
      const { cookie, at } = await login();
      const endedAt = await keepCalling(cookie, at, true, MAX_AGE);
      expect(endedAt, 'polls kept the session alive until the absolute limit').to.be.a('number');
      expect(endedAt!).to.be.at.least(IDLE).and.below(MAX_AGE);
    });

    it('keeps a session alive past the idle time while the user makes requests, and ends it at the absolute lifetime all the same', async () => {
      const { cookie, at } = await login();
      const endedAt = await keepCalling(cookie, at, false, MAX_AGE + 3_000);
      expect(endedAt, 'the session outlived its absolute lifetime').to.be.a('number');
      expect(endedAt!, 'user requests every 250 ms keep it past the idle time').to.be.at.least(MAX_AGE);
      expect((await fetch(`${base}/api/session`, { headers: { cookie } })).status, 'gone for good').to.equal(401);
    });

    it("in a browser, the dashboard's own polls carry x-dphiant-poll and the page goes to /login once the session has been idle", async function () {
      if (!existsSync(CHROMIUM)) this.skip();
      const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
      try {
        const page = await (await browser.newContext()).newPage();
        const summaries: (string | undefined)[] = [];
        page.on('request', (r) => {
          if (new URL(r.url()).pathname === '/api/summary') summaries.push(r.headers()['x-dphiant-poll']);
        });
        await page.goto(`${base}/login`);
        await page.fill('#username', 'demo');
        await page.fill('#password', 'demo');
        await Promise.all([page.waitForURL(`${base}/`, { timeout: 15_000 }), page.click('#submit')]);
        await page.waitForURL(/\/login\?next=/, { timeout: MAX_AGE - 2_000 });
        expect(summaries[0], 'the first refresh, at page load, is the user').to.equal(undefined);
        expect(summaries.length, 'timed refreshes after the first').to.be.at.least(2);
        expect(summaries.slice(1), 'the timed refreshes').to.deep.equal(summaries.slice(1).map(() => '1'));
      } finally {
        await browser.close();
      }
    });
  });

  describe('configuration of the new settings', () => {
    const env = (e: Record<string, string>) => ({ ...DEV_STACK_ENV, DPHIANT_DATA_DIR: dir, ...e });
    const rejects = (e: Record<string, string>, key: string, reason: string) => {
      try {
        loadConfig({ env: env(e) });
        expect.fail('accepted');
      } catch (err) {
        expect(err).to.be.instanceOf(ConfigError);
        expect((err as ConfigError).key).to.equal(key);
        expect((err as Error).message).to.contain(reason);
      }
    };

    it('accepts both TLS files, and refuses one without the other, an unreadable file, a file that is not PEM, and a key of another certificate', () => {
      expect(loadConfig({ env: env({ DPHIANT_WEB_TLS_CERT: cert, DPHIANT_WEB_TLS_KEY: key }) }).web.tls).to.deep.equal({ cert, key });
      rejects({ DPHIANT_WEB_TLS_CERT: cert }, 'web.tls.key', 'together with web.tls.cert');
      rejects({ DPHIANT_WEB_TLS_KEY: key }, 'web.tls.cert', 'together with web.tls.key');
      rejects({ DPHIANT_WEB_TLS_CERT: path.join(dir, 'missing.pem'), DPHIANT_WEB_TLS_KEY: key }, 'web.tls.cert', 'cannot read');
      rejects({ DPHIANT_WEB_TLS_CERT: key, DPHIANT_WEB_TLS_KEY: key }, 'web.tls.cert', 'not a PEM certificate');
      rejects({ DPHIANT_WEB_TLS_CERT: cert, DPHIANT_WEB_TLS_KEY: cert }, 'web.tls.key', 'not a PEM private key');
      const other = path.join(dir, 'other-key.pem');
      execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', other], { stdio: 'ignore' });
      rejects({ DPHIANT_WEB_TLS_CERT: cert, DPHIANT_WEB_TLS_KEY: other }, 'web.tls.key', 'not the private key');
    });

    it('`dphiant serve` with an unreadable certificate exits 2 naming web.tls.cert', async () => {
      const r = await run(process.execPath, [CLI, 'serve'], { env: { ...cleanEnv, ...DEV_STACK_ENV, DPHIANT_DATA_DIR: dir, DPHIANT_WEB_TLS_CERT: '/nonexistent/cert.pem', DPHIANT_WEB_TLS_KEY: key }, timeoutMs: 20_000 });
      expect(r.code).to.equal(2);
      expect(r.stderr).to.contain('web.tls.cert: cannot read /nonexistent/cert.pem');
    });
  });

  it('`dphiant serve` logs an uncaught exception (message and stack) and exits non-zero, for its supervisor to restart it', async () => {
    // throws from a timer once serve has installed its handler: a bug outside every try
    const preload = path.join(dir, 'throw-later.mjs');
    writeFileSync(preload, "const t = setInterval(() => { if (process.listenerCount('uncaughtException') > 0) { clearInterval(t); throw new Error('planted bug'); } }, 50);\n");
    const [scp, web] = await freePorts(2);
    const r = await run(process.execPath, ['--import', pathToFileURL(preload).href, CLI, 'serve'], {
      env: { ...cleanEnv, ...DEV_STACK_ENV, ...(await noPacs()), DPHIANT_DATA_DIR: mkdtempSync(path.join(dir, 'data-')), DPHIANT_SCP_PORT: String(scp), DPHIANT_WEB_PORT: String(web), DPHIANT_LOG_LEVEL: 'warn' },
      timeoutMs: 30_000,
    });
    expect(r.code, `exit code; output: ${r.stdout}${r.stderr}`).to.equal(70);
    const entry = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.msg === 'uncaught exception: exiting');
    expect(entry, r.stdout).to.exist;
    expect(entry).to.include({ err: 'planted bug' });
    expect(entry!.stack).to.contain('throw-later.mjs');
  });
});
