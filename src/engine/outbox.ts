import type { AnyKysely } from '../db/dialect.js';
import { groupBy } from '../group-by.js';
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

  /** Takes over another writer's entries (an event's, once that event has applied). */
  absorb(other: OutboxWriter): void {
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

  async flush(db: AnyKysely): Promise<void> {
    const bySync = groupBy(this.#entries.values(), (entry) => `${entry.sync}\u0000${entry.tableNumber}`);
    for (const entries of bySync.values()) {
      const [first] = entries;
      if (first === undefined) continue;
      for (const chunk of chunks(entries, 500)) {
        const existing = (await db
          .selectFrom(stateTables.outbox)
          .selectAll()
          .where('sync_name', '=', first.sync)
          .where('table_number', '=', first.tableNumber)
          .where(
            'record_id',
            'in',
            chunk.map((e) => e.recordId),
          )
          .execute()) as OutboxRow[];
        const known = new Map(existing.map((row) => [row.record_id, row]));
        const inserts: OutboxRow[] = [];
        for (const entry of chunk) {
          const row = known.get(entry.recordId);
          if (row === undefined) {
            inserts.push(toRow(entry));
            continue;
          }
          const fields = JSON.parse(row.fields) as Record<string, PendingField>;
          for (const [number, change] of Object.entries(entry.fields)) {
            fields[number] = { version: change.version, parent: fields[number]?.parent ?? change.parent };
          }
          await db
            .updateTable(stateTables.outbox)
            .set({
              fields: JSON.stringify(fields),
              deleted: row.deleted === 1 || entry.deleted ? 1 : 0,
              changed_at: Math.max(Number(row.changed_at), entry.changedAt),
            })
            .where('sync_name', '=', entry.sync)
            .where('table_number', '=', entry.tableNumber)
            .where('record_id', '=', entry.recordId)
            .execute();
        }
        if (inserts.length > 0) await db.insertInto(stateTables.outbox).values(inserts).execute();
      }
    }
    this.#entries.clear();
  }
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
