// Who is logged in: scrypt password hashes from the configuration, sessions behind an HttpOnly, SameSite=Strict
// cookie with an idle and an absolute lifetime, a CSRF token per session for every state-changing request, two
// roles, and a limit on failed logins. Sessions and failures live in a SessionStore (src/web/sessions.ts): memory
// on one node, the shared database for several. Passwords are never logged or stored; failed logins are logged,
// with the user name and the address.
import { randomBytes, scrypt, scryptSync, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { WebUser } from '../config/index.js';
import { FAILURE_WINDOW_MS, MemorySessionStore, type Session, type SessionStore } from './sessions.js';

export type Role = WebUser['role'];
export type { Session };

export const SESSION_COOKIE = 'dphiant_session';

/** scrypt off the event loop (libuv's thread pool): the DICOM SCP shares this process and must not wait for a login. */
function scryptAsync(password: string, salt: Buffer, length: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, length, options, (err, key) => (err ? reject(err) : resolve(key))));
}

/** scrypt$N$r$p$<salt hex>$<hash hex> with a random salt (the command line's hash-password: blocking is fine there). */
export function hashPassword(password: string, N = 16384): string {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, 32, { N, r: 8, p: 1 });
  return `scrypt$${N}$8$1$${salt.toString('hex')}$${hash.toString('hex')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [kind, n, r, p, salt, hash] = stored.split('$');
  if (kind !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'hex');
  const actual = await scryptAsync(password, Buffer.from(salt, 'hex'), expected.length, { N: Number(n), r: Number(r), p: Number(p) });
  return timingSafeEqual(actual, expected);
}

/** Per user name: protects one account without locking out everyone else at the same address. */
const MAX_FAILURES_PER_USER = 5;
/** Per address: slows a password spray over many user names. */
const MAX_FAILURES_PER_ADDRESS = 50;

export class Auth {
  constructor(
    private readonly users: WebUser[],
    private readonly idleMs: number,
    private readonly maxAgeMs: number,
    // a check counts the attempt itself on top of the limit's failures
    private readonly store: SessionStore = new MemorySessionStore(MAX_FAILURES_PER_ADDRESS + 1),
  ) {}

  /**
   * A new session; null for a wrong user name or password (the failure is counted); 'throttled', unchecked, when
   * the user name or the address has failed too often lately.
   */
  async login(username: string, password: string, address: string): Promise<Session | 'throttled' | null> {
    const keys = [`user:${username}`, `addr:${address}`];
    // counted as a failure before the check and taken back on success, and counted before the limit is looked at:
    // logins sent in parallel, to this node or another, all see the ones still being checked, so the limit holds
    // although scrypt runs while other requests are served
    const pending = Date.now();
    await Promise.all(keys.map((k) => this.store.recordFailure(k, pending)));
    const forget = () => Promise.all(keys.map((k) => this.store.forgetFailure(k, pending)));
    const since = pending - FAILURE_WINDOW_MS;
    const [byUser, byAddress] = await Promise.all(keys.map((k) => this.store.failuresSince(k, since)));
    if (byUser! > MAX_FAILURES_PER_USER || byAddress! > MAX_FAILURES_PER_ADDRESS) {
      await forget();
      return 'throttled';
    }
    const user = this.users.find((u) => u.username === username);
    // verify against some hash even for an unknown user, so timing does not tell which names exist
    const ok = (await verifyPassword(password, user?.passwordHash ?? this.users[0]!.passwordHash)) && !!user;
    if (!ok) return null;
    await forget();
    const now = Date.now();
    const session: Session = { token: randomBytes(32).toString('base64url'), username, role: user!.role, csrf: randomBytes(24).toString('base64url'), createdAt: now, lastSeen: now };
    await this.store.removeExpired(now - this.idleMs, now - this.maxAgeMs);
    await this.store.put(session);
    return session;
  }

  /**
   * The live session of a token, or null once it has been idle for idleMs or exists for maxAgeMs. `touch`: this
   * request is the user's and keeps the session alive; false for the page's own polls, which would otherwise keep
   * an unattended dashboard logged in for ever.
   */
  async session(token: string | undefined, touch = true): Promise<Session | null> {
    if (!token) return null;
    const s = await this.store.get(token);
    if (!s) return null;
    const now = Date.now();
    if (now - s.lastSeen > this.idleMs || now - s.createdAt > this.maxAgeMs) {
      await this.store.delete(token);
      return null;
    }
    if (touch) {
      await this.store.touch(token, now);
      s.lastSeen = Math.max(s.lastSeen, now);
    }
    return s;
  }

  async logout(token: string | undefined): Promise<void> {
    if (token) await this.store.delete(token);
  }
}

/** The value of one cookie in a Cookie header. */
export function cookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}
