// The SCP's spool (src/scp/spool.ts): a data set stays in memory while the memory budget has room, moves to its file
// when it outgrows it, and gives back what it held of both budgets however it ends.
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SpoolBudget, SpoolFile } from '../src/scp/spool.js';

const KiB = 1024;

describe('spool: memory first, its file past the memory budget', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'dphiant-spool-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps a data set that fits in memory, byte for byte, with no file, and releases both budgets when dropped', () => {
    const budget = new SpoolBudget(dir, 4096 * KiB, 0, 1024 * KiB);
    const spool = new SpoolFile(dir, 2048 * KiB, budget);
    const parts = [randomBytes(300 * KiB), randomBytes(200 * KiB), randomBytes(7)];
    for (const p of parts) spool.write(p);
    spool.end();
    expect(spool.data?.equals(Buffer.concat(parts))).to.equal(true);
    expect(existsSync(spool.path), 'no spool file').to.equal(false);
    expect({ inFlight: budget.inFlight, inMemory: budget.inMemory }).to.deep.equal({ inFlight: 500 * KiB + 7, inMemory: 500 * KiB + 7 });
    spool.drop();
    expect({ inFlight: budget.inFlight, inMemory: budget.inMemory, data: spool.data }).to.deep.equal({ inFlight: 0, inMemory: 0, data: undefined });
  });

  it('moves a data set that outgrows the memory budget to its file, all of it in order, and removes the file when dropped', () => {
    const budget = new SpoolBudget(dir, 4096 * KiB, 0, 1024 * KiB);
    const other = new SpoolFile(dir, 2048 * KiB, budget); // another association's, in memory meanwhile
    other.write(randomBytes(600 * KiB));
    const spool = new SpoolFile(dir, 2048 * KiB, budget);
    const parts = [randomBytes(300 * KiB), randomBytes(300 * KiB), randomBytes(300 * KiB)];
    for (const p of parts) spool.write(p);
    spool.end();
    expect(spool.data, 'not in memory').to.equal(undefined);
    expect(readFileSync(spool.path).equals(Buffer.concat(parts)), 'the file holds every byte in order').to.equal(true);
    expect(budget.inMemory, 'only the other data set in memory').to.equal(600 * KiB);
    spool.drop();
    other.drop();
    expect(existsSync(spool.path)).to.equal(false);
    expect({ inFlight: budget.inFlight, inMemory: budget.inMemory }).to.deep.equal({ inFlight: 0, inMemory: 0 });
  });

  it('moves a data set past 16 MiB to its file even when the memory budget has room', () => {
    const budget = new SpoolBudget(dir, 64 * 1024 * KiB, 0, 48 * 1024 * KiB);
    const spool = new SpoolFile(dir, 32 * 1024 * KiB, budget);
    const parts = Array.from({ length: 17 }, () => randomBytes(1024 * KiB));
    for (const p of parts) spool.write(p);
    spool.end();
    expect(spool.data).to.equal(undefined);
    expect(readFileSync(spool.path).equals(Buffer.concat(parts))).to.equal(true);
    expect(budget.inMemory).to.equal(0);
    spool.drop();
  });

  it('drops a data set past the size limit wherever it was, giving back its budget', () => {
    const budget = new SpoolBudget(dir, 4096 * KiB, 0, 1024 * KiB);
    const spool = new SpoolFile(dir, 512 * KiB, budget);
    spool.write(randomBytes(400 * KiB));
    spool.write(randomBytes(400 * KiB));
    spool.end();
    expect(spool.oversized).to.equal(true);
    expect({ data: spool.data, inFlight: budget.inFlight, inMemory: budget.inMemory, bytes: spool.bytes }).to.deep.equal({ data: undefined, inFlight: 0, inMemory: 0, bytes: 800 * KiB });
  });

  it('writes every data set to its file when the memory budget is 0', () => {
    const budget = new SpoolBudget(dir, 4096 * KiB, 0, 0);
    const spool = new SpoolFile(dir, 2048 * KiB, budget);
    const part = randomBytes(10 * KiB);
    spool.write(part);
    spool.end();
    expect(spool.data).to.equal(undefined);
    expect(readFileSync(spool.path).equals(part)).to.equal(true);
    spool.drop();
    expect(existsSync(spool.path)).to.equal(false);
  });
});
