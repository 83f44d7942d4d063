// The pipeline's engine in worker threads (src/anonymize/pool.ts): the same output as the engine in this thread,
// failures rebuilt as the classes the pipeline classifies by, the caller's own alias failures passed through as
// they were thrown, and a thread that dies replaced without taking the pool down.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { DEFAULT_CONFIG } from '../src/config/index.js';
import { deidentify } from '../src/anonymize/deidentify.js';
import { VerificationError } from '../src/anonymize/gate.js';
import { DeidentifyThreads, ThreadStoppedError } from '../src/anonymize/pool.js';
import { profileFromSettings } from '../src/anonymize/profile.js';
import { DicomParseError } from '../src/dicom/walker.js';
import type { AliasSource } from '../src/dicom/identity.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { part10 } from '../src/dicom/writer.js';
import { generateElements, generateOne } from '../tools/synth/generate.js';
import { KeyedStandIn } from './support/standin.js';

const KEY = randomBytes(32);
const setup = { key: KEY.toString('hex'), settings: DEFAULT_CONFIG.anonymize, flags: {}, rememberAliases: false };

/** Fails the way a caller's classified error does: an object of its own class, with fields the thread never sees. */
class CallersOwnError extends Error {
  readonly marker = 'kept';
}

describe('engine threads (src/anonymize/pool.ts)', function () {
  this.timeout(60_000);
  let threads: DeidentifyThreads | undefined;
  afterEach(async () => {
    await threads?.close();
    threads = undefined;
  });

  it('de-identifies a PS3.10 file to the same bytes as the engine in this thread', async () => {
    const file = generateOne({ rows: 32, cols: 32, seed: 901 });
    threads = new DeidentifyThreads(2, setup, new KeyedStandIn(KEY));
    const out = await threads.deidentify(file);
    const here = await deidentify(file, profileFromSettings(DEFAULT_CONFIG.anonymize).profile, KEY, new KeyedStandIn(KEY));
    expect(Buffer.compare(out.bytes, Buffer.concat(here.chunks, here.byteLength))).to.equal(0);
    expect(out.aliasId).to.equal(here.alias.aliasId);
    expect(out.sopInstanceUid).to.equal(here.report.sopInstanceUid);
    expect(out.pixels).to.equal(here.pixels.kind);
  });

  it('rebuilds the engine’s failures as their classes: a gate hit with its attribute paths, unreadable bytes as DicomParseError', async () => {
    const els = generateElements({ rows: 8, cols: 8, seed: 902, patientIndex: 41 });
    const patientId = String(els.find((e) => e.tag === 0x00100020)!.value);
    els.find((e) => e.tag === 0x00080070)!.value = `scanner ${patientId}`; // Manufacturer is kept: the gate finds the ID
    threads = new DeidentifyThreads(1, setup, new KeyedStandIn(KEY));
    const hit = await threads.deidentify(part10(els, TS.ExplicitVRLittleEndian)).catch((e: unknown) => e);
    expect(hit).to.be.instanceOf(VerificationError);
    expect((hit as VerificationError).hits.map((h) => h.path)).to.deep.equal(['Manufacturer']);
    expect((hit as Error).message).to.not.contain(patientId);
    const bad = await threads.deidentify(Buffer.from('not a data set at all'), TS.ExplicitVRLittleEndian).catch((e: unknown) => e);
    expect(bad).to.be.instanceOf(DicomParseError);
    expect((bad as DicomParseError).offset).to.be.a('number');
  });

  it('passes the caller’s alias failure through as the very error it threw, and asks again for the next instance', async () => {
    let fail = true;
    const standIn = new KeyedStandIn(KEY);
    const thrown = new CallersOwnError('crosswalk down');
    const aliases: AliasSource = {
      patient: (p) => (fail ? Promise.reject(thrown) : standIn.patient(p)),
      study: (a, s) => standIn.study(a, s),
    };
    threads = new DeidentifyThreads(1, setup, aliases);
    const file = generateOne({ rows: 8, cols: 8, seed: 903 });
    expect(await threads.deidentify(file).catch((e: unknown) => e)).to.equal(thrown);
    fail = false;
    expect((await threads.deidentify(file)).aliasId).to.match(/^DPH/);
  });

  it('fails the instances of a thread that stopped with ThreadStoppedError, and de-identifies on a fresh thread', async () => {
    threads = new DeidentifyThreads(1, setup, new KeyedStandIn(KEY));
    await threads.whenReady();
    const file = generateOne({ rows: 8, cols: 8, seed: 904 });
    const inFlight = threads.deidentify(file).catch((e: unknown) => e);
    // the pool's own thread, ended under it as a crash would
    const worker = (threads as unknown as { threads: { worker: { terminate(): Promise<number> } }[] }).threads[0]!.worker;
    await worker.terminate();
    expect(await inFlight).to.be.instanceOf(ThreadStoppedError);
    expect((await threads.deidentify(file)).aliasId).to.match(/^DPH/);
  });
});
