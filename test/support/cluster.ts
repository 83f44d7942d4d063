// Several middleman nodes behind one DICOM address (issue 14), on real servers: HAProxy in TCP mode in front of the
// nodes' SCPs; the crosswalk on FerretDB with its PostgreSQL backend, shared by every node; the PACS an Orthanc
// with the PostgreSQL index (orthanc-postgresql); one private PostgreSQL server for both. Each node has its own data
// directory (journal, spool, quarantine) and its own calling AE title to the PACS (DPHIANT1, DPHIANT2…): the
// RemoteAET that tells the reconciler which raw instances are its own. The nodes share the site and crosswalk keys.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeKeyFile } from '../../src/keys.js';
import { startOrthanc, type ModalityEntry, type OrthancProcess } from '../../tools/devstack/orthanc.js';
import { DevOrthanc } from '../../tools/devstack/orthanc-rest.js';
import { postgresBinDir, POSTGRES_USER, startPostgres, type PostgresServer } from '../../tools/devstack/postgres.js';
import { storescu, type RunResult } from './dcmtk.js';
import { FERRETDB_BIN, startMongoServer } from './ferretdb.js';
import { startTestMiddleman, type TestMiddleman } from './middleman.js';
import { freePorts } from './ports.js';

export const POSTGRESQL_INDEX_PLUGIN = '/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so';

export interface TestCluster {
  /** The balancer's DICOM port: the one address the modalities call (AE title DPHIANT). */
  port: number;
  nodes: TestMiddleman[];
  pacs: OrthancProcess;
  pacsRest: DevOrthanc;
  /** The shared crosswalk's database URL (FerretDB). */
  crosswalkUrl: string;
  work: string;
  /** Closes node `i` (from 0) and starts it again on the same port with the same data directory, `env` added. */
  restartNode(i: number, env?: Record<string, string>): Promise<TestMiddleman>;
  stop(): Promise<void>;
}

/** Why the cluster cannot run here, or undefined: each of its servers must be installed (scripts/install-deps.sh --test). */
export function clusterUnavailable(): string | undefined {
  if (!postgresBinDir()) return 'PostgreSQL server not installed (Debian postgresql-15)';
  if (!existsSync(POSTGRESQL_INDEX_PLUGIN)) return `Orthanc's PostgreSQL index plugin not installed (Debian orthanc-postgresql: ${POSTGRESQL_INDEX_PLUGIN})`;
  if (!existsSync('/usr/sbin/haproxy')) return 'HAProxy not installed (Debian haproxy)';
  if (!existsSync(FERRETDB_BIN)) return `FerretDB not built (${FERRETDB_BIN}; make test builds it when Go is installed)`;
  return undefined;
}

/**
 * For a describe block: starts the cluster before its tests (skipped, saying why, where it cannot run here) and
 * stops it after them; returns the running cluster.
 */
export function useCluster(opts: Parameters<typeof startCluster>[0]): () => TestCluster {
  let cluster: TestCluster | undefined;
  before(async function () {
    const why = clusterUnavailable();
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    cluster = await startCluster(opts);
  });
  after(async () => {
    await cluster?.stop();
  });
  return () => cluster!;
}

/** `files` through the balancer from `senders` storescu processes at once, sender k taking every k-th file (as the modality MODALITY). */
export function sendThrough(c: TestCluster, files: string[], senders: number, timeoutMs = 600_000): Promise<RunResult[]> {
  return Promise.all(Array.from({ length: senders }, (_, k) => storescu(files.filter((_, i) => i % senders === k), { port: c.port, callingAet: 'MODALITY', calledAet: 'DPHIANT', timeoutMs })));
}

/** The calling AE title of node `k` (from 1) to the PACS. */
export const nodeAet = (k: number) => `DPHIANT${k}`;

/** `env`: settings of every node; `nodeEnv[i]`: of node i (from 0) only. */
export async function startCluster(opts: { nodes: number; env?: Record<string, string>; nodeEnv?: Record<string, string>[] }): Promise<TestCluster> {
  const work = mkdtempSync(path.join(tmpdir(), 'dphiant-cluster-'));
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const [pgPort, pacsHttp, pacsDicom, balancerPort, ...nodePorts] = await freePorts(4 + opts.nodes);
    const pg: PostgresServer = await startPostgres(pgPort!);
    stops.push(() => pg.stop());
    pg.createDatabase('orthanc');
    pg.createDatabase('ferretdb');

    const ferret = await startMongoServer({ postgresqlUrl: pg.url('ferretdb') });
    if ('skip' in ferret) throw new Error(ferret.skip);
    stops.push(ferret.stop);

    const nodes = nodePorts.map((port, i) => ({ aet: nodeAet(i + 1), port: port! }));
    const modalities: Record<string, ModalityEntry> = {};
    for (const [i, n] of nodes.entries()) modalities[`node${i + 1}`] = { AET: n.aet, Host: '127.0.0.1', Port: n.port, AllowEcho: true, AllowStore: true };
    modalities.direct = { AET: 'STORESCU', Host: '127.0.0.1', Port: 1, AllowStore: true, AllowEcho: true };
    const pacs = await startOrthanc({
      role: 'pacs',
      workDir: path.join(work, 'pacs'),
      httpPort: pacsHttp,
      dicomPort: pacsDicom,
      extraModalities: modalities,
      configOverrides: {
        Plugins: [POSTGRESQL_INDEX_PLUGIN],
        PostgreSQL: { EnableIndex: true, EnableStorage: false, Host: '127.0.0.1', Port: pgPort, Database: 'orthanc', Username: POSTGRES_USER, Password: '', EnableSsl: false, Lock: false },
      },
    });
    stops.push(() => pacs.stop());

    // one site key and one crosswalk key for every node: the same patient gets the same alias and UIDs on any node
    const siteKey = path.join(work, 'site.key');
    const crosswalkKey = path.join(work, 'crosswalk.key');
    writeKeyFile(siteKey);
    writeKeyFile(crosswalkKey);
    const crosswalkUrl = `${ferret.url}/cluster`;
    const nodeEnv = nodes.map((n, i) => ({
      DPHIANT_DATA_DIR: path.join(work, `node${i + 1}`),
      DPHIANT_PACS_PORT: String(pacsDicom),
      DPHIANT_PACS_URL: pacs.httpUrl,
      DPHIANT_PACS_CALLING_AET: n.aet,
      DPHIANT_CROSSWALK_URL: crosswalkUrl,
      DPHIANT_KEY_FILE: siteKey,
      DPHIANT_CROSSWALK_KEY_FILE: crosswalkKey,
      ...opts.env,
      ...opts.nodeEnv?.[i],
    }));
    const started: TestMiddleman[] = [];
    stops.push(() => Promise.all(started.map((mm) => mm.close())).then(() => undefined));
    for (const [i, n] of nodes.entries()) started.push(await startTestMiddleman(nodeEnv[i]!, n.port));

    const balancer = await startBalancer(path.join(work, 'haproxy.cfg'), balancerPort!, nodes.map((n) => n.port));
    stops.push(balancer.stop);
    const restartNode = async (i: number, env: Record<string, string> = {}) => {
      await started[i]!.close();
      started[i] = await startTestMiddleman({ ...nodeEnv[i]!, ...env }, nodes[i]!.port);
      return started[i]!;
    };
    return { port: balancerPort!, nodes: started, pacs, pacsRest: new DevOrthanc({ url: pacs.httpUrl, username: 'demo', password: 'demo' }), crosswalkUrl, work, restartNode, stop: stopAll };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

/**
 * HAProxy in TCP mode on `port`, round robin over the nodes' SCP ports, each checked by a TCP connect every second
 * (a node that does not accept is taken out of the rotation).
 */
async function startBalancer(cfgPath: string, port: number, nodePorts: number[]): Promise<{ stop: () => Promise<void> }> {
  writeFileSync(
    cfgPath,
    [
      'global',
      '  maxconn 512',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 10m',
      '  timeout server 10m',
      'frontend dicom',
      `  bind 127.0.0.1:${port}`,
      '  default_backend nodes',
      'backend nodes',
      '  balance roundrobin',
      ...nodePorts.map((p, i) => `  server node${i + 1} 127.0.0.1:${p} check inter 1s`),
      '',
    ].join('\n'),
  );
  let output = '';
  const child = spawn('/usr/sbin/haproxy', ['-f', cfgPath, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`HAProxy exited: ${output.slice(-500)}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (i > 100) throw new Error(`HAProxy not listening on ${port}: ${output.slice(-500)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { stop: () => exitOf(child, 'SIGTERM') };
}

function exitOf(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}
