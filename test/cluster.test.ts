// Two middleman nodes behind one DICOM address (issue 14): HAProxy → 2 nodes, the crosswalk on FerretDB/PostgreSQL,
// the PACS Orthanc on the PostgreSQL index (test/support/cluster.ts). The same new patients reach both nodes at the
// same moment: each gets one alias, every instance is de-identified once, no raw instance is left. A node's raw
// instances are its own: while it is down the other node's reconciler leaves them alone, and restarted with the same
// journal it de-identifies them itself.
import { expect } from 'chai';
import path from 'node:path';
import { generateStudies } from '../tools/synth/generate.js';
import { existsSync, readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import Database from 'better-sqlite3';
import { MongoClient } from 'mongodb';
import { nodeAet, sendThrough, useCluster, type NodeProcess } from './support/cluster.js';
import { NodeLeases, type NodeLease } from '../src/crosswalk/leases.js';
import { journalPath } from '../src/pipeline/journal.js';
import { MIDDLEMAN_ENTRY, startOrthanc } from '../tools/devstack/orthanc.js';
import { DevOrthanc, orthancStudyId } from '../tools/devstack/orthanc-rest.js';
import { freePorts } from './support/ports.js';
import { sharedDatabase } from '../src/crosswalk/open.js';
import { pacsInventory, waitUntilSettled } from './support/pipeline.js';
import { FOREIGN_COUNT_KEY } from '../src/pipeline/reconciler.js';

describe('cluster: two nodes behind HAProxy, crosswalk on FerretDB/PostgreSQL, PACS on Orthanc/PostgreSQL', function () {
  this.timeout(900_000);
  const cluster = useCluster({ nodes: 2 });

  it('1,000 instances of 100 new patients from 4 senders at once: 100 aliases, each instance de-identified once, 0 raw', async () => {
    const c = cluster();
    // 100 patients × 10 instances; the senders take every 4th file, so each patient's instances reach both nodes
    const manifest = await generateStudies({ outDir: path.join(c.work, 'in'), patients: 100, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 10, rows: 64, cols: 64, seed: 14_000, modalities: ['CT'] });
    const files = manifest.instances.map((i) => i.path);
    expect(files).to.have.length(1000);
    const t = Date.now();
    const runs = await sendThrough(c, files, 4);
    const sentSec = (Date.now() - t) / 1000;
    for (const r of runs) expect(r.code, r.stderr.slice(-300)).to.equal(0);
    await Promise.all(c.nodes.map((n) => waitUntilSettled(n.journal, 600_000)));
    const settledSec = (Date.now() - t) / 1000;
    const perNode = c.nodes.map((n) => n.journal.counts());
    const inv = await pacsInventory(c.pacsRest);
    const raw = inv.instances.filter((i) => i.identityRemoved?.toUpperCase() !== 'YES').length;
    const uids = new Set(inv.instances.map((i) => i.sopInstanceUid));
    const aliases = new Set(inv.patients.map((p) => p.patientId));
    console.log(
      `      sent 1000 in ${sentSec.toFixed(1)} s, settled in ${settledSec.toFixed(1)} s (${(1000 / settledSec).toFixed(1)} inst/s); per node DONE ${perNode.map((n) => n.DONE).join(' + ')}, ` +
        `QUARANTINED ${perNode.map((n) => n.QUARANTINED).join(' + ')}, REJECTED ${perNode.map((n) => n.REJECTED).join(' + ')}; PACS: ${inv.instances.length} instances (${uids.size} SOP Instance UIDs), ${raw} raw, ${aliases.size} patients`,
    );
    expect(perNode.every((n) => n.DONE > 0), 'both nodes took instances').to.equal(true);
    expect(perNode.reduce((s, n) => s + n.DONE, 0), 'every instance DONE on one node').to.equal(1000);
    expect(inv.instances.length, 'each instance once').to.equal(1000);
    expect(uids.size).to.equal(1000);
    expect(raw, 'no raw instance left').to.equal(0);
    expect(aliases.size, 'one alias per patient, whichever node saw it first').to.equal(100);
    const originals = new Set(manifest.patients.map((p) => p.patientId));
    for (const a of aliases) expect(originals.has(a), 'no original Patient ID in the PACS').to.equal(false);
  });
});

describe("cluster: a node's unfinished instances wait for it, and it resumes them from its journal", function () {
  this.timeout(900_000);
  // node 2 forwards but does not de-identify (its pipeline is off): what a node that stopped mid-way leaves;
  // node 1's reconciler follows the PACS's change log every second
  // takeover off (pipeline.takeoverAfterMs 0, the default outside the cluster stack)
  const cluster = useCluster({ nodes: 2, env: { DPHIANT_PIPELINE_RECONCILE_INTERVAL_MS: '1000', DPHIANT_PIPELINE_TAKEOVER_AFTER_MS: '0' }, nodeEnv: [{}, { DPHIANT_PIPELINE_ENABLED: 'false' }] });

  it("node 1 never adopts node 2's raw instances; node 2 restarted with the same journal de-identifies them, each once", async () => {
    const c = cluster();
    const manifest = await generateStudies({ outDir: path.join(c.work, 'in'), patients: 20, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 10, rows: 64, cols: 64, seed: 14_200, modalities: ['CT'] });
    const files = manifest.instances.map((i) => i.path);
    const runs = await sendThrough(c, files, 4);
    for (const r of runs) expect(r.code, r.stderr.slice(-300)).to.equal(0);
    await waitUntilSettled(c.nodes[0]!.journal, 600_000);
    const waiting = c.nodes[1]!.journal.counts().IN_PACS;
    // several passes of node 1's reconciler over the change log that holds node 2's raw instances
    await new Promise((r) => setTimeout(r, 4000));
    const one = c.nodes[0]!.journal.counts();
    const foreign = Number(c.nodes[0]!.journal.getMeta(FOREIGN_COUNT_KEY) ?? 0);
    const before = await pacsInventory(c.pacsRest);
    const rawBefore = before.instances.filter((i) => i.identityRemoved?.toUpperCase() !== 'YES').length;
    const node2 = await c.restartNode(1, { DPHIANT_PIPELINE_ENABLED: 'true' });
    await waitUntilSettled(node2.journal, 600_000);
    const two = node2.journal.counts();
    const inv = await pacsInventory(c.pacsRest);
    const raw = inv.instances.filter((i) => i.identityRemoved?.toUpperCase() !== 'YES').length;
    console.log(
      `      node 1: DONE ${one.DONE} (jobs ${Object.values(one).reduce((a, b) => a + b, 0)}), reported ${foreign} raw instances of another node and left them; node 2 left ${waiting} IN_PACS, the PACS then held ${rawBefore} raw; ` +
        `node 2 restarted: DONE ${two.DONE}, QUARANTINED ${two.QUARANTINED}; PACS ${inv.instances.length} instances, ${raw} raw, ${inv.patients.length} patients`,
    );
    expect(waiting, 'node 2 received instances and left them').to.be.greaterThan(0);
    expect(one.DONE + waiting, 'every instance journalled by one node').to.equal(200);
    expect(Object.values(one).reduce((a, b) => a + b, 0), "node 1 adopted none of node 2's").to.equal(one.DONE);
    expect(foreign, "node 1's reconciler saw node 2's raw instances").to.be.at.least(waiting);
    expect(rawBefore, "node 2's raw instances still in the PACS, untouched").to.equal(waiting);
    expect(two.DONE).to.equal(waiting);
    expect(two.QUARANTINED).to.equal(0);
    expect(inv.instances.length, 'each instance once').to.equal(200);
    expect(raw).to.equal(0);
    expect(inv.patients.length, 'one alias per patient across both nodes').to.equal(20);
  });
});

describe('cluster: a node that stops is taken over after the grace time (pipeline.takeoverAfterMs)', function () {
  this.timeout(900_000);
  // a busy 2-core machine delays renewals: the grace time leaves room for that
  const GRACE_MS = 6000;
  // node 2 forwards but does not de-identify, then stops: its raw instances are what a dead node leaves
  const cluster = useCluster({
    nodes: 2,
    env: { DPHIANT_PIPELINE_RECONCILE_INTERVAL_MS: '1000', DPHIANT_PIPELINE_TAKEOVER_AFTER_MS: String(GRACE_MS) },
    nodeEnv: [{}, { DPHIANT_PIPELINE_ENABLED: 'false' }],
  });

  it("node 1 takes in node 2's raw instances once its lease expires; node 2, back, claims its lease and ends its jobs DONE from the takeover records", async () => {
    const c = cluster();
    const manifest = await generateStudies({ outDir: path.join(c.work, 'in'), patients: 20, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 10, rows: 64, cols: 64, seed: 14_300, modalities: ['CT'] });
    const runs = await sendThrough(c, manifest.instances.map((i) => i.path), 4);
    for (const r of runs) expect(r.code, r.stderr.slice(-300)).to.equal(0);
    await waitUntilSettled(c.nodes[0]!.journal, 600_000);
    const left = c.nodes[1]!.journal.counts().IN_PACS;
    expect(left, 'node 2 received instances and left them raw').to.be.greaterThan(0);
    const leases = new NodeLeases(sharedDatabase(c.nodes[0]!.crosswalk)!, GRACE_MS);

    const stopped = Date.now();
    await c.nodes[1]!.close(); // its lease is left to expire, as a dead node's
    let raw = left;
    while (raw > 0 && Date.now() - stopped < 60_000) {
      await new Promise((r) => setTimeout(r, 250));
      raw = (await pacsInventory(c.pacsRest)).instances.filter((i) => i.identityRemoved?.toUpperCase() !== 'YES').length;
    }
    const takenSec = (Date.now() - stopped) / 1000;
    let lease = (await leases.list()).find((l) => l._id === nodeAet(2));
    for (let i = 0; i < 40 && !lease?.settled; i++) {
      await new Promise((r) => setTimeout(r, 250));
      lease = (await leases.list()).find((l) => l._id === nodeAet(2));
    }
    const one = c.nodes[0]!.journal.counts();

    const node2 = await c.restartNode(1, { DPHIANT_PIPELINE_ENABLED: 'true' });
    await waitUntilSettled(node2.journal, 600_000);
    const two = node2.journal.counts();
    const mine = (await leases.list()).find((l) => l._id === nodeAet(2));
    const inv = await pacsInventory(c.pacsRest);
    const rawAfter = inv.instances.filter((i) => i.identityRemoved?.toUpperCase() !== 'YES').length;
    console.log(
      `      node 2 stopped with ${left} raw instances; ${raw} raw ${takenSec.toFixed(1)} s later (grace ${GRACE_MS / 1000} s); its lease held by ${lease?.holder}, settled ${lease?.settled}; ` +
        `node 1: DONE ${one.DONE}, QUARANTINED ${one.QUARANTINED}; node 2 back: holder ${mine?.holder}, DONE ${two.DONE}, QUARANTINED ${two.QUARANTINED}; PACS ${inv.instances.length} instances, ${rawAfter} raw, ${inv.patients.length} patients`,
    );
    expect(raw, "node 2's raw instances de-identified by node 1").to.equal(0);
    expect(takenSec, 'within the grace time and a few heartbeats').to.be.below(GRACE_MS / 1000 + 20);
    expect(lease?.holder).to.equal(nodeAet(1));
    expect(lease?.settled, 'the takeover settled').to.equal(true);
    expect(one.DONE, 'node 1 did its own and node 2s').to.equal(200);
    expect(one.QUARANTINED).to.equal(0);
    expect(mine?.holder, 'node 2 holds its lease again').to.equal(nodeAet(2));
    expect(two.DONE, "node 2's jobs end DONE, none quarantined as raw-absent").to.equal(left);
    expect(two.QUARANTINED).to.equal(0);
    expect(inv.instances.length, 'each instance once').to.equal(200);
    expect(rawAfter).to.equal(0);
    expect(inv.patients.length).to.equal(20);
  });
});

describe('cluster: dphiant serve child processes behind HAProxy, web and DICOM (pipeline.takeoverAfterMs)', function () {
  this.timeout(900_000);
  const GRACE_MS = 8000;
  const cluster = useCluster({ nodes: 2, processes: true, env: { DPHIANT_PIPELINE_TAKEOVER_AFTER_MS: String(GRACE_MS), DPHIANT_PIPELINE_RECONCILE_INTERVAL_MS: '1000' } });

  it('the web UI behind the balancer: a login works on both nodes, and the dashboard shows both', async function () {
    const c = cluster();
    const base = `http://127.0.0.1:${c.webPort}`;
    // a new connection per request, so HAProxy's round robin sends them to the nodes in turn
    const call = (p: string, init: RequestInit = {}) => fetch(`${base}${p}`, { ...init, headers: { connection: 'close', ...(init.headers ?? {}) } });
    const login = await call('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'demo', password: 'demo' }) });
    expect(login.status).to.equal(200);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const answered: string[] = [];
    let statuses: number[] = [];
    let nodes: { node: string; live: boolean }[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await call('/api/nodes', { headers: { cookie } });
      statuses.push(res.status);
      const body = (await res.json()) as { me: string; nodes: { node: string; live: boolean }[] };
      answered.push(body.me);
      nodes = body.nodes;
    }
    let rows: string[] = [];
    if (existsSync(CHROMIUM)) {
      const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
      try {
        const page = await browser.newPage();
        await page.goto(`${base}/`);
        await page.fill('#username', 'demo');
        await page.fill('#password', 'demo');
        await Promise.all([page.waitForURL(`${base}/`, { timeout: 15_000 }), page.click('#submit')]);
        await page.locator('#nodes tr').nth(1).waitFor({ timeout: 15_000 });
        rows = await page.locator('#nodes tr').allTextContents();
      } finally {
        await browser.close();
      }
    } else console.log(`      ${CHROMIUM} missing: the dashboard is checked over its API only`);
    statuses = [...new Set(statuses)];
    console.log(`      login through the balancer: 200; /api/nodes with that cookie answered by ${answered.join(', ')} (HTTP ${statuses.join(', ')}); nodes listed: ${nodes.map((n) => `${n.node} ${n.live ? 'up' : 'down'}`).join(', ')}; dashboard rows: ${rows.join(' | ')}`);
    expect(statuses, 'the session is known to every node').to.deep.equal([200]);
    expect(new Set(answered), 'both nodes answered').to.have.property('size', 2);
    expect(nodes.map((n) => n.node)).to.deep.equal([nodeAet(1), nodeAet(2)]);
    expect(nodes.every((n) => n.live)).to.equal(true);
    if (rows.length) {
      expect(rows, 'a row per node on the dashboard').to.have.length(2);
      for (const [i, r] of rows.entries()) expect(r).to.contain(nodeAet(i + 1)).and.to.contain('up');
    }
  });

  it("the modality's failed store jobs resubmitted: every instance de-identified once, the dead node's unfinished ones taken over within the grace time, the node restarted with its journal resumes", async () => {
    const c = cluster();
    const [modHttp, modDicom] = (await freePorts(2)) as [number, number];
    // the modality is an Orthanc calling DPHIANT at the balancer, as in make cluster
    const modality = await startOrthanc({ role: 'modality', workDir: path.join(c.work, 'modality'), httpPort: modHttp, dicomPort: modDicom, middleman: { aet: 'DPHIANT', host: '127.0.0.1', port: c.port } });
    try {
      const rest = new DevOrthanc({ url: modality.httpUrl, username: 'demo', password: 'demo' });
      const manifest = await generateStudies({ outDir: path.join(c.work, 'in'), patients: 40, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 10, rows: 64, cols: 64, seed: 14_400, modalities: ['CT'] });
      for (const i of manifest.instances) await rest.upload(readFileSync(i.path));
      const studies = [...new Set(manifest.instances.map((i) => orthancStudyId(i.patientId, i.studyInstanceUid)))];
      // four store jobs (Orthanc runs two at once), one association each: the balancer spreads them over both nodes
      const jobs = await Promise.all([0, 1, 2, 3].map((k) => rest.storeToModality(MIDDLEMAN_ENTRY, studies.filter((_, i) => i % 4 === k), { asynchronous: true })));
      const [, victim] = c.processes as [NodeProcess, NodeProcess];
      const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
      while (total(await victim.jobCounts()) < 40) await sleep(50);
      await victim.kill('SIGKILL');
      const killed = Date.now();
      const atKill = journalCounts(victim.dataDir);
      let resubmits = 0;
      for (const j of jobs) {
        for (let state = (await rest.job(j.ID)).State; state !== 'Success'; state = (await rest.job(j.ID)).State) {
          if (Date.now() - killed > 300_000) throw new Error(`store job still ${state}`);
          if (state === 'Failure') {
            await rest.resubmitJob(j.ID);
            resubmits++;
          }
          await sleep(250);
        }
      }
      const acknowledgedSec = (Date.now() - killed) / 1000;
      let inv = await pacsInventory(c.pacsRest);
      const raw = () => inv.instances.filter((i) => i.identityRemoved?.toUpperCase() !== 'YES').length;
      while ((raw() > 0 || inv.instances.length < 400) && Date.now() - killed < 120_000) {
        await sleep(500);
        inv = await pacsInventory(c.pacsRest);
      }
      const cleanSec = (Date.now() - killed) / 1000;
      // the resent instances may all be done by node 1 before node 2's lease has expired
      let lease = (await nodeRecords(c.crosswalkUrl)).find((l) => l._id === nodeAet(2));
      while (!(lease?.holder === nodeAet(1) && lease.settled) && Date.now() - killed < GRACE_MS + 60_000) {
        await sleep(250);
        lease = (await nodeRecords(c.crosswalkUrl)).find((l) => l._id === nodeAet(2));
      }
      const takenSec = (Date.now() - killed) / 1000;
      const one = await c.processes[0]!.jobCounts();

      await victim.restart();
      for (let t = Date.now(); Date.now() - t < 120_000; await sleep(250)) {
        const n = await victim.jobCounts();
        if ((n.RECEIVED ?? 0) + (n.IN_PACS ?? 0) + (n.DEIDENTIFIED ?? 0) === 0) break;
      }
      const two = await victim.jobCounts();
      const back = (await nodeRecords(c.crosswalkUrl)).find((l) => l._id === nodeAet(2));
      inv = await pacsInventory(c.pacsRest);
      const uids = new Set(inv.instances.map((i) => i.sopInstanceUid));
      console.log(
        `      node 2 killed with ${atKill.RECEIVED} RECEIVED, ${atKill.IN_PACS} IN_PACS, ${atKill.DEIDENTIFIED} DEIDENTIFIED, ${atKill.DONE} DONE; ${resubmits} store jobs resubmitted, all acknowledged ${acknowledgedSec.toFixed(1)} s after the kill; ` +
          `0 raw ${cleanSec.toFixed(1)} s after it (grace ${GRACE_MS / 1000} s), lease held by ${lease?.holder}, settled ${lease?.settled} ${takenSec.toFixed(1)} s after it; node 1: DONE ${one.DONE}, QUARANTINED ${one.QUARANTINED ?? 0}; ` +
          `node 2 restarted: holder ${back?.holder}, DONE ${two.DONE}, QUARANTINED ${two.QUARANTINED ?? 0}, REJECTED ${two.REJECTED ?? 0}; PACS ${inv.instances.length} instances (${uids.size} UIDs), ${raw()} raw, ${inv.patients.length} patients`,
      );
      expect(atKill.IN_PACS + atKill.RECEIVED + atKill.DEIDENTIFIED, 'node 2 died with unfinished instances').to.be.greaterThan(0);
      expect(inv.instances.length, 'every instance once').to.equal(400);
      expect(uids.size).to.equal(400);
      expect(raw(), 'no raw instance left').to.equal(0);
      expect(inv.patients.length).to.equal(40);
      expect(cleanSec, "the dead node's instances taken over within the grace time and a margin").to.be.below(GRACE_MS / 1000 + 60);
      expect(lease?.holder).to.equal(nodeAet(1));
      expect(lease?.settled, 'the takeover settled').to.equal(true);
      expect(takenSec, 'the lease taken within the grace time and a margin').to.be.below(GRACE_MS / 1000 + 60);
      expect(one.QUARANTINED ?? 0).to.equal(0);
      expect(back?.holder, 'node 2 holds its lease again').to.equal(nodeAet(2));
      expect(two.QUARANTINED ?? 0, "node 2's jobs end by the takeover records, none quarantined").to.equal(0);
    } finally {
      await modality.stop();
    }
  });
});

const CHROMIUM = '/usr/bin/chromium';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Jobs per state in a stopped node's journal, read without opening it for writing. */
function journalCounts(dataDir: string): Record<string, number> {
  const db = new Database(journalPath(dataDir), { readonly: true });
  try {
    const rows = db.prepare('SELECT state, count(*) AS n FROM jobs GROUP BY state').all() as { state: string; n: number }[];
    return { RECEIVED: 0, IN_PACS: 0, DEIDENTIFIED: 0, DONE: 0, ...Object.fromEntries(rows.map((r) => [r.state, r.n])) };
  } finally {
    db.close();
  }
}

/** The nodes' records in the shared database (src/crosswalk/leases.ts). */
async function nodeRecords(url: string): Promise<NodeLease[]> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 5000 });
  try {
    await client.connect();
    return await new NodeLeases({ collection: (n: string) => client.db().collection(n) }, 1).list();
  } finally {
    await client.close();
  }
}
