// The query plans of the statements a store really runs: every better-sqlite3 statement prepared once this module
// is loaded (a store's constructor prepares some) is watched, and while queryPlans() runs a caller of the store's
// public API, each statement run on the store's connection is explained with the values it was run with (the LIKE
// optimisation depends on them). No mock: the real database answers. Import this before opening the stores.
import Database from 'better-sqlite3';

export interface PlannedQuery {
  sql: string;
  /** EXPLAIN QUERY PLAN's detail lines, e.g. 'SEARCH jobs USING INDEX jobs_raw_id (raw_id=?)'. */
  plan: string[];
}

/** Where the statements run on `db` are recorded while queryPlans() runs: SQL text → the first values it ran with. */
let recording: { db: Database.Database; ran: Map<string, unknown[]> } | null = null;

const prepare = Database.prototype.prepare;
Database.prototype.prepare = function (this: Database.Database, sql: string) {
  const stmt = prepare.call(this, sql) as Database.Statement;
  for (const method of ['run', 'get', 'all', 'iterate'] as const) {
    const original = stmt[method] as (...a: unknown[]) => unknown;
    (stmt as unknown as Record<string, unknown>)[method] = (...params: unknown[]) => {
      if (recording?.db === stmt.database && !recording.ran.has(sql)) recording.ran.set(sql, params);
      return original.apply(stmt, params);
    };
  }
  return stmt;
} as typeof Database.prototype.prepare;

/** The private connection of the journal or the SQLite crosswalk (both keep it as `db`). */
export function connectionOf(store: object): Database.Database {
  return (store as { db: Database.Database }).db;
}

/** Runs `use`; returns the plans of the statements it ran on `db`, one per distinct SQL text. */
export async function queryPlans(db: Database.Database, use: () => unknown): Promise<PlannedQuery[]> {
  const ran = new Map<string, unknown[]>();
  recording = { db, ran };
  try {
    await use();
  } finally {
    recording = null;
  }
  return [...ran].map(([sql, params]) => ({
    sql: sql.replace(/\s+/g, ' ').trim(),
    plan: ((prepare.call(db, `EXPLAIN QUERY PLAN ${sql}`) as Database.Statement<unknown[]>).all(...params) as { detail: string }[]).map((r) => r.detail),
  }));
}
