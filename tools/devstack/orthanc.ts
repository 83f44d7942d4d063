// Dev-stack Orthanc launcher (modality and PACS) shared by the demo script and the tests,
// plus `devStackDefaults`: the one place that says which ports, AE titles and credentials the dev stack uses.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';
import { exited, stopChild, trackChild } from './children.js';

export type OrthancRole = 'modality' | 'pacs';

export interface ModalityEntry {
  AET: string;
  Host: string;
  Port: number;
  AllowStore?: boolean;
  AllowEcho?: boolean;
  [key: string]: unknown;
}

/** The subset of an Orthanc configuration file this module reads or rewrites. */
export interface OrthancConfig {
  Name?: string;
  StorageDirectory?: string;
  IndexDirectory?: string;
  HttpPort: number;
  DicomAet: string;
  DicomPort: number;
  RegisteredUsers: Record<string, string>;
  DicomModalities?: Record<string, ModalityEntry>;
  [key: string]: unknown;
}

export interface Credentials {
  username: string;
  password: string;
}

// ---------------------------------------------------------------------------------------------
// Repository layout and dev-stack defaults

export { repoRoot };

export function orthancConfigPath(role: OrthancRole): string {
  return path.join(repoRoot, 'orthanc', `${role}.json`);
}

export function readOrthancConfig(role: OrthancRole): OrthancConfig {
  return JSON.parse(readFileSync(orthancConfigPath(role), 'utf8')) as OrthancConfig;
}

/** Name of the middleman's entry in both Orthanc configurations' DicomModalities. */
export const MIDDLEMAN_ENTRY = 'middleman';
const LOOPBACK = '127.0.0.1';

export interface OrthancNodeDefaults {
  name: string;
  aet: string;
  host: string;
  httpPort: number;
  dicomPort: number;
  httpUrl: string;
}

export interface DevStackDefaults {
  host: string;
  credentials: Credentials;
  modality: OrthancNodeDefaults;
  pacs: OrthancNodeDefaults;
  middleman: {
    aet: string;
    host: string;
    dicomPort: number;
    webPort: number;
    webUrl: string;
    /** DPHIANT_SCP_CALLERS: AET@host of every caller the SCP accepts */
    callers: string;
    /** name of the middleman entry in the Orthanc DicomModalities */
    modalityEntry: string;
  };
  crosswalk: { mongoUrl: string; mongoExpressPort: number };
}

function nodeDefaults(cfg: OrthancConfig): OrthancNodeDefaults {
  return {
    name: cfg.Name ?? cfg.DicomAet,
    aet: cfg.DicomAet,
    host: LOOPBACK,
    httpPort: cfg.HttpPort,
    dicomPort: cfg.DicomPort,
    httpUrl: `http://${LOOPBACK}:${cfg.HttpPort}`,
  };
}

function firstUser(cfg: OrthancConfig): Credentials {
  const [username, password] = Object.entries(cfg.RegisteredUsers ?? {})[0] ?? ['demo', 'demo'];
  return { username, password };
}

function loadDefaults(): DevStackDefaults {
  const pacs = readOrthancConfig('pacs');
  const modality = readOrthancConfig('modality');
  return {
    host: LOOPBACK,
    credentials: firstUser(pacs),
    modality: nodeDefaults(modality),
    pacs: nodeDefaults(pacs),
    middleman: {
      aet: 'DPHIANT',
      host: LOOPBACK,
      dicomPort: 11112,
      webPort: 8043,
      webUrl: `http://${LOOPBACK}:8043`,
      callers: `${modality.DicomAet}@${LOOPBACK}`,
      modalityEntry: MIDDLEMAN_ENTRY,
    },
    crosswalk: { mongoUrl: `mongodb://${LOOPBACK}:27017/dphiant`, mongoExpressPort: 8081 },
  };
}

export const devStackDefaults: Readonly<DevStackDefaults> = Object.freeze(loadDefaults());

/** The DPHIANT_* environment of a middleman wired into the dev stack (or into one with other ports). */
export function middlemanEnv(opts: {
  dataDir: string;
  scpPort?: number;
  webPort?: number;
  callers?: string;
  pacs?: { aet?: string; dicomPort?: number; httpUrl?: string };
  crosswalkUrl?: string;
}): Record<string, string> {
  const d = devStackDefaults;
  return {
    // the demo's credentials and created keys; DPHIANT refuses them by default
    DPHIANT_DEV_STACK: 'true',
    DPHIANT_DATA_DIR: opts.dataDir,
    DPHIANT_SCP_AET: d.middleman.aet,
    DPHIANT_SCP_HOST: d.middleman.host,
    DPHIANT_SCP_PORT: String(opts.scpPort ?? d.middleman.dicomPort),
    DPHIANT_SCP_CALLERS: opts.callers ?? d.middleman.callers,
    DPHIANT_PACS_AET: opts.pacs?.aet ?? d.pacs.aet,
    DPHIANT_PACS_HOST: d.pacs.host,
    DPHIANT_PACS_PORT: String(opts.pacs?.dicomPort ?? d.pacs.dicomPort),
    DPHIANT_PACS_URL: opts.pacs?.httpUrl ?? d.pacs.httpUrl,
    DPHIANT_PACS_USERNAME: d.credentials.username,
    DPHIANT_PACS_PASSWORD: d.credentials.password,
    DPHIANT_WEB_PORT: String(opts.webPort ?? d.middleman.webPort),
    DPHIANT_CROSSWALK_URL: opts.crosswalkUrl ?? '',
  };
}

// ---------------------------------------------------------------------------------------------
// Loopback-bind shim (Orthanc 1.10.1 binds 0.0.0.0 and has no bind-address option: an LD_PRELOAD shim, orthanc/bindlo/bindlo.c, rebinds its listeners to 127.0.0.1)

const bindloBuilds = new Map<string, Promise<string>>();

function isFresh(target: string, source: string): boolean {
  return existsSync(target) && statSync(target).mtimeMs >= statSync(source).mtimeMs;
}

/** Builds orthanc/bindlo/bindlo.c into `<outDir>/bindlo.so` unless an up-to-date build exists; returns its path. */
export function buildBindlo(outDir = path.join(repoRoot, '.stack', 'bindlo')): Promise<string> {
  const source = path.join(repoRoot, 'orthanc', 'bindlo', 'bindlo.c');
  const target = path.join(outDir, 'bindlo.so');
  if (isFresh(target, source)) return Promise.resolve(target);
  let build = bindloBuilds.get(target);
  if (!build) {
    build = new Promise<string>((resolve, reject) => {
      mkdirSync(outDir, { recursive: true });
      // compile next to the target and rename, so a concurrent launcher never loads a half-written file
      const tmp = `${target}.${process.pid}.tmp`;
      execFile('gcc', ['-shared', '-fPIC', '-O2', '-o', tmp, source, '-ldl'], (err, _out, stderr) => {
        if (err) {
          reject(new Error(`cannot build the loopback-bind shim with gcc (${err.message.split('\n')[0]}): ${stderr.trim()}`));
          return;
        }
        renameSync(tmp, target);
        resolve(target);
      });
    }).finally(() => bindloBuilds.delete(target));
    bindloBuilds.set(target, build);
  }
  return build;
}

// ---------------------------------------------------------------------------------------------
// Launcher

export interface StartOrthancOptions {
  role: OrthancRole;
  /** runtime config, storage and logs go to <workDir>/<role>.json, <workDir>/<role>-db, <workDir>/<role>-logs */
  workDir: string;
  httpPort?: number;
  dicomPort?: number;
  aet?: string;
  /** where this Orthanc reaches (modality) or accepts (PACS) the middleman */
  middleman?: { aet: string; host: string; port: number };
  extraModalities?: Record<string, ModalityEntry>;
  /** any other top-level keys to override (e.g. StableAge) */
  configOverrides?: Record<string, unknown>;
  readyTimeoutMs?: number;
  log?: (msg: string) => void;
}

export interface OrthancProcess {
  readonly pid: number;
  readonly role: OrthancRole;
  readonly httpUrl: string;
  readonly httpPort: number;
  readonly dicomPort: number;
  readonly aet: string;
  readonly auth: Credentials;
  readonly configPath: string;
  readonly storageDir: string;
  readonly logDir: string;
  readonly running: boolean;
  /** SIGTERM, wait for exit, SIGKILL after 10 s. Safe to call twice. */
  stop(): Promise<void>;
  /** stop, then start again with the same configuration and storage */
  restart(): Promise<void>;
}

const STOP_GRACE_MS = 10_000;
/** The Orthanc servers this process started and that are still running (stopAll). */
const children = new Set<ChildProcess>();

function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.once('error', () => children.delete(child));
  trackChild(child);
}

/** Stops every Orthanc this process started and that is still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c, STOP_GRACE_MS)));
}

export function buildRuntimeConfig(
  base: OrthancConfig,
  opts: StartOrthancOptions,
  storageDir: string,
): OrthancConfig {
  const cfg: OrthancConfig = structuredClone(base);
  cfg.StorageDirectory = storageDir;
  cfg.IndexDirectory = storageDir;
  if (opts.httpPort !== undefined) cfg.HttpPort = opts.httpPort;
  if (opts.dicomPort !== undefined) cfg.DicomPort = opts.dicomPort;
  if (opts.aet !== undefined) cfg.DicomAet = opts.aet;
  const modalities: Record<string, ModalityEntry> = { ...(cfg.DicomModalities ?? {}) };
  if (opts.middleman) {
    modalities[MIDDLEMAN_ENTRY] = {
      ...modalities[MIDDLEMAN_ENTRY],
      AET: opts.middleman.aet,
      Host: opts.middleman.host,
      Port: opts.middleman.port,
    };
  }
  Object.assign(modalities, opts.extraModalities ?? {});
  cfg.DicomModalities = modalities;
  Object.assign(cfg, opts.configOverrides ?? {});
  return cfg;
}

export function assertPortFree(port: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(`${what} port ${port} on ${LOOPBACK} is not free (${e.code}); is another stack running?`)),
    );
    srv.listen(port, LOOPBACK, () => srv.close(() => resolve()));
  });
}

export function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: LOOPBACK });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function systemAnswers(url: string, auth: Credentials): Promise<boolean> {
  try {
    const res = await fetch(`${url}/system`, {
      headers: { authorization: basicAuth(auth) },
      signal: AbortSignal.timeout(1000),
    });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

function basicAuth(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

function tail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function logTail(logDir: string): string {
  const parts = [tail(path.join(logDir, 'Orthanc.log')), tail(path.join(logDir, 'console.log'))].filter(Boolean);
  return parts.length ? parts.join('\n') : '(no log output)';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startOrthanc(opts: StartOrthancOptions): Promise<OrthancProcess> {
  const log = opts.log ?? (() => {});
  const workDir = path.resolve(opts.workDir);
  const storageDir = path.join(workDir, `${opts.role}-db`);
  const logDir = path.join(workDir, `${opts.role}-logs`);
  const configPath = path.join(workDir, `${opts.role}.json`);
  mkdirSync(storageDir, { recursive: true });
  mkdirSync(logDir, { recursive: true });

  const cfg = buildRuntimeConfig(readOrthancConfig(opts.role), opts, storageDir);
  writeFileSync(configPath, JSON.stringify(cfg, null, 2) + '\n');
  const shim = await buildBindlo();

  const auth = firstUser(cfg);
  const httpUrl = `http://${LOOPBACK}:${cfg.HttpPort}`;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    // an Orthanc of another stack on the same port would answer our readiness probe
    await assertPortFree(cfg.HttpPort, `${opts.role} HTTP`);
    await assertPortFree(cfg.DicomPort, `${opts.role} DICOM`);
    const t0 = Date.now();
    const out = openSync(path.join(logDir, 'console.log'), 'a');
    let spawnError: Error | undefined;
    try {
      child = spawn('Orthanc', [`--logdir=${logDir}`, configPath], {
        cwd: workDir,
        env: { ...process.env, TCP_NODELAY: '1', LD_PRELOAD: shim, BINDLO_PARENT_PID: String(process.pid) },
        stdio: ['ignore', out, out],
      });
    } finally {
      closeSync(out);
    }
    const c = child;
    c.once('error', (e) => (spawnError = e));
    track(c);
    const deadline = t0 + readyTimeoutMs;
    for (;;) {
      if (spawnError) throw new Error(`cannot start Orthanc (${opts.role}): ${spawnError.message}`);
      if (exited(c)) {
        throw new Error(
          `Orthanc (${opts.role}) exited during start-up (code ${c.exitCode}, signal ${c.signalCode}); log tail:\n${logTail(logDir)}`,
        );
      }
      if ((await systemAnswers(httpUrl, auth)) && (await tcpOpen(cfg.DicomPort)) && !exited(c)) break;
      if (Date.now() > deadline) {
        await stopChild(c, STOP_GRACE_MS);
        throw new Error(`Orthanc (${opts.role}) not ready after ${readyTimeoutMs} ms; log tail:\n${logTail(logDir)}`);
      }
      await sleep(50);
    }
    log(`orthanc ${opts.role} pid ${c.pid} ready in ${Date.now() - t0} ms (${httpUrl}, ${cfg.DicomAet}@${LOOPBACK}:${cfg.DicomPort})`);
  };

  const stop = async (): Promise<void> => {
    if (!child) return;
    const t0 = Date.now();
    const pid = child.pid;
    const wasRunning = !exited(child);
    await stopChild(child, STOP_GRACE_MS);
    if (wasRunning) log(`orthanc ${opts.role} pid ${pid} stopped in ${Date.now() - t0} ms`);
  };

  await launch();

  return {
    get pid() {
      return child?.pid ?? -1;
    },
    role: opts.role,
    httpUrl,
    httpPort: cfg.HttpPort,
    dicomPort: cfg.DicomPort,
    aet: cfg.DicomAet,
    auth,
    configPath,
    storageDir,
    logDir,
    get running() {
      return child !== undefined && !exited(child);
    },
    stop,
    async restart() {
      await stop();
      await launch();
    },
  };
}
