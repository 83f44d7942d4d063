// The web UI in a real browser (playwright-core driving Debian's /usr/bin/chromium, headless) against one stack:
// Orthanc PACS + modality and an in-process middleman. Login, the live dashboard, the crosswalk's audited reveal,
// roles, sessions and CSRF, the login limit, no planted PHI in any page, and the operations endpoints.
import { expect } from 'chai';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { findUp } from '../src/paths.js';
import { generateElements, generateStudies, type Manifest } from '../tools/synth/generate.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { part10 } from '../src/dicom/writer.js';
import { REASONS } from '../src/reasons.js';
import { dphiant } from './support/cli.js';
import { storescu } from './support/dcmtk.js';
import { waitUntilSettled } from './support/pipeline.js';
import { decodePng, regionStats } from './support/png.js';
import { startStack, type TestStack } from './support/stack.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = findUp('test-artifacts');
const VIEWPORT = { width: 1280, height: 900 };

interface PromSample {
  value?: string;
  labels?: Record<string, string>;
}
interface PromFamily {
  name: string;
  help: string;
  type: string;
  metrics: PromSample[];
}
const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => PromFamily[];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('web UI: dashboard, crosswalk and audit in a browser; sessions, roles and operations endpoints', function () {
  this.timeout(120_000);
  let stack: TestStack;
  let manifest: Manifest;
  let base: string;
  let browser: Browser | undefined;
  let demo: BrowserContext | undefined;
  let viewer: BrowserContext | undefined;
  /** Every planted identifying value of the generated patients (names, IDs, birth dates, accession numbers, UIDs). */
  let phi: string[];
  const savedTestLog = process.env.DPHIANT_TEST_LOG;

  /** The planted values found in `text` (case-insensitive). */
  const leaks = (text: string) => phi.filter((v) => text.toLowerCase().includes(v.toLowerCase()));

  const needBrowser = (ctx: Mocha.Context) => {
    if (!browser) ctx.skip();
  };

  /**
   * The generated instances have gone through the middleman (the dashboard test sends them while it watches; a test
   * run alone under --grep has them sent here), and the pipeline is settled.
   */
  const ensureSent = async () => {
    if (stack.mm.journal.counts().DONE < manifest.instances.length) {
      const sent = await stack.modalityRest!.storeToModality('middleman', await stack.modalityRest!.findStudies({}));
      expect(sent.FailedInstancesCount).to.equal(0);
    }
    await waitUntilSettled(stack.mm.journal, 60_000);
  };

  /** The alias of a generated patient, looked up in the crosswalk directly (no audit record, no new alias). */
  const aliasOf = async (i: number) => {
    await ensureSent();
    const p = manifest.patients[i]!;
    const a = await stack.mm.crosswalk.patient({ patientId: p.patientId, issuerOfPatientId: p.issuerOfPatientId, name: p.name, sex: p.sex, birthDate: p.birthDate });
    expect(a.created, `patient ${i} already had an alias`).to.equal(false);
    return a.aliasId;
  };

  /** A login through the API with plain fetch: the status, the session cookie and the CSRF token. */
  const apiLogin = async (username: string, password: string) => {
    const res = await fetch(`${base}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
    const text = await res.text();
    const body = (() => {
      try {
        return JSON.parse(text) as { csrf?: string; error?: string };
      } catch {
        return {};
      }
    })();
    return { status: res.status, cookie: res.headers.get('set-cookie')?.split(';')[0], csrf: body.csrf, text };
  };

  /** Logs in through the login form of a fresh page. */
  const formLogin = async (ctx: BrowserContext, username: string, password: string): Promise<Page> => {
    const page = await ctx.newPage();
    await page.goto(`${base}/login`);
    await page.fill('#username', username);
    await page.fill('#password', password);
    await Promise.all([page.waitForURL(`${base}/`, { timeout: 15_000 }), page.click('#submit')]);
    return page;
  };

  /** A page of the demo user's context at `where`, logging in through the form first when there is no session yet. */
  const demoPage = async (where: string): Promise<Page> => {
    let page: Page;
    if ((await demo!.cookies()).length === 0) page = await formLogin(demo!, 'demo', 'demo');
    else page = await demo!.newPage();
    await page.goto(`${base}${where}`);
    expect(new URL(page.url()).pathname, 'the demo session is alive').to.equal(where);
    await page.locator('#user').filter({ hasText: 'demo' }).waitFor({ timeout: 10_000 });
    return page;
  };

  /** The HTML and the rendered text of a page. */
  const pageContent = async (page: Page) => `${await page.content()}\n${await page.locator('body').innerText()}`;

  before(async function () {
    this.timeout(180_000);
    // the middleman's pino log stays silent: nothing to capture (see the login-limit test)
    delete process.env.DPHIANT_TEST_LOG;
    stack = await startStack({ modality: true });
    base = `http://127.0.0.1:${stack.mm.web.port}`;
    manifest = await generateStudies({ outDir: path.join(stack.work, 'in'), patients: 3, studiesPerPatient: 2, seriesPerStudy: 1, instancesPerSeries: 2, rows: 32, cols: 32, seed: 4242 });
    for (const i of manifest.instances) await stack.modalityRest!.upload(readFileSync(i.path));
    phi = [
      ...manifest.patients.flatMap((p) => {
        const [family = '', given = ''] = p.name.split('^');
        return [
          p.name,
          `${given} ${family}`,
          `${family}, ${given}`,
          p.patientId,
          p.birthDate,
          `${p.birthDate.slice(0, 4)}-${p.birthDate.slice(4, 6)}-${p.birthDate.slice(6, 8)}`,
          ...p.studies.flatMap((s) => [s.accessionNumber, s.studyInstanceUid]),
        ];
      }),
      ...manifest.instances.flatMap((i) => [i.sopInstanceUid, i.seriesInstanceUid]),
    ];
    if (!existsSync(CHROMIUM)) {
      console.log(`    ${CHROMIUM} is missing (scripts/install-deps.sh --test, run by make test, installs Debian's chromium): the browser tests are skipped`);
      return;
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    demo = await browser.newContext({ viewport: VIEWPORT });
    viewer = await browser.newContext({ viewport: VIEWPORT });
  });

  after(async function () {
    this.timeout(60_000);
    await browser?.close();
    await stack?.stop();
    if (savedTestLog === undefined) delete process.env.DPHIANT_TEST_LOG;
    else process.env.DPHIANT_TEST_LOG = savedTestLog;
  });

  it('logs in through the login form (demo/demo) and lands on the dashboard', async function () {
    needBrowser(this);
    const page = await demo!.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Uncaught/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    await page.goto(`${base}/`);
    expect(new URL(page.url()).pathname, 'no session yet: the dashboard sends to the login page').to.equal('/login');
    await page.fill('#username', 'demo');
    await page.fill('#password', 'demo');
    await Promise.all([page.waitForURL(`${base}/`, { timeout: 15_000 }), page.click('#submit')]);
    expect(await page.title()).to.match(/dashboard/i);
    expect(await page.locator('body').getAttribute('data-page')).to.equal('dashboard');
    await page.locator('#user').filter({ hasText: 'demo (reidentifier)' }).waitFor({ timeout: 10_000 });
    await page.locator('[data-state="DONE"] b').waitFor({ timeout: 10_000 });
    expect(await page.locator('#pacs').textContent()).to.equal('reachable');
    expect(await page.locator('#db').textContent()).to.equal('reachable');
    expect(await page.locator('#audit-link').isVisible(), 'a reidentifier sees the audit link').to.equal(true);
    const cookies = await demo!.cookies();
    const session = cookies.find((c) => c.name === 'dphiant_session');
    expect(session, 'session cookie').to.exist;
    expect(session!.httpOnly, 'HttpOnly session cookie').to.equal(true);
    expect(session!.sameSite).to.equal('Strict');
    expect(problems, 'no script error and no CSP violation').to.deep.equal([]);
    await page.close();
  });

  it("watches the DONE count on the dashboard change while the demo generator's instances are sent", async function () {
    needBrowser(this);
    const page = await demoPage('/');
    const done = page.locator('[data-state="DONE"] b');
    await done.waitFor({ timeout: 10_000 });
    const before = Number(await done.textContent());
    expect(before).to.equal(stack.mm.journal.counts().DONE);
    const expected = before + manifest.instances.length;
    await page.evaluate('window.__notReloaded = true'); // the page must update by itself, not by a reload

    const studyIds = await stack.modalityRest!.findStudies({});
    expect(studyIds).to.have.length(manifest.patients.length * 2);
    const seen: number[] = [before];
    let sending = true;
    const watch = (async () => {
      const end = Date.now() + 90_000;
      while (Date.now() < end) {
        const n = Number(await done.textContent());
        if (n !== seen.at(-1)) seen.push(n);
        if (n >= expected && !sending) return;
        await sleep(100);
      }
    })();
    const sent = await stack.modalityRest!.storeToModality('middleman', studyIds);
    sending = false;
    expect(sent.FailedInstancesCount).to.equal(0);
    await watch;
    expect(seen.at(-1), `DONE counts the page showed: ${seen.join(' → ')}`).to.equal(expected);
    expect(seen[0]).to.equal(before);
    expect(await page.evaluate('window.__notReloaded'), 'the page polled; it was not reloaded').to.equal(true);
    await waitUntilSettled(stack.mm.journal, 30_000);
    expect(stack.mm.journal.counts().DONE, 'the journal agrees with the page').to.equal(expected);
    await page.close();
  });

  /** Reveals `alias` on the crosswalk page of `page` with `reason`; returns the text of the page showing the identity. */
  const revealThroughPage = async (page: Page, alias: string, reason: string) => {
    await page.locator('#patients tr').filter({ hasText: alias }).locator('button', { hasText: 'open' }).click();
    await page.locator('#detail-alias').filter({ hasText: alias }).waitFor({ timeout: 10_000 });
    await page.fill('#reason', reason);
    await page.click('#reveal');
    await page.locator('#revealed').filter({ hasText: alias }).waitFor({ state: 'visible', timeout: 10_000 });
    return pageContent(page);
  };

  it('shows none of the planted PHI (names, IDs, birth dates) in the dashboard, the crosswalk before any reveal, and the audit page after reveals that showed it', async function () {
    needBrowser(this);
    await ensureSent();
    expect(phi.length).to.be.greaterThan(10);
    const received: Promise<string>[] = [];
    const listen = (page: Page) =>
      page.on('response', (r) => {
        if (new URL(r.url()).pathname.startsWith('/api/')) received.push(r.text().catch(() => ''));
      });

    const pages: Record<string, string> = {};
    const dash = await demoPage('/');
    listen(dash);
    await dash.reload();
    await dash.locator('#jobs tr').nth(manifest.instances.length - 1).waitFor({ timeout: 10_000 });
    pages.dashboard = await pageContent(dash);
    // the dashboard does list the jobs, by alias
    const aliases = [await aliasOf(0), await aliasOf(2)];
    expect(pages.dashboard).to.contain(aliases[0]);

    const cw = await demoPage('/crosswalk');
    listen(cw);
    await cw.reload();
    await cw.locator('#patients tr').nth(manifest.patients.length - 1).waitFor({ timeout: 10_000 });
    await cw.locator('#patients tr').filter({ hasText: aliases[0] }).locator('button').click();
    await cw.locator('#studies tr').nth(1).waitFor({ timeout: 10_000 });
    expect(await cw.locator('#revealed').isHidden(), 'nothing revealed').to.equal(true);
    pages.crosswalk = await pageContent(cw);

    // Real reveals, with reasons, on a page whose answers are not collected: they do hold the identity. That the
    // same leak check finds the patient's name, ID and birth date there proves it reads text that could hold them.
    const revealer = await demoPage('/crosswalk');
    await revealer.locator('#patients tr').nth(manifest.patients.length - 1).waitFor({ timeout: 10_000 });
    const reasons = aliases.map((a, k) => `PHI check reveal ${k + 1} of ${a} at ${Date.now()}`);
    for (const [k, i] of [0, 2].entries()) {
      const p = manifest.patients[i]!;
      const shown = await revealThroughPage(revealer, aliases[k]!, reasons[k]!);
      expect(leaks(shown), `the reveal of patient ${i} shows the identity`).to.include.members([p.name, p.patientId, p.birthDate]);
    }

    const audit = await demoPage('/audit');
    listen(audit);
    await audit.reload();
    for (const [k, alias] of aliases.entries()) {
      const row = audit.locator('#audit tr').filter({ hasText: reasons[k]! });
      await row.first().waitFor({ timeout: 10_000 });
      expect(await row.count(), `audit rows of reveal ${k + 1}`).to.equal(1);
      const [, action, auditAlias, user, auditReason] = await row.locator('td').allTextContents();
      expect({ action, auditAlias, auditReason }).to.deep.equal({ action: 'reveal', auditAlias: alias, auditReason: reasons[k] });
      expect(user).to.match(/^demo\b/);
    }
    pages.audit = await pageContent(audit);

    for (const [name, text] of Object.entries(pages)) expect(leaks(text), `planted PHI in the ${name} page`).to.deep.equal([]);
    await sleep(300);
    const apiBodies = (await Promise.all(received)).join('\n');
    expect(apiBodies.length, 'the pages fetched their data').to.be.greaterThan(100);
    for (const reason of reasons) expect(apiBodies, 'the audit answer holds the reveals').to.contain(reason);
    expect(leaks(apiBodies), 'planted PHI in the API answers these pages received').to.deep.equal([]);
    await Promise.all([dash.close(), cw.close(), revealer.close(), audit.close()]);
  });

  it('saves screenshots of the dashboard and the crosswalk page to test-artifacts/: PNGs of the page size that show the counters, the jobs and the aliases', async function () {
    needBrowser(this);
    await ensureSent();
    mkdirSync(ARTIFACTS, { recursive: true });
    const files = { dashboard: path.join(ARTIFACTS, 'dashboard.png'), crosswalk: path.join(ARTIFACTS, 'crosswalk.png') };
    for (const f of Object.values(files)) rmSync(f, { force: true });

    const dash = await demoPage('/');
    await dash.locator('#jobs tr').nth(manifest.instances.length - 1).waitFor({ timeout: 10_000 });
    // the per-minute chart: ten bars whose counts add up to the jobs done (all of them in the last minutes)
    await dash.locator('#bars div').filter({ visible: true }).first().waitFor({ timeout: 10_000 });
    const bars = await dash.locator('#bars div').evaluateAll((divs) => divs.map((d) => d.getAttribute('title') ?? ''));
    expect(bars).to.have.length(10);
    const done = stack.mm.journal.counts().DONE;
    expect(bars.reduce((n, t) => n + Number(t.split(': ').at(-1)), 0), `bars ${bars.join(' | ')}`).to.equal(done);
    const doneCounter = dash.locator('[data-state="DONE"]');
    expect(await doneCounter.locator('b').textContent(), 'the DONE counter').to.equal(String(done));
    expect(await doneCounter.isVisible()).to.equal(true);
    // What a screenshot shows, in page coordinates (a full-page shot starts at the top of the document), measured
    // right after the shot: the dashboard redraws its tables every 2 s.
    const boxOf = async (page: Page, selector: string) => {
      const r = await page.locator(selector).first().boundingBox(); // relative to the viewport
      const scroll = (await page.evaluate('[window.scrollX, window.scrollY]')) as [number, number];
      expect(r, `${selector} is rendered`).to.not.equal(null);
      expect(r!.width * r!.height, `${selector} has an area`).to.be.greaterThan(0);
      return { x: r!.x + scroll[0], y: r!.y + scroll[1], width: r!.width, height: r!.height };
    };
    /** `areas`: selector → the fewest colours it must show (text: anti-aliased glyphs give many; bars: solid fills). */
    const shoot = async (name: keyof typeof files, page: Page, areas: Record<string, number>) => {
      await page.screenshot({ path: files[name], fullPage: true });
      const boxes = await Promise.all(Object.keys(areas).map((a) => boxOf(page, a)));
      const docHeight = (await page.evaluate('document.documentElement.scrollHeight')) as number;
      const png = decodePng(readFileSync(files[name]));
      expect({ width: png.width, height: png.height }, `${name} screenshot size: the viewport's width, the page's height`).to.deep.equal({ width: VIEWPORT.width, height: Math.max(VIEWPORT.height, docHeight) });
      const whole = regionStats(png, { x: 0, y: 0, width: png.width, height: png.height });
      expect(whole.colours, `${name}: colours in the whole screenshot`).to.be.greaterThan(16);
      for (const [k, [selector, minColours]] of Object.entries(areas).entries()) {
        // something is drawn there: enough colours, and a fair share of the area that is not its background
        const area = regionStats(png, boxes[k]!);
        console.log(`      ${name} ${selector}: ${area.colours} colours, ${(area.inked * 100).toFixed(1)} % not background`);
        expect(area.colours, `${name} ${selector}: colours`).to.be.at.least(minColours);
        expect(area.inked, `${name} ${selector}: share of pixels not background`).to.be.greaterThan(0.01);
      }
      return { png, boxes };
    };
    const dashShot = await shoot('dashboard', dash, { '[data-state="DONE"]': 16, '#bars': 2, '#jobs': 16 });

    // an alias opened, nothing revealed: the screenshot holds no PHI
    const cw = await demoPage('/crosswalk');
    await cw.locator('#patients tr').nth(manifest.patients.length - 1).waitFor({ timeout: 10_000 });
    await cw.locator('#patients tr').first().locator('button').click();
    await cw.locator('#studies tr').first().waitFor({ timeout: 10_000 });
    await shoot('crosswalk', cw, { '#patients': 16, '#studies': 16 });

    // and a blank area of the same image is found blank, so the checks above can tell
    const blank = regionStats(dashShot.png, { x: VIEWPORT.width - 8, y: dashShot.boxes[2]!.y, width: 8, height: 8 });
    expect(blank.inked, 'the right margin next to the jobs table is background').to.equal(0);
    await Promise.all([dash.close(), cw.close()]);
  });

  it('on the crosswalk page, finds an alias by its prefix, opens it, reveals it with a reason, sees the identity, then finds the audit entry (alias, user, reason) on the audit page', async function () {
    needBrowser(this);
    const patient = manifest.patients[1]!;
    const alias = await aliasOf(1);
    const prefix = alias.slice(0, 5);
    const all = (await stack.mm.crosswalk.listPatients({ limit: 200 })).items.map((p) => p.aliasId);
    const matching = all.filter((a) => a.startsWith(prefix));
    const auditBefore = (await stack.mm.crosswalk.audit()).length;

    const page = await demoPage('/crosswalk');
    await page.locator('#patients tr').nth(all.length - 1).waitFor({ timeout: 10_000 });
    await page.fill('#search', prefix);
    await page.waitForFunction(
      `document.getElementById('total').textContent === ${JSON.stringify(`${matching.length} aliases`)} && [...document.querySelectorAll('#patients tr')].every((tr) => tr.cells[0].textContent.startsWith(${JSON.stringify(prefix)}))`,
      undefined,
      { timeout: 10_000 },
    );
    expect(await page.locator('#patients tr td:first-child').allTextContents()).to.deep.equal(matching);

    await page.locator('#patients tr').filter({ hasText: alias }).locator('button', { hasText: 'open' }).click();
    await page.locator('#detail').waitFor({ state: 'visible', timeout: 10_000 });
    expect(await page.locator('#detail-alias').textContent()).to.equal(alias);
    await page.locator('#studies tr').nth(patient.studies.length - 1).waitFor({ timeout: 10_000 });
    expect(await page.locator('#reveal-box').isVisible(), 'a reidentifier sees the reveal box').to.equal(true);

    const reason = `tumour board follow-up ${Date.now()}`;
    await page.fill('#reason', reason);
    await page.click('#reveal');
    await page.locator('#revealed').waitFor({ state: 'visible', timeout: 10_000 });
    const shown = (await page.locator('#revealed').textContent()) ?? '';
    const revealed = JSON.parse(shown) as { aliasId: string; identity: { patientId: string; name: string; birthDate: string; sex: string }; studies: { accessionNumber: string; studyInstanceUid: string }[] };
    expect(revealed.aliasId).to.equal(alias);
    expect(revealed.identity).to.include({ patientId: patient.patientId, name: patient.name, birthDate: patient.birthDate, sex: patient.sex });
    expect(revealed.studies.map((s) => s.accessionNumber).sort()).to.deep.equal(patient.studies.map((s) => s.accessionNumber).sort());
    expect(await page.locator('body').innerText(), 'the identity is on the screen').to.contain(patient.name);
    expect(await page.locator('#reveal-error').textContent()).to.equal('');
    expect((await stack.mm.crosswalk.audit()).length, 'one audit record').to.equal(auditBefore + 1);

    await Promise.all([page.waitForURL(`${base}/audit`), page.click('#audit-link')]);
    const row = page.locator('#audit tr').filter({ hasText: reason });
    await row.first().waitFor({ timeout: 10_000 });
    expect(await row.count()).to.equal(1);
    const [at, action, auditAlias, user, auditReason] = await row.locator('td').allTextContents();
    expect(Date.parse(at!), 'when').to.be.greaterThan(Date.now() - 120_000);
    expect({ action, auditAlias, auditReason }).to.deep.equal({ action: 'reveal', auditAlias: alias, auditReason: reason });
    expect(user).to.match(/^demo\b/);
    expect(leaks(await pageContent(page)), 'the audit page names no PHI, only the alias').to.deep.equal([]);
    await page.close();
  });

  it('shows a viewer (viewer/viewer) neither the reveal box nor the audit link, and answers 403 to its reveal request (with the CSRF token)', async function () {
    needBrowser(this);
    const alias = await aliasOf(0);
    const auditBefore = (await stack.mm.crosswalk.audit()).length;
    const page = await formLogin(viewer!, 'viewer', 'viewer');
    await page.locator('#user').filter({ hasText: 'viewer (viewer)' }).waitFor({ timeout: 10_000 });
    await page.locator('[data-state="DONE"] b').waitFor({ timeout: 10_000 });
    expect(await page.locator('#audit-link').isHidden(), 'dashboard: audit link hidden').to.equal(true);

    await page.goto(`${base}/crosswalk`);
    await page.locator('#patients tr').filter({ hasText: alias }).locator('button').click();
    await page.locator('#detail').waitFor({ state: 'visible', timeout: 10_000 });
    await page.locator('#studies tr').first().waitFor({ timeout: 10_000 });
    expect(await page.locator('#audit-link').isHidden(), 'crosswalk: audit link hidden').to.equal(true);
    expect(await page.locator('#reveal-box').isHidden(), 'crosswalk: reveal box hidden').to.equal(true);
    expect(await page.locator('#reveal').isVisible()).to.equal(false);

    const answer = await page.evaluate(async (a: string) => {
      const session = (await (await fetch('/api/session')).json()) as { csrf: string; role: string };
      const res = await fetch(`/api/patients/${encodeURIComponent(a)}/reveal`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrf },
        body: JSON.stringify({ reason: 'a viewer trying to reveal' }),
      });
      const audit = await fetch('/api/audit');
      return { role: session.role, csrf: session.csrf, status: res.status, body: await res.text(), audit: audit.status };
    }, alias);
    expect(answer.role).to.equal('viewer');
    expect(answer.csrf, 'the CSRF token was sent').to.be.a('string').and.not.equal('');
    expect(answer.status, `reveal as a viewer: ${answer.body}`).to.equal(403);
    expect(leaks(answer.body)).to.deep.equal([]);
    expect(answer.audit, '/api/audit as a viewer').to.equal(403);
    expect((await stack.mm.crosswalk.audit()).length, 'no audit record, nothing revealed').to.equal(auditBefore);
    await page.close();
  });

  it('without a session, redirects every page to /login and answers 401 to every API with crosswalk or pipeline data', async () => {
    const alias = await aliasOf(0);
    for (const p of ['/', '/crosswalk', '/audit']) {
      const res = await fetch(`${base}${p}`, { redirect: 'manual' });
      expect(res.status, `GET ${p}`).to.be.oneOf([301, 302, 303, 307, 308]);
      expect(res.headers.get('location'), `GET ${p} redirects to`).to.match(/^(http:\/\/127\.0\.0\.1:\d+)?\/login(\?|$)/);
      expect(await res.text()).not.to.contain('<table');
    }
    const auditBefore = (await stack.mm.crosswalk.audit()).length;
    const apis: [string, string][] = [
      ['GET', '/api/patients'],
      ['GET', `/api/patients/${alias}/studies`],
      ['POST', `/api/patients/${alias}/reveal`],
      ['GET', '/api/audit'],
      ['GET', '/api/summary'],
      ['GET', '/api/jobs'],
      ['GET', '/api/quarantine'],
      ['GET', '/api/session'],
    ];
    for (const [method, url] of apis) {
      const res = await fetch(`${base}${url}`, {
        method,
        redirect: 'manual',
        ...(method === 'POST' ? { headers: { 'content-type': 'application/json', 'x-csrf-token': 'guess' }, body: JSON.stringify({ reason: 'no session at all' }) } : {}),
      });
      const body = await res.text();
      expect(res.status, `${method} ${url}: ${body}`).to.equal(401);
      expect(leaks(body)).to.deep.equal([]);
      expect(body).not.to.contain(alias.slice(3));
    }
    expect((await stack.mm.crosswalk.audit()).length, 'nothing revealed').to.equal(auditBefore);
  });

  it('refuses a state-changing request without the CSRF token with 403, even with a valid session cookie', async () => {
    const alias = await aliasOf(2);
    const login = await apiLogin('demo', 'demo');
    expect(login.status, login.text).to.equal(200);
    expect(login.cookie).to.match(/^dphiant_session=./);
    expect(login.csrf).to.be.a('string');
    const cookie = login.cookie!;
    const session = await fetch(`${base}/api/session`, { headers: { cookie } });
    expect(session.status, 'the cookie is a valid session').to.equal(200);

    const auditBefore = (await stack.mm.crosswalk.audit()).length;
    const reveal = (headers: Record<string, string>) =>
      fetch(`${base}/api/patients/${alias}/reveal`, { method: 'POST', headers: { cookie, 'content-type': 'application/json', ...headers }, body: JSON.stringify({ reason: 'checking the CSRF guard' }) });
    const without = await reveal({});
    const withoutBody = await without.text();
    expect(without.status, `no token: ${withoutBody}`).to.equal(403);
    expect(leaks(withoutBody)).to.deep.equal([]);
    expect((await reveal({ 'x-csrf-token': 'not-the-token' })).status, 'wrong token').to.equal(403);
    expect((await reveal({ 'x-csrf-token': '' })).status, 'empty token').to.equal(403);
    expect((await stack.mm.crosswalk.audit()).length, 'nothing revealed, nothing audited').to.equal(auditBefore);

    const logout = await fetch(`${base}/api/logout`, { method: 'POST', headers: { cookie } });
    expect(logout.status, 'logout without the token').to.equal(403);
    expect((await fetch(`${base}/api/session`, { headers: { cookie } })).status, 'the session survived').to.equal(200);

    // the same request with the token goes through: the 403s above were the CSRF guard
    const ok = await reveal({ 'x-csrf-token': login.csrf! });
    expect(ok.status).to.equal(200);
    expect((await stack.mm.crosswalk.audit()).length).to.equal(auditBefore + 1);
    expect((await fetch(`${base}/api/logout`, { method: 'POST', headers: { cookie, 'x-csrf-token': login.csrf! } })).status).to.equal(200);
    expect((await fetch(`${base}/api/session`, { headers: { cookie } })).status, 'logged out').to.equal(401);
  });

  it("after a login through the form, follows the next= parameter only to a path of this site (not //host, not /\\host)", async function () {
    needBrowser(this);
    const ctx = await browser!.newContext();
    try {
      const offsite: string[] = [];
      await ctx.route('**/*', (route) => {
        const url = route.request().url();
        if (new URL(url).host === new URL(base).host) return route.continue();
        offsite.push(url);
        return route.fulfill({ status: 200, contentType: 'text/html', body: '<title>elsewhere</title>' });
      });
      for (const next of ['/crosswalk', '//evil.example/phish', '/\\evil.example/phish']) {
        await ctx.clearCookies();
        const page = await ctx.newPage();
        await page.goto(`${base}/login?next=${encodeURIComponent(next)}`);
        await page.fill('#username', 'demo');
        await page.fill('#password', 'demo');
        await Promise.all([page.waitForURL((u) => u.pathname !== '/login', { timeout: 15_000 }), page.click('#submit')]);
        const landed = new URL(page.url());
        expect(landed.host, `next=${next} led to ${page.url()}`).to.equal(new URL(base).host);
        expect(landed.pathname).to.equal(next === '/crosswalk' ? '/crosswalk' : '/');
        await page.close();
      }
      expect(offsite, 'requests that left the site after a login').to.deep.equal([]);
    } finally {
      await ctx.close();
    }
  });

  // Runs after every test that logs in: the failures it makes may lock logins from this address for minutes.
  it('rate-limits failed logins (429 after 5 wrong passwords for one user name), never echoes the password, and still lets another user log in', async () => {
    const wrong = (i: number) => `Wr0ng-Passw0rd-${i}-x9`;
    for (let i = 1; i <= 5; i++) {
      const r = await apiLogin('viewer', wrong(i));
      expect(r.status, `wrong password ${i}: ${r.text}`).to.equal(401);
      expect(r.text).not.to.contain(wrong(i));
      expect(r.cookie, 'no session for a wrong password').to.equal(undefined);
    }
    const sixth = await apiLogin('viewer', wrong(6));
    expect(sixth.status, `6th wrong password: ${sixth.text}`).to.equal(429);
    expect(sixth.text).not.to.contain(wrong(6));
    const right = await apiLogin('viewer', 'viewer');
    expect(right.status, 'even the right password is refused for that user name now').to.equal(429);
    expect(right.cookie).to.equal(undefined);
    // the limit is on that user name: somebody else, from the same machine, still gets in
    const other = await apiLogin('demo', 'demo');
    expect(other.status, `a correct login for another user after the limit hit "viewer": ${other.text}`).to.equal(200);
    expect(other.cookie).to.match(/^dphiant_session=./);
  });

  it('serves /metrics in the Prometheus text format with counters that match the journal and no alias or PHI', async () => {
    await ensureSent();
    const res = await fetch(`${base}/metrics`);
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^text\/plain/);
    const text = await res.text();
    const families = parsePrometheus(text);
    const family = (name: string) => {
      const f = families.find((x) => x.name === name);
      expect(f, `metric family ${name}`).to.exist;
      return f!;
    };
    const sum = (name: string) => family(name).metrics.reduce((n, m) => n + Number(m.value), 0);
    const counts = stack.mm.journal.counts();
    expect(counts.DONE, 'the instances sent are DONE').to.be.at.least(manifest.instances.length);
    expect(family('dphiant_instances_deidentified_total').type).to.equal('COUNTER');
    expect(sum('dphiant_instances_deidentified_total'), 'deidentified_total = journal DONE').to.equal(counts.DONE);
    const jobsDone = family('dphiant_jobs').metrics.find((m) => m.labels?.state === 'DONE');
    expect(Number(jobsDone?.value), 'dphiant_jobs{state="DONE"}').to.equal(counts.DONE);
    for (const [state, n] of Object.entries(counts)) expect(Number(family('dphiant_jobs').metrics.find((m) => m.labels?.state === state)?.value), `dphiant_jobs{state="${state}"}`).to.equal(n);
    const received = sum('dphiant_instances_received_total');
    const forwarded = sum('dphiant_instances_forwarded_total');
    expect(forwarded, 'forwarded ≥ DONE').to.be.at.least(counts.DONE);
    expect(received, 'received ≥ forwarded').to.be.at.least(forwarded);
    expect(sum('dphiant_queue_depth')).to.equal(0);

    const aliases = (await stack.mm.crosswalk.listPatients({ limit: 200 })).items.map((p) => p.aliasId);
    expect(aliases).to.have.length(manifest.patients.length);
    const accessionAliases = (await Promise.all(aliases.map((a) => stack.mm.crosswalk.listStudies(a)))).flat().map((s) => s.accessionAlias);
    for (const a of [...aliases, ...accessionAliases]) expect(text, `alias ${a} in /metrics`).not.to.contain(a);
    const newUids = stack.mm.journal.byState('DONE').map((j) => j.newSopInstanceUid).filter((u): u is string => !!u);
    expect(newUids.filter((u) => text.includes(u)), 'new UIDs in /metrics').to.deep.equal([]);
    expect(leaks(text), 'planted PHI in /metrics').to.deep.equal([]);
  });

  it('answers /healthz 200, and /readyz 200 while the PACS and the crosswalk are up and 503 once the PACS is stopped', async function () {
    this.timeout(90_000);
    const health = await fetch(`${base}/healthz`);
    expect(health.status).to.equal(200);
    expect(await health.json()).to.deep.equal({ status: 'ok' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).to.equal(200);
    const readyBody = (await ready.json()) as Record<string, unknown>;
    expect(readyBody).to.include({ pacs: true, crosswalk: true, refusing: null, stuckJobs: 0 });
    const deps = readyBody.dependencies as Record<string, Record<string, unknown>>;
    for (const dep of ['pacs', 'crosswalk']) expect(deps[dep], dep).to.include({ failing: false, failingSince: null, failingSeconds: 0 });

    await stack.pacs.stop();
    try {
      const down = await fetch(`${base}/readyz`);
      expect(down.status, 'PACS stopped').to.equal(503);
      expect(await down.json()).to.include({ pacs: false, crosswalk: true });
      expect((await fetch(`${base}/healthz`)).status, 'alive all the same').to.equal(200);
    } finally {
      await stack.startPacs();
    }
    const end = Date.now() + 30_000;
    let status = 0;
    while (Date.now() < end && (status = (await fetch(`${base}/readyz`)).status) !== 200) await sleep(250);
    expect(status, 'ready again once the PACS is back').to.equal(200);
  });
  it('shows a quarantined instance with its failure code and message: dashboard, /api/quarantine, dphiant quarantine list', async function () {
    // the patient ID in Manufacturer: vendor vocabulary the engine keeps as it is, so the gate finds it
    const els = generateElements({ rows: 8, cols: 8, seed: 4343, patientIndex: 41 });
    const id = String(els.find((e) => e.tag === 0x00100020)!.value);
    els.find((e) => e.tag === 0x00080070)!.value = `scanner ${id}`;
    const file = path.join(stack.work, 'leaky.dcm');
    writeFileSync(file, part10(els, TS.ExplicitVRLittleEndian));
    const sent = await storescu([file], { port: stack.mm.port });
    expect(sent.code, sent.stderr).to.equal(0);
    await waitUntilSettled(stack.mm.journal, 60_000);
    const job = stack.mm.journal.byState('QUARANTINED').at(-1)!;
    expect(job).to.include({ reasonCode: 'gate-hit' });

    const login = await apiLogin('demo', 'demo');
    const listed = (await (await fetch(`${base}/api/quarantine`, { headers: { cookie: login.cookie! } })).json()) as Record<string, unknown>[];
    expect(listed.find((j) => j.id === job.id)).to.include({ reasonCode: 'gate-hit', reasonMeaning: REASONS['gate-hit'], reason: job.reason, kept: true });
    const cli = await dphiant(['quarantine', 'list'], { DPHIANT_DATA_DIR: stack.mm.config.dataDir });
    const line = cli.stdout.split('\n').find((l) => l.startsWith(`job ${job.id}\t`));
    console.log(`      dphiant quarantine list: ${line}`);
    expect(line?.split('\t').slice(2), cli.stderr).to.deep.equal(['kept', 'gate-hit', job.reason]);

    if (!browser) return;
    const page = await demoPage('/');
    const row = page.locator('#quarantine tr').filter({ hasText: 'gate-hit' });
    await row.waitFor({ timeout: 10_000 });
    const [shownId, , kept, code, reason] = await row.locator('td').allTextContents();
    console.log(`      dashboard quarantine row: ${[shownId, kept, code, reason].join(' | ')}`);
    expect({ shownId, kept, code, reason }).to.deep.equal({ shownId: String(job.id), kept: 'yes', code: 'gate-hit', reason: job.reason });
    expect(await row.locator('.code').getAttribute('title'), 'the meaning on hover').to.equal(REASONS['gate-hit']);
    expect(await pageContent(page), 'the planted ID on the page').not.to.contain(id);
    await page.close();
  });
});
