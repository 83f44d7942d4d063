// Node leases in the shared database (src/crosswalk/leases.ts, src/pipeline/cluster.ts) on a real MongoDB-wire
// server: one holder per lease whatever races, the owner fenced once another node holds its lease or once it cannot
// renew for half the grace time, and claiming it back only when the takeover is settled or has expired.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { NodeLeases } from '../src/crosswalk/leases.js';
import { createLogger } from '../src/log.js';
import { OrthancClient } from '../src/pacs/orthanc.js';
import { ClusterMember } from '../src/pipeline/cluster.js';
import { Journal } from '../src/pipeline/journal.js';
import { Reconciler } from '../src/pipeline/reconciler.js';
import { startMongoServer, type MongoServer } from './support/ferretdb.js';
import { freePort } from './support/ports.js';
import { clusterMissing } from '../tools/devstack/cluster.js';
import { startPostgres, type PostgresServer } from '../tools/devstack/postgres.js';

describe('node leases on a MongoDB-wire server', function () {
  this.timeout(120_000);
  let server: MongoServer;
  let client: MongoClient;
  let db = 0;
  /** A fresh database per test, so that each passes on its own. */
  const leasesOf = (graceMs: number) => {
    const name = `leases${++db}_${Date.now()}`;
    return new NodeLeases({ collection: (n: string) => client.db(name).collection(n) }, graceMs);
  };

  before(async function () {
    const s = await startMongoServer();
    if ('skip' in s) {
      console.log(`      skipped: ${s.skip}`);
      this.skip();
    }
    server = s;
    client = new MongoClient(server.url, { serverSelectionTimeoutMS: 2000 });
    await client.connect();
  });
  after(async () => {
    await client?.close();
    await server?.stop();
  });

  it('an expired lease taken by two nodes at the same moment has one holder; the owner is refused until the takeover is settled', async () => {
    const leases = leasesOf(1000);
    const t0 = Date.now();
    expect(await leases.claimOwn('NODE1', {}, t0), 'first claim').to.not.equal(null);
    expect(await leases.claimOwn('NODE1', {}, t0 + 10), 'a restart within the grace time claims it again').to.not.equal(null);
    expect(await leases.takeExpired('NODE2', t0 + 500), 'not expired yet').to.have.length(0);
    const later = t0 + 1500;
    const [two, three] = await Promise.all([leases.takeExpired('NODE2', later), leases.takeExpired('NODE3', later)]);
    const holders = [...two, ...three].map((l) => l.holder);
    const owner = (await leases.list()).find((l) => l._id === 'NODE1')!;
    const renewed = await leases.renew('NODE1', 'NODE1', {}, later);
    const claimed = await leases.claimOwn('NODE1', {}, later + 10);
    const holder = owner.holder;
    await leases.renew('NODE1', holder, { settled: true }, later + 20);
    const back = await leases.claimOwn('NODE1', {}, later + 30);
    const takerRenews = await leases.renew('NODE1', holder, {}, later + 40);
    console.log(`      takers at once: NODE2 took ${two.length}, NODE3 took ${three.length} (holder ${holder}); owner renews: ${renewed}; owner claims while unsettled: ${claimed !== null}, once settled: ${back !== null}; taker renews after: ${takerRenews}`);
    expect(holders, 'exactly one of the two takers').to.have.length(1);
    expect(holder).to.equal(holders[0]);
    expect(renewed, 'the owner cannot renew a lease another node holds').to.equal(false);
    expect(claimed, 'nor claim it while the takeover is under way').to.equal(null);
    expect(back?.holder, 'claimed back once settled').to.equal('NODE1');
    expect(back?.settled).to.equal(false);
    expect(takerRenews, 'the taker let go').to.equal(false);
  });

  it('8 nodes taking one expired lease at once, 20 times over: one holder each time (the claim on its next epoch)', async () => {
    const leases = leasesOf(1000);
    const t0 = Date.now();
    await leases.claimOwn('NODE1', {}, t0);
    const winners: number[] = [];
    let now = t0;
    for (let round = 0; round < 20; round++) {
      now += 1500; // the lease has expired
      const takers = await Promise.all(Array.from({ length: 8 }, (_, k) => leases.takeExpired(`T${round}_${k}`, now)));
      winners.push(takers.filter((t) => t.length > 0).length);
    }
    const lease = (await leases.list()).find((l) => l._id === 'NODE1')!;
    console.log(`      holders per round: ${winners.join(' ')}; epoch ${lease.epoch}`);
    expect(winners.every((w) => w === 1), 'one holder per round').to.equal(true);
    expect(lease.epoch, 'one change of holder per round').to.equal(20);
  });

  it('a claim left by a node that died between its claim and its update is given up after the grace time', async () => {
    const name = `leases_stale_${Date.now()}`;
    const leases = new NodeLeases({ collection: (n: string) => client.db(name).collection(n) }, 1000);
    const t0 = Date.now();
    await leases.claimOwn('NODE1', {}, t0);
    // what NODE9 left: its claim on the lease's next epoch, not followed by its update
    await client.db(name).collection<{ _id: string; by: string; at: number }>('node_lease_claims').insertOne({ _id: 'NODE1#1', by: 'NODE9', at: t0 + 1000 });
    const early = await leases.takeExpired('NODE2', t0 + 1500);
    const late = await leases.takeExpired('NODE2', t0 + 2500);
    console.log(`      with NODE9's claim left: taken ${early.length} before its claim is a grace time old, ${late.length} after`);
    expect(early).to.have.length(0);
    expect(late.map((l) => l.holder)).to.deep.equal(['NODE2']);
  });

  it('a takeover record tells the owner who took in or removed its raw instance, and how it ended', async () => {
    const leases = leasesOf(1000);
    expect(await leases.takenOver('NODE1', 'k1')).to.equal(null);
    await leases.recordTakeover('k1', 'NODE2');
    expect(await leases.takenOver('NODE1', 'k1')).to.deep.equal({ by: 'NODE2' });
    await leases.recordOutcomes([['k1', 'QUARANTINED'], ['k2', 'DONE']], 'NODE2');
    await leases.recordOutcomes([['k3', 'DONE']], 'NODE1');
    expect(await leases.takenOver('NODE1', 'k1')).to.deep.equal({ by: 'NODE2', outcome: 'QUARANTINED' });
    expect(await leases.takenOver('NODE1', 'k2')).to.deep.equal({ by: 'NODE2', outcome: 'DONE' });
    expect(await leases.takenOver('NODE1', 'k3'), 'its own removal is no other node\'s record').to.equal(null);
    expect(await leases.pruneRecords(1), 'records younger than a day stay').to.equal(0);
  });

  it('a node that cannot renew stops working within half the grace time, and works again once it holds its lease', async () => {
    const GRACE = 2000;
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-lease-'));
    const journal = new Journal(path.join(dir, 'journal.sqlite'), Buffer.alloc(32, 7), () => undefined);
    const log = createLogger('silent');
    // no PACS answers here: the heartbeat only misses its change-log samples
    const pacs = new OrthancClient({ url: `http://127.0.0.1:${await freePort()}`, username: 'x', password: 'x', timeoutMs: 200 });
    const fences: { held: boolean; at: number }[] = [];
    const member = new ClusterMember({
      leases: leasesOf(GRACE),
      me: 'NODE1',
      graceMs: GRACE,
      journal,
      pacs,
      reconciler: new Reconciler(journal, pacs, log, () => undefined, { callingAet: 'NODE1', adopt: 'own' }),
      log,
      takeOver: true,
      retainRecordsDays: 30,
      fence: (held) => fences.push({ held, at: Date.now() }),
    });
    try {
      await member.start();
      expect(member.holdsLease, 'claimed at start').to.equal(true);
      const down = Date.now();
      await server.stop();
      while (member.holdsLease && Date.now() - down < 10_000) await new Promise((r) => setTimeout(r, 50));
      const fencedAfter = Date.now() - down;
      await server.restart!();
      const up = Date.now();
      while (!member.holdsLease && Date.now() - up < 20_000) await new Promise((r) => setTimeout(r, 50));
      const backAfter = Date.now() - up;
      console.log(`      fences: ${fences.map((f) => (f.held ? 'held' : 'fenced')).join(' → ')}; fenced ${fencedAfter} ms after the database stopped (grace ${GRACE} ms); held again ${backAfter} ms after it was back`);
      expect(fences.map((f) => f.held)).to.deep.equal([false, true, false, true]);
      expect(fencedAfter, 'before any other node may take over').to.be.below(GRACE);
      expect(member.holdsLease).to.equal(true);
    } finally {
      await member.stop();
      journal.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('node leases on FerretDB with its PostgreSQL backend (the several-node stack)', function () {
  this.timeout(180_000);
  let postgres: PostgresServer | undefined;
  let server: MongoServer | undefined;
  let client: MongoClient | undefined;

  before(async function () {
    const why = clusterMissing()[0];
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    postgres = await startPostgres(await freePort());
    postgres.createDatabase('ferretdb');
    const s = await startMongoServer({ postgresqlUrl: postgres.url('ferretdb') });
    if ('skip' in s) throw new Error(s.skip);
    server = s;
    client = new MongoClient(server.url, { serverSelectionTimeoutMS: 5000, socketTimeoutMS: 30_000 });
    await client.connect();
  });
  after(async () => {
    await client?.close();
    await server?.stop();
    await postgres?.stop();
  });

  it("1,000 outcomes of one heartbeat are written, and the database answers after them (FerretDB's pool is not exhausted)", async () => {
    const leases = new NodeLeases({ collection: (n: string) => client!.db('outcomes').collection(n) }, 1000);
    const outcomes = Array.from({ length: 1000 }, (_, i) => [`k${i}`, i % 10 ? 'DONE' : 'QUARANTINED'] as [string, 'DONE' | 'QUARANTINED']);
    // written twice: the second time each update finds its record (a raw copy taken in, then removed)
    await leases.recordOutcomes(outcomes, 'NODE3');
    const t = Date.now();
    await leases.recordOutcomes(outcomes, 'NODE2');
    const writtenMs = Date.now() - t;
    const ping = await client!.db('outcomes').command({ ping: 1 });
    const [first, last] = [await leases.takenOver('NODE1', 'k0'), await leases.takenOver('NODE1', 'k999')];
    console.log(`      1,000 outcomes written over existing records in ${writtenMs} ms; ping ok ${ping.ok}; k0 ${JSON.stringify(first)}, k999 ${JSON.stringify(last)}`);
    expect(first).to.deep.equal({ by: 'NODE2', outcome: 'QUARANTINED' });
    expect(last).to.deep.equal({ by: 'NODE2', outcome: 'DONE' });
    expect(await client!.db('outcomes').collection('node_takeovers').countDocuments()).to.equal(1000);
  });
});
