// The tests' real MongoDB-wire server: FerretDB v1.24.2 (tools/devstack/ferretdb.ts) on its SQLite backend (or a
// PostgreSQL database), on a free loopback port.
// DPHIANT_TEST_MONGODB_URL points the same tests at any other MongoDB-wire server instead.
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FERRETDB_BIN, FERRETDB_VERSION, startFerretDB } from '../../tools/devstack/ferretdb.js';
import { freePort } from './ports.js';

export { FERRETDB_BIN };

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
  const dataDir = opts.postgresqlUrl ? undefined : mkdtempSync(path.join(tmpdir(), 'dphiant-ferretdb-'));
  const ferret = await startFerretDB({ port: await freePort(), postgresqlUrl: opts.postgresqlUrl, sqliteDir: dataDir });
  return {
    name: `MongoDB wire protocol on FerretDB ${FERRETDB_VERSION} (${opts.postgresqlUrl ? 'PostgreSQL' : 'SQLite'} backend)`,
    url: ferret.url,
    dataDir,
    log: ferret.log,
    stop: ferret.stop,
    restart: ferret.restart,
  };
}
