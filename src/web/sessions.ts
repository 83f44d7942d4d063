// Where the web UI's sessions and failed logins are kept: in this process's memory (one node, the embedded
// crosswalk), or in the crosswalk's shared database (crosswalk.url), so that behind a load balancer a login on one
// node holds on every node and the login limit counts the failures of all of them. In the database a session is
// keyed by the SHA-256 hash of its token: whoever reads the database cannot use a session found there.
import { createHash } from 'node:crypto';
import type { Collection } from 'mongodb';
import type { WebUser } from '../config/index.js';
import type { SharedDatabase } from '../crosswalk/open.js';

export interface Session {
  token: string;
  username: string;
  role: WebUser['role'];
  csrf: string;
  createdAt: number;
  /** The last request of the user; the dashboard's polls leave it alone. */
  lastSeen: number;
}

/** The window of the login limit: failures older than this no longer count, and are deleted. */
export const FAILURE_WINDOW_MS = 5 * 60_000;

/** Sessions by token and failed logins by key (`user:<name>`, `addr:<address>`), each at a time in ms. */
export interface SessionStore {
  put(session: Session): Promise<void>;
  get(token: string): Promise<Session | null>;
  /** The user's request at `at`: lastSeen moves forward, never back (another node may have seen a later one). */
  touch(token: string, at: number): Promise<void>;
  delete(token: string): Promise<void>;
  /** Deletes the sessions last seen before `idleBefore` or created before `createdBefore`. */
  removeExpired(idleBefore: number, createdBefore: number): Promise<void>;
  recordFailure(key: string, at: number): Promise<void>;
  /** Takes back one failure recorded at `at` (a login that turned out right, or was refused unchecked). */
  forgetFailure(key: string, at: number): Promise<void>;
  /** The failures of `key` recorded after `since`. */
  failuresSince(key: string, since: number): Promise<number>;
}

/** The session store could not be reached or failed: the web server answers 503 (src/web/server.ts). */
export class SessionStoreUnavailable extends Error {
  constructor(cause: unknown) {
    super('the web sessions database (crosswalk.url) is unavailable', { cause });
  }
}

/** Bound on the failure keys kept (unknown user names included): beyond it, keys with no recent failure are dropped. */
const MAX_TRACKED = 10_000;

/** One node's sessions and failures, in this process. */
export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, Session>();
  /** Failed logins per key in the current window. */
  private readonly failures = new Map<string, number[]>();

  /** `keepPerKey`: the most failures kept per key, as many as the highest limit ever counts. */
  constructor(private readonly keepPerKey: number) {}

  async put(session: Session): Promise<void> {
    this.sessions.set(session.token, session);
  }

  async get(token: string): Promise<Session | null> {
    return this.sessions.get(token) ?? null;
  }

  async touch(token: string, at: number): Promise<void> {
    const s = this.sessions.get(token);
    if (s) s.lastSeen = Math.max(s.lastSeen, at);
  }

  async delete(token: string): Promise<void> {
    this.sessions.delete(token);
  }

  async removeExpired(idleBefore: number, createdBefore: number): Promise<void> {
    for (const [token, s] of this.sessions) if (s.lastSeen < idleBefore || s.createdAt < createdBefore) this.sessions.delete(token);
  }

  async recordFailure(key: string, at: number): Promise<void> {
    const recent = (t: number) => at - t < FAILURE_WINDOW_MS;
    if (this.failures.size > MAX_TRACKED) {
      for (const [k, times] of this.failures) if (!times.some(recent)) this.failures.delete(k);
    }
    this.failures.set(key, [...(this.failures.get(key) ?? []).filter(recent), at].slice(-this.keepPerKey));
  }

  async forgetFailure(key: string, at: number): Promise<void> {
    const times = this.failures.get(key);
    const i = times?.lastIndexOf(at) ?? -1;
    if (i >= 0) times!.splice(i, 1);
  }

  async failuresSince(key: string, since: number): Promise<number> {
    return (this.failures.get(key) ?? []).filter((t) => t > since).length;
  }
}

/** A session in the database: keyed by the hash of its token, which is not stored. */
type SessionDoc = Omit<Session, 'token'> & { _id: string };
interface FailureDoc {
  key: string;
  at: number;
}

const tokenHash = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * The sessions and failures of every node, in the collections web_sessions and web_login_failures of the shared
 * database. The collections are asked for on every call: the crosswalk's reconnect() replaces its client. No TTL index
 * (FerretDB 1.24 has none): expired sessions are deleted when seen and at each login, failures older than the
 * window at each failure. Every failure of the database is a SessionStoreUnavailable.
 */
export class MongoSessionStore implements SessionStore {
  constructor(private readonly db: SharedDatabase) {}

  private get sessions(): Collection<SessionDoc> {
    return this.db.collection<SessionDoc>('web_sessions');
  }

  private get failures(): Collection<FailureDoc> {
    return this.db.collection<FailureDoc>('web_login_failures');
  }

  private async call<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw new SessionStoreUnavailable(e);
    }
  }

  put({ token, ...rest }: Session): Promise<void> {
    return this.call(async () => void (await this.sessions.insertOne({ _id: tokenHash(token), ...rest })));
  }

  get(token: string): Promise<Session | null> {
    return this.call(async () => {
      const doc = await this.sessions.findOne({ _id: tokenHash(token) });
      if (!doc) return null;
      const { _id, ...rest } = doc;
      return { token, ...rest };
    });
  }

  touch(token: string, at: number): Promise<void> {
    return this.call(async () => void (await this.sessions.updateOne({ _id: tokenHash(token) }, { $max: { lastSeen: at } })));
  }

  delete(token: string): Promise<void> {
    return this.call(async () => void (await this.sessions.deleteOne({ _id: tokenHash(token) })));
  }

  removeExpired(idleBefore: number, createdBefore: number): Promise<void> {
    return this.call(async () => void (await this.sessions.deleteMany({ $or: [{ lastSeen: { $lt: idleBefore } }, { createdAt: { $lt: createdBefore } }] })));
  }

  recordFailure(key: string, at: number): Promise<void> {
    return this.call(async () => {
      await this.failures.insertOne({ key, at });
      // the collection holds the window's failures only, whatever the number of keys
      await this.failures.deleteMany({ at: { $lte: at - FAILURE_WINDOW_MS } });
    });
  }

  forgetFailure(key: string, at: number): Promise<void> {
    return this.call(async () => void (await this.failures.deleteOne({ key, at })));
  }

  failuresSince(key: string, since: number): Promise<number> {
    return this.call(() => this.failures.countDocuments({ key, at: { $gt: since } }));
  }
}
