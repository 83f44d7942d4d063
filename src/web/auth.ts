// Who is logged in: scrypt password hashes from the configuration, in-memory sessions behind an HttpOnly,
// SameSite=Strict cookie with an idle and an absolute lifetime, a CSRF token per session for every state-changing
// request, two roles, and a limit on failed logins. Passwords are never logged; failed logins are, with the user
// name and the address.
import { randomBytes, scrypt, scryptSync, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { WebUser } from '../config/index.js';

export type Role = WebUser['role'];

export interface Session {
  token: string;
  username: string;
  role: Role;
  csrf: string;
  createdAt: number;
  /** The last request of the user; the dashboard's polls leave it alone. */
  lastSeen: number;
}

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

const FAILURE_WINDOW_MS = 5 * 60_000;
/** Per user name: protects one account without locking out everyone else at the same address. */
const MAX_FAILURES_PER_USER = 5;
/** Per address: slows a password spray over many user names. */
const MAX_FAILURES_PER_ADDRESS = 50;
/** Bound on the failure records kept (unknown user names included). */
const MAX_TRACKED = 10_000;

export class Auth {
  private readonly sessions = new Map<string, Session>();
  /** Failed logins per user name and per address in the current window. */
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly users: WebUser[],
    private readonly idleMs: number,
    private readonly maxAgeMs: number,
  ) {}

  /** Whether this user name or address has failed too often lately. */
  throttled(username: string, address: string): boolean {
    const now = Date.now();
    const recent = (k: string) => (this.failures.get(k) ?? []).filter((t) => now - t < FAILURE_WINDOW_MS).length;
    return recent(`user:${username}`) >= MAX_FAILURES_PER_USER || recent(`addr:${address}`) >= MAX_FAILURES_PER_ADDRESS;
  }

  /** Counts a failure now and returns its timestamp, so that a successful login can take it back. */
  private recordFailure(username: string, address: string): number {
    const now = Date.now();
    if (this.failures.size > MAX_TRACKED) {
      for (const [k, times] of this.failures) if (times.every((t) => now - t >= FAILURE_WINDOW_MS)) this.failures.delete(k);
    }
    for (const k of [`user:${username}`, `addr:${address}`]) this.failures.set(k, [...(this.failures.get(k) ?? []).filter((t) => now - t < FAILURE_WINDOW_MS), now].slice(-MAX_FAILURES_PER_ADDRESS));
    return now;
  }

  private forgetFailure(username: string, address: string, at: number): void {
    for (const k of [`user:${username}`, `addr:${address}`]) {
      const times = this.failures.get(k);
      const i = times?.lastIndexOf(at) ?? -1;
      if (i >= 0) times!.splice(i, 1);
    }
  }

  /** A new session, or null for a wrong user name or password (the failure is counted). */
  async login(username: string, password: string, address: string): Promise<Session | null> {
    const user = this.users.find((u) => u.username === username);
    // counted as a failure before the check and taken back on success: logins sent in parallel all see the ones
    // still being checked, so the limit holds although scrypt now runs while other requests are served
    const pending = this.recordFailure(username, address);
    // verify against some hash even for an unknown user, so timing does not tell which names exist
    const ok = (await verifyPassword(password, user?.passwordHash ?? this.users[0]!.passwordHash)) && !!user;
    if (!ok) return null;
    this.forgetFailure(username, address, pending);
    const now = Date.now();
    const session: Session = { token: randomBytes(32).toString('base64url'), username, role: user!.role, csrf: randomBytes(24).toString('base64url'), createdAt: now, lastSeen: now };
    this.sessions.set(session.token, session);
    return session;
  }

  /**
   * The live session of a token, or null once it has been idle for idleMs or exists for maxAgeMs. `touch`: this
   * request is the user's and keeps the session alive; false for the page's own polls, which would otherwise keep
   * an unattended dashboard logged in for ever.
   */
  session(token: string | undefined, touch = true): Session | null {
    if (!token) return null;
    const s = this.sessions.get(token);
    if (!s) return null;
    const now = Date.now();
    if (now - s.lastSeen > this.idleMs || now - s.createdAt > this.maxAgeMs) {
      this.sessions.delete(token);
      return null;
    }
    if (touch) s.lastSeen = now;
    return s;
  }

  logout(token: string | undefined): void {
    if (token) this.sessions.delete(token);
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
