// The middleman as a child process, as a site runs it: `node dist/src/cli/main.js serve` with a DPHIANT_* environment
// (and none of this shell's), its output appended to a log file, ready once its /healthz answers (the web server
// listens after the DICOM server). For `make demo`, `make cluster` and the cluster tests' child-process nodes.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { HEAP_FLAG } from '../../src/cli/heap.js';
import { repoRoot } from '../../src/paths.js';
import { exited, signalAndWait, stopChild, trackChild } from './children.js';

export const CLI = path.join(repoRoot, 'dist/src/cli/main.js');

export interface NodeProcess {
  readonly pid: number;
  readonly running: boolean;
  /** The environment of its last start (its DPHIANT_* settings). */
  readonly env: Readonly<Record<string, string>>;
  readonly dataDir: string;
  readonly logFile: string;
  readonly dicomPort: number;
  readonly webPort: number;
  /** http://127.0.0.1:<webPort> */
  readonly webUrl: string;
  /** Sends `signal` (SIGTERM unless given: 'SIGKILL' for a crash) and resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM, and SIGKILL after 10 s. */
  stop(): Promise<void>;
  /** Stops it if it runs, then starts it again on the same data directory and ports, `env` added to its first environment. */
  restart(env?: Record<string, string>): Promise<void>;
  /** Its journal's jobs per state (DONE, IN_PACS…), read from its /metrics. */
  jobCounts(): Promise<Record<string, number>>;
}

/** This process's environment without its DPHIANT_* settings: a node has only the ones it is given. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DPHIANT_')));
}

function tail(file: string, chars = 1500): string {
  return existsSync(file) ? readFileSync(file, 'utf8').slice(-chars) : '(no output)';
}

async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** Prometheus text of /metrics → the dphiant_jobs gauge per state. */
export function jobsOfMetrics(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^dphiant_jobs\{state="([A-Z_]+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/**
 * Starts `dphiant serve` with `env` (which must hold DPHIANT_DATA_DIR, DPHIANT_SCP_PORT and DPHIANT_WEB_PORT) and
 * resolves once it is ready; rejects with the log's tail when it exits first or is not ready in `readyTimeoutMs`.
 */
export async function startNodeProcess(opts: {
  env: Record<string, string>;
  logFile: string;
  readyTimeoutMs?: number;
  /** told when it exits of itself after start-up (not by kill, stop or restart) */
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
}): Promise<NodeProcess> {
  const first = { ...opts.env };
  for (const k of ['DPHIANT_DATA_DIR', 'DPHIANT_SCP_PORT', 'DPHIANT_WEB_PORT']) if (!first[k]) throw new Error(`startNodeProcess: ${k} missing`);
  const dicomPort = Number(first.DPHIANT_SCP_PORT);
  const webPort = Number(first.DPHIANT_WEB_PORT);
  const webUrl = `http://127.0.0.1:${webPort}`;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  let child: ChildProcess | undefined;
  let env = first;
  /** set by kill, stop and restart: that exit is no news */
  let ending = false;

  const launch = async () => {
    const log = openSync(opts.logFile, 'a');
    let spawnError: Error | undefined;
    try {
      child = spawn(process.execPath, [HEAP_FLAG, CLI, 'serve'], { env: { ...cleanEnv(), ...env }, stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    const c = child;
    c.once('error', (e) => (spawnError = e));
    trackChild(c);
    ending = false;
    let ready = false;
    c.once('exit', (code, signal) => {
      if (ready && !ending) opts.onExit?.(code, signal);
    });
    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (spawnError) throw new Error(`cannot start dphiant serve: ${spawnError.message}`);
      if (exited(c)) throw new Error(`dphiant serve (DICOM port ${dicomPort}) exited during start-up (code ${c.exitCode}, signal ${c.signalCode}); ${opts.logFile}:\n${tail(opts.logFile)}`);
      if (await healthy(webUrl)) {
        ready = true;
        return;
      }
      if (Date.now() > deadline) {
        await stopChild(c);
        throw new Error(`dphiant serve (DICOM port ${dicomPort}) not ready after ${readyTimeoutMs} ms; ${opts.logFile}:\n${tail(opts.logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await launch();

  const stop = async () => {
    ending = true;
    if (child) await stopChild(child);
  };
  return {
    get pid() {
      return child?.pid ?? -1;
    },
    get running() {
      return child !== undefined && !exited(child);
    },
    get env() {
      return env;
    },
    dataDir: first.DPHIANT_DATA_DIR!,
    logFile: opts.logFile,
    dicomPort,
    webPort,
    webUrl,
    kill: async (signal = 'SIGTERM') => {
      ending = true;
      if (child) await signalAndWait(child, signal);
    },
    stop,
    restart: async (more = {}) => {
      await stop();
      env = { ...first, ...more };
      await launch();
    },
    jobCounts: async () => {
      const res = await fetch(`${webUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
      if (!res.ok) throw new Error(`${webUrl}/metrics answered ${res.status}`);
      return jobsOfMetrics(await res.text());
    },
  };
}
