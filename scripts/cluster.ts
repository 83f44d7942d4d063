// `make cluster`: the several-node stack of tools/devstack/cluster.ts on this machine, without Docker, with the demo's
// modality side: the modality (Orthanc) calls DPHIANT@127.0.0.1:11112 as in `make demo`, where HAProxy spreads the
// associations over two `dphiant serve` nodes; the PACS is an Orthanc on the PostgreSQL index, the crosswalk FerretDB
// on PostgreSQL. Sends the demo's sample studies through (one association per study, so both nodes take some),
// prints the aliases and each node's jobs, then a status line whenever a node's counts change, until Ctrl-C, which
// stops everything it started.
//   CLUSTER_PORTS='{"balancerDicom":21112,…,"modalityHttp":…}' moves any port (keys of ClusterPorts, plus
//   modalityHttp and modalityDicom); CLUSTER_DIR another folder than .stack/cluster; CLUSTER_PATIENTS fewer samples.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { clusterDefaults, clusterMissing, processNodes, startClusterStack, type ClusterPorts, type ClusterStack } from '../tools/devstack/cluster.js';
import type { NodeProcess } from '../tools/devstack/node-process.js';
import { assertPortFree, devStackDefaults, repoRoot, startOrthanc, stopAll, type OrthancProcess } from '../tools/devstack/orthanc.js';
import { DevOrthanc } from '../tools/devstack/orthanc-rest.js';
import { printAliasTable, sendSamples } from '../tools/devstack/samples.js';

const d = devStackDefaults;
const say = (msg: string) => console.log(`==> ${msg}`);

type Ports = ClusterPorts & { modalityHttp: number; modalityDicom: number };

function ports(): Ports {
  const given = process.env.CLUSTER_PORTS ? (JSON.parse(process.env.CLUSTER_PORTS) as Partial<Ports>) : {};
  return { ...clusterDefaults.ports, modalityHttp: d.modality.httpPort, modalityDicom: d.modality.dicomPort, ...given };
}

const p = ports();
const nodeCount = clusterDefaults.nodes;
const work = path.resolve(process.env.CLUSTER_DIR ?? path.join(repoRoot, '.stack', 'cluster'));
const rel = (f: string) => path.relative(process.cwd(), f) || f;

let starting: Promise<ClusterStack<NodeProcess>> | undefined;
let modality: OrthancProcess | undefined;
let watch: NodeJS.Timeout | undefined;
let stopping = false;

async function shutdown(code: number): Promise<never> {
  if (stopping) return new Promise<never>(() => {});
  stopping = true;
  clearInterval(watch);
  say('stopping the modality, HAProxy, the nodes, the PACS, FerretDB and PostgreSQL');
  await modality?.stop();
  await starting?.then((s) => s.stop(), () => undefined);
  await stopAll();
  process.exit(code);
}

/** "DONE 49" and any other state that holds jobs. */
function countsText(c: Record<string, number>): string {
  const parts = [`DONE ${c.DONE ?? 0}`];
  for (const [state, n] of Object.entries(c)) if (state !== 'DONE' && n > 0) parts.push(`${state} ${n}`);
  return parts.join(', ');
}

async function statusLine(stack: ClusterStack<NodeProcess>): Promise<string> {
  const parts = await Promise.all(
    stack.nodes.map(async (n, i) => {
      const name = `node ${i + 1} (${stack.specs[i]!.aet})`;
      if (!n.running) return `${name} not running`;
      try {
        return `${name} ${countsText(await n.jobCounts())}`;
      } catch (e) {
        return `${name} no answer (${(e as Error).message})`;
      }
    }),
  );
  return `status: ${parts.join(' | ')}`;
}

async function main(): Promise<void> {
  process.once('SIGINT', () => void shutdown(0));
  process.once('SIGTERM', () => void shutdown(0));

  const missing = clusterMissing();
  if (spawnSync('sh', ['-c', 'command -v Orthanc']).status !== 0) missing.unshift('Orthanc not installed (Debian orthanc)');
  if (missing.length) {
    console.error(`make cluster needs what is not here:\n${missing.map((m) => `  - ${m}`).join('\n')}\nscripts/install-deps.sh --cluster installs it (make cluster runs it).`);
    process.exit(1);
  }
  const all: [string, number][] = [
    ['balancer DICOM', p.balancerDicom],
    ['balancer web', p.balancerWeb],
    ['PostgreSQL', p.postgres],
    ['FerretDB', p.ferretdb],
    ...p.nodeDicom.slice(0, nodeCount).map((port, i): [string, number] => [`node ${i + 1} DICOM`, port]),
    ...p.nodeWeb.slice(0, nodeCount).map((port, i): [string, number] => [`node ${i + 1} web`, port]),
  ];
  for (const [what, port] of all) await assertPortFree(port, what);

  say(`fresh cluster stack in ${rel(work)} (previous cluster data removed)`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });

  starting = startClusterStack({ work, ports: p, nodes: nodeCount, launcher: processNodes, log: say });
  const stack = await starting;
  say(`starting the modality (Orthanc, HTTP ${p.modalityHttp}, DICOM ${d.modality.aet}:${p.modalityDicom}, calling ${d.middleman.aet}@127.0.0.1:${p.balancerDicom}: the balancer)`);
  modality = await startOrthanc({
    role: 'modality',
    workDir: path.join(work, 'modality'),
    httpPort: p.modalityHttp,
    dicomPort: p.modalityDicom,
    middleman: { aet: d.middleman.aet, host: d.middleman.host, port: p.balancerDicom },
  });

  const auth = { username: d.credentials.username, password: d.credentials.password };
  const modalityRest = new DevOrthanc({ url: modality.httpUrl, ...auth });
  const pacsRest = new DevOrthanc({ url: stack.pacs.httpUrl, ...auth });
  const patients = process.env.CLUSTER_PATIENTS ? Number(process.env.CLUSTER_PATIENTS) : undefined;
  const { rows } = await sendSamples({ outDir: path.join(work, 'samples'), modality: modalityRest, pacs: pacsRest, say, patients, perStudy: true, target: 'the balancer' });
  say('the PACS holds only de-identified instances, stacked under sex-consistent aliases whichever node took them (no real PHI below):');
  printAliasTable(rows);
  let last = await statusLine(stack);
  console.log(last);

  const nodeLines = stack.specs
    .map((s, i) => `  node ${i + 1}   ${s.aet.padEnd(9)} DICOM 127.0.0.1:${s.dicomPort}  web http://127.0.0.1:${s.webPort}  data ${rel(s.dataDir)}  log ${rel(stack.nodes[i]!.logFile)}`)
    .join('\n');
  console.log(`
The cluster stack is running (login demo/demo everywhere; viewer/viewer on the nodes' web UI may not reveal):

  modality  Orthanc Explorer  ${modality.httpUrl}/app/explorer.html
  PACS      Orthanc Explorer  ${stack.pacs.httpUrl}/app/explorer.html   (index in PostgreSQL 127.0.0.1:${p.postgres})
  balancer  DICOM             ${d.middleman.aet}@127.0.0.1:${p.balancerDicom}   (HAProxy, TCP round robin; what the modality calls)
            web               http://127.0.0.1:${p.balancerWeb}
${nodeLines}
  crosswalk FerretDB          ${stack.crosswalkUrl}   (on PostgreSQL; shared by the nodes, as the keys in ${rel(work)})

Each "Send to DICOM modality" → "middleman" in the modality's explorer is one association: HAProxy gives it to the
next node. A node's own status: DPHIANT_DEV_STACK=true DPHIANT_DATA_DIR=${rel(stack.specs[0]!.dataDir)} npx dphiant status.
A status line follows whenever a node's counts change.

Press Ctrl-C to stop everything.`);

  watch = setInterval(() => {
    void statusLine(stack).then((line) => {
      if (line !== last && !stopping) console.log(line);
      last = line;
    });
  }, 2000);
}

main().catch(async (e: Error) => {
  if (stopping) return; // Ctrl-C during start-up: what was starting fails as its servers stop
  console.error(`make cluster failed: ${e.message}`);
  await shutdown(1);
});
