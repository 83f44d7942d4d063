// One pino logger for the whole process. Log aliases, hashes and counts; never PHI values.
import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string = process.env.DPHIANT_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { app: 'dphiant' } });
}

/** A short stable fingerprint to name an identifier (a UID, an ID) in logs without writing it. */
export function fingerprint(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 12);
}
