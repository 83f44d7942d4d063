// The several-node stack of tools/devstack/cluster.ts with its nodes as `dphiant serve` child processes, as a site
// runs them: HAProxy spreads the associations over both, a node killed with SIGKILL leaves the balancer sending to
// the other at once, restarted on its data directory and ports it is back in the rotation. And `make cluster`
// (scripts/cluster.ts) on free ports: it sends the samples through both nodes and stops everything on Ctrl-C.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateStudies } from '../tools/synth/generate.js';
import { findUp } from '../src/paths.js';
import { assertPortFree } from '../tools/devstack/orthanc.js';
import { clusterUnavailable, sendThrough, useCluster, type NodeProcess } from './support/cluster.js';
import { storescu } from './support/dcmtk.js';
import { pacsInventory } from './support/pipeline.js';
import { freePorts } from './support/ports.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const total = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);

/** Resolves once the nodes' DONE counts add up to `done` and nothing is unfinished; their counts. */
async function waitDone(nodes: NodeProcess[], done: number, timeoutMs = 120_000): Promise<Record<string, number>[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all(nodes.map((n) => (n.running ? n.jobCounts() : Promise.resolve({} as Record<string, number>))));
    const sum = counts.reduce((s, c) => s + (c.DONE ?? 0), 0);
    const open = counts.reduce((s, c) => s + (c.RECEIVED ?? 0) + (c.IN_PACS ?? 0) + (c.DEIDENTIFIED ?? 0), 0);
    if (sum >= done && open === 0) return counts;
    if (Date.now() > end) throw new Error(`after ${timeoutMs} ms: ${JSON.stringify(counts)}`);
    await sleep(250);
  }
}

describe('cluster stack: two `dphiant serve` child processes behind HAProxy', function () {
  this.timeout(300_000);
  const cluster = useCluster({ nodes: 2, processes: true });

  it('50 instances through the balancer: both nodes take some, every one DONE, none raw in the PACS', async () => {
    const c = cluster();
    const manifest = await generateStudies({ outDir: path.join(c.work, 'in'), patients: 5, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 10, rows: 64, cols: 64, seed: 14_400, modalities: ['CT'] });
    const files = manifest.instances.map((i) => i.path);
    expect(files).to.have.length(50);
    // two associations at once: round robin gives one to each node
    const runs = await sendThrough(c, files, 2);
    for (const r of runs) expect(r.code, r.stderr.slice(-300)).to.equal(0);
    const counts = await waitDone(c.processes, 50);
    const inv = await pacsInventory(c.pacsRest);
    const raw = inv.instances.filter((i) => i.identityRemoved?.toUpperCase() !== 'YES').length;
    console.log(`      per node DONE ${counts.map((n) => n.DONE ?? 0).join(' + ')}; PACS ${inv.instances.length} instances, ${raw} raw, ${inv.patients.length} patients`);
    expect(counts.every((n) => (n.DONE ?? 0) > 0), 'both nodes took instances').to.equal(true);
    expect(inv.instances.length).to.equal(50);
    expect(raw).to.equal(0);
    expect(inv.patients.length).to.equal(5);
  });

  it("kill('SIGKILL') of node 1: the next storescu through the balancer succeeds at once, on node 2; restart() puts node 1 back on its data directory and ports", async () => {
    const c = cluster();
    const [one, two] = c.processes as [NodeProcess, NodeProcess];
    const manifest = await generateStudies({ outDir: path.join(c.work, 'more'), patients: 2, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 15, rows: 64, cols: 64, seed: 14_401, modalities: ['CT'], prefix: 'KIL' });
    const files = manifest.instances.map((i) => i.path);
    const oneBefore = await one.jobCounts();
    const twoBefore = await two.jobCounts();

    await one.kill('SIGKILL');
    expect(one.running).to.equal(false);
    // at once, before HAProxy's check (every second) has seen it down: a refused connection is redispatched
    const t = Date.now();
    const runs: number[] = [];
    for (const f of files.slice(0, 5)) {
      const r = await storescu([f], { port: c.port, callingAet: 'MODALITY', calledAet: 'DPHIANT', timeoutMs: 60_000 });
      runs.push(r.code ?? -1);
      expect(r.code, `storescu after the kill: ${r.stderr.slice(-300)}`).to.equal(0);
    }
    const sentSec = (Date.now() - t) / 1000;
    const twoAfter = await waitDone([two], (twoBefore.DONE ?? 0) + 5);
    // long enough for HAProxy's check to take it out of the rotation (3 failed checks a second apart): the restart
    // below must bring it back through the check (2 good ones), not merely before the balancer noticed
    await sleep(Math.max(0, 4000 - (Date.now() - t)));

    const dataDir = one.dataDir;
    const ports = [one.dicomPort, one.webPort];
    const t2 = Date.now();
    await one.restart();
    const restartSec = (Date.now() - t2) / 1000;
    expect(one.running).to.equal(true);
    expect([one.dataDir, one.dicomPort, one.webPort]).to.deep.equal([dataDir, ...ports]);
    const oneBack = await one.jobCounts();
    expect(oneBack.DONE, 'its journal, from the same data directory').to.equal(oneBefore.DONE);
    // back in the rotation once HAProxy's check has seen it up (2 checks, a second apart; later on a busy machine)
    let backSec = NaN;
    let sentAfter = 0;
    const t3 = Date.now();
    for (const f of files.slice(5)) {
      const r = await storescu([f], { port: c.port, callingAet: 'MODALITY', calledAet: 'DPHIANT', timeoutMs: 60_000 });
      expect(r.code, r.stderr.slice(-300)).to.equal(0);
      sentAfter++;
      if (total(await one.jobCounts()) > total(oneBack)) {
        backSec = (Date.now() - t3) / 1000;
        break;
      }
      if (Date.now() - t3 > BACK_WITHIN_MS) break;
      await sleep(500);
    }
    const final = await waitDone(c.processes, (oneBefore.DONE ?? 0) + (twoBefore.DONE ?? 0) + 5 + sentAfter);
    const inv = await pacsInventory(c.pacsRest);
    const raw = inv.instances.filter((i) => i.identityRemoved?.toUpperCase() !== 'YES').length;
    console.log(
      `      node 1 killed: 5 storescu runs through the balancer in ${sentSec.toFixed(1)} s, all exit 0, node 2 DONE ${twoBefore.DONE} → ${twoAfter[0]!.DONE}; ` +
        `node 1 restarted in ${restartSec.toFixed(1)} s with its journal (DONE ${oneBack.DONE}), taking instances again ${backSec.toFixed(1)} s later (${sentAfter} runs); ` +
        `per node DONE ${final.map((n) => n.DONE ?? 0).join(' + ')}; PACS ${inv.instances.length} instances, ${raw} raw`,
    );
    expect(runs).to.deep.equal([0, 0, 0, 0, 0]);
    expect(sentSec, 'no wait for the dead node').to.be.below(10);
    expect(twoAfter[0]!.DONE).to.equal((twoBefore.DONE ?? 0) + 5);
    expect(backSec, `node 1 took an instance again within ${BACK_WITHIN_MS / 1000} s of runs half a second apart`).to.be.a('number').and.not.NaN;
    expect(raw).to.equal(0);
  });
});

/** How long a restarted node may take to be back in HAProxy's rotation (its check: 2 good ones a second apart). */
const BACK_WITHIN_MS = 20_000;

/** The process IDs below `pid` (children, their children…), from /proc. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      // "pid (comm) state ppid …": comm may hold spaces and parentheses
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* ended meanwhile */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) if (pp === p) (out.push(child), walk(child));
  };
  walk(pid);
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('make cluster (scripts/cluster.ts, on free ports)', function () {
  this.timeout(240_000);

  it('starts the stack, sends the samples through both nodes, prints the status line, and stops everything on Ctrl-C', async function () {
    const why = clusterUnavailable();
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    const [postgres, ferretdb, pacsHttp, pacsDicom, balancerDicom, balancerWeb, n1, n2, w1, w2, modalityHttp, modalityDicom] = await freePorts(12);
    const ports = { postgres, ferretdb, pacsHttp, pacsDicom, balancerDicom, balancerWeb, nodeDicom: [n1, n2], nodeWeb: [w1, w2], modalityHttp, modalityDicom };
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-make-cluster-'));
    const t = Date.now();
    const child = spawn(process.execPath, [findUp('dist/scripts/cluster.js')], {
      env: { ...process.env, CLUSTER_PORTS: JSON.stringify(ports), CLUSTER_DIR: dir, CLUSTER_PATIENTS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      for (let i = 0; i < 900 && !out.includes('Press Ctrl-C') && child.exitCode === null; i++) await sleep(200);
      const startedSec = (Date.now() - t) / 1000;
      const pids = descendants(child.pid!);
      const t2 = Date.now();
      child.kill('SIGINT');
      const code = await exited;
      const stopSec = (Date.now() - t2) / 1000;
      const status = /^status: node 1 \(DPHIANT1\) DONE (\d+) \| node 2 \(DPHIANT2\) DONE (\d+)$/m.exec(out);
      const left = pids.filter(alive);
      console.log(`      ready with the samples de-identified in ${startedSec.toFixed(1)} s (${status?.[0]}); ${pids.length} processes below it, stopped in ${stopSec.toFixed(1)} s, ${left.length} left`);
      expect(out, out).to.contain('the PACS holds only de-identified instances');
      expect(status, out).to.not.equal(null);
      // one patient's two studies of 16 instances, and the ultrasound patient's two images: 4 associations, 2 per node
      expect(Number(status![1]) + Number(status![2])).to.equal(18);
      expect(Number(status![1])).to.be.greaterThan(0);
      expect(Number(status![2])).to.be.greaterThan(0);
      expect(pids.length, 'PostgreSQL, FerretDB, 2 Orthanc, 2 nodes, HAProxy (and PostgreSQL workers)').to.be.at.least(7);
      expect(code, 'Ctrl-C stops it cleanly').to.equal(0);
      expect(left, 'no process left running').to.deep.equal([]);
      // each port released (else: "… port N on 127.0.0.1 is not free")
      for (const [name, port] of Object.entries({ postgres, ferretdb, pacsHttp, pacsDicom, balancerDicom, balancerWeb, n1, n2, w1, w2, modalityHttp, modalityDicom })) await assertPortFree(port!, name);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
