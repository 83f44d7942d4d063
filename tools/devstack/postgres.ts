// A private PostgreSQL server for the dev stack and the tests: its own cluster in a folder (initdb), on a loopback
// port and a socket in that folder, never the system's. What the several-node stack runs on: the PACS's Orthanc
// index (orthanc-postgresql) and FerretDB's backend (the shared crosswalk). PostgreSQL refuses to run as root: under
// root the cluster belongs to the `postgres` user the Debian package creates, and its programs run as that user.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { trackChild } from './children.js';

const LOOPBACK = '127.0.0.1';
/** The cluster's superuser (loopback and socket only, trust authentication: a throw-away dev and test server). */
export const POSTGRES_USER = 'dphiant';

export interface PostgresServer {
  port: number;
  /** The cluster's folder (data, socket, log). */
  dir: string;
  /** postgres://dphiant@127.0.0.1:<port>/<database> */
  url(database: string): string;
  createDatabase(name: string): void;
  stop(): Promise<void>;
}

/** The newest installed PostgreSQL server's bin folder (Debian: /usr/lib/postgresql/<major>/bin), or undefined. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] && path.join(root, majors[0], 'bin');
}

/**
 * Runs a PostgreSQL program, as `postgres` when this process is root: setpriv execs it in place (runuser would stay
 * in between and not pass on the signal that stops the server).
 */
function asOwner(bin: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', bin, ...args]] : [bin, args];
}

/**
 * Starts a server with a new cluster in a folder of its own under the system's temporary folder (which the
 * `postgres` user can reach: a folder inside another private one would not be), listening on `port`; resolves once
 * it accepts connections. stop() removes the folder.
 */
export async function startPostgres(port: number): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('PostgreSQL server is not installed (Debian: postgresql-15)');
  const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-postgres-'));
  const data = path.join(dir, 'data');
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
    chownSync(dir, uid, gid);
  }
  if (!existsSync(path.join(data, 'PG_VERSION'))) {
    const [cmd, args] = asOwner(path.join(bin, 'initdb'), ['-D', data, '-U', POSTGRES_USER, '--auth=trust', '-E', 'UTF8', '--no-locale']);
    execFileSync(cmd, args, { stdio: 'pipe' });
  }
  const logFile = path.join(dir, 'postgres.log');
  const [cmd, args] = asOwner(path.join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', `listen_addresses=${LOOPBACK}`, '-c', 'max_connections=200']);
  let output = '';
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const ready = () => {
    try {
      execFileSync(path.join(bin, 'pg_isready'), ['-h', LOOPBACK, '-p', String(port), '-U', POSTGRES_USER], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  for (let i = 0; !ready(); i++) {
    if (child.exitCode !== null) throw new Error(`PostgreSQL exited: ${output.slice(-800)}`);
    if (i > 150) throw new Error(`PostgreSQL not ready on ${LOOPBACK}:${port}: ${output.slice(-800)}${existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-500) : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    dir,
    url: (database) => `postgres://${POSTGRES_USER}@${LOOPBACK}:${port}/${database}`,
    createDatabase: (name) => {
      execFileSync(path.join(bin, 'createdb'), ['-h', LOOPBACK, '-p', String(port), '-U', POSTGRES_USER, name], { stdio: 'pipe' });
    },
    // fast shutdown: SIGINT ends every session and stops cleanly
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGINT');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
