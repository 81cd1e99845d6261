import type { AnyKysely, DialectAdapter } from '../db/dialect.js';
import { append, groupBy } from '../group-by.js';
import { stateTables } from '../db/state-names.js';

/** A changed field waiting to be sent: its version, and the version the peer last had (its parent). */
export interface PendingField {
  version: string;
  parent: string;
}

export interface OutboxEntry {
  readonly sync: string;
  readonly tableNumber: number;
  readonly recordId: string;
  fields: Record<string, PendingField>;
  deleted: boolean;
  changedAt: number;
}

interface OutboxRow {
  sync_name: string;
  table_number: number;
  record_id: string;
  fields: string;
  deleted: number;
  changed_at: number | string;
}

const keyOf = (sync: string, table: number, record: string): string => `${sync}\u0000${table}\u0000${record}`;

/**
 * Collects what must be mentioned in the next batch of each sync, then
 * merges it into tablesync_outbox in one go: a record has one row per sync
 * however often it changes; a field keeps the parent of its first unsent
 * change and the version of its last.
 */
export class OutboxWriter {
  readonly #entries = new Map<string, OutboxEntry>();
  /** Per sync, then table: (our id, the peer's id) of records linked in bulk, to confirm to the peer. */
  readonly #links = new Map<string, Map<number, [string, string][]>>();

  /** Mentions a record (a new record, a link to confirm, a status change) even without changed fields. */
  touch(sync: string, tableNumber: number, recordId: string, at: number): OutboxEntry {
    const key = keyOf(sync, tableNumber, recordId);
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = { sync, tableNumber, recordId, fields: {}, deleted: false, changedAt: at };
      this.#entries.set(key, entry);
    }
    entry.changedAt = Math.max(entry.changedAt, at);
    return entry;
  }

  field(sync: string, tableNumber: number, recordId: string, fieldNumber: number, change: PendingField, at: number): void {
    const entry = this.touch(sync, tableNumber, recordId, at);
    const earlier = entry.fields[fieldNumber];
    entry.fields[fieldNumber] = { version: change.version, parent: earlier?.parent ?? change.parent };
  }

  deleted(sync: string, tableNumber: number, recordId: string, at: number): void {
    this.touch(sync, tableNumber, recordId, at).deleted = true;
  }

  /**
   * A link made by an initial sync, for the peer to learn our id. These do
   * not go through tablesync_outbox: a million-row initial sync would write,
   * read and delete a million rows there only to send the pairs back. The
   * applier queues them as a batch of their own (see `takeLinks`).
   */
  linked(sync: string, tableNumber: number, localId: string, peerId: string): void {
    let bySync = this.#links.get(sync);
    if (bySync === undefined) this.#links.set(sync, (bySync = new Map()));
    append(bySync, tableNumber, [localId, peerId]);
  }

  /** The links recorded by `linked`, forgotten here. */
  takeLinks(): Map<string, Map<number, [string, string][]>> {
    const links = new Map(this.#links);
    this.#links.clear();
    return links;
  }

  /** Takes over another writer's entries (an event's, once that event has applied). */
  absorb(other: OutboxWriter): void {
    for (const [sync, tables] of other.takeLinks()) for (const [table, pairs] of tables) for (const [localId, peerId] of pairs) this.linked(sync, table, localId, peerId);
    for (const entry of other.#entries.values()) {
      const mine = this.touch(entry.sync, entry.tableNumber, entry.recordId, entry.changedAt);
      for (const [number, change] of Object.entries(entry.fields)) this.field(entry.sync, entry.tableNumber, entry.recordId, Number(number), change, entry.changedAt);
      if (entry.deleted) mine.deleted = true;
    }
    other.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Merges the entries into tablesync_outbox: rows already there are merged
   * in memory and all are written with one upsert per few hundred. A busy
   * table has most of its records in the outbox already, and an UPDATE per
   * row made absorbing the journal the slowest step of a sync.
   */
  async flush(db: AnyKysely, adapter: Pick<DialectAdapter, 'upsert'>): Promise<void> {
    for (const entries of groupBy(this.#entries.values(), (entry) => `${entry.sync}\u0000${entry.tableNumber}`).values()) {
      const [first] = entries;
      if (first === undefined) continue;
      const { sync, tableNumber } = first;
      for (const chunk of chunks(entries, 500)) {
        const existing = (await db
          .selectFrom(stateTables.outbox)
          .selectAll()
          .where('sync_name', '=', sync)
          .where('table_number', '=', tableNumber)
          .where(
            'record_id',
            'in',
            chunk.map((e) => e.recordId),
          )
          .execute()) as OutboxRow[];
        const known = new Map(existing.map((row) => [row.record_id, row]));
        const rows = chunk.map((entry) => {
          const row = known.get(entry.recordId);
          return row === undefined ? toRow(entry) : merged(row, entry);
        });
        await adapter.upsert(db, stateTables.outbox, rows, ['sync_name', 'table_number', 'record_id'], ['fields', 'deleted', 'changed_at']);
      }
    }
    this.#entries.clear();
  }
}

/** An outbox row with a later entry of the same record: each field keeps the parent of its first unsent change. */
function merged(row: OutboxRow, entry: OutboxEntry): OutboxRow {
  const fields = JSON.parse(row.fields) as Record<string, PendingField>;
  for (const [number, change] of Object.entries(entry.fields)) {
    fields[number] = { version: change.version, parent: fields[number]?.parent ?? change.parent };
  }
  return {
    ...toRow(entry),
    fields: JSON.stringify(fields),
    deleted: Number(row.deleted) === 1 || entry.deleted ? 1 : 0,
    changed_at: Math.max(Number(row.changed_at), entry.changedAt),
  };
}

function toRow(entry: OutboxEntry): OutboxRow {
  return {
    sync_name: entry.sync,
    table_number: entry.tableNumber,
    record_id: entry.recordId,
    fields: JSON.stringify(entry.fields),
    deleted: entry.deleted ? 1 : 0,
    changed_at: entry.changedAt,
  };
}

export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
