// DCMTK's command-line tools as real peers in tests: storescu, echoscu, dcmdump.
import { spawn } from 'node:child_process';
import { TS } from '../../src/dicom/transfer-syntax.js';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program with TCP_NODELAY=1 (DCMTK reads it at run time) and nothing on its standard input (openssl s_client
 * ends once its handshake is done); never rejects on a non-zero exit.
 */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, TCP_NODELAY: '1', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** storescu's option that proposes a transfer syntax (with -R it proposes only what the files need). */
const PROPOSE: Record<string, string> = {
  [TS.ImplicitVRLittleEndian]: '-xi',
  [TS.ExplicitVRLittleEndian]: '-xe',
  [TS.ExplicitVRBigEndian]: '-xb',
  [TS.DeflatedExplicitVRLittleEndian]: '-xd',
  [TS.JPEGBaseline]: '-xy',
  [TS.JPEGExtended]: '-xx',
  [TS.JPEGLosslessSV1]: '-xs',
  [TS.JPEGLSLossless]: '-xt',
  [TS.JPEGLSNearLossless]: '-xu',
  [TS.JPEG2000Lossless]: '-xv',
  [TS.JPEG2000]: '-xw',
  [TS.RLELossless]: '-xr',
};

export function proposeFlag(tsUid: string): string | undefined {
  return PROPOSE[tsUid];
}

export interface StoreScuOptions {
  port: number;
  host?: string;
  callingAet?: string;
  calledAet?: string;
  /** Propose exactly this transfer syntax (files must be in it). */
  transferSyntax?: string;
  extraArgs?: string[];
  timeoutMs?: number;
}

export function storescu(files: string[], o: StoreScuOptions): Promise<RunResult> {
  // -v prints each response's status; without -nh storescu halts at the first failure and exits with its
  // status's high byte (0xA700 → 167)
  const args = ['-v', '-aet', o.callingAet ?? 'MODALITY', '-aec', o.calledAet ?? 'DPHIANT'];
  if (o.transferSyntax) {
    const flag = PROPOSE[o.transferSyntax];
    if (!flag) throw new Error(`storescu cannot propose ${o.transferSyntax}`);
    args.push('-R', flag);
  }
  args.push(...(o.extraArgs ?? []), o.host ?? '127.0.0.1', String(o.port), ...files);
  return run('storescu', args, { timeoutMs: o.timeoutMs });
}

export function echoscu(o: { port: number; callingAet?: string; calledAet?: string; extraArgs?: string[] }): Promise<RunResult> {
  return run('echoscu', ['-aet', o.callingAet ?? 'MODALITY', '-aec', o.calledAet ?? 'DPHIANT', ...(o.extraArgs ?? []), '127.0.0.1', String(o.port)]);
}
