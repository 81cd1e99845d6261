import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AnyKysely } from '../db/dialect.js';
import type { Logger } from '../log.js';
import type { SyncMapping } from '../mapping/sync-mapping.js';
import { httpRefusals, type HttpRefusal } from '../transports/http/http-listener.js';
import type { ApplyStats } from './applier.js';
import { readSyncBacklog } from './backlog.js';
import { isLate, type PeerWatch } from './health.js';
import { Mutex } from './mutex.js';
import type { SyncMeter } from './sync-meter.js';

/**
 * The daemon's metrics, in the Prometheus text format that /metrics serves.
 * One registry per daemon, never prom-client's global one, so that several
 * daemons in one process (tests) keep their counts apart.
 *
 * Every tablesync series is labelled `tablesync_instance` and `sync`.
 * (`instance` is left to Prometheus, which labels every scraped target with
 * it.) Counters count since the process started and survive a reload; the
 * gauges of a sync's state are read from its database at each scrape, like
 * `tablesync status`, so they are right after a restart too. No label or
 * value holds data or a secret: only instance and sync names, counts and
 * times.
 */

const labelNames = ['tablesync_instance', 'sync'] as const;
type LabelName = (typeof labelNames)[number];
type Labels = Record<LabelName, string>;

/** The http listener's refusals also say why: the `error` code of the 401, 413 or 429. */
const refusalLabelNames = [...labelNames, 'reason'] as const;
type RefusalLabelName = (typeof refusalLabelNames)[number];

/** The series a sync's meter moves as its session works. */
interface SessionSeries {
  readonly batchesIn: Counter<LabelName>;
  readonly batchesOut: Counter<LabelName>;
  readonly batchesResent: Counter<LabelName>;
  readonly batchesRefused: Counter<LabelName>;
  readonly changesIn: Counter<LabelName>;
  readonly changesOut: Counter<LabelName>;
  readonly conflicts: Counter<LabelName>;
  readonly parked: Counter<LabelName>;
  readonly applySeconds: Histogram<LabelName>;
}

/** What a transport of a side that only answers says about its peer's calls (see Transport.peerCalledAt). */
interface PeerCalls {
  readonly peerCalledAt?: number | undefined;
}

/**
 * One sync's meter, kept for the daemon's whole life (a reload hands the same
 * meter to the new session), so that its counts and its last contact with
 * the peer carry over.
 */
export class DaemonSyncMeter implements SyncMeter {
  /** When the daemon first ran this sync: a peer never reached is late once this is `health.peerTimeout` ago. */
  readonly watchedSince = Date.now();
  #reachedAt: number | undefined;
  #transport: PeerCalls | undefined;
  #timeoutMs = Number.POSITIVE_INFINITY;

  constructor(
    readonly labels: Labels,
    private readonly series: SessionSeries,
  ) {
    // Every series of the sync shows from the first scrape, at 0: `rate()` and alerts need no special case.
    const { applySeconds, ...counters } = series;
    for (const counter of Object.values(counters)) counter.inc(labels, 0);
    applySeconds.zero(labels);
  }

  /** The transport and peer timeout of the configuration now running; what an earlier transport heard is kept. */
  watch(transport: PeerCalls, timeoutMs: number): void {
    this.#reachedAt = this.lastContactAt;
    this.#transport = transport;
    this.#timeoutMs = timeoutMs;
  }

  /** The last contact with the peer: an exchange that reached it, or (passive http) a request of its own. */
  get lastContactAt(): number | undefined {
    const called = this.#transport?.peerCalledAt;
    if (called === undefined) return this.#reachedAt;
    return this.#reachedAt === undefined ? called : Math.max(called, this.#reachedAt);
  }

  get peerWatch(): PeerWatch {
    return { sync: this.labels.sync, lastContactAt: this.lastContactAt, watchedSince: this.watchedSince, timeoutMs: this.#timeoutMs };
  }

  applied(stats: Readonly<ApplyStats>, ms: number): void {
    this.series.batchesIn.inc(this.labels);
    this.series.changesIn.inc(this.labels, stats.events);
    this.series.conflicts.inc(this.labels, stats.conflicts);
    this.series.parked.inc(this.labels, stats.parked);
    this.series.applySeconds.observe(this.labels, ms / 1000);
  }

  sent(events: number): void {
    this.series.batchesOut.inc(this.labels);
    this.series.changesOut.inc(this.labels, events);
  }

  resent(): void {
    this.series.batchesResent.inc(this.labels);
  }

  refused(): void {
    this.series.batchesRefused.inc(this.labels);
  }

  reached(at: number): void {
    this.#reachedAt = at;
  }
}

/** A sync the daemon runs now, as a scrape reads it. */
export interface MeasuredSync {
  readonly meter: DaemonSyncMeter;
  readonly database: AnyKysely;
  readonly mapping: SyncMapping;
}

export class DaemonMetrics {
  readonly #registry = new Registry();
  readonly #meters = new Map<string, DaemonSyncMeter>();
  /** Scrapes reset and refill the state gauges: one at a time, so that none sees another's half. */
  readonly #scrapes = new Mutex();
  readonly #series: SessionSeries;
  readonly #waiting: Gauge<LabelName>;
  readonly #lag: Gauge<LabelName>;
  readonly #lastInAge: Gauge<LabelName>;
  readonly #unacknowledged: Gauge<LabelName>;
  readonly #openConflicts: Gauge<LabelName>;
  readonly #parkedNow: Gauge<LabelName>;
  readonly #lastContact: Gauge<LabelName>;
  readonly #peerReached: Gauge<LabelName>;
  readonly #httpRefused: Counter<RefusalLabelName>;

  constructor(private readonly logger: Logger) {
    const registers = [this.#registry];
    const counter = (name: string, help: string): Counter<LabelName> => new Counter({ name, help, labelNames, registers });
    const gauge = (name: string, help: string): Gauge<LabelName> => new Gauge({ name, help, labelNames, registers });
    this.#series = {
      batchesIn: counter('tablesync_batches_in_total', "Batches of the peer's applied here."),
      batchesOut: counter('tablesync_batches_out_total', 'New batches of ours sent to the peer (not counting resends).'),
      batchesResent: counter('tablesync_batches_resent_total', 'Batches sent again because the peer had not acknowledged them.'),
      batchesRefused: counter('tablesync_batches_refused_total', "Batches of the peer's refused as bad input and kept in tablesync_refused_batches."),
      changesIn: counter('tablesync_changes_in_total', "Changes (events) of the peer's applied here."),
      changesOut: counter('tablesync_changes_out_total', 'Changes (events) in the new batches sent to the peer.'),
      conflicts: counter('tablesync_conflicts_total', 'Fields changed on both sides since they last agreed, found while applying.'),
      parked: counter('tablesync_changes_parked_total', "Changes of the peer's this database refused, parked with their reason."),
      applySeconds: new Histogram({
        name: 'tablesync_apply_duration_seconds',
        help: "Time to apply one batch of the peer's, in one transaction.",
        labelNames,
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
        registers,
      }),
    };
    this.#waiting = gauge('tablesync_changes_waiting', 'Changes waiting to reach the peer: captured, queued, and in unacknowledged batches.');
    this.#lag = gauge('tablesync_lag_seconds', 'Age of the oldest change waiting to reach the peer; 0 when nothing waits.');
    this.#lastInAge = gauge('tablesync_last_batch_in_age_seconds', "Time since a batch of the peer's was last applied here; absent before the first.");
    this.#unacknowledged = gauge('tablesync_unacknowledged_batches', 'Batches sent that the peer has not acknowledged yet.');
    this.#openConflicts = gauge('tablesync_open_conflicts', 'Conflicts waiting for someone to resolve them (the manual rule).');
    this.#parkedNow = gauge('tablesync_parked_changes', 'Parked changes waiting for tablesync errors retry.');
    this.#lastContact = gauge('tablesync_peer_last_contact_timestamp_seconds', 'When the peer (or the folders or FTP server both sides share) was last reached, in Unix time; absent before the first.');
    this.#peerReached = gauge('tablesync_peer_reachable', '1 when the peer was reached within health.peerTimeout, else 0: what /healthz reports.');
    this.#httpRefused = new Counter({
      name: 'tablesync_http_requests_refused_total',
      help: 'Requests the http listener refused before any sync saw them (401, 413, 429), by reason; sync is empty when the request named no sync served here.',
      labelNames: refusalLabelNames,
      registers,
    });
    collectDefaultMetrics({ register: this.#registry });
  }

  /** The meter of a sync; the same one every time it is asked for, reload or not. */
  meterFor(instance: string, sync: string): DaemonSyncMeter {
    const key = JSON.stringify([instance, sync]);
    let meter = this.#meters.get(key);
    if (meter === undefined) {
      meter = new DaemonSyncMeter({ tablesync_instance: instance, sync }, this.#series);
      this.#meters.set(key, meter);
    }
    return meter;
  }

  /** A passive http sync that this instance's listener serves: its refusal counts show from the first scrape, at 0. */
  servesHttp(instance: string, sync: string): void {
    for (const reason of httpRefusals) this.#httpRefused.inc({ tablesync_instance: instance, sync, reason }, 0);
  }

  /**
   * A request refused by `instance`'s http listener. `sync` is undefined when the request named a sync
   * the listener does not serve: the name came from the caller, and a label taken from it would let
   * anyone who reaches the port make up series without end.
   */
  httpRefused(instance: string, sync: string | undefined, reason: HttpRefusal): void {
    this.#httpRefused.inc({ tablesync_instance: instance, sync: sync ?? '', reason });
  }

  /** Reads the state of the syncs running now from their databases, then renders everything for /metrics. */
  render(syncs: readonly MeasuredSync[]): Promise<{ contentType: string; body: string }> {
    return this.#scrapes.run(async () => {
      const now = Date.now();
      // A sync that a reload removed drops out of the gauges; its counters stay, as counters do.
      for (const gauge of [this.#waiting, this.#lag, this.#lastInAge, this.#unacknowledged, this.#openConflicts, this.#parkedNow, this.#lastContact, this.#peerReached]) {
        gauge.reset();
      }
      for (const { meter, database, mapping } of syncs) {
        const { labels } = meter;
        const contact = meter.lastContactAt;
        if (contact !== undefined) this.#lastContact.set(labels, contact / 1000);
        this.#peerReached.set(labels, isLate(meter.peerWatch, now) ? 0 : 1);
        try {
          const backlog = await readSyncBacklog(database, mapping);
          this.#waiting.set(labels, backlog.captured + backlog.queued + backlog.inUnacknowledgedBatches);
          this.#lag.set(labels, backlog.oldestWaitingAt === undefined ? 0 : Math.max(0, now - backlog.oldestWaitingAt) / 1000);
          if (backlog.lastInAt !== undefined) this.#lastInAge.set(labels, Math.max(0, now - backlog.lastInAt) / 1000);
          this.#unacknowledged.set(labels, backlog.unacknowledgedBatches);
          this.#openConflicts.set(labels, backlog.openConflicts);
          this.#parkedNow.set(labels, backlog.parkedChanges);
        } catch (err) {
          // A database that is down, or being closed by a reload, costs this scrape the sync's state gauges, nothing more.
          this.logger.warn({ err, instance: labels.tablesync_instance, sync: labels.sync }, `metrics: cannot read the state of sync ${labels.sync}; its state is left out of this scrape`);
        }
      }
      return { contentType: this.#registry.contentType, body: await this.#registry.metrics() };
    });
  }
}
