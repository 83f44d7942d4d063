// Counters, gauges and histograms of the middleman, exposed in the Prometheus text format on /metrics.
// Labels carry states, stages and reason codes (src/reasons.ts) only: never a UID, an alias or any other value.

type Labels = Record<string, string>;

const key = (labels: Labels) =>
  Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]!.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
    .join(',');

interface Family {
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  values: Map<string, number>;
}

/** Latency buckets in seconds, from a fast REST call to a large instance. */
const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Metrics {
  private readonly families = new Map<string, Family>();
  private readonly gauges = new Map<string, () => number>();

  constructor() {
    this.define('dphiant_instances_received_total', 'counter', 'C-STORE data sets received (refused ones included)');
    this.define('dphiant_instances_forwarded_total', 'counter', 'instances the PACS confirmed (journalled IN_PACS)');
    this.define('dphiant_instances_rejected_total', 'counter', 'instances refused before or by the PACS, by reason code');
    this.define('dphiant_forward_retries_total', 'counter', 'forwards made a second time on a fresh association (the first stalled or lost it)');
    this.define('dphiant_instances_deidentified_total', 'counter', 'instances de-identified in the PACS (DONE)');
    this.define('dphiant_instances_quarantined_total', 'counter', 'instances moved to the quarantine, by reason code');
    this.define('dphiant_pixels_total', 'counter', 'de-identified instances by what the burned-in text step did (not at risk, no text found, cleaned)');
    this.define('dphiant_failures_total', 'counter', 'failed pipeline steps, by kind (transient: retried; permanent: quarantined) and reason code');
    this.define('dphiant_stage_seconds', 'histogram', 'time spent in each pipeline stage');
    this.define('dphiant_scp_connections_dropped_total', 'counter', 'DICOM connections closed before or instead of associating, by reason (pending-limit, protocol, association-timeout)');
    this.define('dphiant_tls_refused_total', 'counter', 'DICOM TLS callers refused, by reason (protocol-version, no-certificate, untrusted-certificate, subject-mismatch, handshake)');
    this.define('dphiant_reconciler_considered_total', 'counter', 'new instances of the PACS change log the reconciler looked at');
    this.define('dphiant_reconciler_adopted_total', 'counter', 'raw instances no job covered, taken into the pipeline by the reconciler');
    this.define('dphiant_reconciler_foreign_total', 'counter', 'raw instances another system stored in the PACS, reported and left alone');
  }

  private define(name: string, type: Family['type'], help: string): void {
    this.families.set(name, { help, type, values: new Map() });
  }

  inc(name: string, labels: Labels = {}, by = 1): void {
    const f = this.families.get(name);
    if (!f) throw new Error(`unknown metric ${name}`);
    const k = key(labels);
    f.values.set(k, (f.values.get(k) ?? 0) + by);
  }

  private readonly stages = new Map<string, { counts: number[]; sum: number; count: number }>();

  /** Records one duration of a stage (forward, deidentify, upload, delete). */
  observe(stage: string, seconds: number): void {
    let h = this.stages.get(stage);
    if (!h) this.stages.set(stage, (h = { counts: SECONDS.map(() => 0), sum: 0, count: 0 }));
    SECONDS.forEach((le, i) => {
      if (seconds <= le) h!.counts[i]!++;
    });
    h.sum += seconds;
    h.count++;
  }

  /** A gauge read when /metrics is scraped (queue depth, jobs per state). */
  gauge(name: string, help: string, read: () => number): void {
    this.gauges.set(name, read);
    this.define(name, 'gauge', help);
  }

  /** Times an async step into the stage histogram. */
  async time<T>(stage: string, step: () => Promise<T>): Promise<T> {
    const t = process.hrtime.bigint();
    try {
      return await step();
    } finally {
      this.observe(stage, Number(process.hrtime.bigint() - t) / 1e9);
    }
  }

  counter(name: string, labels: Labels = {}): number {
    return this.families.get(name)?.values.get(key(labels)) ?? 0;
  }

  /** A counter summed over all its labels. */
  total(name: string): number {
    let sum = 0;
    for (const v of this.families.get(name)?.values.values() ?? []) sum += v;
    return sum;
  }

  /** The Prometheus text exposition format (version 0.0.4). */
  render(extraGauges: Record<string, { help: string; values: [Labels, number][] }> = {}): string {
    const lines: string[] = [];
    for (const [name, f] of this.families) {
      lines.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`);
      if (f.type === 'gauge' && this.gauges.has(name)) {
        lines.push(`${name} ${this.gauges.get(name)!()}`);
        continue;
      }
      if (f.type === 'histogram') {
        for (const [stage, h] of this.stages) {
          SECONDS.forEach((le, i) => lines.push(`${name}_bucket{${key({ stage, le: String(le) })}} ${h.counts[i]}`));
          lines.push(`${name}_bucket{${key({ stage, le: '+Inf' })}} ${h.count}`);
          lines.push(`${name}_sum{${key({ stage })}} ${h.sum}`, `${name}_count{${key({ stage })}} ${h.count}`);
        }
        continue;
      }
      if (f.values.size === 0) lines.push(`${name} 0`);
      for (const [k, v] of f.values) lines.push(k ? `${name}{${k}} ${v}` : `${name} ${v}`);
    }
    for (const [name, g] of Object.entries(extraGauges)) {
      lines.push(`# HELP ${name} ${g.help}`, `# TYPE ${name} gauge`);
      for (const [labels, v] of g.values) lines.push(Object.keys(labels).length ? `${name}{${key(labels)}} ${v}` : `${name} ${v}`);
    }
    return lines.join('\n') + '\n';
  }
}
