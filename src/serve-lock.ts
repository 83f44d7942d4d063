// One owner of a data directory at a time for what must not run beside the middleman: `dphiant serve` holds
// <dataDir>/serve.lock while it runs, and `crosswalk rekey` takes the same lock, so neither starts while the other
// runs. The lock is SQLite's own exclusive lock on that file (an fcntl lock, through better-sqlite3, already a
// dependency): the kernel drops it when its process ends however it ends (kill -9 included), so there is no stale
// pid file to clean up and no pid that another process may have reused.
import Database from 'better-sqlite3';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';

export function serveLockPath(dataDir: string): string {
  return path.join(dataDir, 'serve.lock');
}

export class DataDirBusyError extends Error {}

export class ServeLock {
  private constructor(private db: Database.Database | undefined) {}

  /** Takes the lock of `dataDir`, or throws DataDirBusyError at once (no waiting) when another process holds it. */
  static acquire(dataDir: string): ServeLock {
    const file = serveLockPath(dataDir);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
    const db = new Database(file);
    try {
      db.pragma('busy_timeout = 0');
      db.pragma('locking_mode = EXCLUSIVE');
      // an exclusive transaction left open: the exclusive lock is held until the connection closes
      db.exec('BEGIN EXCLUSIVE');
    } catch (e) {
      db.close();
      if ((e as { code?: string }).code === 'SQLITE_BUSY') throw new DataDirBusyError(`${file} is held by another process`);
      throw e;
    }
    return new ServeLock(db);
  }

  /** Whether a process (`dphiant serve`, or a rekey) holds the lock of `dataDir` now. */
  static held(dataDir: string): boolean {
    if (!existsSync(serveLockPath(dataDir))) return false;
    try {
      ServeLock.acquire(dataDir).release();
      return false;
    } catch (e) {
      if (e instanceof DataDirBusyError) return true;
      throw e;
    }
  }

  release(): void {
    this.db?.close(); // closing ends the transaction and drops the lock
    this.db = undefined;
  }
}
