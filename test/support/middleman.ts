// An in-process middleman on free ports with its own data directory, configured the way a user would:
// through DPHIANT_* variables.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config/index.js';
import { createLogger } from '../../src/log.js';
import { startMiddleman, type Middleman } from '../../src/middleman.js';
import { DEV_STACK_ENV } from './cli.js';
import { freePort } from './ports.js';

export interface TestMiddleman extends Middleman {
  config: Config;
  port: number;
}

/** `port`: the SCP port (pick it first when an Orthanc must know the middleman before it starts). */
/** `logFile`: the middleman's whole log (debug level) goes there, whatever DPHIANT_TEST_LOG says. */
export async function startTestMiddleman(env: Record<string, string>, port?: number, logFile?: string): Promise<TestMiddleman> {
  port ??= await freePort();
  const config = loadConfig({
    env: {
      ...DEV_STACK_ENV,
      DPHIANT_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'dphiant-mm-')),
      DPHIANT_SCP_PORT: String(port),
      DPHIANT_WEB_PORT: String(await freePort()),
      DPHIANT_SCP_CALLERS: 'MODALITY@127.0.0.1,STORESCU@127.0.0.1',
      ...env,
    },
  });
  // DPHIANT_TEST_LOG=debug shows the middleman's log while a test runs
  const mm = await startMiddleman(config, logFile ? createLogger('debug', logFile) : createLogger(process.env.DPHIANT_TEST_LOG ?? 'silent'));
  return { ...mm, config, port };
}
