// The dcmjs-dimse adapter (src/dicom/dimse.ts), one test per behaviour it takes from the library's internals: the
// streamed C-STORE (byte for byte to a real DCMTK storescp, within its maximum PDU length, with progress; never
// transcoded), the C-STORE-RSP's ErrorComment, the SCP's `connected` flag (the library's PDU timer) and idle clock,
// the version check; and that nothing else in src/ reaches the library except through it.
import { pduHeaders } from './support/pdu-scan.js';
import { expect } from 'chai';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dimse, { AssociationClosedError, AssociationRejectedError, checkDimseVersion, installedDimseVersion, ServerScp, StoreAssociation, SUPPORTED_DIMSE_VERSION, wholePdus, type StoreSink } from '../src/dicom/dimse.js';
import type { ReceivedInstance } from '../src/dicom/c-store.js';
import { splitPart10 } from '../src/dicom/part10.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { DEFAULT_CONFIG } from '../src/config/index.js';
import { createLogger } from '../src/log.js';
import { DicomServer } from '../src/scp/server.js';
import { storeInstance } from '../src/scu/store.js';
import { findUp } from '../src/paths.js';
import { generateOne } from '../tools/synth/generate.js';
import { startCapture } from './support/capture.js';
import { cleanEnv, DEV_STACK_ENV } from './support/cli.js';
import { run } from './support/dcmtk.js';
import { associateRq } from './support/raw-scu.js';
import { freePort, freePorts } from './support/ports.js';

const { Client } = dimse;
const { CEchoRequest } = dimse.requests;
const { CEchoResponse } = dimse.responses;
const { PresentationContextResult, TransferSyntax } = dimse.constants;

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

const ADAPTER = 'dicom/dimse.ts';
const IMPORTS_LIBRARY = /(?:from\s*|import\s*\(\s*|require\s*\(\s*)'dcmjs-dimse(?:\/[^']*)?'/;
const IMPORTS_ADAPTER = /from\s*'[./]*(?:dicom\/)?dimse\.js'/;
/** What reaching past a library's .d.ts looks like in TypeScript. */
const INTERNALS: [string, RegExp][] = [
  ['as unknown as', /as unknown as/],
  ['an _underscored member', /\.\s*_[A-Za-z]\w*/],
  ['a @ts- directive', /@ts-(?:ignore|expect-error|nocheck)/],
  ['a prototype', /\.prototype\b|getPrototypeOf|setPrototypeOf/],
];
const internalsIn = (text: string) => INTERNALS.filter(([, re]) => re.test(text)).map(([what]) => what);

/** A spool file holding the data set of a generated PS3.10 file, as the SCP leaves it for the SCU. */
function spooled(dir: string, part10: Buffer): { inst: ReceivedInstance; dataset: Buffer } {
  const p = splitPart10(part10);
  const spoolPath = path.join(dir, `${p.sopInstanceUid}.ds`);
  writeFileSync(spoolPath, p.dataset);
  return {
    inst: { sopClassUid: p.sopClassUid, sopInstanceUid: p.sopInstanceUid, transferSyntaxUid: p.transferSyntaxUid, callingAet: 'MODALITY', spoolPath, bytes: p.dataset.length },
    dataset: p.dataset,
  };
}

/** A TCP proxy that records the PDUs going from the caller to the server: type and declared length of each. */
async function pduRecorder(target: number): Promise<{ port: number; pdus: { type: number; length: number }[]; close(): Promise<void> }> {
  const port = await freePort();
  const pdus: { type: number; length: number }[] = [];
  const sockets = new Set<Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.pipe(client);
    const record = pduHeaders((type, length) => pdus.push({ type, length }));
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      record(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    pdus,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

type Ended = { kind: 'response'; status: number; comment?: string } | { kind: 'not-accepted' } | { kind: 'rejected' } | { kind: 'error'; message: string } | { kind: 'closed' };

/** Sends one spooled instance over the adapter's StoreAssociation, releases it, and says how it ended and how often progress was told. */
async function sendSpooled(inst: ReceivedInstance, port: number, calledAet: string): Promise<{ ended: Ended; progress: number }> {
  let progress = 0;
  const association = new StoreAssociation(inst, { host: '127.0.0.1', port, callingAet: 'DPHIANT', calledAet, connectTimeout: 30_000, associationTimeout: 10_000, pduTimeout: 30_000 });
  association.on('progress', () => progress++);
  let ended: Ended;
  try {
    await association.accepted;
    const answer = await association.send(inst);
    ended = answer === 'not-accepted' ? { kind: 'not-accepted' } : { kind: 'response', ...answer };
    await association.release();
  } catch (e) {
    ended = e instanceof AssociationRejectedError ? { kind: 'rejected' } : e instanceof AssociationClosedError ? { kind: 'closed' } : { kind: 'error', message: (e as Error).message };
    await association.whenClosed();
  }
  return { ended, progress };
}

describe('dcmjs-dimse adapter: one module reaches the library', () => {
  const src = findUp('src');

  it('the patterns below catch what the SCU and SCP did before the adapter', () => {
    const before = [
      'network._sendPDataTF = (command, pcId, maxPduLength) => {',
      'network = (client as unknown as { network: NetworkInternals }).network;',
      "// @ts-expect-error private\nassoc.connected = true;",
      'Network.prototype._sendPDataTF = patched;',
    ];
    expect(before.map(internalsIn)).to.deep.equal([['an _underscored member'], ['as unknown as'], ['a @ts- directive'], ['an _underscored member', 'a prototype']]);
    expect(IMPORTS_LIBRARY.test("import dimse from 'dcmjs-dimse';")).to.equal(true);
    expect(IMPORTS_LIBRARY.test("const { Scp } = await import('dcmjs-dimse');")).to.equal(true);
  });

  it("no file of src/ but src/dicom/dimse.ts imports 'dcmjs-dimse', and none that uses the adapter reaches past it", () => {
    const importers: string[] = [];
    const reaching: string[] = [];
    const users: string[] = [];
    for (const file of filesUnder(src)) {
      const rel = path.relative(src, file);
      if (rel === ADAPTER) continue;
      const text = readFileSync(file, 'utf8');
      if (IMPORTS_LIBRARY.test(text)) importers.push(rel);
      if (!IMPORTS_ADAPTER.test(text)) continue;
      users.push(rel);
      const found = internalsIn(text);
      if (found.length) reaching.push(`${rel}: ${found.join(', ')}`);
    }
    console.log(`      files using the adapter: ${users.sort().join(', ')}`);
    expect(importers, 'import it through src/dicom/dimse.ts').to.deep.equal([]);
    expect(reaching, 'move it into src/dicom/dimse.ts, next to the version check').to.deep.equal([]);
    expect(users).to.include.members(['scu/store.ts', 'scu/echo.ts', 'scp/server.ts', 'middleman.ts']);
  });
});

describe('dcmjs-dimse adapter: the version check', () => {
  it(`passes for the installed version, which is ${SUPPORTED_DIMSE_VERSION} (package.json and the loaded build agree)`, () => {
    expect(installedDimseVersion()).to.equal(SUPPORTED_DIMSE_VERSION);
    expect(dimse.version).to.equal(SUPPORTED_DIMSE_VERSION);
    expect(() => checkDimseVersion()).to.not.throw();
  });

  it('refuses any other version, naming the installed and the supported one', () => {
    for (const other of ['0.3.4', '0.4.0', '0.3.2']) {
      expect(() => checkDimseVersion(other)).to.throw(new RegExp(`dcmjs-dimse ${other.replace(/\./g, '\\.')} is installed.*dcmjs-dimse 0\\.3\\.3`));
    }
  });

  it('dphiant serve refuses to start when another version is installed', async () => {
    // a copy of the compiled product beside a node_modules whose dcmjs-dimse says 0.3.4 (the same build inside)
    const root = findUp('.');
    const tree = mkdtempSync(path.join(tmpdir(), 'dphiant-dimse-version-'));
    try {
      cpSync(path.join(root, 'package.json'), path.join(tree, 'package.json'));
      symlinkSync(path.join(root, 'src'), path.join(tree, 'src'));
      cpSync(path.join(root, 'dist/src'), path.join(tree, 'dist/src'), { recursive: true });
      mkdirSync(path.join(tree, 'node_modules/dcmjs-dimse'), { recursive: true });
      for (const name of readdirSync(path.join(root, 'node_modules')))
        if (name !== 'dcmjs-dimse') symlinkSync(path.join(root, 'node_modules', name), path.join(tree, 'node_modules', name));
      const real = path.join(root, 'node_modules/dcmjs-dimse');
      const pkg = JSON.parse(readFileSync(path.join(real, 'package.json'), 'utf8')) as { version: string };
      writeFileSync(path.join(tree, 'node_modules/dcmjs-dimse/package.json'), JSON.stringify({ ...pkg, version: '0.3.4' }));
      symlinkSync(path.join(real, 'build'), path.join(tree, 'node_modules/dcmjs-dimse/build'));
      const r = await run(process.execPath, [path.join(tree, 'dist/src/cli/main.js'), 'serve'], {
        env: { ...cleanEnv, ...DEV_STACK_ENV, DPHIANT_DATA_DIR: path.join(tree, 'data') },
        timeoutMs: 60_000,
      });
      const said = /dcmjs-dimse 0\.3\.4 is installed[^"]*/.exec(r.stdout + r.stderr)?.[0];
      console.log(`      exit ${r.code}: ${said ?? (r.stdout + r.stderr).slice(0, 400)}`);
      expect(r.code).to.equal(1);
      expect(said).to.match(/relies on internals of dcmjs-dimse 0\.3\.3/);
    } finally {
      rmSync(tree, { recursive: true, force: true });
    }
  });
});

describe('dcmjs-dimse adapter: the streamed C-STORE', function () {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'dphiant-dimse-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  for (const maxPdu of [16384, 4096]) {
    it(`sends a spool file byte for byte to DCMTK storescp, in P-DATA-TF PDUs of at most its max PDU ${maxPdu}, telling progress per block`, async () => {
      const capture = await startCapture(path.join(dir, 'capture'), 'CAPTURE', { maxPdu });
      const proxy = await pduRecorder(capture.port);
      try {
        const { inst, dataset } = spooled(dir, generateOne({ rows: 1024, cols: 1024 }));
        const { ended, progress } = await sendSpooled(inst, proxy.port, capture.aet);
        const pdata = proxy.pdus.filter((p) => p.type === 0x04);
        const longest = Math.max(...pdata.map((p) => p.length));
        const fragments = Math.ceil(dataset.length / (maxPdu - 6));
        console.log(`      ${dataset.length} bytes: ${pdata.length} P-DATA-TF PDUs (longest ${longest}, limit ${maxPdu}; ${fragments} data fragments + the command), progress told ${progress} times; ended: ${JSON.stringify(ended)}`);
        expect(ended).to.deep.equal({ kind: 'response', status: 0 });
        const received = capture.received(inst.sopInstanceUid);
        expect(received.ts).to.equal(inst.transferSyntaxUid);
        expect(received.bytes.equals(dataset), 'data set bytes as spooled').to.equal(true);
        expect(longest).to.be.at.most(maxPdu);
        expect(pdata.length).to.equal(fragments + 1);
        // one call per block of about 1 MiB written, plus the chunks received (A-ASSOCIATE-AC, C-STORE-RSP…)
        expect(progress).to.be.at.least(Math.ceil(dataset.length / (1024 * 1024)) + 2);
      } finally {
        await proxy.close();
        await capture.stop();
      }
    });
  }

  // the library falls back to another accepted context of the SOP class and transcodes into it; a plain Dataset
  // would go as a re-encoded copy, or as the two elements it was built from
  for (const [ts, accept] of [
    [TS.JPEGBaseline, 'uncompressed'],
    [TS.ExplicitVRLittleEndian, 'implicit'],
  ] as const) {
    it(`never lets the library transcode: ${ts} to a peer accepting ${accept} syntaxes only ends without a C-STORE`, async () => {
      const capture = await startCapture(path.join(dir, 'capture'), 'CAPTURE', { accept });
      try {
        // the SCU never looks inside the spool file: any data set bytes, recorded in this syntax as the SCP would
        const inst = { ...spooled(dir, generateOne({ rows: 64, cols: 64 })).inst, transferSyntaxUid: ts };
        const { ended } = await sendSpooled(inst, capture.port, capture.aet);
        const stored = readdirSync(path.join(dir, 'capture')).length;
        console.log(`      ended: ${JSON.stringify(ended)}; instances the peer stored: ${stored}`);
        expect(ended).to.deep.equal({ kind: 'not-accepted' });
        expect(stored).to.equal(0);
        // and the product's SCU calls that not accepted
        const target = { host: '127.0.0.1', port: capture.port, aet: capture.aet, callingAet: 'DPHIANT', connectTimeoutMs: 5000, noProgressTimeoutMs: 10_000, storeTimeoutMs: 20_000 };
        expect(await storeInstance(target, inst)).to.deep.equal({ kind: 'not-accepted' });
      } finally {
        await capture.stop();
      }
    });
  }

  it("reads the C-STORE-RSP's status and ErrorComment (DPHIANT's own SCP answering)", async () => {
    const port = await freePort();
    let reply: { status: number; comment?: string } = { status: 0 };
    const server = new DicomServer({
      scp: { ...DEFAULT_CONFIG.scp, port, callers: [{ aet: 'DPHIANT', host: '*' }] },
      spoolDir: path.join(dir, 'spool'),
      log: createLogger('silent'),
      fingerprint: () => '-',
      ingest: async () => reply,
    });
    await server.listen();
    try {
      const { inst } = spooled(dir, generateOne({ rows: 8, cols: 8 }));
      const target = { host: '127.0.0.1', port, aet: DEFAULT_CONFIG.scp.aet, callingAet: 'DPHIANT', connectTimeoutMs: 5000, noProgressTimeoutMs: 10_000, storeTimeoutMs: 20_000 };
      const ok = await storeInstance(target, inst);
      reply = { status: 0xa700, comment: 'DPHIANT spool full' };
      const refused = await storeInstance(target, inst);
      console.log(`      answered ${JSON.stringify(ok)}, then ${JSON.stringify(refused)}`);
      expect(ok).to.deep.equal({ kind: 'answered', status: 0 });
      expect(refused).to.deep.equal({ kind: 'answered', status: 0xa700, comment: 'DPHIANT spool full' });
    } finally {
      await server.close();
    }
  });
});

/** A Verification SCP on the adapter's ServerScp, answering each C-ECHO after `answerAfterMs`. */
class EchoScp extends ServerScp {
  answerAfterMs = 0;
  restartClockOnAnswer = true;
  aborted = false;
  override associationRequested(association: InstanceType<typeof dimse.association.Association>): void {
    for (const { id } of association.getPresentationContexts())
      association.getPresentationContext(id).setResult(PresentationContextResult.Accept, TransferSyntax.ImplicitVRLittleEndian);
    this.sendAssociationAccept();
  }
  override associationReleaseRequested(): void {
    this.sendAssociationReleaseResponse();
  }
  override cEchoRequest(request: InstanceType<typeof CEchoRequest>, callback: (r: InstanceType<typeof CEchoResponse>) => void): void {
    setTimeout(() => {
      if (this.restartClockOnAnswer) this.restartIdleClock();
      const response = CEchoResponse.fromRequest(request);
      response.setStatus(0);
      callback(response);
    }, this.answerAfterMs);
  }
  override abort(): void {
    this.aborted = true;
  }
  protected override openStoreSink(): StoreSink {
    throw new Error('no C-STORE here');
  }
}

/** A net.Server of EchoScp associations with these library timers (the socket's idle timeout kept out of the way). */
async function echoServer(pduTimeout: number, setup: (scp: EchoScp) => void): Promise<{ port: number; close(): Promise<void> }> {
  const [port] = await freePorts(1);
  const sockets = new Set<Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const scp = new EchoScp(socket, { connectTimeout: 60_000, associationTimeout: 60_000, pduTimeout }, 2 * 1024 * 1024);
    scp.on('networkError', () => socket.destroy());
    setup(scp);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: port!,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** A C-ECHO with the library's Client, releasing `lingerMs` after the answer: its status, and whether the release went through. */
function cEcho(port: number, lingerMs: number): Promise<string> {
  return new Promise((resolve) => {
    const client = new Client();
    const request = new CEchoRequest();
    let status = 'no response';
    let released = false;
    request.on('response', (rsp: InstanceType<typeof CEchoResponse>) => (status = `status ${rsp.getStatus()}`));
    client.on('associationReleased', () => (released = true));
    client.on('closed', () => resolve(`${status}, ${released ? 'released' : 'not released'}`));
    client.addRequest(request);
    client.send('127.0.0.1', port, 'PROBE', 'ECHO', { associationLingerTimeout: lingerMs });
  });
}

describe('dcmjs-dimse adapter: the SCP on a socket of our own', () => {
  it('gives the library whole PDUs, however the socket cut them, and stops at one declared over the limit', () => {
    const pdu = (type: number, body: number) => {
      const b = Buffer.alloc(6 + body);
      b[0] = type;
      b.writeUInt32BE(body, 2);
      for (let i = 6; i < b.length; i++) b[i] = (i * 7 + type) & 0xff;
      return b;
    };
    // a zero-length body, header-only fragments, one PDU inside a chunk, one over many chunks
    const pdus = [pdu(4, 0), pdu(4, 1), pdu(1, 300), pdu(4, 70_000), pdu(5, 4), pdu(4, 262_144), pdu(7, 4)];
    const stream = Buffer.concat(pdus);
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (const cut of ['1 byte', '5 bytes', '64 KiB', 'random', 'whole'] as const) {
      const got: Buffer[] = [];
      const feed = wholePdus(262_144, (p) => got.push(Buffer.from(p)), () => expect.fail('not too long'));
      for (let off = 0; off < stream.length; ) {
        const n = cut === '1 byte' ? 1 : cut === '5 bytes' ? 5 : cut === '64 KiB' ? 65_536 : cut === 'whole' ? stream.length : 1 + Math.floor(random() * 100_000);
        feed(stream.subarray(off, off + n));
        off += n;
      }
      expect(got.map((p) => p.toString('hex')), cut).to.deep.equal(pdus.map((p) => p.toString('hex')));
    }
    let tooLong = 0;
    const got: Buffer[] = [];
    const feed = wholePdus(1000, (p) => got.push(p), () => tooLong++);
    feed(Buffer.concat([pdu(4, 1000), pdu(4, 1001).subarray(0, 3)]));
    feed(pdu(4, 1001).subarray(3));
    feed(pdu(4, 10));
    expect(got.map((p) => p.length)).to.deep.equal([1006]);
    expect(tooLong).to.equal(1);
  });

  it("the library's PDU timer runs on an accepted socket (the connected flag): an association silent for pduTimeout gets an A-ABORT", async () => {
    const pduTimeout = 1500;
    const server = await echoServer(pduTimeout, () => undefined);
    try {
      const socket = net.connect(server.port, '127.0.0.1');
      const types: number[] = [];
      let pending = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 6 && pending.length >= 6 + pending.readUInt32BE(2)) {
          types.push(pending[0]!);
          pending = pending.subarray(6 + pending.readUInt32BE(2));
        }
      });
      const started = Date.now();
      socket.write(associateRq('ECHO', 'PROBE'));
      const closedAfter = await new Promise<number>((resolve) => {
        const giveUp = setTimeout(() => socket.destroy(), pduTimeout + 4000);
        socket.on('close', () => {
          clearTimeout(giveUp);
          resolve(Date.now() - started);
        });
      });
      console.log(`      PDUs from the SCP: ${types.map((t) => `0x0${t}`).join(', ')}; connection closed after ${closedAfter} ms (pduTimeout ${pduTimeout} ms)`);
      expect(types).to.deep.equal([0x02, 0x07]); // A-ASSOCIATE-AC, then A-ABORT
      expect(closedAfter).to.be.within(pduTimeout, pduTimeout + 2000);
    } finally {
      await server.close();
    }
  });

  it("restartIdleClock: after DPHIANT's answer the caller's next PDU gets the whole pduTimeout", async () => {
    // the caller's release comes 4.5 s after its C-ECHO-RQ, 2.5 s after the answer: within pduTimeout only when the
    // idle clock restarted on the answer (the timer looks once a second: 0.5 s margins either way)
    const pduTimeout = 3000;
    const answerAfterMs = 2000;
    const lingerMs = 2500;
    const results: Record<string, string> = {};
    for (const restart of [true, false]) {
      const server = await echoServer(pduTimeout, (scp) => {
        scp.answerAfterMs = answerAfterMs;
        scp.restartClockOnAnswer = restart;
      });
      try {
        results[restart ? 'restarted' : 'not restarted'] = await cEcho(server.port, lingerMs);
      } finally {
        await server.close();
      }
    }
    console.log(`      C-ECHO answered after ${answerAfterMs} ms, release ${lingerMs} ms later, pduTimeout ${pduTimeout} ms: ${JSON.stringify(results)}`);
    expect(results).to.deep.equal({ restarted: 'status 0, released', 'not restarted': 'status 0, not released' });
  });
});
