// One pino logger for the whole process. Log aliases, hashes and counts; never PHI values.
import { createHmac } from 'node:crypto';
import { pino, type Logger } from 'pino';

export type { Logger };

/** `file`: append to this file instead of writing to stdout. */
export function createLogger(level: string = process.env.DPHIANT_LOG_LEVEL ?? 'info', file?: string): Logger {
  const options = { level, base: { app: 'dphiant' } };
  return file ? pino(options, pino.destination({ dest: file, sync: true })) : pino(options);
}

/**
 * A short stable fingerprint to name an identifier (a UID, an ID) in logs without writing it: keyed with the site
 * key, since anyone holding the original UIDs could recompute an unkeyed hash and read the log as a map. It is the
 * prefix of the hash the journal names a SOP Instance UID by (src/pipeline/journal.ts), so a log line and a job
 * can be matched.
 */
export function fingerprint(key: Buffer, value: string): string {
  return createHmac('sha256', key).update(value.replace(/[\0 ]+$/, '')).digest('hex').slice(0, 12);
}
