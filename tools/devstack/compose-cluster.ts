// The files docker-compose.yml's `cluster` profile mounts, written from the topology of tools/devstack/cluster.ts so
// that `make cluster` and the compose profile cannot drift apart (test/compose.test.ts compares them):
//   orthanc/pacs-cluster.json         the PACS: orthanc/pacs.json with the nodes' AE titles and the PostgreSQL index
//   tools/devstack/haproxy-cluster.cfg the balancer
// `node dist/tools/devstack/compose-cluster.js` rewrites both.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { clusterDefaults, clusterNodeEnv, CROSSWALK_DATABASE, haproxyConfig, pacsClusterSettings } from './cluster.js';
import { buildRuntimeConfig, readOrthancConfig, repoRoot } from './orthanc.js';

/** Where jodogne/orthanc-plugins keeps its plugins (not Debian's /usr/share/orthanc/plugins). */
export const COMPOSE_INDEX_PLUGIN = '/usr/local/share/orthanc/plugins/libOrthancPostgreSQLIndex.so';
/** The postgres:15 service's password (a dev stack on loopback, as Orthanc's demo/demo). */
export const COMPOSE_POSTGRES_PASSWORD = 'demo';
/** Each node's data volume, and the volume of the keys the cluster-keys service creates once. */
export const COMPOSE_DATA_DIR = '/var/lib/dphiant';
export const COMPOSE_KEYS_DIR = '/var/lib/dphiant-keys';

export const PACS_CLUSTER_CONFIG = 'orthanc/pacs-cluster.json';
export const HAPROXY_CLUSTER_CONFIG = 'tools/devstack/haproxy-cluster.cfg';

/** Node `index` (from 0) of the compose profile: its DPHIANT_* environment. */
export function composeNodeEnv(index: number): Record<string, string> {
  return clusterNodeEnv({
    index,
    ports: clusterDefaults.ports,
    dataDir: COMPOSE_DATA_DIR,
    crosswalkUrl: `mongodb://127.0.0.1:${clusterDefaults.ports.ferretdb}/${CROSSWALK_DATABASE}`,
    siteKeyFile: `${COMPOSE_KEYS_DIR}/site.key`,
    crosswalkKeyFile: `${COMPOSE_KEYS_DIR}/crosswalk.key`,
  });
}

/** Each file's path from the repository root, and its content. */
export function composeClusterFiles(): Record<string, string> {
  const { nodes, ports } = clusterDefaults;
  const settings = pacsClusterSettings({ nodes, ports, plugin: COMPOSE_INDEX_PLUGIN, password: COMPOSE_POSTGRES_PASSWORD });
  const pacs = buildRuntimeConfig(readOrthancConfig('pacs'), { role: 'pacs', workDir: '', ...settings }, '/var/lib/orthanc/db');
  return {
    [PACS_CLUSTER_CONFIG]: JSON.stringify(pacs, null, 2) + '\n',
    [HAPROXY_CLUSTER_CONFIG]: haproxyConfig({ ...ports, nodeDicom: ports.nodeDicom.slice(0, nodes), nodeWeb: ports.nodeWeb.slice(0, nodes) }),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const [file, content] of Object.entries(composeClusterFiles())) {
    writeFileSync(path.join(repoRoot, file), content);
    console.log(`wrote ${file}`);
  }
}
