// FerretDB v1.24.2 (a MongoDB wire-protocol server, built from tools/ferretdb by scripts/install-deps.sh) on a
// loopback port, on its SQLite backend or on a PostgreSQL database: the crosswalk of the several-node stack
// (tools/devstack/cluster.ts) and the tests' MongoDB-wire server (test/support/ferretdb.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { repoRoot } from '../../src/paths.js';
import { signalAndWait, trackChild } from './children.js';

export const FERRETDB_BIN = path.join(repoRoot, '.stack/bin/ferretdb');
export const FERRETDB_VERSION = 'v1.24.2';

export interface FerretDB {
  port: number;
  /** mongodb://127.0.0.1:<port>, without a database name */
  url: string;
  /** Its output so far (the tail of `logFile` when it writes one). */
  log(): string;
  /** SIGKILL, resolved once it is gone: the database is gone at that moment (see below). */
  stop(): Promise<void>;
  /** Starts it again after stop(), on the same port with the same backend. */
  restart(): Promise<void>;
}

export interface StartFerretDBOptions {
  port: number;
  /** PostgreSQL backend (postgres://…/database); else SQLite in `sqliteDir` */
  postgresqlUrl?: string;
  sqliteDir?: string;
  /** its output goes there (appended) instead of memory: for a stack that runs for hours */
  logFile?: string;
}

export async function startFerretDB(opts: StartFerretDBOptions): Promise<FerretDB> {
  if (!existsSync(FERRETDB_BIN)) throw new Error(`FerretDB is not built (${FERRETDB_BIN}; scripts/install-deps.sh --test or --cluster builds it with Go)`);
  if (!opts.postgresqlUrl && !opts.sqliteDir) throw new Error('startFerretDB: give postgresqlUrl or sqliteDir');
  const backend = opts.postgresqlUrl ? ['--postgresql-url', opts.postgresqlUrl] : ['--sqlite-url', `file:${opts.sqliteDir}/`];
  const url = `mongodb://127.0.0.1:${opts.port}`;
  let output = '';
  let child: ChildProcess;
  const log = () => (opts.logFile ? (existsSync(opts.logFile) ? readFileSync(opts.logFile, 'utf8').slice(-4000) : '') : output);
  const launch = async () => {
    const args = ['--listen-addr', `127.0.0.1:${opts.port}`, ...backend, '--log-level', 'info'];
    if (opts.logFile) {
      const fd = openSync(opts.logFile, 'a');
      try {
        child = spawn(FERRETDB_BIN, args, { stdio: ['ignore', fd, fd] });
      } finally {
        closeSync(fd);
      }
    } else {
      child = spawn(FERRETDB_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d) => (output += d));
      child.stderr!.on('data', (d) => (output += d));
    }
    trackChild(child);
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`FerretDB exited: ${log().slice(-500)}`);
      const client = new MongoClient(url, { serverSelectionTimeoutMS: 300 });
      try {
        await client.connect();
        await client.db('admin').command({ ping: 1 });
        break;
      } catch {
        if (i > 100) throw new Error(`FerretDB did not answer on ${url}: ${log().slice(-500)}`);
        await new Promise((r) => setTimeout(r, 100));
      } finally {
        await client.close();
      }
    }
  };
  await launch();
  return {
    port: opts.port,
    url,
    log,
    // SIGKILL: on SIGTERM FerretDB shuts down gracefully and kept answering queries for 3 s (measured here), long
    // enough for a whole test burst to finish "while it was down". Either backend recovers at the next start.
    stop: () => signalAndWait(child, 'SIGKILL'),
    restart: launch,
  };
}
