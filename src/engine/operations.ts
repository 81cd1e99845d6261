import type { AnyKysely } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';
import { UsageError } from '../errors.js';
import type { MappedTable, SyncMapping } from '../mapping/sync-mapping.js';
import type { TableEvent, WireValue } from '../protocol/batch.js';
import { BatchApplier, emptyStats } from './applier.js';
import { mappingFor, type EngineContext } from './context.js';
import { readVersions, versionOf, writeVersions, type RecordVersions } from './field-versions.js';
import { absorbJournal, journalPassSize } from './journal-reader.js';
import { peerIdFor } from './links.js';
import { chunks, OutboxWriter } from './outbox.js';
import { VersionClock } from './versions.js';

/**
 * What the command line does to a running instance's state: each in one
 * transaction, safe while the daemon runs (it reads the outbox at its next
 * exchange).
 */

function tableFor(mapping: SyncMapping, tableNumber: number): MappedTable {
  const table = mapping.tablesByNumber.get(tableNumber);
  if (table === undefined) {
    throw new UsageError(`sync "${mapping.name}" has no table number ${tableNumber} (it has ${[...mapping.tablesByNumber.keys()].join(', ')})`);
  }
  return table;
}

/** Opens a transaction whose versions are up to date with everything the application did. */
async function withCurrentVersions<T>(context: EngineContext, work: (db: AnyKysely, clock: VersionClock, outbox: OutboxWriter) => Promise<T>): Promise<T> {
  const { database } = context;
  return database.asApplier(async (db) => {
    const clock = await VersionClock.load(db, context.config.instance, database.adapter.lockingReads);
    while ((await absorbJournal(context, db, clock)) === journalPassSize);
    const outbox = new OutboxWriter();
    const result = await work(db, clock, outbox);
    await outbox.flush(db, context.database.adapter);
    await clock.save(db);
    return result;
  });
}

export interface ConflictRow {
  id: number;
  sync_name: string;
  table_number: number;
  local_id: string;
  field_number: number;
  ours: string | null;
  theirs: string | null;
  our_version: string;
  their_version: string;
  detected_at: number | string;
  resolved_at: number | string | null;
  resolution: string | null;
}

export async function listConflicts(context: EngineContext, options: { all?: boolean } = {}): Promise<ConflictRow[]> {
  let query = context.database.kysely.selectFrom(stateTables.conflicts).selectAll().orderBy('id');
  if (options.all !== true) query = query.where('resolved_at', 'is', null);
  return (await query.execute()) as ConflictRow[];
}

/**
 * Ends a conflict kept open by the `manual` rule. `theirs` takes the peer's
 * value here; `ours` sends ours again as a change made after theirs. Either
 * way the peer hears of it and closes its own side of the conflict.
 */
export async function resolveConflict(context: EngineContext, id: number, keep: 'ours' | 'theirs'): Promise<ConflictRow> {
  return withCurrentVersions(context, async (db, clock, outbox) => {
    const row = (await db.selectFrom(stateTables.conflicts).selectAll().where('id', '=', id).executeTakeFirst()) as ConflictRow | undefined;
    if (row === undefined) throw new UsageError(`there is no conflict ${id}; tablesync conflicts list shows the open ones`);
    if (row.resolved_at !== null) throw new UsageError(`conflict ${id} is already resolved (${row.resolution ?? 'resolved'})`);
    const mapping = mappingFor(context, row.sync_name);
    const table = tableFor(mapping, row.table_number);
    const field = table.fieldsByNumber.get(row.field_number);
    if (field === undefined) throw new UsageError(`conflict ${id} is about field ${row.field_number}, which sync "${mapping.name}" no longer syncs`);

    const current = versionOf(await readVersions(db, table.name, [row.local_id]), row.local_id, field.column);
    const now = Date.now();
    if (keep === 'theirs') {
      const applier = new BatchApplier(context, mapping);
      const value = await applier.localValue(db, table, field, JSON.parse(row.theirs ?? 'null') as WireValue, row.local_id);
      await db.updateTable(table.name).set({ [field.column]: value ?? null }).where(table.key, '=', row.local_id).execute();
      await writeVersions(db, context.database.adapter, table.name, new Map([[row.local_id, new Map([[field.column, row.their_version]])]]));
      for (const other of context.mappings) {
        const theirs = other.tablesByName.get(table.name);
        const otherField = theirs?.fieldsByColumn.get(field.column);
        if (theirs === undefined || otherField?.sends !== true) continue;
        // To the peer: "we hold your version now"; to other syncs: a change like any other.
        outbox.field(other.name, theirs.number, row.local_id, otherField.number, { version: row.their_version, parent: current }, now);
      }
    } else {
      const version = clock.next(now);
      await writeVersions(db, context.database.adapter, table.name, new Map([[row.local_id, new Map([[field.column, version]])]]));
      for (const other of context.mappings) {
        const theirs = other.tablesByName.get(table.name);
        const otherField = theirs?.fieldsByColumn.get(field.column);
        if (theirs === undefined || otherField?.sends !== true) continue;
        // Parent = their version: the peer sees a change made after its own, and takes it.
        const parent = other.name === mapping.name ? row.their_version : current;
        outbox.field(other.name, theirs.number, row.local_id, otherField.number, { version, parent }, now);
      }
    }
    await db
      .updateTable(stateTables.conflicts)
      .set({ resolved_at: now, resolution: `manual: kept ${keep}` })
      .where('id', '=', id)
      .execute();
    return { ...row, resolved_at: now, resolution: `manual: kept ${keep}` };
  });
}

export interface ParkedRow {
  id: number;
  sync_name: string;
  batch_seq: number | string;
  table_number: number;
  peer_record_id: string;
  event: string;
  reason: string;
  parked_at: number | string;
  attempts: number;
}

export async function listParked(context: EngineContext): Promise<ParkedRow[]> {
  return (await context.database.kysely.selectFrom(stateTables.parked).selectAll().orderBy('id').execute()) as ParkedRow[];
}

export interface RetryResult {
  readonly id: number;
  /** Undefined when the change applied; the database's reason when it is still parked. */
  readonly reason?: string;
}

/** Applies parked changes again (all, or one), each in its own transaction. */
export async function retryParked(context: EngineContext, id?: number): Promise<RetryResult[]> {
  // MySQL returns bigint ids as text.
  const parked = (await listParked(context)).filter((row) => id === undefined || Number(row.id) === id);
  if (id !== undefined && parked.length === 0) throw new UsageError(`there is no parked change ${id}; tablesync errors list shows them`);
  const results: RetryResult[] = [];
  for (const row of parked) {
    const mapping = mappingFor(context, row.sync_name);
    const applier = new BatchApplier(context, mapping);
    const reason = await withCurrentVersions(context, async (db, _clock, outbox) => {
      const failure = await applier.tryEvent(db, JSON.parse(row.event) as TableEvent, emptyStats(), outbox);
      if (failure === undefined) await db.deleteFrom(stateTables.parked).where('id', '=', row.id).execute();
      else await db.updateTable(stateTables.parked).set({ reason: failure, attempts: row.attempts + 1 }).where('id', '=', row.id).execute();
      return failure;
    });
    results.push(reason === undefined ? { id: row.id } : { id: row.id, reason });
  }
  return results;
}

/** Queues one record to be sent in full at the next exchange, as a change made now. */
export async function pushRecord(context: EngineContext, sync: string, tableNumber: number, id: string): Promise<void> {
  const table = tableFor(mappingFor(context, sync), tableNumber);
  const queued = await pushRecords(context, sync, tableNumber, [id]);
  if (queued.length === 0) throw new UsageError(`table ${table.name} has no record with ${table.key} ${id}`);
}

/**
 * Queues records to be sent in full at the next exchange (every field this
 * side sends, as if each had just changed), in one transaction; what
 * `push-record` does for one record and `verify --repair` for many. Ids
 * that name no record are left out; returns the ids queued, as the
 * database spells them.
 */
export async function pushRecords(context: EngineContext, sync: string, tableNumber: number, ids: readonly string[]): Promise<string[]> {
  const mapping = mappingFor(context, sync);
  const table = tableFor(mapping, tableNumber);
  return withCurrentVersions(context, async (db, clock, outbox) => {
    // The id as the database spells it (`01` finds record 1): journal, links and outbox use that spelling.
    const found: string[] = [];
    for (const chunk of chunks([...new Set(ids)], 500)) {
      const rows = (await db.selectFrom(table.name).select(table.key).where(table.key, 'in', chunk).execute()) as Record<string, unknown>[];
      found.push(...rows.map((row) => String(row[table.key])));
    }
    const versions = await readVersions(db, table.name, found);
    const now = Date.now();
    const fresh: RecordVersions = new Map();
    for (const recordId of found) {
      const record = new Map<string, string>();
      outbox.touch(sync, table.number, recordId, now);
      for (const field of table.fields.filter((f) => f.sends)) {
        const version = clock.next(now);
        record.set(field.column, version);
        outbox.field(sync, table.number, recordId, field.number, { version, parent: versionOf(versions, recordId, field.column) }, now);
      }
      fresh.set(recordId, record);
    }
    await writeVersions(db, context.database.adapter, table.name, fresh);
    return found;
  });
}

export async function linkOf(context: EngineContext, sync: string, tableNumber: number, id: string): Promise<string | undefined> {
  const mapping = mappingFor(context, sync);
  tableFor(mapping, tableNumber);
  return peerIdFor(context.database.kysely, sync, tableNumber, id);
}
