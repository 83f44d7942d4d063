// Runs `dphiant` as a user would, without the DPHIANT_* settings of the developer's shell.
import { findUp } from '../../src/paths.js';
import { run, type RunResult } from './dcmtk.js';

export const CLI = findUp('dist/src/cli/main.js');

export const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DPHIANT_')));

export function dphiant(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], { env: { ...cleanEnv, ...env } });
}
