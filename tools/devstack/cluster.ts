// Several middleman nodes behind one DICOM address (issue 14), on real servers: the one description of that topology,
// started by `make cluster` (scripts/cluster.ts) and by the cluster tests (test/support/cluster.ts), and written out
// for docker-compose.yml's `cluster` profile (tools/devstack/compose-cluster.ts).
//   HAProxy in TCP mode with two frontends, DICOM (to each node's SCP) and web (to each node's web port), round
//   robin, each server checked by a TCP connect every second, no stickiness; a connection a node refuses is sent to
//   another (option redispatch), so a modality does not see a node that died a moment ago.
//   The crosswalk on FerretDB with its PostgreSQL backend, shared by every node; the PACS an Orthanc with the
//   PostgreSQL index (orthanc-postgresql); one private PostgreSQL server for both (tools/devstack/postgres.ts).
//   Each node has its own data directory (journal, spool, quarantine) and its own calling AE title to the PACS
//   (DPHIANT1, DPHIANT2…): the RemoteAET that tells the reconciler which raw instances are its own. The nodes share
//   the site and crosswalk keys. The nodes themselves are started by a launcher the caller gives: in-process
//   middlemen in most tests, `dphiant serve` child processes (tools/devstack/node-process.ts) elsewhere.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeKeyFile } from '../../src/keys.js';
import { exited, signalAndWait, trackChild } from './children.js';
import { FERRETDB_BIN, startFerretDB, type FerretDB } from './ferretdb.js';
import { startNodeProcess, type NodeProcess } from './node-process.js';
import { devStackDefaults, middlemanEnv, startOrthanc, tcpOpen, type ModalityEntry, type OrthancProcess } from './orthanc.js';
import { postgresBinDir, POSTGRES_USER, startPostgres, type PostgresServer } from './postgres.js';

const LOOPBACK = '127.0.0.1';
/** Debian's orthanc-postgresql. */
export const POSTGRESQL_INDEX_PLUGIN = '/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so';
export const HAPROXY_BIN = '/usr/sbin/haproxy';
/** The crosswalk's database on FerretDB. */
export const CROSSWALK_DATABASE = 'dphiant';

/** The calling AE title of node `k` (from 1) to the PACS. */
export const nodeAet = (k: number) => `DPHIANT${k}`;

export interface ClusterPorts {
  postgres: number;
  ferretdb: number;
  pacsHttp: number;
  pacsDicom: number;
  /** the balancer's DICOM frontend: the one address the modalities call (AE title DPHIANT) */
  balancerDicom: number;
  /** the balancer's web frontend */
  balancerWeb: number;
  /** node i's (from 0) SCP and web ports */
  nodeDicom: number[];
  nodeWeb: number[];
}

/**
 * `make cluster` and the compose profile: the demo's PACS, modality side and middleman address (the balancer takes
 * the middleman's 11112 and 8043), two nodes on 11113/11114 and 8053/8054, PostgreSQL on 5433 (not a system
 * server's 5432), FerretDB on 27018 (not the default profile's MongoDB on 27017).
 */
export const clusterDefaults: Readonly<{ nodes: number; ports: ClusterPorts }> = Object.freeze({
  nodes: 2,
  ports: {
    postgres: 5433,
    ferretdb: 27018,
    pacsHttp: devStackDefaults.pacs.httpPort,
    pacsDicom: devStackDefaults.pacs.dicomPort,
    balancerDicom: devStackDefaults.middleman.dicomPort,
    balancerWeb: devStackDefaults.middleman.webPort,
    nodeDicom: [11113, 11114],
    nodeWeb: [8053, 8054],
  },
});

/** What is missing to run the stack here (scripts/install-deps.sh --cluster or --test installs it), one line each. */
export function clusterMissing(): string[] {
  const missing: string[] = [];
  if (!postgresBinDir()) missing.push('PostgreSQL server not installed (Debian postgresql-15)');
  if (!existsSync(POSTGRESQL_INDEX_PLUGIN)) missing.push(`Orthanc's PostgreSQL index plugin not installed (Debian orthanc-postgresql: ${POSTGRESQL_INDEX_PLUGIN})`);
  if (!existsSync(HAPROXY_BIN)) missing.push('HAProxy not installed (Debian haproxy)');
  if (!existsSync(FERRETDB_BIN)) missing.push(`FerretDB not built (${FERRETDB_BIN}; scripts/install-deps.sh builds it from tools/ferretdb when Go is installed)`);
  return missing;
}

/** The balancer's configuration: two TCP frontends on loopback, round robin over the nodes, a TCP check each second. */
export function haproxyConfig(p: Pick<ClusterPorts, 'balancerDicom' | 'balancerWeb' | 'nodeDicom' | 'nodeWeb'>): string {
  const backend = (name: string, ports: number[]) => [`backend ${name}`, '  balance roundrobin', ...ports.map((port, i) => `  server node${i + 1} ${LOOPBACK}:${port} check inter 1s`)];
  return [
    '# DPHIANT several nodes (tools/devstack/cluster.ts haproxyConfig): TCP round robin, no stickiness',
    'global',
    '  maxconn 512',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 10m',
    '  timeout server 10m',
    // a connection a node refuses (down, not yet seen by the check) goes to another node
    '  retries 2',
    '  option redispatch',
    'frontend dicom',
    `  bind ${LOOPBACK}:${p.balancerDicom}`,
    '  default_backend dicom_nodes',
    'frontend web',
    `  bind ${LOOPBACK}:${p.balancerWeb}`,
    '  default_backend web_nodes',
    ...backend('dicom_nodes', p.nodeDicom),
    ...backend('web_nodes', p.nodeWeb),
    '',
  ].join('\n');
}

/**
 * The PACS's settings beyond orthanc/pacs.json: each node's calling AE title among its DicomModalities (stores and
 * echoes allowed from 127.0.0.1), and the PostgreSQL index.
 */
export function pacsClusterSettings(o: { nodes: number; ports: Pick<ClusterPorts, 'postgres' | 'nodeDicom'>; plugin?: string; password?: string }): {
  extraModalities: Record<string, ModalityEntry>;
  configOverrides: Record<string, unknown>;
} {
  const extraModalities: Record<string, ModalityEntry> = {};
  for (let i = 0; i < o.nodes; i++) extraModalities[`node${i + 1}`] = { AET: nodeAet(i + 1), Host: LOOPBACK, Port: o.ports.nodeDicom[i]!, AllowEcho: true, AllowStore: true };
  return {
    extraModalities,
    configOverrides: {
      Plugins: [o.plugin ?? POSTGRESQL_INDEX_PLUGIN],
      PostgreSQL: { EnableIndex: true, EnableStorage: false, Host: LOOPBACK, Port: o.ports.postgres, Database: 'orthanc', Username: POSTGRES_USER, Password: o.password ?? '', EnableSsl: false, Lock: false },
    },
  };
}

/** pipeline.takeoverAfterMs of the stack's nodes: long enough for a busy 2-core machine's heartbeats, short enough to watch. */
export const CLUSTER_TAKEOVER_MS = 30_000;

/** The DPHIANT_* settings of node `index` (from 0): the dev stack's, its own ports, data directory and calling AE title, the shared crosswalk and keys. */
export function clusterNodeEnv(o: { index: number; ports: ClusterPorts; dataDir: string; crosswalkUrl: string; siteKeyFile: string; crosswalkKeyFile: string }): Record<string, string> {
  return {
    ...middlemanEnv({
      dataDir: o.dataDir,
      scpPort: o.ports.nodeDicom[o.index],
      webPort: o.ports.nodeWeb[o.index],
      pacs: { dicomPort: o.ports.pacsDicom, httpUrl: `http://${LOOPBACK}:${o.ports.pacsHttp}` },
      crosswalkUrl: o.crosswalkUrl,
    }),
    DPHIANT_PACS_CALLING_AET: nodeAet(o.index + 1),
    // a node that dies is taken over by the other after this grace time (src/pipeline/cluster.ts)
    DPHIANT_PIPELINE_TAKEOVER_AFTER_MS: String(CLUSTER_TAKEOVER_MS),
    DPHIANT_KEY_FILE: o.siteKeyFile,
    DPHIANT_CROSSWALK_KEY_FILE: o.crosswalkKeyFile,
  };
}

export interface ClusterNodeSpec {
  /** from 0 */
  index: number;
  aet: string;
  dicomPort: number;
  webPort: number;
  dataDir: string;
  /** where a child-process node writes its output */
  logFile: string;
  /** its DPHIANT_* settings, the caller's `env` and `nodeEnv` included */
  env: Record<string, string>;
}

/** How the stack starts and stops a node: `env` is the spec's, plus what a restart adds. */
export interface NodeLauncher<N> {
  start(spec: ClusterNodeSpec, env: Record<string, string>): Promise<N>;
  stop(node: N): Promise<void>;
}

/** Nodes as `dphiant serve` child processes, each writing to its spec's log file. */
export const processNodes: NodeLauncher<NodeProcess> = {
  start: (spec, env) => startNodeProcess({ env, logFile: spec.logFile }),
  stop: (node) => node.stop(),
};

export interface ClusterStack<N> {
  ports: ClusterPorts;
  work: string;
  nodes: N[];
  specs: ClusterNodeSpec[];
  pacs: OrthancProcess;
  postgres: PostgresServer;
  ferretdb: FerretDB;
  /** the shared crosswalk's database URL (FerretDB) */
  crosswalkUrl: string;
  /** Stops node `i` (from 0) and starts it again on its ports with its data directory, `env` added. */
  restartNode(i: number, env?: Record<string, string>): Promise<N>;
  /** Stops everything it started, the balancer first, PostgreSQL last (its folder is removed; `work` is kept). */
  stop(): Promise<void>;
}

export interface ClusterStackOptions<N> {
  /** data directories, keys, logs and the PACS's storage go there */
  work: string;
  ports: ClusterPorts;
  nodes: number;
  launcher: NodeLauncher<N>;
  /** settings of every node; `nodeEnv[i]`: of node i (from 0) only */
  env?: Record<string, string>;
  nodeEnv?: Record<string, string>[];
  /** more DicomModalities of the PACS (the tests: a direct storescu) */
  pacsModalities?: Record<string, ModalityEntry>;
  log?: (msg: string) => void;
}

export async function startClusterStack<N>(opts: ClusterStackOptions<N>): Promise<ClusterStack<N>> {
  const { work, ports } = opts;
  if (ports.nodeDicom.length < opts.nodes || ports.nodeWeb.length < opts.nodes) throw new Error(`ports for ${opts.nodes} nodes needed, ${ports.nodeDicom.length} given`);
  const log = opts.log ?? (() => {});
  mkdirSync(work, { recursive: true });
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => undefined);
  };
  try {
    log(`starting PostgreSQL (127.0.0.1:${ports.postgres}): the PACS's index and FerretDB's backend`);
    const postgres = await startPostgres(ports.postgres);
    stops.push(() => postgres.stop());
    postgres.createDatabase('orthanc');
    postgres.createDatabase('ferretdb');

    log(`starting FerretDB (127.0.0.1:${ports.ferretdb}) on PostgreSQL: the crosswalk the nodes share`);
    const ferretdb = await startFerretDB({ port: ports.ferretdb, postgresqlUrl: postgres.url('ferretdb'), logFile: path.join(work, 'ferretdb.log') });
    stops.push(ferretdb.stop);

    const pacsSettings = pacsClusterSettings({ nodes: opts.nodes, ports });
    log(`starting the PACS (Orthanc with the PostgreSQL index, HTTP ${ports.pacsHttp}, DICOM ${devStackDefaults.pacs.aet}:${ports.pacsDicom})`);
    const pacs = await startOrthanc({
      role: 'pacs',
      workDir: path.join(work, 'pacs'),
      httpPort: ports.pacsHttp,
      dicomPort: ports.pacsDicom,
      extraModalities: { ...pacsSettings.extraModalities, ...opts.pacsModalities },
      configOverrides: pacsSettings.configOverrides,
    });
    stops.push(() => pacs.stop());

    // one site key and one crosswalk key for every node: the same patient gets the same alias and UIDs on any node
    const siteKeyFile = path.join(work, 'site.key');
    const crosswalkKeyFile = path.join(work, 'crosswalk.key');
    for (const f of [siteKeyFile, crosswalkKeyFile]) if (!existsSync(f)) writeKeyFile(f);
    const crosswalkUrl = `${ferretdb.url}/${CROSSWALK_DATABASE}`;
    const specs: ClusterNodeSpec[] = Array.from({ length: opts.nodes }, (_, index) => {
      const dataDir = path.join(work, `node${index + 1}`);
      return {
        index,
        aet: nodeAet(index + 1),
        dicomPort: ports.nodeDicom[index]!,
        webPort: ports.nodeWeb[index]!,
        dataDir,
        logFile: path.join(work, `node${index + 1}.log`),
        env: { ...clusterNodeEnv({ index, ports, dataDir, crosswalkUrl, siteKeyFile, crosswalkKeyFile }), ...opts.env, ...opts.nodeEnv?.[index] },
      };
    });
    const nodes: N[] = [];
    stops.push(() => Promise.all(nodes.map((n) => opts.launcher.stop(n))).then(() => undefined));
    // one after the other: the first creates the crosswalk's collections and indexes
    for (const spec of specs) {
      log(`starting node ${spec.index + 1} (calling AE ${spec.aet}, DICOM ${spec.dicomPort}, web ${spec.webPort}, data ${spec.dataDir})`);
      nodes.push(await opts.launcher.start(spec, spec.env));
    }

    log(`starting HAProxy (DICOM 127.0.0.1:${ports.balancerDicom}, web 127.0.0.1:${ports.balancerWeb}, round robin over ${opts.nodes} nodes)`);
    const balancer = await startBalancer(work, ports, opts.nodes);
    stops.push(balancer.stop);

    return {
      ports,
      work,
      nodes,
      specs,
      pacs,
      postgres,
      ferretdb,
      crosswalkUrl,
      restartNode: async (i, env = {}) => {
        await opts.launcher.stop(nodes[i]!);
        nodes[i] = await opts.launcher.start(specs[i]!, { ...specs[i]!.env, ...env });
        return nodes[i]!;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** HAProxy with haproxyConfig in `<work>/haproxy.cfg`, its output in `<work>/haproxy.log`; resolves once both frontends listen. */
async function startBalancer(work: string, ports: ClusterPorts, nodes: number): Promise<{ stop: () => Promise<void> }> {
  const cfgPath = path.join(work, 'haproxy.cfg');
  const logPath = path.join(work, 'haproxy.log');
  writeFileSync(cfgPath, haproxyConfig({ ...ports, nodeDicom: ports.nodeDicom.slice(0, nodes), nodeWeb: ports.nodeWeb.slice(0, nodes) }));
  const out = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(HAPROXY_BIN, ['-f', cfgPath, '-db'], { stdio: ['ignore', out, out] });
  } finally {
    closeSync(out);
  }
  trackChild(child);
  const logTail = () => (existsSync(logPath) ? readFileSync(logPath, 'utf8').slice(-500) : '');
  for (let i = 0; ; i++) {
    if (exited(child)) throw new Error(`HAProxy exited: ${logTail()}`);
    if ((await tcpOpen(ports.balancerDicom)) && (await tcpOpen(ports.balancerWeb))) break;
    if (i > 100) {
      await signalAndWait(child, 'SIGKILL');
      throw new Error(`HAProxy not listening on ${ports.balancerDicom} and ${ports.balancerWeb}: ${logTail()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { stop: () => signalAndWait(child, 'SIGTERM') };
}
