// The query plans of the statements a store really runs: its better-sqlite3 connection is watched while a caller
// uses the store's public API, and each statement prepared meanwhile is explained with the values it was run with
// (the LIKE optimisation and partial indexes depend on them). No mock: the real database answers.
import type Database from 'better-sqlite3';

export interface PlannedQuery {
  sql: string;
  /** EXPLAIN QUERY PLAN's detail lines, e.g. 'SEARCH jobs USING INDEX jobs_raw_id (raw_id=?)'. */
  plan: string[];
  /** The lines that read a whole table or index: a cost that grows with the table. */
  scans: string[];
}

/** The private connection of the journal or the SQLite crosswalk (both keep it as `db`). */
export function connectionOf(store: object): Database.Database {
  return (store as { db: Database.Database }).db;
}

/** Runs `use` while recording the statements prepared on `db`; returns their plans, one per distinct SQL text. */
export async function queryPlans(db: Database.Database, use: () => unknown): Promise<PlannedQuery[]> {
  const ran = new Map<string, unknown[]>();
  const prepare = db.prepare;
  db.prepare = function (this: Database.Database, sql: string) {
    const stmt = prepare.call(this, sql) as Database.Statement;
    for (const method of ['run', 'get', 'all', 'iterate'] as const) {
      const original = stmt[method] as (...a: unknown[]) => unknown;
      (stmt as unknown as Record<string, unknown>)[method] = (...params: unknown[]) => {
        if (!ran.has(sql)) ran.set(sql, params);
        return original.apply(stmt, params);
      };
    }
    return stmt;
  } as typeof db.prepare;
  try {
    await use();
  } finally {
    db.prepare = prepare;
  }
  return [...ran].map(([sql, params]) => {
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail);
    return { sql: sql.replace(/\s+/g, ' ').trim(), plan, scans: plan.filter((d) => /^SCAN /.test(d) && !/^SCAN CONSTANT ROW/.test(d)) };
  });
}
