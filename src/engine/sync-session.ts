import { stateTables } from '../db/state-names.js';
import type { Logger } from '../log.js';
import type { SyncMapping } from '../mapping/sync-mapping.js';
import { protocolVersion, type Batch } from '../protocol/batch.js';
import { BatchRefused, decodeBatch } from '../protocol/decode.js';
import { readAheadOutgoing } from './read-ahead.js';
import type { Transport } from '../transports/transport.js';
import { BatchApplier } from './applier.js';
import { buildBatch } from './batch-builder.js';
import { ClockSkewWatch } from './clock-skew.js';
import { SafetyBackupFailed } from './initial-start.js';
import type { EngineContext } from './context.js';
import { readSeq, writeCursor } from './cursors.js';
import { absorbJournal, journalPassSize } from './journal-reader.js';
import type { Mutex } from './mutex.js';
import { silentMeter, type SyncMeter } from './sync-meter.js';
import { VersionClock } from './versions.js';

/** Timing of one sync's exchanges; defaults suit a LAN or a shared folder. */
export interface SessionPolicy {
  /** A batch the peer has not acknowledged is sent again after this long, unless it still waits unread. Default 10 s. */
  readonly resendAfterMs: number;
  /** At most this many batches travel unacknowledged; the rest wait in the outbox. Default 8. */
  readonly window: number;
}

/** How much of a refused batch is kept for inspection. */
const maxKeptBytes = 1024 * 1024;

export const defaultSessionPolicy: SessionPolicy = { resendAfterMs: 10_000, window: 8 };

export interface ExchangeReport {
  received: number;
  sent: number;
  resent: number;
  refused: number;
}

/** File name of a batch: sorting names sorts one sender's batches by sequence. */
export function batchName(sync: string, from: string, seq: number): string {
  return seq === 0 ? `${sync}.${from}.ack.json` : `${sync}.${from}.${String(seq).padStart(12, '0')}.json`;
}

/**
 * One side of one sync: each exchange applies what the peer left for us,
 * sends our new changes, resends what the peer has not acknowledged, and
 * acknowledges what we applied. All database work of one instance goes
 * through its mutex, so syncs of one instance never interleave.
 */
export class SyncSession {
  readonly #applier: BatchApplier;
  readonly #clocks: ClockSkewWatch;
  #ackOwed = false;
  /** This side's description, until it has been published where the peer's `check` reads it. */
  #description: Buffer | undefined;

  constructor(
    private readonly context: EngineContext,
    readonly mapping: SyncMapping,
    readonly transport: Transport,
    private readonly lock: Mutex,
    private readonly logger: Logger,
    private readonly policy: SessionPolicy = defaultSessionPolicy,
    private readonly meter: SyncMeter = silentMeter,
  ) {
    this.#applier = new BatchApplier(context, mapping);
    this.#clocks = new ClockSkewWatch(logger);
  }

  get name(): string {
    return this.mapping.name;
  }

  /** Publishes this side's description (for the peer's `tablesync check`) at the next exchange that can. */
  describeAs(description: Buffer): void {
    this.#description = description;
  }

  exchange(): Promise<ExchangeReport> {
    return this.lock.run(async () => {
      const report: ExchangeReport = { received: 0, sent: 0, resent: 0, refused: 0 };
      if (this.#description !== undefined) {
        await this.transport.publishDescription(this.#description);
        this.#description = undefined;
      }
      await this.#receive(report);
      await this.#sendNew(report);
      // A batch built just now carries our latest acknowledgement; one queued earlier (by a command) or sent again may not.
      const ackCarried = report.sent > 0;
      await this.#resendStale(report);
      if (this.#ackOwed && !ackCarried) await this.#sendAck();
      this.#ackOwed = false;
      // A side that only answers (passive http) cannot tell from its own exchange whether the peer is there.
      if (this.transport.reachesPeer) this.meter.reached(Date.now());
      return report;
    });
  }

  async #receive(report: ExchangeReport): Promise<void> {
    for (const incoming of await this.transport.receive()) {
      let batch: Batch;
      try {
        batch = decodeBatch(incoming.body);
        const started = performance.now();
        const outcome = await this.#applier.apply(batch);
        const ms = performance.now() - started;
        // Only once the batch passed as the peer's: a refused one proves nothing about the peer's clock.
        this.#clocks.observe(batch, incoming.name);
        switch (outcome.kind) {
          case 'early':
            this.logger.debug({ batch: incoming.name, expected: outcome.expected }, 'batch arrived before the one it follows; it waits');
            continue;
          case 'duplicate':
            this.#ackOwed = true;
            this.logger.debug({ batch: incoming.name }, 'batch applied before; skipped');
            break;
          case 'applied': {
            this.#ackOwed = true;
            report.received += 1;
            this.meter.applied(outcome.stats, ms);
            const readAhead = outcome.readAhead > 0 ? { readAhead: outcome.readAhead } : {};
            this.logger.info({ batch: incoming.name, seq: batch.seq, ...outcome.stats, ...readAhead, ms: Math.round(ms) }, 'batch applied');
            break;
          }
          case 'ack':
            break;
        }
        await incoming.done();
      } catch (err) {
        if (err instanceof SafetyBackupFailed) {
          // The batch stays where it is, and so do those behind it: they are tried again at a later exchange.
          if (err.attempted) this.logger.error({ batch: incoming.name, err: err.cause }, err.message);
          else this.logger.debug({ batch: incoming.name }, `still waiting for the safety backup to succeed: ${err.message}`);
          return;
        }
        if (!(err instanceof BatchRefused)) throw err;
        report.refused += 1;
        this.meter.refused();
        const id = await this.#keepAside(incoming.name, incoming.body, err.message);
        this.logger.warn({ batch: incoming.name, reason: err.message, refusedId: id }, 'batch refused; kept in tablesync_refused_batches');
        await incoming.reject(err.message);
      }
    }
  }

  /** Keeps a refused batch for inspection in our own database: whatever the transport does with it, it is not lost. */
  async #keepAside(name: string, body: Buffer, reason: string): Promise<number> {
    const kept = body.subarray(0, maxKeptBytes).toString('utf8');
    const row = { sync_name: this.name, name: name.slice(0, 255), reason, body: kept, size: body.length, refused_at: Date.now() };
    // Through the dialect, which knows how to learn the new id (PostgreSQL reports no insert id), in a
    // transaction so that the id is read on the connection that inserted.
    const [id] = await this.context.database.transaction((db) => this.context.database.adapter.insertNumbered(db, stateTables.refused, [row], 'id'));
    return Number(id ?? 0);
  }

  async #sendNew(report: ExchangeReport): Promise<void> {
    const { database } = this.context;
    for (;;) {
      const unacknowledged = await this.#unacknowledged();
      if (unacknowledged >= this.policy.window) return;
      const readAhead = await readAheadOutgoing(database.kysely, this.mapping, this.context.readAhead);
      const built = await database.transaction(async (db) => {
        const clock = await VersionClock.load(db, this.context.config.instance, database.adapter.lockingReads);
        while ((await absorbJournal(this.context, db, clock)) === journalPassSize);
        await clock.save(db);
        return buildBatch(this.context, db, this.mapping, this.transport.maxBatchBytes);
      });
      if (built === undefined) return;
      await this.#send(built.batch.seq, built.body);
      this.#sentFirst(report, built.batch.seq, built.batch.events.length, readAhead);
    }
  }

  /** Counts and logs a batch's first send, whoever built it; `readAhead`: records read ahead of building it. */
  #sentFirst(report: ExchangeReport, seq: number, events: number, readAhead = 0): void {
    report.sent += 1;
    this.meter.sent(events);
    this.logger.info({ seq, events, ...(readAhead > 0 ? { readAhead } : {}) }, 'batch sent');
  }

  async #resendStale(report: ExchangeReport): Promise<void> {
    const { kysely } = this.context.database;
    const stale = (await kysely
      .selectFrom(stateTables.batchesOut)
      .select(['seq', 'body', 'events', 'sent_at'])
      .where('sync_name', '=', this.name)
      .where((eb) => eb.or([eb('sent_at', 'is', null), eb('sent_at', '<', Date.now() - this.policy.resendAfterMs)]))
      .orderBy('seq')
      .execute()) as { seq: number | string; body: string; events: number | string; sent_at: number | string | null }[];
    for (const { seq, body, events, sent_at: sentAt } of stale) {
      const name = batchName(this.name, this.context.config.instance, Number(seq));
      if (await this.transport.isWaiting(name)) {
        await this.#markSent(Number(seq));
        continue;
      }
      await this.#send(Number(seq), body);
      if (sentAt === null) {
        // Queued by a command (an initial sync, a verify --repair) rather than built by an exchange: this is its first send.
        this.#sentFirst(report, Number(seq), Number(events));
        continue;
      }
      report.resent += 1;
      this.meter.resent();
      this.logger.info({ seq: Number(seq) }, 'batch sent again: the peer has not acknowledged it');
    }
  }

  async #send(seq: number, body: string): Promise<void> {
    await this.transport.send({ name: batchName(this.name, this.context.config.instance, seq), body: Buffer.from(body) });
    await this.#markSent(seq);
  }

  async #markSent(seq: number): Promise<void> {
    await this.context.database.transaction(async (db) => {
      await db.updateTable(stateTables.batchesOut).set({ sent_at: Date.now() }).where('sync_name', '=', this.name).where('seq', '=', seq).execute();
      await writeCursor(db, this.name, 'last-out-at', Date.now());
    });
  }

  async #sendAck(): Promise<void> {
    const ack: Batch = {
      protocol: protocolVersion,
      sync: this.name,
      from: this.context.config.instance,
      seq: 0,
      ack: await readSeq(this.context.database.kysely, this.name, 'in'),
      sentAt: Date.now(),
      events: [],
    };
    await this.transport.send({ name: batchName(this.name, this.context.config.instance, 0), body: Buffer.from(JSON.stringify(ack)) });
  }

  async #unacknowledged(): Promise<number> {
    const row = (await this.context.database.kysely
      .selectFrom(stateTables.batchesOut)
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('sync_name', '=', this.name)
      .executeTakeFirst()) as { n: number | string } | undefined;
    return Number(row?.n ?? 0);
  }
}
