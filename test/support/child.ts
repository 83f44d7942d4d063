// The middleman as a separate process (`dphiant serve`), as users run it: for memory measurements and kill tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../src/devstack/orthanc.js';
import { echoscu } from './dcmtk.js';

export interface MiddlemanProcess {
  pid: number;
  /** Peak resident set size so far (VmHWM), in MiB. */
  peakRssMiB(): number;
  stop(): Promise<void>;
}

export async function spawnMiddleman(env: Record<string, string>, port: number): Promise<MiddlemanProcess> {
  const child: ChildProcess = spawn(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'serve'], {
    env: { ...process.env, DPHIANT_LOG_LEVEL: 'warn', DPHIANT_SCP_PORT: String(port), ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`dphiant serve exited with ${child.exitCode}`);
    if ((await echoscu({ port, callingAet: env.DPHIANT_SCP_CALLERS?.split('@')[0] ?? 'MODALITY' })).code === 0) break;
    if (i > 100) throw new Error('dphiant serve did not answer C-ECHO within 10 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    pid: child.pid!,
    peakRssMiB() {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : NaN;
    },
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
