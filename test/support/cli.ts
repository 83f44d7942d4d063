// Runs `dphiant` as a user would, without the DPHIANT_* settings of the developer's shell.
import { findUp } from '../../src/paths.js';
import { run, type RunResult } from './dcmtk.js';

export const CLI = findUp('dist/src/cli/main.js');

export const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DPHIANT_')));

/**
 * What every test middleman and CLI run sets (a test of the product's defaults overrides it): the dev stack's
 * credentials and keys created in the data directory, which DPHIANT refuses by default.
 */
export const DEV_STACK_ENV = { DPHIANT_DEV_STACK: 'true' } as const;

/** `dphiant args…` in the dev stack, plus `env` (which may set DPHIANT_DEV_STACK=false). */
export function dphiant(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], { env: { ...cleanEnv, ...DEV_STACK_ENV, ...env } });
}
