// What the middleman refuses, and that a refusal never disturbs the other associations: callers, sizes, a stopped
// PACS; connections that do not associate and PDUs that may not come before an association; a full spool.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateStudies } from '../tools/synth/generate.js';
import { ACCEPTED_TRANSFER_SYNTAXES } from '../src/dicom/transfer-syntax.js';
import { STORAGE_SOP_CLASSES } from '../src/scp/storage-sop-classes.js';
import { MAX_ASSOCIATE_RQ_BYTES } from '../src/scp/pdu-guard.js';
import { SPOOL_FULL } from '../src/scp/server.js';
import { echoscu, storescu, type RunResult } from './support/dcmtk.js';
import { startTestMiddleman, type TestMiddleman } from './support/middleman.js';
import { pacsInventory, waitUntilSettled } from './support/pipeline.js';
import { associateRq, pdu } from './support/raw-scu.js';
import { startStack, type TestStack } from './support/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** scp.maxPendingConnections and scp.associationTimeoutMs of the first stack. */
const PENDING = 4;
const ASSOCIATION_TIMEOUT_MS = 3000;

describe('refusals: callers, size limit, a stopped PACS, and connections before association', function () {
  this.timeout(300_000);
  let stack: TestStack;
  let small: string[]; // 64×64 instances, a few KB each
  let large: string[]; // 512×512 instances, ~0.5 MB each
  const dropped = (reason: string) => stack.mm.metrics.counter('dphiant_scp_connections_dropped_total', { reason });

  before(async () => {
    // the size limit sits between the two kinds of instances
    stack = await startStack({
      env: {
        DPHIANT_SCP_MAX_INSTANCE_BYTES: String(200 * 1024),
        DPHIANT_PIPELINE_ENABLED: 'false',
        DPHIANT_SCP_MAX_PENDING_CONNECTIONS: String(PENDING),
        DPHIANT_SCP_ASSOCIATION_TIMEOUT_MS: String(ASSOCIATION_TIMEOUT_MS),
      },
    });
    small = (await generateStudies({ outDir: path.join(stack.work, 'small'), patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 20, rows: 64, cols: 64, seed: 21 })).instances.map((i) => i.path);
    large = (await generateStudies({ outDir: path.join(stack.work, 'large'), patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 1, rows: 512, cols: 512, seed: 22 })).instances.map((i) => i.path);
  });
  after(async () => {
    await stack?.stop();
  });

  it('refuses an association from an unknown calling AE', async () => {
    const r = await echoscu({ port: stack.mm.port, callingAet: 'INTRUDER' });
    expect(r.code).not.to.equal(0);
    expect(r.stdout + r.stderr).to.match(/Calling AE Title Not Recognized/i);
  });

  it('refuses an association that calls another AE title', async () => {
    const r = await echoscu({ port: stack.mm.port, calledAet: 'NOT_DPHIANT' });
    expect(r.code).not.to.equal(0);
    expect(r.stdout + r.stderr).to.match(/Called AE Title Not Recognized/i);
  });

  it('refuses an instance over the size limit with 0xA700 while a parallel association completes', async () => {
    const before = (await stack.pacsRest.statistics()).CountInstances;
    const [big, parallel] = await Promise.all([
      storescu(large, { port: stack.mm.port }),
      storescu(small, { port: stack.mm.port }),
    ]);
    expect(big.code, 'storescu exits with the status high byte').to.equal(0xa7);
    expect(big.stdout + big.stderr).to.contain('Received Store Response (Refused: OutOfResources)');
    expect(parallel.code, parallel.stderr).to.equal(0);
    expect((await stack.pacsRest.statistics()).CountInstances - before).to.equal(small.length);
    const counts = stack.mm.journal.counts();
    expect(counts.IN_PACS).to.equal(small.length);
    expect(counts.RECEIVED, 'nothing left half-journalled').to.equal(0);
    expect(stack.mm.journal.byState('REJECTED').map((j) => [j.reasonCode, j.reason]), 'the refused instance, journalled with its code and reason').to.deep.equal([['too-large', `instance over the size limit (${200 * 1024} bytes)`]]);
    expect(stack.mm.metrics.counter('dphiant_instances_rejected_total', { reason: 'too-large' })).to.equal(1);
    expect(readdirSync(path.join(stack.mm.config.dataDir, 'spool')), 'the middleman keeps nothing').to.deep.equal([]);
  });

  it('answers 0xA700 when the PACS is stopped, journals nothing IN_PACS, and the retry succeeds once it is back', async () => {
    const inPacsBefore = stack.mm.journal.counts().IN_PACS;
    const file = small.slice(0, 1);
    await stack.pacs.stop();
    const refused = await storescu(file, { port: stack.mm.port });
    expect(refused.code, 'storescu exits with the status high byte').to.equal(0xa7);
    expect(refused.stdout + refused.stderr).to.contain('Received Store Response (Refused: OutOfResources)');
    expect(readdirSync(path.join(stack.mm.config.dataDir, 'spool')), 'the middleman keeps nothing').to.deep.equal([]);
    expect(stack.mm.journal.counts().IN_PACS).to.equal(inPacsBefore);
    const rejected = stack.mm.journal.byState('REJECTED');
    expect(rejected.at(-1)?.reason).to.match(/^PACS unavailable: ECONNREFUSED/);
    expect(rejected.at(-1)?.reasonCode).to.equal('pacs-unavailable');

    await stack.startPacs();
    const retried = await storescu(file, { port: stack.mm.port });
    expect(retried.code, retried.stderr).to.equal(0);
    expect(stack.mm.journal.counts().IN_PACS).to.equal(inPacsBefore + 1);
  });

  // ---- before association (PS3.8 9.2): a cap, a time limit, three small PDU types

  it('holds at most scp.maxPendingConnections connections that have not associated: more are closed at once and counted, the idle ones are closed after scp.associationTimeoutMs, then C-ECHO works again', async () => {
    const before = { limit: dropped('pending-limit'), timeout: dropped('association-timeout') };
    const idle = await Promise.all(Array.from({ length: PENDING }, () => rawConnection(stack.mm.port)));
    await sleep(300); // the server has taken them
    const extra = await Promise.all([rawConnection(stack.mm.port), rawConnection(stack.mm.port)]);
    const extraClosed = await Promise.all(extra.map((c) => c.closed));
    const echoWhileFull = await echoscu({ port: stack.mm.port });
    const idleClosed = await Promise.all(idle.map((c) => c.closed));
    const echoAfter = await echoscu({ port: stack.mm.port });
    console.log(
      `      ${PENDING} idle connections closed after ${idleClosed.map((c) => c.afterMs).join(', ')} ms (limit ${ASSOCIATION_TIMEOUT_MS}); ` +
        `2 more closed after ${extraClosed.map((c) => c.afterMs).join(', ')} ms; C-ECHO while full exit ${echoWhileFull.code}, after ${echoAfter.code}`,
    );
    for (const c of extraClosed) expect(c, 'a connection over the cap: closed at once, nothing sent to it').to.deep.include({ received: 0 }).and.have.property('afterMs').below(1000);
    expect(echoWhileFull.code, 'a C-ECHO while the cap is reached is refused too').not.to.equal(0);
    for (const c of idleClosed) expect(c.afterMs, 'an idle connection lives scp.associationTimeoutMs').to.be.within(ASSOCIATION_TIMEOUT_MS - 500, ASSOCIATION_TIMEOUT_MS + 2000);
    expect(echoAfter.code, echoAfter.stderr).to.equal(0);
    expect(dropped('pending-limit') - before.limit, 'connections refused for the cap (2 raw, 1 echoscu)').to.equal(3);
    expect(dropped('association-timeout') - before.timeout).to.equal(PENDING);
  });

  it('closes a connection that sends its A-ASSOCIATE-RQ byte by byte after scp.associationTimeoutMs (activity does not extend it)', async () => {
    const c = await rawConnection(stack.mm.port);
    const rq = associateRq('DPHIANT', 'MODALITY');
    let sent = 0;
    const drip = setInterval(() => !c.socket.destroyed && sent < rq.length && c.socket.write(rq.subarray(sent, ++sent)), 100);
    const closed = await c.closed;
    clearInterval(drip);
    console.log(`      ${sent} of ${rq.length} bytes of an A-ASSOCIATE-RQ, one per 100 ms: closed after ${closed.afterMs} ms`);
    expect(sent, 'the request never completed').to.be.below(rq.length);
    expect(closed.afterMs).to.be.within(ASSOCIATION_TIMEOUT_MS - 500, ASSOCIATION_TIMEOUT_MS + 2000);
  });

  const early: [string, Buffer][] = [
    ['a P-DATA-TF', pdu(0x04, Buffer.from([0, 0, 0, 6, 1, 3, 0, 0, 0, 0]))],
    ['an A-ASSOCIATE-AC', pdu(0x02, Buffer.alloc(68))],
    ['an A-RELEASE-RQ with a 1 KiB body', pdu(0x05, Buffer.alloc(1024))],
    [`an A-ASSOCIATE-RQ header declaring ${MAX_ASSOCIATE_RQ_BYTES + 1} bytes (body never sent)`, pdu(0x01, Buffer.alloc(MAX_ASSOCIATE_RQ_BYTES + 1)).subarray(0, 6)],
  ];
  for (const [what, bytes] of early) {
    it(`drops a connection whose first PDU is ${what}, at once, and counts it`, async () => {
      const before = dropped('protocol');
      const c = await rawConnection(stack.mm.port);
      c.socket.write(bytes);
      const closed = await c.closed;
      expect(closed.afterMs, 'closed at once').to.be.below(1000);
      expect(dropped('protocol') - before).to.equal(1);
      const echo = await echoscu({ port: stack.mm.port });
      expect(echo.code, echo.stderr).to.equal(0);
    });
  }

  it('drops an associated connection that sends a second A-ASSOCIATE-RQ, and counts it', async () => {
    const before = dropped('protocol');
    const c = await rawConnection(stack.mm.port);
    c.socket.write(associateRq('DPHIANT', 'MODALITY'));
    const answer = await new Promise<Buffer>((resolve) => c.socket.once('data', resolve));
    expect(answer[0], 'A-ASSOCIATE-AC').to.equal(0x02);
    c.socket.write(associateRq('DPHIANT', 'MODALITY'));
    const closed = await c.closed;
    expect(closed.afterMs, 'closed soon after the second request').to.be.below(2000);
    expect(dropped('protocol') - before).to.equal(1);
  });

  it('takes the largest A-ASSOCIATE-RQ a real sender makes: storescu proposing 128 contexts, each with every transfer syntax DPHIANT accepts, stores', async () => {
    // storage classes, CT first (the file's), as many as one association may propose
    const classes = ['1.2.840.10008.5.1.4.1.1.2', ...[...STORAGE_SOP_CLASSES.keys()].filter((u) => u !== '1.2.840.10008.5.1.4.1.1.2')].slice(0, 128);
    const cfg = path.join(stack.work, 'all-contexts.cfg');
    writeFileSync(
      cfg,
      ['[[TransferSyntaxes]]', '[All]', ...ACCEPTED_TRANSFER_SYNTAXES.map((t, i) => `TransferSyntax${i + 1} = ${t}`), '[[PresentationContexts]]', '[Big]',
        ...classes.map((u, i) => `PresentationContext${i + 1} = ${u}\\All`), '[[Profiles]]', '[Everything]', 'PresentationContexts = Big', ''].join('\n'),
    );
    const before = dropped('protocol');
    const r = await storescu(small.slice(0, 1), { port: stack.mm.port, extraArgs: ['-xf', cfg, 'Everything', '+v'] });
    const proposed = (r.stdout + r.stderr).match(/Context ID:/g)?.length ?? 0;
    console.log(`      storescu proposed ${proposed / 2} presentation contexts × ${ACCEPTED_TRANSFER_SYNTAXES.length} transfer syntaxes (an A-ASSOCIATE-RQ of about 47 KB); exit ${r.code}`);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(dropped('protocol')).to.equal(before);
  });
});

/** A raw TCP connection to the SCP, and when (from the connect) and after how many received bytes it closed. */
async function rawConnection(port: number): Promise<{ socket: net.Socket; closed: Promise<{ afterMs: number; received: number }> }> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  socket.on('error', () => undefined); // ECONNRESET once the middleman cuts it: expected
  let received = 0;
  socket.on('data', (d: Buffer) => (received += d.length));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const connectedAt = Date.now();
  const closed = new Promise<{ afterMs: number; received: number }>((resolve) => socket.once('close', () => resolve({ afterMs: Date.now() - connectedAt, received })));
  setTimeout(() => socket.destroy(), 30_000).unref();
  return { socket, closed };
}

/** Per file sent, storescu's verdict: 'Success', 'Refused: OutOfResources', … (storescu -v prints one per file). */
function storeResponses(r: RunResult): string[] {
  return (r.stdout + r.stderr)
    .split('Sending file: ')
    .slice(1)
    .map((part) => /Received Store Response \(([^)]*)\)/.exec(part)?.[1] ?? 'no response');
}

describe('refusals: a full spool (scp.spoolMaxBytes, scp.spoolMinFreeBytes, a full disk)', function () {
  this.timeout(300_000);
  const MB = 1_000_000;
  const BUDGET = 3 * MB;
  let stack: TestStack;
  let megabyte: string[][]; // per sender, 1 MB instances (512×1024 16-bit)
  let small: string[];

  before(async () => {
    // the instance limit must fit the budget; 3 MB holds two 1 MB instances in flight and part of a third
    stack = await startStack({ env: { DPHIANT_SCP_SPOOL_MAX_BYTES: String(BUDGET), DPHIANT_SCP_MAX_INSTANCE_BYTES: String(2 * MB) } });
    const m = await generateStudies({ outDir: path.join(stack.work, 'mb'), patients: 8, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 4, rows: 512, cols: 1024, seed: 31 });
    megabyte = m.patients.map((p) => m.instances.filter((i) => i.patientId === p.patientId).map((i) => i.path));
    small = (await generateStudies({ outDir: path.join(stack.work, 'small'), patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 2, rows: 64, cols: 64, seed: 32 })).instances.map((i) => i.path);
  });
  after(async () => {
    await stack?.stop();
  });

  it(`refuses with 0xA700 "${SPOOL_FULL}" what would pass the budget while other associations go on; every instance is either DONE or REJECTED with the sender told, none lost, the spool empty`, async () => {
    // 8 senders at once, 4 instances each, each going on after a refusal (-nh)
    const runs = await Promise.all(megabyte.map((files) => storescu(files, { port: stack.mm.port, extraArgs: ['-nh'] })));
    const answers = runs.flatMap(storeResponses);
    const succeeded = answers.filter((a) => a === 'Success').length;
    const refused = answers.filter((a) => a === 'Refused: OutOfResources').length;
    await waitUntilSettled(stack.mm.journal, 120_000);
    const counts = stack.mm.journal.counts();
    const rejected = stack.mm.journal.byState('REJECTED').map((j) => j.reason);
    const inventory = await pacsInventory(stack.pacsRest);
    const raw = inventory.instances.filter((i) => i.identityRemoved !== 'YES').length;
    const spool = readdirSync(path.join(stack.mm.config.dataDir, 'spool'));
    const sent = megabyte.flat().length;
    console.log(
      `      sent ${sent} (1 MB each, 8 senders, budget ${BUDGET} bytes): sender saw success ${succeeded}, 0xA700 ${refused}; ` +
        `de-identified ${counts.DONE}, rejected "${SPOOL_FULL}" ${rejected.filter((r) => r === SPOOL_FULL).length}, raw left ${raw}, ` +
        `quarantined ${counts.QUARANTINED}, lost ${sent - counts.DONE - counts.REJECTED}; spool files left ${spool.length}; metric ${stack.mm.metrics.counter('dphiant_instances_rejected_total', { reason: 'spool-full' })}`,
    );
    expect(answers, 'one answer per instance').to.have.length(sent);
    expect(succeeded + refused, `answers other than success or 0xA700: ${answers}`).to.equal(sent);
    expect(refused, 'the budget refused some').to.be.greaterThan(0);
    expect(succeeded, 'the other associations went on').to.be.greaterThan(0);
    expect(counts.DONE, 'every success de-identified').to.equal(succeeded);
    expect(rejected, 'every refusal journalled REJECTED, spool full').to.deep.equal(Array(refused).fill(SPOOL_FULL));
    expect(counts.QUARANTINED + counts.RECEIVED + counts.IN_PACS + counts.DEIDENTIFIED).to.equal(0);
    expect(inventory.instances.length, 'the PACS holds the de-identified copies only').to.equal(succeeded);
    expect(raw).to.equal(0);
    expect(spool, 'the middleman keeps nothing').to.deep.equal([]);
    expect(stack.mm.metrics.counter('dphiant_instances_rejected_total', { reason: 'spool-full' })).to.equal(refused);
    expect(stack.mm.journal.byState('REJECTED').map((j) => j.reasonCode)).to.deep.equal(Array(refused).fill('spool-full'));
    // the budget is given back: one instance at a time passes
    const after = await storescu(small.slice(0, 1), { port: stack.mm.port });
    expect(after.code, after.stderr).to.equal(0);
  });

  it('refuses every instance when the spool file system has less free space than scp.spoolMinFreeBytes', async () => {
    const mm = await startTestMiddleman({
      DPHIANT_PACS_PORT: String(stack.pacs.dicomPort),
      DPHIANT_PACS_URL: stack.pacs.httpUrl,
      DPHIANT_PIPELINE_ENABLED: 'false',
      DPHIANT_SCP_SPOOL_MIN_FREE_BYTES: String(1024 ** 5), // 1 PiB: more than any disk here has
    });
    try {
      const r = await storescu(small.slice(0, 1), { port: mm.port });
      console.log(`      1 PiB floor: storescu exit ${r.code} (${storeResponses(r)}); journal ${JSON.stringify(mm.journal.counts())}`);
      expect(r.code, 'storescu exits with the status high byte').to.equal(0xa7);
      expect(mm.journal.byState('REJECTED').map((j) => j.reason)).to.deep.equal([SPOOL_FULL]);
      expect(readdirSync(path.join(mm.config.dataDir, 'spool'))).to.deep.equal([]);
    } finally {
      await mm.close();
    }
  });

  it('answers a full disk (ENOSPC on a 1 MiB tmpfs spool) like a full spool, and stores again once the space is back', async function () {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'dphiant-enospc-'));
    const spoolDir = path.join(dataDir, 'spool');
    mkdirSync(spoolDir);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', spoolDir], { stdio: 'pipe' });
    } catch (e) {
      console.log(`      skipped: cannot mount a 1 MiB tmpfs here (${(e as Error).message.split('\n')[0]}); needs root or CAP_SYS_ADMIN`);
      return this.skip();
    }
    let mm: TestMiddleman | undefined;
    try {
      mm = await startTestMiddleman({
        DPHIANT_DATA_DIR: dataDir,
        DPHIANT_PACS_PORT: String(stack.pacs.dicomPort),
        DPHIANT_PACS_URL: stack.pacs.httpUrl,
        DPHIANT_PIPELINE_ENABLED: 'false',
        DPHIANT_SCP_SPOOL_MIN_FREE_BYTES: '0', // no floor: the disk itself says no
        DPHIANT_SCP_SPOOL_MEMORY_MAX_BYTES: '0', // every data set to its file, as one outgrowing the memory budget goes
      });
      const full = await storescu(megabyte[0]!.slice(0, 1), { port: mm.port });
      const fits = await storescu(small.slice(1, 2), { port: mm.port });
      console.log(`      1 MB instance on a 1 MiB spool: exit ${full.code} (${storeResponses(full)}); then a 10 KB one: exit ${fits.code}; journal ${JSON.stringify(mm.journal.counts())}`);
      expect(full.code, 'storescu exits with the status high byte').to.equal(0xa7);
      expect(mm.journal.byState('REJECTED').map((j) => j.reason)).to.deep.equal([SPOOL_FULL]);
      expect(fits.code, fits.stderr).to.equal(0);
      expect(mm.journal.counts().IN_PACS).to.equal(1);
      expect(readdirSync(spoolDir)).to.deep.equal([]);
    } finally {
      await mm?.close();
      execFileSync('umount', [spoolDir]);
    }
  });
});
