// The middleman as a separate process (`dphiant serve`), as users run it: for memory measurements and kill tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../tools/devstack/orthanc.js';
import { DEV_STACK_ENV } from './cli.js';
import { echoscu } from './dcmtk.js';
import { freePort } from './ports.js';

export interface MiddlemanProcess {
  pid: number;
  /** Peak resident set size so far (VmHWM), in MiB. */
  peakRssMiB(): number;
  stop(): Promise<void>;
  /** kill -9, resolved once the process is gone. */
  kill9(): Promise<void>;
}

export async function spawnMiddleman(env: Record<string, string>, port: number): Promise<MiddlemanProcess> {
  const webPort = Number(env.DPHIANT_WEB_PORT ?? (await freePort()));
  const logFd = process.env.DPHIANT_TEST_LOG_FILE ? openSync(process.env.DPHIANT_TEST_LOG_FILE, 'a') : 'ignore';
  const child: ChildProcess = spawn(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'serve'], {
    env: { ...process.env, ...DEV_STACK_ENV, DPHIANT_LOG_LEVEL: 'warn', DPHIANT_SCP_PORT: String(port), DPHIANT_WEB_PORT: String(webPort), ...env },
    // the middleman's log goes to a file (DPHIANT_TEST_LOG_FILE) or nowhere
    stdio: ['ignore', logFd, logFd],
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`dphiant serve exited with ${child.exitCode}`);
    if ((await echoscu({ port, callingAet: env.DPHIANT_SCP_CALLERS?.split('@')[0] ?? 'MODALITY' })).code === 0) break;
    if (i > 100) throw new Error('dphiant serve did not answer C-ECHO within 10 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  const signal = (sig: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill(sig);
    });
  return {
    pid: child.pid!,
    peakRssMiB() {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : NaN;
    },
    stop: () => signal('SIGTERM'),
    kill9: () => signal('SIGKILL'),
  };
}
