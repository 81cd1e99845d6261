import type { AnyKysely } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';
import type { SyncMapping } from '../mapping/sync-mapping.js';
import { readCursor } from './cursors.js';

/**
 * Where one sync's exchange stands, read from tablesync's state without
 * changing it: what `tablesync status` prints and what /metrics measures, so
 * that the two never disagree. Times are milliseconds since the epoch.
 */
export interface SyncBacklog {
  /** Journal rows of the sync's tables not read yet; the journal is shared, so a row counts for every sync of its table. */
  readonly captured: number;
  /** This sync's outbox entries: one per record, however often it changed. */
  readonly queued: number;
  /** Events of batches sent and not yet acknowledged by the peer. */
  readonly inUnacknowledgedBatches: number;
  readonly unacknowledgedBatches: number;
  /**
   * The oldest change still waiting to reach the peer: the oldest captured row, the oldest outbox
   * entry (dated by the latest change of its record), or the oldest unacknowledged batch (dated when
   * it was built). Undefined when nothing waits.
   */
  readonly oldestWaitingAt: number | undefined;
  /** The peer's instance name, learnt from its first batch. */
  readonly peer: string | undefined;
  /** When a batch of the peer's was last applied here. */
  readonly lastInAt: number | undefined;
  /** When a batch of ours last left. */
  readonly lastOutAt: number | undefined;
  readonly openConflicts: number;
  readonly parkedChanges: number;
  /** Batches from the peer refused as bad input, kept in tablesync_refused_batches. */
  readonly refusedBatches: number;
}

interface Aggregate {
  n: number | string;
  oldest: number | string | null;
}

/** Reads a sync's backlog; tablesync's state tables must exist. */
export async function readSyncBacklog(db: AnyKysely, mapping: SyncMapping): Promise<SyncBacklog> {
  const sync = mapping.name;
  const journal = (await db
    .selectFrom(stateTables.journal)
    .select((eb) => [eb.fn.countAll().as('n'), eb.fn.min('changed_at').as('oldest')])
    .where('table_name', 'in', [...mapping.tablesByName.keys()])
    .executeTakeFirst()) as Aggregate | undefined;
  const outbox = (await db
    .selectFrom(stateTables.outbox)
    .select((eb) => [eb.fn.countAll().as('n'), eb.fn.min('changed_at').as('oldest')])
    .where('sync_name', '=', sync)
    .executeTakeFirst()) as Aggregate | undefined;
  const batches = (await db
    .selectFrom(stateTables.batchesOut)
    .select((eb) => [eb.fn.countAll().as('n'), eb.fn.sum('events').as('events'), eb.fn.min('created_at').as('oldest')])
    .where('sync_name', '=', sync)
    .executeTakeFirst()) as (Aggregate & { events: number | string | null }) | undefined;
  const conflicts = (await db
    .selectFrom(stateTables.conflicts)
    .select((eb) => eb.fn.countAll().as('n'))
    .where('sync_name', '=', sync)
    .where('resolved_at', 'is', null)
    .executeTakeFirst()) as { n: number | string } | undefined;
  const count = async (table: string): Promise<number> => {
    const row = (await db
      .selectFrom(table)
      .select((eb) => eb.fn.countAll().as('n'))
      .where('sync_name', '=', sync)
      .executeTakeFirst()) as { n: number | string } | undefined;
    return Number(row?.n ?? 0);
  };
  const time = (position: string | undefined): number | undefined => (position === undefined ? undefined : Number(position));

  return {
    captured: Number(journal?.n ?? 0),
    queued: Number(outbox?.n ?? 0),
    inUnacknowledgedBatches: Number(batches?.events ?? 0),
    unacknowledgedBatches: Number(batches?.n ?? 0),
    oldestWaitingAt: [journal?.oldest, outbox?.oldest, batches?.oldest]
      .filter((at): at is number | string => at !== null && at !== undefined)
      .map(Number)
      .reduce<number | undefined>((a, b) => (a === undefined || b < a ? b : a), undefined),
    peer: await readCursor(db, sync, 'peer'),
    lastInAt: time(await readCursor(db, sync, 'last-in-at')),
    lastOutAt: time(await readCursor(db, sync, 'last-out-at')),
    openConflicts: Number(conflicts?.n ?? 0),
    parkedChanges: await count(stateTables.parked),
    refusedBatches: await count(stateTables.refused),
  };
}
