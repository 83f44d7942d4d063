// FerretDB v1.24.2 on its SQLite backend (or a PostgreSQL database), on a free loopback port, as the tests' real
// MongoDB-wire server.
// DPHIANT_TEST_MONGODB_URL points the same tests at any other MongoDB-wire server instead.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { repoRoot } from '../../src/paths.js';
import { freePort } from './ports.js';

export const FERRETDB_BIN = path.join(repoRoot, '.stack/bin/ferretdb');

export interface MongoServer {
  name: string;
  /** Starts it again after stop(), on the same port with the same data (FerretDB only). */
  restart?: () => Promise<void>;
  /** A URL without a database name; append one per test. */
  url: string;
  /** FerretDB's SQLite directory (undefined for an external server). */
  dataDir?: string;
  log(): string;
  stop(): Promise<void>;
}

/**
 * The server to test against, or null (with the reason) when neither FerretDB nor a URL is available.
 * `postgresqlUrl`: FerretDB on that PostgreSQL database instead of SQLite (DPHIANT_TEST_MONGODB_URL does not apply).
 */
export async function startMongoServer(opts: { postgresqlUrl?: string } = {}): Promise<MongoServer | { skip: string }> {
  const external = opts.postgresqlUrl ? undefined : process.env.DPHIANT_TEST_MONGODB_URL;
  if (external) return { name: `MongoDB at ${new URL(external).host}`, url: external.replace(/\/[^/]*$/, ''), log: () => '', stop: async () => {} };
  if (!existsSync(FERRETDB_BIN)) return { skip: `FerretDB is not built (${FERRETDB_BIN}; make test builds it when Go is installed)` };
  const port = await freePort();
  const dataDir = opts.postgresqlUrl ? undefined : mkdtempSync(path.join(tmpdir(), 'dphiant-ferretdb-'));
  const backend = opts.postgresqlUrl ? ['--postgresql-url', opts.postgresqlUrl] : ['--sqlite-url', `file:${dataDir}/`];
  let output = '';
  let child: ChildProcess;
  const url = `mongodb://127.0.0.1:${port}`;
  const launch = async () => {
    child = spawn(FERRETDB_BIN, ['--listen-addr', `127.0.0.1:${port}`, ...backend, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`FerretDB exited: ${output.slice(-500)}`);
      const client = new MongoClient(url, { serverSelectionTimeoutMS: 300 });
      try {
        await client.connect();
        await client.db('admin').command({ ping: 1 });
        break;
      } catch {
        if (i > 100) throw new Error(`FerretDB did not answer on ${url}: ${output.slice(-500)}`);
        await new Promise((r) => setTimeout(r, 100));
      } finally {
        await client.close();
      }
    }
  };
  await launch();
  // SIGKILL: the database is gone at the moment a test stops it. On SIGTERM FerretDB shuts down gracefully and kept
  // answering queries for 3 s (measured here), long enough for a whole burst to finish "while it was down".
  // Its SQLite backend recovers from the kill at the next start.
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  return {
    name: `MongoDB wire protocol on FerretDB v1.24.2 (${opts.postgresqlUrl ? 'PostgreSQL' : 'SQLite'} backend)`,
    url,
    dataDir,
    log: () => output,
    stop,
    restart: launch,
  };
}
