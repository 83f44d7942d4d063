// Several middleman nodes behind one DICOM address (issue 14), on real servers: the stack of tools/devstack/cluster.ts
// (HAProxy, FerretDB on PostgreSQL as the shared crosswalk, the PACS an Orthanc with the PostgreSQL index) on free
// ports, with in-process nodes (test/support/middleman.ts), or with `dphiant serve` child processes
// (`processes: true`) for the tests that kill one.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { clusterMissing, nodeAet, POSTGRESQL_INDEX_PLUGIN, processNodes, startClusterStack, type ClusterPorts, type NodeLauncher } from '../../tools/devstack/cluster.js';
import type { NodeProcess } from '../../tools/devstack/node-process.js';
import type { OrthancProcess } from '../../tools/devstack/orthanc.js';
import { DevOrthanc } from '../../tools/devstack/orthanc-rest.js';
import { storescu, type RunResult } from './dcmtk.js';
import { startTestMiddleman, type TestMiddleman } from './middleman.js';
import { freePorts } from './ports.js';

export { nodeAet, POSTGRESQL_INDEX_PLUGIN };
export type { NodeProcess };

/** What both kinds of cluster have. */
export interface ClusterBase {
  /** The balancer's DICOM port: the one address the modalities call (AE title DPHIANT). */
  port: number;
  /** The balancer's web port (round robin over the nodes' web UIs). */
  webPort: number;
  ports: ClusterPorts;
  pacs: OrthancProcess;
  pacsRest: DevOrthanc;
  /** The shared crosswalk's database URL (FerretDB). */
  crosswalkUrl: string;
  work: string;
  stop(): Promise<void>;
}

/** In-process nodes. */
export interface TestCluster extends ClusterBase {
  nodes: TestMiddleman[];
  /** Closes node `i` (from 0) and starts it again on the same port with the same data directory, `env` added. */
  restartNode(i: number, env?: Record<string, string>): Promise<TestMiddleman>;
}

/** `dphiant serve` child processes: each handle kills (`kill('SIGKILL')`) and restarts its node on the same data directory and ports. */
export interface ProcessCluster extends ClusterBase {
  processes: NodeProcess[];
}

export interface ClusterOptions {
  nodes: number;
  /** settings of every node; `nodeEnv[i]`: of node i (from 0) only */
  env?: Record<string, string>;
  nodeEnv?: Record<string, string>[];
}

/** Why the cluster cannot run here, or undefined: each of its servers must be installed (scripts/install-deps.sh --test). */
export function clusterUnavailable(): string | undefined {
  return clusterMissing()[0];
}

/**
 * For a describe block: starts the cluster before its tests (skipped, saying why, where it cannot run here) and
 * stops it after them; returns the running cluster.
 */
export function useCluster(opts: ClusterOptions & { processes: true }): () => ProcessCluster;
export function useCluster(opts: ClusterOptions & { processes?: false }): () => TestCluster;
export function useCluster(opts: ClusterOptions & { processes?: boolean }): () => TestCluster | ProcessCluster {
  let cluster: TestCluster | ProcessCluster | undefined;
  before(async function () {
    const why = clusterUnavailable();
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    cluster = opts.processes ? await startCluster({ ...opts, processes: true }) : await startCluster({ ...opts, processes: false });
  });
  after(async () => {
    await cluster?.stop();
  });
  return () => cluster!;
}

/** `files` through the balancer from `senders` storescu processes at once, sender k taking every k-th file (as the modality MODALITY). */
export function sendThrough(c: ClusterBase, files: string[], senders: number, timeoutMs = 600_000): Promise<RunResult[]> {
  return Promise.all(Array.from({ length: senders }, (_, k) => storescu(files.filter((_, i) => i % senders === k), { port: c.port, callingAet: 'MODALITY', calledAet: 'DPHIANT', timeoutMs })));
}

const inProcessNodes: NodeLauncher<TestMiddleman> = {
  start: (spec, env) => startTestMiddleman(env, spec.dicomPort),
  stop: (mm) => mm.close(),
};

export function startCluster(opts: ClusterOptions & { processes: true }): Promise<ProcessCluster>;
export function startCluster(opts: ClusterOptions & { processes?: false }): Promise<TestCluster>;
export async function startCluster(opts: ClusterOptions & { processes?: boolean }): Promise<TestCluster | ProcessCluster> {
  const work = mkdtempSync(path.join(tmpdir(), 'dphiant-cluster-'));
  const [postgres, ferretdb, pacsHttp, pacsDicom, balancerDicom, balancerWeb, ...nodePorts] = (await freePorts(6 + 2 * opts.nodes)) as [number, number, number, number, number, number, ...number[]];
  const ports: ClusterPorts = { postgres, ferretdb, pacsHttp, pacsDicom, balancerDicom, balancerWeb, nodeDicom: nodePorts.slice(0, opts.nodes), nodeWeb: nodePorts.slice(opts.nodes) };
  const common = { work, ports, nodes: opts.nodes, env: opts.env, nodeEnv: opts.nodeEnv, pacsModalities: { direct: { AET: 'STORESCU', Host: '127.0.0.1', Port: 1, AllowStore: true, AllowEcho: true } } };
  const base = (stack: { pacs: OrthancProcess; crosswalkUrl: string; stop(): Promise<void> }): ClusterBase => ({
    port: balancerDicom,
    webPort: balancerWeb,
    ports,
    pacs: stack.pacs,
    pacsRest: new DevOrthanc({ url: stack.pacs.httpUrl, username: 'demo', password: 'demo' }),
    crosswalkUrl: stack.crosswalkUrl,
    work,
    stop: async () => {
      await stack.stop();
      rmSync(work, { recursive: true, force: true });
    },
  });
  try {
    if (opts.processes) {
      const stack = await startClusterStack({ ...common, launcher: processNodes });
      return { ...base(stack), processes: stack.nodes };
    }
    const stack = await startClusterStack({ ...common, launcher: inProcessNodes });
    return { ...base(stack), nodes: stack.nodes, restartNode: stack.restartNode };
  } catch (e) {
    rmSync(work, { recursive: true, force: true });
    throw e;
  }
}
