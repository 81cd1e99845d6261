import type { ReadAheadMode } from '../config/types.js';
import type { AnyKysely, DialectAdapter } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';
import type { MappedTable, SyncMapping } from '../mapping/sync-mapping.js';
import type { BatchEvent, DeleteEvent, UpsertEvent } from '../protocol/batch.js';
import { append } from '../group-by.js';
import { maxEventsPerBuiltBatch } from './batch-builder.js';
import { readVersions } from './field-versions.js';
import { journalPassSize } from './journal-reader.js';
import { localIdsFor, readLinks } from './links.js';
import { chunks } from './outbox.js';

/**
 * Fewer changes than this are left to the batch's own transaction: their
 * pages are few, and the read-ahead's round trips would cost more than the
 * waits they save.
 */
export const readAheadMinimum = 32;

/**
 * Records per connection at least: a few dozen records' pages cost the
 * database less than the round trips of splitting them further, when they
 * are in its cache already.
 */
const recordsPerConnection = 64;

/**
 * Under `readAhead: auto`, the read-ahead runs while the server reads at
 * least this many pages a second from the disk. With the tables in its
 * cache it reads none, and the read-ahead only repeats the transaction's
 * reads: at 2,000 changes/s with a 1 GB buffer pool, reading ahead on every
 * batch gave the benchmark a p99 of 892 ms, against 539 ms under this rule
 * (README, Benchmark).
 */
export const readAheadMinimumDiskReads = 100;

/** How long one look at the server's disk reads decides for, in ms: one status query a second at most. */
const lookEveryMs = 1000;

/** A look older than this says nothing about now (the daemon was idle): the next one starts afresh. */
const lookForgottenMs = 10_000;

/**
 * Decides, for one instance, on how many connections to read ahead now: the
 * dialect's number, or none. Under `auto` it looks at most once a second at
 * the counter of pages the server has read from the disk, and reads ahead
 * while that counter grows by `readAheadMinimumDiskReads` a second or more,
 * and when it has no recent look to go by. The read-ahead's own reads count
 * too, so once the tables fit the cache it stops itself, and once they no
 * longer do the transactions' own reads turn it on again. A server that
 * will not tell (the status query fails) is read ahead of always, as
 * before this rule: a look must never stop an exchange.
 */
export class ReadAheadGate {
  #look: { reads: number; at: number } | undefined;
  #reading = true;
  #unreadable = false;

  constructor(
    private readonly adapter: Pick<DialectAdapter, 'readAheadConnections' | 'diskPageReads'>,
    private readonly mode: ReadAheadMode = 'auto',
  ) {}

  async connections(db: AnyKysely): Promise<number> {
    const { readAheadConnections, diskPageReads } = this.adapter;
    if (readAheadConnections < 1 || this.mode === 'never') return 0;
    if (this.mode === 'always' || diskPageReads === undefined || this.#unreadable) return readAheadConnections;
    const now = performance.now();
    const last = this.#look;
    if (last !== undefined && now - last.at < lookEveryMs) return this.#reading ? readAheadConnections : 0;
    let reads: number;
    try {
      reads = await diskPageReads(db);
    } catch {
      this.#unreadable = true;
      return readAheadConnections;
    }
    this.#reading = last === undefined || now - last.at > lookForgottenMs || ((reads - last.reads) * 1000) / (now - last.at) >= readAheadMinimumDiskReads;
    this.#look = { reads, at: now };
    return this.#reading ? readAheadConnections : 0;
  }
}

/**
 * Reads the records that a batch of changes will update or delete, with
 * their links and their field versions, on `connections` connections at
 * once, before the batch's transaction begins, and keeps none of it: the
 * point is the database's cache.
 *
 * A steady stream of changes touches records all over a table. When the
 * tables do not fit the server's cache (InnoDB's buffer pool), each record
 * costs the applying transaction a few reads from the disk, one after the
 * other, while it holds its locks and while the application's own
 * connections read from the same disk. With MariaDB's default 128 MB pool
 * and two million-row tables, that made a batch of 1,000 changes take
 * 650 ms and let the backlog grow. Read ahead on four connections, the same
 * pages come in side by side, and the transaction finds them in the cache.
 *
 * The transaction reads everything again, under its locks: nothing read
 * here decides anything. Returns how many of the batch's records were found
 * linked (and so read ahead).
 */
export async function readAhead(db: AnyKysely, mapping: SyncMapping, events: readonly BatchEvent[], gate: ReadAheadGate): Promise<number> {
  const changes = events.filter((e): e is UpsertEvent | DeleteEvent => e.op === 'upsert' || e.op === 'delete');
  if (changes.length < readAheadMinimum) return 0;
  const connections = await gate.connections(db);
  if (connections < 1) return 0;
  const byTable = new Map<number, string[]>();
  for (const event of changes) append(byTable, event.table, event.id);
  let found = 0;
  for (const [number, peerIds] of byTable) {
    const table = mapping.tablesByNumber.get(number);
    if (table === undefined) continue;
    const linked = await Promise.all(split(peerIds, connections).map((ids) => localIdsFor(db, mapping.name, number, ids)));
    const localIds = linked.flatMap((links) => [...links.values()]);
    found += localIds.length;
    await readRecords(db, table, localIds, connections);
  }
  return found;
}

/**
 * The sending side's read-ahead, for the same reason: the records of the
 * journal's next pass and of the outbox's next batch, with their field
 * versions and links, read before the transaction that absorbs the journal
 * and builds the batch. Returns how many records it read ahead.
 */
export async function readAheadOutgoing(db: AnyKysely, mapping: SyncMapping, gate: ReadAheadGate): Promise<number> {
  const connections = await gate.connections(db);
  if (connections < 1) return 0;
  const journal = (await db.selectFrom(stateTables.journal).select(['table_name', 'record_id']).orderBy('seq').limit(journalPassSize).execute()) as {
    table_name: string;
    record_id: string;
  }[];
  const outbox = (await db
    .selectFrom(stateTables.outbox)
    .select(['table_number', 'record_id'])
    .where('sync_name', '=', mapping.name)
    .orderBy('changed_at')
    .limit(maxEventsPerBuiltBatch)
    .execute()) as { table_number: number; record_id: string }[];
  const byTable = new Map<MappedTable, string[]>();
  const rows = [
    ...journal.map((row) => ({ table: mapping.tablesByName.get(row.table_name), id: row.record_id })),
    ...outbox.map((row) => ({ table: mapping.tablesByNumber.get(row.table_number), id: row.record_id })),
  ];
  for (const { table, id } of rows) if (table !== undefined) append(byTable, table, id);
  // A record in both the journal and the outbox is read once.
  const records = [...byTable].map(([table, ids]) => ({ table, localIds: [...new Set(ids)] }));
  const found = records.reduce((n, { localIds }) => n + localIds.length, 0);
  if (found < readAheadMinimum) return 0;
  for (const { table, localIds } of records) {
    await Promise.all([readRecords(db, table, localIds, connections), ...split(localIds, connections).map((part) => readLinks(db, mapping.name, table.number, part))]);
  }
  return found;
}

/** One table's records and their field versions, by our ids, on up to `connections` connections at once. */
async function readRecords(db: AnyKysely, table: MappedTable, localIds: readonly string[], connections: number): Promise<void> {
  await Promise.all(
    split(localIds, connections).flatMap((ids) => [
      (async () => {
        for (const chunk of chunks(ids, 500)) await db.selectFrom(table.name).select(table.key).where(table.key, 'in', chunk).execute();
      })(),
      readVersions(db, table.name, ids),
    ]),
  );
}

/** `items` in order, in runs of about equal length: at least `recordsPerConnection` each, one per connection at most. */
function split<T>(items: readonly T[], connections: number): T[][] {
  const runs = Math.min(connections, Math.ceil(items.length / recordsPerConnection));
  const size = Math.ceil(items.length / runs);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
