import type { AnyKysely } from '../db/dialect.js';
import { append } from '../group-by.js';
import { stateTables } from '../db/state-names.js';
import type { MappedTable, SyncMapping } from '../mapping/sync-mapping.js';
import { protocolVersion, type Batch, type BatchEvent, type WireValue } from '../protocol/batch.js';
import type { EngineContext } from './context.js';
import { readSeq, writeCursor } from './cursors.js';
import { readLinks, readOrigins } from './links.js';
import { chunks, type PendingField } from './outbox.js';
import { toWire } from './values.js';

interface OutboxRow {
  table_number: number;
  record_id: string;
  fields: string;
  deleted: number;
}

/**
 * The next batch number of a sync, read locked: the daemon and a command
 * (initial-sync) may both be numbering batches of the same sync.
 */
export async function nextSeq(context: EngineContext, db: AnyKysely, sync: string): Promise<number> {
  return (await readSeq(db, sync, 'out', context.database.adapter.lockingReads)) + 1;
}

/** What one outbox entry becomes: events, or only a link to confirm (sent in bulk). */
interface BuiltEntry {
  readonly entry: OutboxRow;
  readonly events: BatchEvent[];
  /** (our id, the peer's id), for an entry that only tells the peer our id. */
  link?: [string, string];
}

export interface BuiltBatch {
  readonly batch: Batch;
  readonly body: string;
}

/** Events per batch: enough to keep per-batch costs small, few enough for one transaction. */
export const maxEventsPerBuiltBatch = 1000;

/**
 * Takes the sync's outbox entries (the oldest first), reads the records'
 * current values, and stores them as the next numbered batch, all in the
 * caller's transaction. The stored body is what every resend sends, byte
 * for byte. Returns undefined when there is nothing to send.
 */
export async function buildBatch(
  context: EngineContext,
  db: AnyKysely,
  mapping: SyncMapping,
  maxBytes: number,
  limit = maxEventsPerBuiltBatch,
): Promise<BuiltBatch | undefined> {
  let query = db
    .selectFrom(stateTables.outbox)
    .select(['table_number', 'record_id', 'fields', 'deleted'])
    .where('sync_name', '=', mapping.name)
    .orderBy('changed_at')
    .limit(limit);
  if (context.database.adapter.lockingReads) query = query.forUpdate();
  const entries = (await query.execute()) as OutboxRow[];
  if (entries.length === 0) return undefined;

  // Events in outbox order, each with the entry it came from, so only the entries that fit are taken.
  const built: BuiltEntry[] = [];
  const byTable = new Map<number, OutboxRow[]>();
  for (const entry of entries) append(byTable, entry.table_number, entry);
  for (const [tableNumber, rows] of byTable) {
    const table = mapping.tablesByNumber.get(tableNumber);
    // A table no longer configured: its entries are taken with no event, and so dropped.
    if (table === undefined) built.push(...rows.map((entry) => ({ entry, events: [] })));
    else built.push(...(await tableEvents(context, db, mapping, table, rows)));
  }

  // A batch must fit the transport: stop before the entry that would overflow it (the first one always goes).
  const envelopeBytes = 512;
  let bytes = envelopeBytes;
  const taken: typeof built = [];
  for (const item of built) {
    const size = item.events.reduce((n, event) => n + Buffer.byteLength(JSON.stringify(event)) + 1, 0) + (item.link === undefined ? 0 : 64);
    if (taken.length > 0 && bytes + size > maxBytes) break;
    bytes += size;
    taken.push(item);
  }
  const events: BatchEvent[] = taken.flatMap((item) => item.events);
  // Links to confirm and nothing else: one event per table with all of them, not one per record.
  const pairs = new Map<number, [string, string][]>();
  for (const { entry, link } of taken) if (link !== undefined) append(pairs, entry.table_number, link);
  for (const [table, tablePairs] of pairs) events.push({ op: 'links', table, pairs: tablePairs });
  const takenByTable = new Map<number, OutboxRow[]>();
  for (const { entry } of taken) append(takenByTable, entry.table_number, entry);

  const queued = await queueBatch(context, db, mapping.name, events);
  for (const [tableNumber, rows] of takenByTable) {
    for (const chunk of chunks(rows, 500)) {
      await db
        .deleteFrom(stateTables.outbox)
        .where('sync_name', '=', mapping.name)
        .where('table_number', '=', tableNumber)
        .where(
          'record_id',
          'in',
          chunk.map((r) => r.record_id),
        )
        .execute();
    }
  }
  return queued;
}

/**
 * Stores events as the sync's next numbered batch, in the caller's
 * transaction, acknowledging what we applied so far. The stored body is
 * what every resend sends, byte for byte, until the peer acknowledges it.
 */
export async function queueBatch(context: EngineContext, db: AnyKysely, sync: string, events: BatchEvent[], serializedEvents?: readonly string[]): Promise<BuiltBatch> {
  const seq = await nextSeq(context, db, sync);
  const batch: Batch = {
    protocol: protocolVersion,
    sync,
    from: context.config.instance,
    seq,
    ack: await readSeq(db, sync, 'in'),
    sentAt: Date.now(),
    events,
  };
  const body = serializedEvents === undefined ? JSON.stringify(batch) : withEvents(JSON.stringify({ ...batch, events: [] }), serializedEvents);
  await db.insertInto(stateTables.batchesOut).values({ sync_name: sync, seq, body, events: events.length, created_at: Date.now() }).execute();
  await writeCursor(db, sync, 'out', seq);
  return { batch, body };
}

/**
 * A batch's JSON with its events put in as already serialized: a caller that
 * measured each event's size (to fit the transport) has made that text
 * already. `events` is the batch's last property, so its empty list ends the text.
 */
function withEvents(emptyBatch: string, serializedEvents: readonly string[]): string {
  return `${emptyBatch.slice(0, -'[]}'.length)}[${serializedEvents.join(',')}]}`;
}

async function tableEvents(
  context: EngineContext,
  db: AnyKysely,
  mapping: SyncMapping,
  table: MappedTable,
  rows: OutboxRow[],
): Promise<BuiltEntry[]> {
  const ids = rows.map((r) => r.record_id);
  const status = table.config.status;
  const columns = [table.key, ...table.fields.filter((f) => f.sends).map((f) => f.column), ...(status === undefined ? [] : [status.column])];
  const records = new Map<string, Record<string, unknown>>();
  for (const chunk of chunks(ids, 500)) {
    const found = (await db.selectFrom(table.name).select([...new Set(columns)]).where(table.key, 'in', chunk).execute()) as Record<string, unknown>[];
    for (const record of found) records.set(String(record[table.key]), record);
  }
  const links = await readLinks(db, mapping.name, table.number, ids);
  const origins = await readOrigins(db, context, table.name, ids.filter((id) => !links.has(id)), { sync: mapping.name, links });

  const out: BuiltEntry[] = [];
  for (const row of rows) {
    const events: BatchEvent[] = [];
    const item: BuiltEntry = { entry: row, events };
    out.push(item);
    const record = records.get(row.record_id);
    const peerId = links.get(row.record_id);
    const common = { table: table.number, id: row.record_id, ...(peerId === undefined ? {} : { peerId }) };
    const gone = row.deleted === 1 || record === undefined;
    if (gone) {
      // Deletes travel only with a status column; without one, a record that is gone is simply not mentioned.
      if (status !== undefined) events.push({ op: 'delete', ...common });
      continue;
    }
    const softDeleted = status !== undefined && String(record[status.column]) === String(status.deleted);
    const pending = JSON.parse(row.fields) as Record<string, PendingField>;
    const fields: Record<string, { value: WireValue; version: string; parent: string }> = {};
    for (const [number, change] of Object.entries(pending)) {
      const field = table.fieldsByNumber.get(Number(number));
      if (field?.sends !== true) continue;
      fields[number] = { value: await wireValue(context, db, mapping, field.type, record[field.column]), ...change };
    }
    if (peerId !== undefined) {
      if (Object.keys(fields).length > 0) events.push({ op: 'upsert', ...common, fields });
      else if (!softDeleted) item.link = [row.record_id, peerId];
    } else {
      // The peer does not know this record yet (or has not told us its id): send everything it needs to create it.
      const full: Record<string, WireValue> = {};
      for (const field of table.fields.filter((f) => f.sends)) {
        full[field.number] = await wireValue(context, db, mapping, field.type, record[field.column]);
      }
      events.push({ op: 'upsert', ...common, fields, record: full, origin: origins.get(row.record_id) ?? `${context.config.instance}/${row.record_id}` });
    }
    // A soft-deleted record still has its fields: they travel too, so both sides agree on them.
    if (softDeleted) events.push({ op: 'delete', ...common });
  }
  return out;
}

async function wireValue(context: EngineContext, db: AnyKysely, mapping: SyncMapping, type: 'value' | 'user', value: unknown): Promise<WireValue> {
  if (type === 'user' && context.users !== undefined) return context.users.toWire(db, value, mapping.sync.users);
  return toWire(value);
}
