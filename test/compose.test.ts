// docker-compose.yml must describe the same dev stack as the local launcher: validated offline with
// `docker-compose config` (no Docker engine needed), then compared with devStackDefaults.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
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

describe('docker-compose.yml matches the dev stack', function () {
  this.timeout(30_000);
  let services: Record<string, ComposeService>;
  let volumes: Record<string, unknown>;

  before(function () {
    if (!have('docker-compose')) {
      console.log('      skipped: docker-compose is not installed (apt-get install docker-compose) to validate docker-compose.yml');
      this.skip();
    }
    if (spawnSync('python3', ['-c', 'import yaml']).status !== 0) {
      console.log('      skipped: python3 with PyYAML is needed to read `docker-compose config` output');
      this.skip();
    }
    ({ services, volumes } = composeConfig());
  });

  it('devStackDefaults are the topology of docs/design.md', function () {
    expect(d.modality).to.include({ aet: 'MODALITY', httpPort: 8044, dicomPort: 4244, httpUrl: 'http://127.0.0.1:8044' });
    expect(d.pacs).to.include({ aet: 'PACS', httpPort: 8042, dicomPort: 4242, httpUrl: 'http://127.0.0.1:8042' });
    expect(d.middleman).to.include({ aet: 'DPHIANT', host: '127.0.0.1', dicomPort: 11112, webPort: 8043, callers: 'MODALITY@127.0.0.1' });
    expect(d.credentials).to.deep.equal({ username: 'demo', password: 'demo' });
  });

  it('has the five services, all on the host network without port mappings', function () {
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
