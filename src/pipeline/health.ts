// The health of what the pipeline depends on, and the backpressure it puts on senders.
// The worker reports every call to the PACS REST API and the crosswalk: a failure starts (or continues) a streak,
// a success ends it. While a streak is longer than pipeline.backpressureAfterMs, or the unfinished backlog is over
// pipeline.maxBacklog, ingest refuses new C-STOREs before forwarding (0xA700), so modalities keep their copy and
// retry later instead of filling the archive with raw instances the worker cannot de-identify.
import { refusal, type RefusalCode, type StoreReply } from '../dicom/c-store.js';
import type { ReasonCode } from '../reasons.js';
import type { Dependency } from './types.js';

export const DEPENDENCIES: readonly Dependency[] = ['pacs', 'crosswalk'];

/** The current failure streak of one dependency; failingSince null = the last call succeeded (or none was made). */
export interface DependencyState {
  failingSince: number | null;
  /**
   * The reason code of the last failure (PipelineError.code), kept after the streak ends. Named "class" as before
   * codes: /readyz, the dashboard and `dphiant status` read this field.
   */
  lastErrorClass: ReasonCode | null;
  lastFailureAt: number | null;
  lastSuccessAt: number | null;
  /** Failed calls in the current streak. */
  failures: number;
}

/** The journal meta key the middleman publishes its health under, for `dphiant status` in another process. */
export const HEALTH_META_KEY = 'pipeline.health';

/** What `dphiant status`, the dashboard and /readyz show: each dependency, and jobs retrying past the stuck count. */
export interface HealthSnapshot {
  at: number;
  dependencies: Record<Dependency, DependencyState>;
  stuckJobs: number;
}

/** Streak starts and ends are published at once; a running streak's details at most this often. */
const PUBLISH_EVERY_MS = 5_000;

export class DependencyHealth {
  private readonly states = new Map<Dependency, DependencyState>(
    DEPENDENCIES.map((d) => [d, { failingSince: null, lastErrorClass: null, lastFailureAt: null, lastSuccessAt: null, failures: 0 }]),
  );
  private stuck = 0;
  private publishedAt = 0;

  /** `publish`: where snapshots go (the journal's meta table, read by `dphiant status` in another process). */
  constructor(private readonly publish: (s: HealthSnapshot) => void = () => undefined) {}

  succeeded(dep: Dependency, now = Date.now()): void {
    const s = this.states.get(dep)!;
    const ended = s.failingSince !== null;
    s.failingSince = null;
    s.failures = 0;
    s.lastSuccessAt = now;
    if (ended) this.flush(now, true);
  }

  failed(dep: Dependency, code: ReasonCode, now = Date.now()): void {
    const s = this.states.get(dep)!;
    const started = s.failingSince === null;
    s.failingSince ??= now;
    s.failures++;
    s.lastFailureAt = now;
    s.lastErrorClass = code;
    this.flush(now, started);
  }

  /** How long the dependency has been failing (0 when it is not). */
  failingMs(dep: Dependency, now = Date.now()): number {
    const since = this.states.get(dep)!.failingSince;
    return since === null ? 0 : now - since;
  }

  /** The last moment anything was heard from the dependency, success or failure (null: never asked). */
  lastHeard(dep: Dependency): number | null {
    const s = this.states.get(dep)!;
    return Math.max(s.lastFailureAt ?? 0, s.lastSuccessAt ?? 0) || null;
  }

  setStuck(n: number): void {
    if (n !== this.stuck) {
      this.stuck = n;
      this.flush(Date.now(), true);
    }
  }

  snapshot(now = Date.now()): HealthSnapshot {
    const dependencies = Object.fromEntries(DEPENDENCIES.map((d) => [d, { ...this.states.get(d)! }])) as Record<Dependency, DependencyState>;
    return { at: now, dependencies, stuckJobs: this.stuck };
  }

  private flush(now: number, force: boolean): void {
    if (!force && now - this.publishedAt < PUBLISH_EVERY_MS) return;
    this.publishedAt = now;
    try {
      this.publish(this.snapshot(now));
    } catch {
      // visibility only: a journal that cannot take the snapshot now takes the next one
    }
  }
}

/** The fixed ErrorComments of a refusal (they reach the sender's logs: no values). */
export const REFUSAL = {
  backlog: 'DPHIANT backlog over its bound',
  pacs: 'DPHIANT cannot reach the PACS REST API',
  crosswalk: 'DPHIANT cannot reach the crosswalk',
  lease: 'DPHIANT node does not hold its lease (starting, or another node is taking over its instances)',
} as const;

export type RefusalCause = keyof typeof REFUSAL;

export interface BackpressureSettings {
  enabled: boolean;
  backpressureAfterMs: number;
  /** 0 = no bound. */
  maxBacklog: number;
}

export class Backpressure {
  /** Under node leases (src/pipeline/cluster.ts): false while this node does not hold its own. */
  private leaseHeld = true;

  /** `backlog`: unfinished jobs (IN_PACS + DEIDENTIFIED), read for every C-STORE (the journal keeps per-state counts). */
  constructor(
    readonly health: DependencyHealth,
    private readonly readBacklog: () => number,
    private readonly settings: BackpressureSettings,
  ) {}

  backlog(): number {
    return this.readBacklog();
  }

  setLeaseHeld(held: boolean): void {
    this.leaseHeld = held;
  }

  /** Why new instances are refused now, or null. Off with the pipeline (forward only: nothing drains the backlog). */
  cause(now = Date.now()): RefusalCause | null {
    // before the pipeline check: a node without its lease must not store raw instances another node may be adopting
    if (!this.leaseHeld) return 'lease';
    if (!this.settings.enabled) return null;
    for (const dep of DEPENDENCIES) if (this.health.failingMs(dep, now) > this.settings.backpressureAfterMs) return dep;
    if (this.settings.maxBacklog > 0 && this.backlog() >= this.settings.maxBacklog) return 'backlog';
    return null;
  }

  /**
   * The /metrics gauges (Metrics.render's extra gauges): labels are dependencies, causes and reason codes
   * (PipelineError.code), fixed words.
   */
  gauges(now = Date.now()): Record<string, { help: string; values: [Record<string, string>, number][] }> {
    const snap = this.health.snapshot(now);
    const cause = this.cause(now);
    return {
      dphiant_dependency_failing_seconds: {
        help: 'how long each dependency has been failing (0 = its last call succeeded), with the reason code of its last failure',
        values: DEPENDENCIES.map((dep) => [{ dependency: dep, reason: snap.dependencies[dep].failingSince === null ? 'none' : (snap.dependencies[dep].lastErrorClass ?? 'none') }, this.health.failingMs(dep, now) / 1000]),
      },
      dphiant_backlog: { help: 'unfinished jobs (IN_PACS + DEIDENTIFIED)', values: [[{}, this.backlog()]] },
      dphiant_backpressure: {
        help: 'whether new C-STOREs are refused (0xA700), by cause',
        values: (Object.keys(REFUSAL) as RefusalCause[]).map((c) => [{ cause: c }, c === cause ? 1 : 0]),
      },
      dphiant_stuck_jobs: { help: 'jobs retrying past pipeline.stuckAfterAttempts', values: [[{}, snap.stuckJobs]] },
    };
  }

  /** The C-STORE answer of a refusal: Out of Resources, so the sender keeps its copy and retries. */
  refusal(now = Date.now()): (StoreReply & { code: RefusalCode; comment: string }) | null {
    const c = this.cause(now);
    return c ? refusal('backpressure', REFUSAL[c]) : null;
  }
}
