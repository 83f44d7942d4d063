// docker-compose.yml must describe the same dev stack as the local launcher: validated offline with
// `docker-compose config` (no Docker engine needed), then compared with devStackDefaults; its `cluster` profile
// with the several-node stack of `make cluster` (tools/devstack/cluster.ts).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { clusterDefaults, CROSSWALK_DATABASE, nodeAet } from '../tools/devstack/cluster.js';
import {
  COMPOSE_DATA_DIR,
  COMPOSE_INDEX_PLUGIN,
  COMPOSE_KEYS_DIR,
  COMPOSE_POSTGRES_PASSWORD,
  composeClusterFiles,
  composeNodeEnv,
  HAPROXY_CLUSTER_CONFIG,
  PACS_CLUSTER_CONFIG,
} from '../tools/devstack/compose-cluster.js';
import {
  devStackDefaults as d,
  middlemanEnv,
  orthancConfigPath,
  readOrthancConfig,
  repoRoot,
  type OrthancRole,
} from '../tools/devstack/orthanc.js';

interface ComposeService {
  image?: string;
  build?: { context: string };
  network_mode?: string;
  ports?: unknown;
  environment?: Record<string, string>;
  volumes?: string[];
  command?: string[];
  entrypoint?: string[];
  user?: string;
  profiles?: string[];
  depends_on?: Record<string, { condition: string }>;
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** `docker-compose config` output (normalised YAML) as an object, via python3-yaml (a docker-compose dependency) */
function composeConfig(): { services: Record<string, ComposeService>; volumes: Record<string, unknown> } {
  const cfg = spawnSync('docker-compose', ['-f', 'docker-compose.yml', 'config'], { cwd: repoRoot, encoding: 'utf8' });
  if (cfg.status !== 0) throw new Error(`docker-compose config failed (exit ${cfg.status}): ${cfg.stderr}`);
  const json = spawnSync('python3', ['-c', 'import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], {
    input: cfg.stdout,
    encoding: 'utf8',
  });
  if (json.status !== 0) throw new Error(`cannot read the YAML of docker-compose config: ${json.stderr}`);
  return JSON.parse(json.stdout);
}

/** "source:target[:mode]" → source of the mount at `target` */
function mountSource(svc: ComposeService, target: string): string | undefined {
  for (const v of svc.volumes ?? []) {
    const [source, dest] = v.split(':');
    if (dest === target) return source;
  }
  return undefined;
}

/** For a describe block: skipped, saying why, without docker-compose or PyYAML; else `docker-compose config`, read. */
function useComposeConfig(): () => ReturnType<typeof composeConfig> {
  let cfg: ReturnType<typeof composeConfig>;
  before(function () {
    if (!have('docker-compose')) {
      console.log('      skipped: docker-compose is not installed (apt-get install docker-compose) to validate docker-compose.yml');
      this.skip();
    }
    if (spawnSync('python3', ['-c', 'import yaml']).status !== 0) {
      console.log('      skipped: python3 with PyYAML is needed to read `docker-compose config` output');
      this.skip();
    }
    cfg = composeConfig();
  });
  return () => cfg;
}

describe('docker-compose.yml matches the dev stack', function () {
  this.timeout(30_000);
  let services: Record<string, ComposeService>;
  let volumes: Record<string, unknown>;
  const config = useComposeConfig();

  before(function () {
    // the default profile: the services without a profile (docker-compose config lists every profile's)
    services = Object.fromEntries(Object.entries(config().services).filter(([, svc]) => !svc.profiles));
    volumes = config().volumes;
  });

  it('devStackDefaults are the topology of docs/design.md', function () {
    expect(d.modality).to.include({ aet: 'MODALITY', httpPort: 8044, dicomPort: 4244, httpUrl: 'http://127.0.0.1:8044' });
    expect(d.pacs).to.include({ aet: 'PACS', httpPort: 8042, dicomPort: 4242, httpUrl: 'http://127.0.0.1:8042' });
    expect(d.middleman).to.include({ aet: 'DPHIANT', host: '127.0.0.1', dicomPort: 11112, webPort: 8043, callers: 'MODALITY@127.0.0.1' });
    expect(d.credentials).to.deep.equal({ username: 'demo', password: 'demo' });
  });

  it('has the five services in its default profile, all on the host network without port mappings', function () {
    expect(Object.keys(services).sort()).to.deep.equal(['middleman', 'modality', 'mongo', 'mongo-express', 'pacs']);
    for (const [name, svc] of Object.entries(services)) {
      expect(svc.network_mode, name).to.equal('host');
      expect(svc.ports, `${name} ports`).to.equal(undefined);
    }
  });

  for (const role of ['pacs', 'modality'] as OrthancRole[]) {
    describe(`${role} (Orthanc)`, function () {
      it('runs jodogne/orthanc:1.10.1 with orthanc/' + role + '.json and a named volume for its storage', function () {
        const svc = services[role]!;
        expect(svc.image).to.equal('jodogne/orthanc:1.10.1');
        expect(mountSource(svc, '/etc/orthanc/orthanc.json')).to.equal(orthancConfigPath(role));
        const db = mountSource(svc, '/var/lib/orthanc/db');
        expect(volumes).to.have.property(db!);
        const cfg = readOrthancConfig(role);
        expect(cfg.StorageDirectory).to.equal('/var/lib/orthanc/db');
        expect(cfg.IndexDirectory).to.equal('/var/lib/orthanc/db');
        expect(svc.environment?.TCP_NODELAY).to.equal('1');
      });

      it('mounts a config with the dev-stack ports, AET, login and middleman entry', function () {
        const cfg = readOrthancConfig(role);
        const node = d[role];
        expect(cfg).to.include({ HttpPort: node.httpPort, DicomPort: node.dicomPort, DicomAet: node.aet });
        expect(cfg.RegisteredUsers).to.deep.equal({ [d.credentials.username]: d.credentials.password });
        expect(cfg).to.include({ AuthenticationEnabled: true, RemoteAccessAllowed: false, DicomCheckModalityHost: true });
        expect(cfg.Plugins).to.deep.equal([]);
        expect(cfg.DicomModalities?.[d.middleman.modalityEntry]).to.include({
          AET: d.middleman.aet,
          Host: d.middleman.host,
          Port: d.middleman.dicomPort,
        });
      });
    });
  }

  it('PACS accepts stores and echoes only from the middleman', function () {
    const cfg = readOrthancConfig('pacs');
    expect(cfg).to.include({
      DicomCheckCalledAet: true,
      DicomAlwaysAllowStore: false,
      DicomAlwaysAllowEcho: false,
      UnknownSopClassAccepted: true,
      OverwriteInstances: false,
      StableAge: 5,
    });
    expect(Object.keys(cfg.DicomModalities ?? {})).to.deep.equal([d.middleman.modalityEntry]);
    expect(cfg.DicomModalities![d.middleman.modalityEntry]).to.include({ AllowStore: true, AllowEcho: true });
  });

  it('the modality waits long enough for the middleman, which answers only after the PACS', function () {
    expect(readOrthancConfig('modality').DicomScuTimeout).to.equal(60);
  });

  it('middleman: built from the Dockerfile with the dev-stack DPHIANT_* environment', function () {
    const svc = services.middleman!;
    expect(svc.build?.context).to.equal(repoRoot);
    const env = middlemanEnv({ dataDir: '/var/lib/dphiant', crosswalkUrl: d.crosswalk.mongoUrl });
    expect(svc.environment).to.deep.equal(env);
    expect(volumes).to.have.property(mountSource(svc, env.DPHIANT_DATA_DIR!)!);
    const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
    expect(dockerfile).to.match(/^FROM node:24-bookworm AS build$/m);
    expect(dockerfile).to.match(/^FROM node:24-bookworm-slim$/m);
    expect(dockerfile).to.include('CMD ["node", "--initial-old-space-size=256", "dist/src/cli/main.js", "serve"]');
  });

  it('crosswalk: mongo on 127.0.0.1 at the URL the middleman uses, mongo-express behind demo/demo on 127.0.0.1', function () {
    const url = new URL(d.crosswalk.mongoUrl);
    expect(services.mongo!.image).to.equal('mongo:7');
    expect(services.mongo!.command).to.deep.equal(['mongod', '--bind_ip', url.hostname, '--port', url.port]);
    const me = services['mongo-express']!.environment!;
    expect(new URL(me.ME_CONFIG_MONGODB_URL!).host).to.equal(url.host);
    expect(me).to.include({
      ME_CONFIG_BASICAUTH_USERNAME: d.credentials.username,
      ME_CONFIG_BASICAUTH_PASSWORD: d.credentials.password,
      VCAP_APP_HOST: '127.0.0.1',
      PORT: String(d.crosswalk.mongoExpressPort),
    });
  });
});

describe("docker-compose.yml's cluster profile matches make cluster", function () {
  this.timeout(30_000);
  const config = useComposeConfig();
  const { ports, nodes } = clusterDefaults;
  const CLUSTER = ['cluster-keys', 'cluster-pacs', 'ferretdb', 'haproxy', 'node1', 'node2', 'postgres'];
  let services: Record<string, ComposeService>;
  before(function () {
    services = config().services;
  });
  const nodeName = (i: number) => `node${i + 1}`;

  it('has the postgres, ferretdb, PACS, keys, two nodes and HAProxy services, only in the profile, on the host network without port mappings', function () {
    const inProfile = Object.entries(services).filter(([, svc]) => svc.profiles).map(([name]) => name);
    expect(inProfile.sort()).to.deep.equal(CLUSTER);
    for (const name of CLUSTER) {
      expect(services[name]!.profiles, name).to.deep.equal(['cluster']);
      expect(services[name]!.network_mode, name).to.equal('host');
      expect(services[name]!.ports, `${name} ports`).to.equal(undefined);
    }
    for (const v of ['cluster-postgres-data', 'cluster-pacs-db', 'cluster-keys', 'node1-data', 'node2-data']) expect(config().volumes).to.have.property(v);
  });

  it('`up haproxy modality` starts the cluster and the modality, none of the default services that take the same ports', function () {
    const started = new Set<string>();
    const visit = (name: string) => {
      if (started.has(name)) return;
      started.add(name);
      for (const dep of Object.keys(services[name]!.depends_on ?? {})) visit(dep);
    };
    visit('haproxy');
    visit('modality');
    expect([...started].sort()).to.deep.equal([...CLUSTER, 'modality'].sort());
  });

  it('postgres:15 on 127.0.0.1:5433 with the databases of the PACS index and FerretDB', function () {
    const pg = services.postgres!;
    expect(pg.image).to.equal('postgres:15');
    expect(pg.command).to.deep.equal(['postgres', '-c', 'listen_addresses=127.0.0.1']);
    expect(pg.environment).to.deep.equal({ PGPORT: String(ports.postgres), POSTGRES_USER: 'dphiant', POSTGRES_PASSWORD: COMPOSE_POSTGRES_PASSWORD, POSTGRES_DB: 'orthanc' });
    const init = mountSource(pg, '/docker-entrypoint-initdb.d/ferretdb.sql')!;
    expect(readFileSync(init, 'utf8')).to.match(/^CREATE DATABASE ferretdb;$/m);
  });

  it('ferretdb:1.24 on 127.0.0.1:27018 on its PostgreSQL backend, the URL the nodes use', function () {
    const f = services.ferretdb!;
    expect(f.image).to.equal('ghcr.io/ferretdb/ferretdb:1.24');
    expect(f.environment).to.deep.equal({
      FERRETDB_LISTEN_ADDR: `127.0.0.1:${ports.ferretdb}`,
      FERRETDB_HANDLER: 'postgresql',
      FERRETDB_POSTGRESQL_URL: `postgres://dphiant:${COMPOSE_POSTGRES_PASSWORD}@127.0.0.1:${ports.postgres}/ferretdb`,
      FERRETDB_TELEMETRY: 'disable',
    });
    for (let i = 0; i < nodes; i++) expect(services[nodeName(i)]!.environment!.DPHIANT_CROSSWALK_URL).to.equal(`mongodb://127.0.0.1:${ports.ferretdb}/${CROSSWALK_DATABASE}`);
  });

  it('the mounted PACS configuration and HAProxy configuration are the ones make cluster runs (node dist/tools/devstack/compose-cluster.js)', function () {
    const files = composeClusterFiles();
    const pacs = services['cluster-pacs']!;
    expect(pacs.image).to.equal('jodogne/orthanc-plugins:1.10.1');
    expect(pacs.environment?.TCP_NODELAY).to.equal('1');
    expect(mountSource(pacs, '/etc/orthanc/orthanc.json')).to.equal(path.join(repoRoot, PACS_CLUSTER_CONFIG));
    expect(readFileSync(path.join(repoRoot, PACS_CLUSTER_CONFIG), 'utf8'), 'run node dist/tools/devstack/compose-cluster.js').to.equal(files[PACS_CLUSTER_CONFIG]);
    const haproxy = services.haproxy!;
    expect(haproxy.image).to.equal('haproxy:2.6');
    expect(mountSource(haproxy, '/usr/local/etc/haproxy/haproxy.cfg')).to.equal(path.join(repoRoot, HAPROXY_CLUSTER_CONFIG));
    expect(readFileSync(path.join(repoRoot, HAPROXY_CLUSTER_CONFIG), 'utf8'), 'run node dist/tools/devstack/compose-cluster.js').to.equal(files[HAPROXY_CLUSTER_CONFIG]);
  });

  it("the PACS: the demo's ports, the PostgreSQL index, each node's AE title allowed to store", function () {
    const cfg = JSON.parse(readFileSync(path.join(repoRoot, PACS_CLUSTER_CONFIG), 'utf8'));
    expect(cfg).to.include({ HttpPort: ports.pacsHttp, DicomPort: ports.pacsDicom, DicomAet: d.pacs.aet, DicomCheckModalityHost: true, DicomAlwaysAllowStore: false });
    expect(cfg.Plugins).to.deep.equal([COMPOSE_INDEX_PLUGIN]);
    expect(cfg.PostgreSQL).to.include({ EnableIndex: true, EnableStorage: false, Host: '127.0.0.1', Port: ports.postgres, Database: 'orthanc', Username: 'dphiant', Password: COMPOSE_POSTGRES_PASSWORD });
    for (let i = 0; i < nodes; i++) expect(cfg.DicomModalities[nodeName(i)]).to.include({ AET: nodeAet(i + 1), Host: '127.0.0.1', Port: ports.nodeDicom[i], AllowStore: true, AllowEcho: true });
  });

  it('HAProxy: the DICOM frontend where the modality calls the middleman, the web one on its web port, round robin over every node', function () {
    const cfg = readFileSync(path.join(repoRoot, HAPROXY_CLUSTER_CONFIG), 'utf8');
    expect(readOrthancConfig('modality').DicomModalities?.[d.middleman.modalityEntry]).to.include({ AET: d.middleman.aet, Host: '127.0.0.1', Port: ports.balancerDicom });
    expect(ports.balancerDicom).to.equal(d.middleman.dicomPort);
    expect(ports.balancerWeb).to.equal(d.middleman.webPort);
    expect(cfg).to.match(/^\s+mode tcp$/m);
    expect(cfg, 'no stickiness').to.not.match(/^\s*(stick|cookie|balance source|hash-type)/m);
    const section = (name: string) => cfg.split(/^(?=\S)/m).find((s) => s.startsWith(name + '\n'))!;
    expect(section('frontend dicom')).to.contain(`bind 127.0.0.1:${ports.balancerDicom}`);
    expect(section('frontend web')).to.contain(`bind 127.0.0.1:${ports.balancerWeb}`);
    for (const [backend, list] of [['backend dicom_nodes', ports.nodeDicom], ['backend web_nodes', ports.nodeWeb]] as const) {
      expect(section(backend)).to.contain('balance roundrobin');
      const servers = [...section(backend).matchAll(/server \S+ 127\.0\.0\.1:(\d+) check inter 1s$/gm)].map((m) => Number(m[1]));
      expect(servers, backend).to.deep.equal(list.slice(0, nodes));
    }
  });

  it('the nodes: built from the Dockerfile, the DPHIANT_* environment of make cluster, AE titles and ports their own, the keys shared', function () {
    const aets = new Set<string>();
    for (let i = 0; i < nodes; i++) {
      const svc = services[nodeName(i)]!;
      expect(svc.build?.context).to.equal(repoRoot);
      expect(svc.environment).to.deep.equal(composeNodeEnv(i));
      expect(svc.environment).to.include({ DPHIANT_PACS_CALLING_AET: nodeAet(i + 1), DPHIANT_SCP_PORT: String(ports.nodeDicom[i]), DPHIANT_WEB_PORT: String(ports.nodeWeb[i]) });
      aets.add(svc.environment!.DPHIANT_PACS_CALLING_AET!);
      expect(mountSource(svc, COMPOSE_DATA_DIR)).to.equal(`node${i + 1}-data`);
      expect(mountSource(svc, COMPOSE_KEYS_DIR)).to.equal('cluster-keys');
      expect(svc.depends_on?.['cluster-keys']).to.deep.equal({ condition: 'service_completed_successfully' });
    }
    expect(aets.size, 'a calling AE title per node').to.equal(nodes);
    const keys = services['cluster-keys']!;
    expect(mountSource(keys, '/keys')).to.equal('cluster-keys');
    expect(keys.entrypoint!.join(' ')).to.contain('keygen --out /keys/$$k.key');
  });

  it("the README's make cluster paragraph names these ports", function () {
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### Several nodes'), readme.indexOf('### Web UI'));
    const expected = [
      `balancer on DICOM ${ports.balancerDicom} and web ${ports.balancerWeb}`,
      `nodes on DICOM ${ports.nodeDicom.slice(0, nodes).join('/')} and web ${ports.nodeWeb.slice(0, nodes).join('/')}`,
      `PACS on ${ports.pacsHttp}/${ports.pacsDicom}`,
      `FerretDB on ${ports.ferretdb}`,
      `PostgreSQL on ${ports.postgres}`,
    ];
    for (const e of expected) expect(section.replace(/\s+/g, ' '), e).to.contain(e);
  });
});
