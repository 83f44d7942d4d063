import { expect } from 'chai';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, DEFAULT_CONFIG, envName, loadConfig } from '../src/config/index.js';
import { crosswalkSettings, loadKeys } from '../src/crosswalk/open.js';
import { devCertificates } from '../tools/devstack/tls.js';
import { DEV_STACK_ENV } from './support/cli.js';
import { run } from './support/dcmtk.js';

const CLI = path.resolve('dist/src/cli/main.js');

/** The dev stack (its credentials allowed) with `env` over it. */
const dev = (env: Record<string, string> = {}) => ({ ...DEV_STACK_ENV, ...env });

describe('configuration', () => {
  it("defaults to the dev stack's addresses of the README, with devStack off", () => {
    expect(DEFAULT_CONFIG.devStack).to.equal(false);
    const c = loadConfig({ env: dev() });
    expect(c.devStack).to.equal(true);
    expect(c.scp).to.include({ aet: 'DPHIANT', host: '127.0.0.1', port: 11112, maxPendingConnections: 16, spoolMaxBytes: 4 * 1024 ** 3, spoolMinFreeBytes: 1024 ** 3 });
    expect(c.scp.callers).to.deep.equal([{ aet: 'MODALITY', host: '127.0.0.1' }]);
    expect(c.pacs).to.include({ aet: 'PACS', port: 4242, url: 'http://127.0.0.1:8042' });
    expect(c.dataDir).to.equal(path.resolve('./data'));
  });

  it('refuses the defaults alone (no environment): the dev stack credentials first, then each missing key', () => {
    const firstRefusal = (env: Record<string, string>) => {
      try {
        loadConfig({ env });
      } catch (e) {
        expect(e).to.be.instanceOf(ConfigError);
        return (e as ConfigError).key;
      }
      return 'accepted';
    };
    const site = { DPHIANT_PACS_PASSWORD: 'real-secret' };
    expect(firstRefusal({})).to.equal('pacs.password');
    expect(firstRefusal(site)).to.equal('crosswalk.keyFile');
    expect(firstRefusal({ ...site, DPHIANT_CROSSWALK_KEY: 'ab'.repeat(32) })).to.equal('keyFile');
    expect(firstRefusal({ ...site, DPHIANT_CROSSWALK_KEY: 'ab'.repeat(32), DPHIANT_KEY_FILE: '/etc/dphiant/site.key' })).to.equal('web.users');
  });

  it('creates no key outside the dev stack: loadKeys refuses a configuration without one, and the data directory stays empty', () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'dphiant-keys-'));
    const config = { ...loadConfig({ env: dev({ DPHIANT_DATA_DIR: dataDir }) }), devStack: false };
    expect(() => loadKeys(config, () => undefined)).to.throw('no site key configured (keyFile); outside the dev stack no key is created');
    const siteKey = path.join(dataDir, 'given-site.key');
    writeFileSync(siteKey, 'cd'.repeat(32) + '\n', { mode: 0o600 });
    expect(() => loadKeys({ ...config, keyFile: siteKey }, () => undefined)).to.throw('no crosswalk key configured (crosswalk.keyFile or crosswalk.key)');
    expect(readdirSync(dataDir), 'no key was created').to.deep.equal(['given-site.key']);
    // the dev stack creates both, with a warning each
    const warnings: string[] = [];
    loadKeys({ ...config, devStack: true }, (m) => warnings.push(m));
    expect(readdirSync(dataDir).sort()).to.deep.equal(['crosswalk.key', 'given-site.key', 'site.key']);
    expect(warnings).to.have.length(2);
  });

  for (const key of ['constructor', '__proto__', 'scp.__proto__', 'toString']) {
    it(`rejects a config file whose key is ${key} as an unknown setting, and leaves Object.prototype alone`, () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-cfg-'));
      const file = path.join(dir, 'c.json');
      const inner = '{"polluted": true, "port": 1}';
      writeFileSync(file, key.includes('.') ? `{"${key.split('.')[0]}": {"${key.split('.')[1]}": ${inner}}}` : `{"${key}": ${inner}}`);
      expect(() => loadConfig({ file, env: dev() })).to.throw(ConfigError, `${key}: unknown setting`);
      expect(({} as Record<string, unknown>).polluted, 'Object.prototype untouched').to.equal(undefined);
    });
  }

  it('derives environment variable names from setting paths', () => {
    expect(envName('dataDir')).to.equal('DPHIANT_DATA_DIR');
    expect(envName('scp.maxInstanceBytes')).to.equal('DPHIANT_SCP_MAX_INSTANCE_BYTES');
  });

  it('lets environment variables override the file, which overrides the defaults', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-cfg-'));
    const file = path.join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ scp: { port: 12000, maxAssociations: 4 }, pacs: { aet: 'ARCHIVE' } }));
    const c = loadConfig({ file, env: dev({ DPHIANT_SCP_PORT: '13000', DPHIANT_SCP_CALLERS: 'CT1@10.0.0.5,MR1@*' }) });
    expect(c.scp.port).to.equal(13000);
    expect(c.scp.maxAssociations).to.equal(4);
    expect(c.pacs.aet).to.equal('ARCHIVE');
    expect(c.scp.callers).to.deep.equal([
      { aet: 'CT1', host: '10.0.0.5' },
      { aet: 'MR1', host: '*' },
    ]);
  });

  it('aliases unidentified instances per study unless crosswalk.unidentified says single (file or DPHIANT_CROSSWALK_UNIDENTIFIED)', () => {
    expect(loadConfig({ env: dev() }).crosswalk.unidentified).to.equal('per-study');
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-cfg-'));
    const file = path.join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ crosswalk: { unidentified: 'single' } }));
    expect(loadConfig({ file, env: dev() }).crosswalk.unidentified).to.equal('single');
    expect(loadConfig({ file, env: dev({ DPHIANT_CROSSWALK_UNIDENTIFIED: 'per-study' }) }).crosswalk.unidentified).to.equal('per-study');
    expect(crosswalkSettings(loadConfig({ env: dev({ DPHIANT_CROSSWALK_UNIDENTIFIED: 'single' }) }), { site: Buffer.alloc(32, 1), crosswalk: Buffer.alloc(32, 2) }).unidentified).to.equal('single');
  });

  const bad: [string, Record<string, string>, string][] = [
    ['scp.port', { DPHIANT_SCP_PORT: '70000' }, 'integer from 1 to 65535'],
    ['scp.port', { DPHIANT_SCP_PORT: 'abc' }, 'not an integer'],
    ['scp.aet', { DPHIANT_SCP_AET: 'A_TITLE_THAT_IS_TOO_LONG' }, 'AE title'],
    ['scp.acceptUnknownSopClasses', { DPHIANT_SCP_ACCEPT_UNKNOWN_SOP_CLASSES: 'maybe' }, 'true or false'],
    ['pacs.url', { DPHIANT_PACS_URL: 'ftp://x' }, 'http(s) URL'],
    ['logLevel', { DPHIANT_LOG_LEVEL: 'loud' }, 'one of'],
    ['crosswalk.unidentified', { DPHIANT_CROSSWALK_UNIDENTIFIED: 'per-patient' }, 'one of per-study, single'],
    ['web.sessionMaxAgeMs', { DPHIANT_WEB_SESSION_MAX_AGE_MS: '500' }, 'integer from 1000'],
    ['web.sessionIdleMs', { DPHIANT_WEB_SESSION_IDLE_MS: 'soon' }, 'not an integer'],
    ['web.trustProxy', { DPHIANT_WEB_TRUST_PROXY: '0' }, 'integer from 1 to 64'],
    ['web.trustProxy', { DPHIANT_WEB_TRUST_PROXY: '10.0.0.1,proxy.example' }, '"proxy.example" is not an IP address'],
    ['web.trustProxy', { DPHIANT_WEB_TRUST_PROXY: '10.0.0.0/33' }, '"10.0.0.0/33" is not an IP address'],
    ['scp.maxPendingConnections', { DPHIANT_SCP_MAX_PENDING_CONNECTIONS: '0' }, 'integer from 1 to 10000'],
    ['scp.spoolMaxBytes', { DPHIANT_SCP_SPOOL_MAX_BYTES: String(1024 ** 3) }, 'at least scp.maxInstanceBytes'],
    ['scp.spoolMinFreeBytes', { DPHIANT_SCP_SPOOL_MIN_FREE_BYTES: '-1' }, 'integer from 0'],
    ['pacs.password', { DPHIANT_DEV_STACK: 'false' }, 'only in the dev stack'],
    ['keyFile', { DPHIANT_DEV_STACK: 'false', DPHIANT_PACS_PASSWORD: 'real-secret', DPHIANT_CROSSWALK_KEY: 'ab'.repeat(32) }, 'site key file is required'],
    [
      'web.users',
      { DPHIANT_DEV_STACK: 'false', DPHIANT_PACS_PASSWORD: 'real-secret', DPHIANT_KEY_FILE: '/etc/dphiant/site.key', DPHIANT_CROSSWALK_KEY: 'ab'.repeat(32) },
      'dev stack passwords',
    ],
  ];
  for (const [key, env, reason] of bad) {
    it(`rejects a bad ${key} (${Object.values(env)[0]}) naming the key and the reason`, () => {
      try {
        loadConfig({ env: dev(env) });
        expect.fail('accepted');
      } catch (e) {
        expect(e).to.be.instanceOf(ConfigError);
        expect((e as ConfigError).key).to.equal(key);
        expect((e as Error).message).to.contain(reason);
      }
    });
  }

  it('accepts the retired pipeline.maxAttempts (file or DPHIANT_PIPELINE_MAX_ATTEMPTS) with a warning, and validates the outage settings', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-cfg-'));
    const file = path.join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ pipeline: { maxAttempts: 10, concurrency: 2 } }));
    const warnings: string[] = [];
    const c = loadConfig({ file, env: dev({ DPHIANT_PIPELINE_MAX_ATTEMPTS: '3' }), warn: (m) => warnings.push(m) });
    expect(c.pipeline.concurrency, 'the rest of the file applies').to.equal(2);
    expect(c.pipeline).not.to.have.property('maxAttempts');
    expect(warnings).to.have.length(2);
    expect(warnings[0]).to.match(/^pipeline\.maxAttempts is ignored: transient failures .* retried without a limit/);
    expect(warnings[1]).to.match(/^DPHIANT_PIPELINE_MAX_ATTEMPTS: pipeline\.maxAttempts is ignored/);
    const d = loadConfig({ env: dev() }).pipeline;
    expect(d).to.include({ stuckAfterAttempts: 10, backpressureAfterMs: 60_000, maxBacklog: 10_000 });
    expect(loadConfig({ env: dev({ DPHIANT_PIPELINE_MAX_BACKLOG: '0' }) }).pipeline.maxBacklog, '0 = no bound').to.equal(0);
    expect(() => loadConfig({ env: dev({ DPHIANT_PIPELINE_BACKPRESSURE_AFTER_MS: '10' }) })).to.throw(ConfigError, 'pipeline.backpressureAfterMs: must be an integer from 1000');
    expect(() => loadConfig({ env: dev({ DPHIANT_PIPELINE_STUCK_AFTER_ATTEMPTS: '0' }) })).to.throw(ConfigError, 'pipeline.stuckAfterAttempts');
  });

  it('lets the offline commands start outside the dev stack without PACS or web credentials, never without keys', () => {
    const keys = { DPHIANT_DEV_STACK: 'false', DPHIANT_KEY_FILE: '/etc/dphiant/site.key', DPHIANT_CROSSWALK_KEY: 'ab'.repeat(32) };
    expect(() => loadConfig({ env: keys }), 'serve needs the PACS password').to.throw(ConfigError, /pacs.password/);
    expect(loadConfig({ env: keys, offline: true }).pacs.password, 'anonymize does not').to.equal('demo');
    expect(() => loadConfig({ env: { DPHIANT_DEV_STACK: 'false' }, offline: true }), 'but needs the keys').to.throw(ConfigError, /crosswalk key is required/);
  });

  it('reads web.trustProxy as true/false, a hop count or a list of addresses and CIDRs (file or DPHIANT_WEB_TRUST_PROXY); web.sessionMaxAgeMs defaults to 8 h', () => {
    const c = loadConfig({ env: dev() });
    expect(c.web.trustProxy).to.equal(false);
    expect(c.web.sessionMaxAgeMs).to.equal(8 * 3_600_000);
    expect(loadConfig({ env: dev({ DPHIANT_WEB_TRUST_PROXY: 'true' }) }).web.trustProxy).to.equal(true);
    expect(loadConfig({ env: dev({ DPHIANT_WEB_TRUST_PROXY: '2' }) }).web.trustProxy).to.equal(2);
    expect(loadConfig({ env: dev({ DPHIANT_WEB_TRUST_PROXY: '10.0.0.1, 10.1.0.0/16,::1,loopback' }) }).web.trustProxy).to.deep.equal(['10.0.0.1', '10.1.0.0/16', '::1', 'loopback']);
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-cfg-'));
    const file = path.join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ web: { trustProxy: ['192.0.2.10'], sessionMaxAgeMs: 3_600_000 } }));
    expect(loadConfig({ file, env: dev() }).web).to.include({ sessionMaxAgeMs: 3_600_000 }).and.have.deep.property('trustProxy', ['192.0.2.10']);
    writeFileSync(file, JSON.stringify({ web: { trustProxy: 'yes' } }));
    expect(() => loadConfig({ file, env: dev() })).to.throw(ConfigError, 'web.trustProxy: must be true, false, a hop count');
  });

  it('rejects an unknown setting in the file', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-cfg-'));
    const file = path.join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ scp: { prot: 1 } }));
    expect(() => loadConfig({ file, env: dev() })).to.throw(ConfigError, 'scp.prot: unknown setting');
  });

  it('DICOM TLS (scp.tls, pacs.tls, callers bound to a subject): off by default, TLS 1.2 at least, each file checked at load', async () => {
    const certs = await devCertificates(path.join(mkdtempSync(path.join(tmpdir(), 'dphiant-cfg-tls-')), 'certs'));
    const c = loadConfig({ env: dev() });
    expect(c.scp.tls).to.deep.equal({ port: 0, cert: '', key: '', ca: '', requireClientCert: true, minVersion: 'TLSv1.2', plain: true });
    expect(c.pacs.tls).to.deep.equal({ enabled: false, ca: '', cert: '', key: '', minVersion: 'TLSv1.2', servername: '' });
    const listener = { DPHIANT_SCP_TLS_PORT: '11113', DPHIANT_SCP_TLS_CERT: certs.middleman.cert, DPHIANT_SCP_TLS_KEY: certs.middleman.key, DPHIANT_SCP_TLS_CA: certs.ca.cert };
    const callers = loadConfig({ env: dev({ ...listener, DPHIANT_SCP_CALLERS: 'CT1@10.1.2.3#O=Hospital/CN=ct1,MR,US@10.1.2.4#/CN=us 1' }) }).scp.callers;
    expect(callers).to.deep.equal([
      { aet: 'CT1', host: '10.1.2.3', subject: 'O=Hospital/CN=ct1' },
      { aet: 'MR', host: '*' },
      { aet: 'US', host: '10.1.2.4', subject: '/CN=us 1' },
    ]);
    const pacs = { DPHIANT_PACS_TLS_ENABLED: 'true', DPHIANT_PACS_TLS_CA: certs.ca.cert, DPHIANT_PACS_TLS_CERT: certs.middleman.cert, DPHIANT_PACS_TLS_KEY: certs.middleman.key };
    expect(loadConfig({ env: dev({ ...listener, ...pacs, DPHIANT_SCP_TLS_MIN_VERSION: 'TLSv1.3', DPHIANT_SCP_TLS_PLAIN: 'false' }) }).scp.tls).to.include({ port: 11113, minVersion: 'TLSv1.3', plain: false });
    const refusal = (env: Record<string, string>) => {
      try {
        loadConfig({ env: dev(env) });
      } catch (e) {
        expect(e).to.be.instanceOf(ConfigError);
        return `${(e as ConfigError).key}: ${(e as ConfigError).reason}`;
      }
      return 'accepted';
    };
    const refusals = {
      'TLS 1.1': refusal({ ...listener, DPHIANT_SCP_TLS_MIN_VERSION: 'TLSv1.1' }),
      'TLS 1.0 to the PACS': refusal({ ...pacs, DPHIANT_PACS_TLS_MIN_VERSION: 'TLSv1' }),
      'no certificate': refusal({ ...listener, DPHIANT_SCP_TLS_CERT: '' }),
      'no CA': refusal({ ...listener, DPHIANT_SCP_TLS_CA: '' }),
      'a CA file that is a key': refusal({ ...listener, DPHIANT_SCP_TLS_CA: certs.ca.key }),
      "another certificate's key": refusal({ ...listener, DPHIANT_SCP_TLS_KEY: certs.pacs.key }),
      'a missing file': refusal({ ...listener, DPHIANT_SCP_TLS_CERT: '/nonexistent.crt' }),
      'the plain port': refusal({ ...listener, DPHIANT_SCP_TLS_PORT: '11112' }),
      'no listener at all': refusal({ DPHIANT_SCP_TLS_PLAIN: 'false' }),
      'a binding without TLS': refusal({ DPHIANT_SCP_CALLERS: 'CT1@10.1.2.3#CN=ct1' }),
      'a binding that is not attribute=value': refusal({ ...listener, DPHIANT_SCP_CALLERS: 'CT1@10.1.2.3#ct1' }),
      'TLS to the PACS without a CA': refusal({ ...pacs, DPHIANT_PACS_TLS_CA: '' }),
      'a client certificate without its key': refusal({ ...pacs, DPHIANT_PACS_TLS_KEY: '' }),
    };
    console.log(Object.entries(refusals).map(([what, why]) => `      ${what} → ${why}`).join('\n'));
    expect(Object.fromEntries(Object.entries(refusals).map(([what, why]) => [what, why.split(':')[0]]))).to.deep.equal({
      'TLS 1.1': 'scp.tls.minVersion',
      'TLS 1.0 to the PACS': 'pacs.tls.minVersion',
      'no certificate': 'scp.tls.cert',
      'no CA': 'scp.tls.ca',
      'a CA file that is a key': 'scp.tls.ca',
      "another certificate's key": 'scp.tls.key',
      'a missing file': 'scp.tls.cert',
      'the plain port': 'scp.tls.port',
      'no listener at all': 'scp.tls.plain',
      'a binding without TLS': 'scp.callers[0].subject',
      'a binding that is not attribute=value': 'scp.callers[0].subject',
      'TLS to the PACS without a CA': 'pacs.tls.ca',
      'a client certificate without its key': 'pacs.tls.key',
    });
  });

  it('`dphiant config show` prints every setting with its variable and masks the password', async () => {
    const r = await run('node', [CLI, 'config', 'show'], { env: dev({ DPHIANT_PACS_PASSWORD: 's3cret-value' }) });
    expect(r.code).to.equal(0);
    expect(r.stdout).to.contain('scp.port = 11112  (DPHIANT_SCP_PORT)');
    expect(r.stdout).to.contain('pacs.password = "********"');
    expect(r.stdout).not.to.contain('s3cret-value');
    expect(r.stdout.trim().split('\n')).to.have.length(Object.keys(flatten(DEFAULT_CONFIG)).length);
  });

  it('a bad value makes the middleman exit non-zero with the key and the reason', async () => {
    const r = await run('node', [CLI, 'serve'], { env: { DPHIANT_SCP_MAX_ASSOCIATIONS: '0' }, timeoutMs: 20_000 });
    expect(r.code).to.equal(2);
    expect(r.stderr).to.contain('scp.maxAssociations: must be an integer from 1 to 1000');
  });
});

function flatten(o: object, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, flatten(v, key));
    else out[key] = v;
  }
  return out;
}
