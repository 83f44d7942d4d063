// Issue 5's fault test: 1,000 malformed inputs over C-STORE while a good association runs; PDUs declaring 4 GB; and
// the same memory exhaustion through legal-size PDUs (command fragments without end) and a deflate bomb.
// The middleman must stay up, refuse (or quarantine) every bad one, and let the good association complete.
// DPHIANT_MALFORMED_SEED=<n> replays another seed; each case is reproducible alone with malformedCase(seed, index).
import { expect } from 'chai';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createDeflateRaw } from 'node:zlib';
import { generateStudies, type Manifest } from '../tools/synth/generate.js';
import { isSuccessOrWarning } from '../src/dicom/c-store.js';
import type { Job, JobState } from '../src/pipeline/journal.js';
import type { StoreOutcome } from '../src/scu/store.js';
import { echoscu, storescu, type RunResult } from './support/dcmtk.js';
import { KINDS, caseUid, malformedCase, malformedCases, referenceVerdict, validBase, type MalformedCase } from './support/malformed.js';
import { pacsInventory, waitUntilSettled, type Inventory } from './support/pipeline.js';
import { associateRq, sendRawDataset } from './support/raw-scu.js';
import { startStack, type TestStack } from './support/stack.js';
import { TS } from '../src/dicom/transfer-syntax.js';

const SEED = Number(process.env.DPHIANT_MALFORMED_SEED ?? 20_260_605);
const COUNT = 1000;
/** Malformed associations in flight at once: concurrent, and well under scp.maxAssociations (32). */
const CONCURRENCY = 8;
/** The good association starts once this many malformed ones were sent. */
const GOOD_STARTS_AFTER = 100;
const MiB = 1024 * 1024;
/** Body bytes written after a PDU header declaring 4 GB. */
const JUNK = Buffer.alloc(64 * 1024, 0x5a);

/**
 * refused: answered with a failure status; dropped: the middleman closed or aborted the association; no-answer: the
 * sender gave up waiting (not a refusal: the modality would retry); the rest should never happen.
 */
type Verdict = 'refused' | 'dropped' | 'no-answer' | 'association-rejected' | 'accepted' | 'not-accepted' | 'threw';
interface Sent {
  c: MalformedCase;
  outcome: StoreOutcome | { kind: 'threw'; error: string };
  verdict: Verdict;
}

function verdictOf(o: Sent['outcome']): Verdict {
  if (o.kind === 'answered') return isSuccessOrWarning(o.status) ? 'accepted' : 'refused';
  if (o.kind === 'unavailable') return /timeout/i.test(o.reason) ? 'no-answer' : /association rejected/.test(o.reason) ? 'association-rejected' : 'dropped';
  return o.kind;
}

const hex4 = (n: number) => '0x' + n.toString(16).toUpperCase().padStart(4, '0');
const label = (o: Sent['outcome']): string =>
  o.kind === 'answered' ? `answered ${hex4(o.status)}${o.comment ? ` "${o.comment.replace(/\d+/g, 'N')}"` : ''}` : o.kind === 'unavailable' ? `unavailable (${o.reason})` : o.kind === 'threw' ? `threw ${o.error}` : o.kind;

function tally<T>(list: T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of list) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return Object.fromEntries(Object.entries(out).sort((a, b) => b[1] - a[1]));
}

const describeCase = (c: MalformedCase) => `case ${c.index} [${c.kind}] ${c.variant} (uid ${c.sopInstanceUid})`;

describe('malformed inputs: 1,000 bad C-STORE data sets while a good association runs', function () {
  this.timeout(600_000);
  let stack: TestStack;
  let cases: MalformedCase[];
  let good: Manifest;
  let sent: Sent[];
  let goodRun: RunResult;
  const times = { badStart: 0, badEnd: 0, goodStart: 0, goodEnd: 0 };
  let jobsByUid: Map<string, Job[]>;
  let inventory: Inventory;

  before(async () => {
    const t = Date.now();
    cases = malformedCases(SEED, COUNT);
    console.log(`      seed ${SEED} (DPHIANT_MALFORMED_SEED replays another): ${COUNT} malformed data sets made in ${Date.now() - t} ms`);
    stack = await startStack({
      // anything a bug lets through to the worker is unreadable there, a permanent failure: it settles (DONE or
      // QUARANTINED) at its first attempt; one taken for transient would retry without end and the wait below fail
      env: { DPHIANT_PIPELINE_RETRY_BASE_MS: '200', DPHIANT_PIPELINE_RETRY_MAX_MS: '1000' },
    });
    good = await generateStudies({ outDir: path.join(stack.work, 'good'), patients: 5, studiesPerPatient: 1, seriesPerStudy: 2, instancesPerSeries: 5, rows: 32, cols: 32, seed: 505, prefix: 'GOOD' });

    sent = new Array(COUNT);
    let next = 0;
    let goodPromise: Promise<RunResult> | undefined;
    const startGood = () => {
      times.goodStart = Date.now();
      goodPromise = storescu(good.instances.map((i) => i.path), { port: stack.mm.port, timeoutMs: 300_000 }).then((r) => {
        times.goodEnd = Date.now();
        return r;
      });
    };
    times.badStart = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < COUNT) {
          const i = next++;
          if (i === GOOD_STARTS_AFTER) startGood();
          const c = cases[i]!;
          let outcome: Sent['outcome'];
          try {
            outcome = await sendRawDataset(c.bytes, { port: stack.mm.port, sopClassUid: c.sopClassUid, sopInstanceUid: c.sopInstanceUid, transferSyntaxUid: c.transferSyntaxUid, timeoutMs: 30_000 });
          } catch (e) {
            outcome = { kind: 'threw', error: (e as Error).message };
          }
          sent[i] = { c, outcome, verdict: verdictOf(outcome) };
        }
      }),
    );
    times.badEnd = Date.now();
    goodRun = await goodPromise!;
    await waitUntilSettled(stack.mm.journal, 180_000);

    jobsByUid = new Map();
    for (const state of ['RECEIVED', 'IN_PACS', 'REJECTED', 'DEIDENTIFIED', 'DONE', 'QUARANTINED', 'PURGED'] as JobState[]) {
      for (const j of stack.mm.journal.byState(state, 1_000_000)) jobsByUid.set(j.sopUidHash, [...(jobsByUid.get(j.sopUidHash) ?? []), j]);
    }
    inventory = await pacsInventory(stack.pacsRest);
  });

  after(async () => {
    await stack?.stop();
  });

  it('makes 1,000 deterministic malformed data sets, each found malformed by an independent reference reader', () => {
    expect(cases).to.have.length(COUNT);
    expect(new Set(cases.map((c) => c.sopInstanceUid)).size, 'one SOP Instance UID per case').to.equal(COUNT);
    expect(tally(cases, (c) => c.kind), 'cases per kind').to.deep.equal({ ...KINDS });
    for (const c of cases) expect(referenceVerdict(c.bytes, c.transferSyntaxUid, c.sopClassUid, c.sopInstanceUid), describeCase(c)).to.be.a('string');
    for (const i of [0, 17, 500, 999]) expect(malformedCase(SEED, i, COUNT).bytes.equals(cases[i]!.bytes), `case ${i} made alone`).to.equal(true);
    // the reference is no rubber stamp: it reads the unmutated bases as valid in every syntax the cases use
    for (const ts of [TS.ExplicitVRLittleEndian, TS.ImplicitVRLittleEndian, TS.ExplicitVRBigEndian, TS.DeflatedExplicitVRLittleEndian]) {
      for (const i of [0, 1, 2, 3]) {
        const b = validBase(SEED, i, ts);
        expect(referenceVerdict(b.bytes, ts, b.sopClassUid, b.sopInstanceUid), `base ${i} in ${ts}`).to.equal(null);
      }
    }
    console.log(`      kinds: ${JSON.stringify(tally(cases, (c) => c.kind))}`);
    console.log(`      sizes: ${Math.min(...cases.map((c) => c.bytes.length))}..${Math.max(...cases.map((c) => c.bytes.length))} bytes; ` +
      `syntaxes: ${JSON.stringify(tally(cases, (c) => c.transferSyntaxUid))}; redrawn because still valid: ${cases.reduce((a, c) => a + c.redraws, 0)}`);
    console.log(`      reference verdicts: ${JSON.stringify(tally(cases, (c) => c.verdict.replace(/\([0-9a-f]{8}\)/g, '(tag)').replace(/ at \d+$/, '')))}`);
  });

  it('completes the good association: storescu sends 50 valid instances while the malformed ones flow and exits 0', () => {
    console.log(`      malformed: ${times.badEnd - times.badStart} ms for ${COUNT} (${CONCURRENCY} at a time); ` +
      `good association: started at +${times.goodStart - times.badStart} ms, ended at +${times.goodEnd - times.badStart} ms`);
    expect(goodRun.code, goodRun.stderr).to.equal(0);
    expect((goodRun.stdout + goodRun.stderr).match(/Received Store Response \(Success\)/g) ?? [], 'a success per instance').to.have.length(good.instances.length);
    expect(times.goodStart, 'the good association started while malformed ones were still being sent').to.be.lessThan(times.badEnd);
  });

  it('refuses every malformed data set itself, with a failure status or by dropping the connection, or quarantines it once accepted', () => {
    const verdicts = tally(sent, (s) => s.verdict);
    console.log(`      outcomes: ${JSON.stringify(verdicts)}`);
    console.log(`      by status: ${JSON.stringify(tally(sent, (s) => label(s.outcome)))}`);
    const byKind: Record<string, Record<string, number>> = {};
    for (const s of sent) {
      const k = (byKind[s.c.kind] ??= {});
      const l = s.outcome.kind === 'answered' ? hex4(s.outcome.status) : s.outcome.kind;
      k[l] = (k[l] ?? 0) + 1;
    }
    for (const [k, v] of Object.entries(byKind)) console.log(`        ${k.padEnd(16)} ${JSON.stringify(v)}`);
    const accepted = sent.filter((s) => s.verdict === 'accepted');
    const quarantined = accepted.filter((s) => jobsByUid.get(stack.mm.journal.uidHash(s.c.sopInstanceUid))?.some((j) => j.state === 'QUARANTINED'));
    console.log(`      accepted by the middleman: ${accepted.length}, of which quarantined: ${quarantined.length}`);
    for (const s of accepted) console.log(`        accepted: ${describeCase(s.c)}: ${label(s.outcome)}; jobs ${JSON.stringify(jobsByUid.get(stack.mm.journal.uidHash(s.c.sopInstanceUid))?.map((j) => [j.state, j.reason]))}`);
    // the ingest checks data sets of this size before forwarding: the refusal must be the middleman's, not the PACS's
    const forwarded = sent.filter((s) => jobsByUid.get(stack.mm.journal.uidHash(s.c.sopInstanceUid))?.some((j) => j.state === 'REJECTED' && /^PACS /.test(j.reason ?? '')));
    for (const s of forwarded) console.log(`        forwarded to the PACS: ${describeCase(s.c)}; jobs ${JSON.stringify(jobsByUid.get(stack.mm.journal.uidHash(s.c.sopInstanceUid))?.map((j) => [j.state, j.reason]))}`);
    const wrong = sent.filter((s) => s.verdict !== 'refused' && s.verdict !== 'dropped' && !quarantined.includes(s));
    expect(wrong.map((s) => `${describeCase(s.c)}: ${label(s.outcome)}`), 'malformed data sets neither refused, dropped nor quarantined').to.deep.equal([]);
    expect(forwarded.map((s) => describeCase(s.c)), 'malformed data sets forwarded to the PACS and refused only because the PACS failed on them').to.deep.equal([]);
  });

  it('journals no malformed data set as stored, and leaves only the 50 good instances in the PACS, all de-identified', () => {
    const counts = stack.mm.journal.counts();
    console.log(`      journal: ${JSON.stringify(counts)}`);
    const badUids = new Set(cases.map((c) => c.sopInstanceUid));
    const badHashes = new Set([...badUids].map((u) => stack.mm.journal.uidHash(u)));
    const badJobs = [...jobsByUid.entries()].filter(([hash]) => badHashes.has(hash)).flatMap(([, jobs]) => jobs);
    console.log(`      malformed ones in the journal: ${JSON.stringify(tally(badJobs, (j) => `${j.state}: ${(j.reason ?? '').replace(/\d+/g, 'N')}`))}`);
    const stored = badJobs.filter((j) => j.state !== 'REJECTED' && j.state !== 'QUARANTINED');
    expect(stored.map((j) => `${describeCase(cases.find((c) => stack.mm.journal.uidHash(c.sopInstanceUid) === j.sopUidHash)!)}: ${j.state}`), 'malformed jobs other than REJECTED or QUARANTINED').to.deep.equal([]);

    const goodUids = new Set(good.instances.map((i) => i.sopInstanceUid));
    const goodDone = [...goodUids].filter((u) => jobsByUid.get(stack.mm.journal.uidHash(u))?.some((j) => j.state === 'DONE'));
    expect(goodDone, 'every good instance DONE').to.have.length(good.instances.length);

    const acceptedDeidentified = badJobs.filter((j) => j.state === 'DONE').length;
    console.log(`      PACS: ${inventory.instances.length} instances (good ${good.instances.length} + malformed ones de-identified ${acceptedDeidentified}), ${inventory.patients.length} patients`);
    expect(acceptedDeidentified, 'malformed data sets accepted and de-identified').to.equal(0);
    expect(inventory.instances).to.have.length(good.instances.length);
    expect(inventory.instances.filter((i) => i.identityRemoved !== 'YES').map((i) => i.sopInstanceUid), 'raw instances in the PACS').to.deep.equal([]);
    const inPacs = new Set(inventory.instances.map((i) => i.sopInstanceUid));
    expect([...badUids].filter((u) => inPacs.has(u)), 'malformed instances in the PACS under their own UID').to.deep.equal([]);
    expect([...goodUids].filter((u) => inPacs.has(u)), 'good instances left under their original UID').to.deep.equal([]);
    expect(inventory.patients.filter((p) => good.patients.some((g) => g.patientId === p.patientId)), 'original patient IDs in the PACS').to.deep.equal([]);
  });

  it('still answers a C-ECHO afterwards and leaves no spool file behind', async () => {
    const echo = await echoscu({ port: stack.mm.port });
    expect(echo.code, echo.stderr).to.equal(0);
    expect(readdirSync(path.join(stack.mm.config.dataDir, 'spool')), 'spool files left').to.deep.equal([]);
  });

  // ---- PDUs declaring 4 GB

  it('drops a connection whose A-ASSOCIATE-RQ declares a 4 GB PDU at once, in one write or byte by byte, while a parallel C-ECHO succeeds and memory stays flat', async () => {
    const header = Buffer.from([0x01, 0x00, 0xff, 0xff, 0xff, 0xf0]);
    for (const byteByByte of [false, true]) {
      const [attack, echo] = await Promise.all([
        measured(() => rawStream(stack.mm.port, { header, byteByByte, chunk: JUNK, maxBytes: 256 * MiB })),
        echoscu({ port: stack.mm.port }),
      ]);
      console.log(`      A-ASSOCIATE-RQ of 0xFFFFFFF0 bytes${byteByByte ? ', header byte by byte' : ''}: ${JSON.stringify(attack)}`);
      expect(echo.code, echo.stderr).to.equal(0);
      expect(attack.closed, 'the middleman closed the connection').to.equal(true);
      expect(attack.closedAfterMs, 'ms from the full header to the close').to.be.lessThan(1000);
      expect(attack.bodyBytesWritten, 'body bytes written before the middleman closed (socket buffers included)').to.be.lessThan(64 * MiB);
      expect(attack.rssGrowthMiB, 'RSS growth of this process (the middleman runs in it), MiB').to.be.lessThan(50);
    }
  });

  it('drops an accepted association whose P-DATA-TF declares a 4 GB PDU at once, while a parallel C-ECHO succeeds and memory stays flat', async () => {
    const header = Buffer.from([0x04, 0x00, 0xff, 0xff, 0xff, 0xf0]);
    const [attack, echo] = await Promise.all([
      measured(() => rawStream(stack.mm.port, { associateFirst: true, header, chunk: JUNK, maxBytes: 256 * MiB })),
      echoscu({ port: stack.mm.port }),
    ]);
    console.log(`      P-DATA-TF of 0xFFFFFFF0 bytes after A-ASSOCIATE-AC: ${JSON.stringify(attack)}`);
    expect(attack.associated, 'the association was accepted first').to.equal(true);
    expect(echo.code, echo.stderr).to.equal(0);
    expect(attack.closed, 'the middleman closed the connection').to.equal(true);
    expect(attack.closedAfterMs, 'ms from the full header to the close').to.be.lessThan(1000);
    expect(attack.bodyBytesWritten, 'body bytes written before the middleman closed (socket buffers included)').to.be.lessThan(64 * MiB);
    expect(attack.rssGrowthMiB, 'RSS growth of this process (the middleman runs in it), MiB').to.be.lessThan(50);
    const after = await echoscu({ port: stack.mm.port });
    expect(after.code, 'C-ECHO after the attack').to.equal(0);
  });

  // ---- the same exhaustion through PDUs of a legal size, and through compression

  it('drops an association that sends 1 MiB command fragments without end before they cost 50 MB of memory', async () => {
    // P-DATA-TF PDUs of 1 MiB (under the 2 MiB PDU limit), each one PDV flagged "command, not last"
    const pdv = 1 * MiB;
    const pdu = Buffer.alloc(12 + pdv, 0x41);
    pdu[0] = 0x04;
    pdu.writeUInt32BE(6 + pdv, 2);
    pdu.writeUInt32BE(2 + pdv, 6);
    pdu[10] = 1; // presentation context 1
    pdu[11] = 0x01; // command, not the last fragment
    const attack = await measured(() => rawStream(stack.mm.port, { associateFirst: true, chunk: pdu, maxBytes: 128 * MiB, lingerMs: 1000 }));
    console.log(`      128 MiB of command fragments never marked last: ${JSON.stringify(attack)}`);
    expect(attack.associated, 'the association was accepted first').to.equal(true);
    const echo = await echoscu({ port: stack.mm.port });
    expect(echo.code, 'C-ECHO after the attack').to.equal(0);
    expect(attack.rssGrowthMiB, 'RSS growth of this process (the middleman runs in it) while the fragments arrived, MiB').to.be.lessThan(50);
  });

  it('refuses a 1 MB deflated data set that inflates to 1 GiB without memory growing past twice the 64 MiB check limit', async () => {
    const bomb = await deflateBomb(1024 * MiB);
    const uid = caseUid(SEED, 1_000_000);
    // C-ECHOs one after another while the middleman has the bomb: all answered, the slowest one printed
    const echoes: { code: number | null; ms: number }[] = [];
    let sending = true;
    const [r] = await Promise.all([
      measured(async () => {
        try {
          return { outcome: await sendRawDataset(bomb, { port: stack.mm.port, sopInstanceUid: uid, transferSyntaxUid: TS.DeflatedExplicitVRLittleEndian, timeoutMs: 60_000 }) };
        } finally {
          sending = false;
        }
      }),
      (async () => {
        while (sending) {
          const t = Date.now();
          const e = await echoscu({ port: stack.mm.port });
          echoes.push({ code: e.code, ms: Date.now() - t });
        }
      })(),
    ]);
    console.log(`      deflate bomb of ${bomb.length} bytes (1 GiB inflated): ${label(r.outcome)}, RSS growth ${r.rssGrowthMiB} MiB; ` +
      `${echoes.length} C-ECHOs meanwhile, the slowest ${Math.max(...echoes.map((e) => e.ms))} ms`);
    expect(echoes.filter((e) => e.code !== 0), 'C-ECHOs that failed meanwhile').to.deep.equal([]);
    expect(verdictOf(r.outcome), label(r.outcome)).to.be.oneOf(['refused', 'dropped']);
    expect(r.rssGrowthMiB, 'RSS growth of this process (the middleman runs in it), MiB').to.be.lessThan(128);
  });
});

// ---------------------------------------------------------------- raw PDUs

interface Stream {
  associated: boolean;
  /** The middleman closed the connection before everything was written. */
  closed: boolean;
  /** From the end of the header (or the first chunk) to the close; -1 if it never closed. */
  closedAfterMs: number;
  bodyBytesWritten: number;
}

/**
 * Connects, optionally associates (A-ASSOCIATE-RQ → AC), writes `header` (at once or byte by byte), then `chunk`
 * again and again with backpressure until the middleman closes the connection or `maxBytes` were written; then waits
 * `lingerMs` for it to read what is in flight and closes.
 */
function rawStream(port: number, o: { associateFirst?: boolean; header?: Buffer; byteByByte?: boolean; chunk: Buffer; maxBytes: number; lingerMs?: number }): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.setNoDelay(true);
    const result: Stream = { associated: false, closed: false, closedAfterMs: -1, bodyBytesWritten: 0 };
    let startedAt = 0;
    let done = false;
    const giveUp = setTimeout(() => socket.destroy(), 60_000);
    socket.on('error', () => undefined); // ECONNRESET / EPIPE once the middleman cuts it: what we expect
    socket.on('close', () => {
      clearTimeout(giveUp);
      if (!done && startedAt) {
        result.closed = true;
        result.closedAfterMs = Date.now() - startedAt;
      }
      resolve(result);
    });
    const writable = () =>
      new Promise<void>((r) => {
        const go = () => {
          socket.off('drain', go).off('close', go);
          r();
        };
        socket.on('drain', go).on('close', go);
      });
    const pump = async () => {
      const header = o.header ?? Buffer.alloc(0);
      for (let i = 0; o.byteByByte && i < header.length; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 20));
        socket.write(header.subarray(i, i + 1));
      }
      if (!o.byteByByte && header.length) socket.write(header);
      startedAt = Date.now();
      while (!socket.destroyed && result.bodyBytesWritten < o.maxBytes) {
        result.bodyBytesWritten += o.chunk.length;
        if (!socket.write(o.chunk)) await writable();
      }
      if (socket.destroyed) return;
      await new Promise((r) => setTimeout(r, o.lingerMs ?? 0));
      done = !socket.destroyed;
      socket.destroy();
    };
    socket.once('connect', () => {
      if (!o.associateFirst) return void pump().catch(reject);
      socket.write(associateRq('DPHIANT', 'MODALITY'));
      socket.once('data', (d: Buffer) => {
        result.associated = d[0] === 0x02; // A-ASSOCIATE-AC
        if (!result.associated) return void socket.destroy();
        void pump().catch(reject);
      });
    });
  });
}

/** A raw deflate stream of `size` zero bytes, made without holding them (about 1 MB for 1 GiB). */
function deflateBomb(size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const z = createDeflateRaw({ level: 9 });
    const out: Buffer[] = [];
    z.on('data', (c: Buffer) => out.push(c));
    z.on('error', reject);
    z.on('end', () => {
      const b = Buffer.concat(out);
      resolve(b.length % 2 ? Buffer.concat([b, Buffer.alloc(1)]) : b);
    });
    const zeros = Buffer.alloc(MiB);
    let left = size / MiB;
    const write = () => {
      while (left > 0) {
        left--;
        if (!z.write(zeros)) return void z.once('drain', write);
      }
      z.end();
    };
    write();
  });
}

// ---------------------------------------------------------------- memory

let gc: (() => void) | undefined;
function collect(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}

/** Linux: resets this process's peak RSS (VmHWM) to its current RSS; false where that is not possible. */
function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Runs `f` and reports how far this process's RSS rose above where it was just before (after a GC): the kernel's
 * peak (VmHWM, which also sees allocations made while the event loop is blocked), else samples every 5 ms.
 */
async function measured<T extends object>(f: () => Promise<T>): Promise<T & { rssGrowthMiB: number }> {
  collect();
  const hwm = resetPeakRss();
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  try {
    const r = await f();
    peak = Math.max(peak, process.memoryUsage().rss, hwm ? peakRss() : 0);
    return { ...r, rssGrowthMiB: Math.round(((peak - before) / MiB) * 10) / 10 };
  } finally {
    clearInterval(sampler);
  }
}
