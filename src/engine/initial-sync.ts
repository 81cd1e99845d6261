import type { AnyKysely } from '../db/dialect.js';
import { readKeysetPage } from '../db/keyset.js';
import { stateTables } from '../db/state-names.js';
import { UsageError } from '../errors.js';
import { groupBy } from '../group-by.js';
import type { MappedField, MappedTable, SyncMapping } from '../mapping/sync-mapping.js';
import type { InitialEvent, InitialStartEvent, WireValue } from '../protocol/batch.js';
import { queueBatch } from './batch-builder.js';
import type { EngineContext } from './context.js';
import { readCursor, readSeq, writeCursor } from './cursors.js';
import { initialStart } from './initial-start.js';
import { readLinks, readOrigins } from './links.js';
import { toWire } from './values.js';

/** What one initial sync sends: a table of a sync, whole or one field of it. */
export interface InitialSyncPart {
  readonly mapping: SyncMapping;
  readonly table: MappedTable;
  /** Only this field (and no new records on the peer unless `create`). */
  readonly field?: MappedField;
  readonly create: boolean;
}

export interface InitialSyncProgress {
  readonly sync: string;
  readonly table: string;
  readonly field?: string;
  /** Rows of this part queued so far, resumed runs included. */
  readonly queued: number;
  /** Rows of this part in all. */
  readonly total: number;
  readonly done: boolean;
}

/** Timing and sizes; defaults suit a million rows over a LAN. */
export interface InitialSyncPolicy {
  /**
   * Rows read per chunk at most; a chunk also stops before the transport's batch size limit. Default
   * 5,000: the receiving daemon holds a batch whole while it applies it (and the next few as they
   * arrive), so its memory follows the size of a batch, never the size of the table.
   */
  readonly chunkRows: number;
  /**
   * Batches waiting for the peer's acknowledgement before the next chunk is read. Default 6: enough
   * to keep the receiving daemon applying while an acknowledgement travels back and the next chunk
   * is read (with 4 it sat idle a sixth of the time, and the benchmark's million rows went at
   * 20,000 to 22,000 rows/s against 25,000 to 26,500 with 6; the receiver's peak memory went from
   * about 226 MB to 229 to 242), and 2 short of the daemon's window of 8, so that the
   * application's own changes meanwhile still find room.
   */
  readonly window: number;
  /** How often the queue is looked at while waiting, in ms. Default 50. */
  readonly pollMs: number;
}

export const defaultInitialSyncPolicy: InitialSyncPolicy = { chunkRows: 5_000, window: 6, pollMs: 50 };

interface Position {
  /** The key of the last row queued, as text; null before the first. */
  last: string | null;
  queued: number;
  done: boolean;
}

/** Picks the parts named on the command line: every table of every sync, one sync, one table, or one field. */
export function initialSyncParts(
  context: EngineContext,
  options: { sync?: string; table?: number; field?: number; create: boolean },
): InitialSyncPart[] {
  const mappings = options.sync === undefined ? context.mappings : context.mappings.filter((m) => m.name === options.sync);
  if (options.sync !== undefined && mappings.length === 0) {
    throw new UsageError(`${context.config.file} has no sync named "${options.sync}" (its syncs: ${context.mappings.map((m) => m.name).join(', ')})`);
  }
  if ((options.table !== undefined || options.field !== undefined) && mappings.length !== 1) {
    throw new UsageError('--table and --field need --sync when the instance has several syncs (numbers belong to a sync)');
  }
  const parts: InitialSyncPart[] = [];
  for (const mapping of mappings) {
    for (const table of mapping.tablesByNumber.values()) {
      if (options.table !== undefined && table.number !== options.table) continue;
      if (options.field === undefined) {
        parts.push({ mapping, table, create: true });
        continue;
      }
      const field = table.fieldsByNumber.get(options.field);
      if (field === undefined) continue;
      if (!field.sends) throw new UsageError(`field ${field.number} (${table.name}.${field.column}) is ${field.direction} here: it never travels from this side`);
      parts.push({ mapping, table, field, create: options.create });
    }
  }
  if (parts.length === 0) {
    const what = options.field !== undefined ? `field ${options.field}` : `table ${options.table ?? '?'}`;
    throw new UsageError(`no synced ${what} in ${mappings.map((m) => `sync "${m.name}"`).join(', ')}`);
  }
  return parts;
}

/**
 * Queues every existing row of each part as batches for the daemon to send
 * (`tablesync run`), reading in key order in chunks (keyset pagination:
 * never OFFSET, never the whole table in memory). Each chunk is queued in
 * one transaction with the position reached, so a crash or a stop resumes
 * where it left off. Waits while the peer has not acknowledged `window`
 * batches, so the queue never outgrows what the peer takes.
 *
 * Changes the application makes meanwhile travel as ordinary changes,
 * numbered after the chunk that read the older value: they are not lost and
 * do not go backwards.
 */
export class InitialSync {
  #stopped = false;
  /** Per sync, the start that its next chunk carries (see announce). */
  readonly #starts = new Map<string, InitialStartEvent>();

  constructor(
    private readonly context: EngineContext,
    private readonly parts: readonly InitialSyncPart[],
    private readonly maxBatchBytes: number,
    private readonly onProgress: (progress: InitialSyncProgress) => void,
    private readonly policy: InitialSyncPolicy = defaultInitialSyncPolicy,
  ) {}

  /** Finishes the chunk in hand, then returns; the next run resumes. */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Starts this initial sync for each sync whose parts begin from their
   * first row (a resumed run was announced when it began): the start, which
   * asks the peer to back itself up first unless `backup` is false, travels
   * at the head of the sync's first chunk, so that the peer backs up right
   * before the rows that change it, and never for a run that sent nothing.
   * Returns the run's id by sync name, which the peer's answer names (see
   * readPeerBackup).
   */
  async announce(backup: boolean): Promise<Map<string, string>> {
    const runs = new Map<string, string>();
    for (const [mapping, parts] of groupBy(this.parts, (p) => p.mapping)) {
      const fresh: number[] = [];
      for (const part of parts) if ((await readCursor(this.context.database.kysely, mapping.name, cursorName(part))) === undefined) fresh.push(part.table.number);
      if (fresh.length === 0) continue;
      const start = initialStart([...new Set(fresh)], backup);
      this.#starts.set(mapping.name, start);
      runs.set(mapping.name, start.id);
    }
    return runs;
  }

  async run(): Promise<{ rows: number; lastSeq: number }> {
    let rows = 0;
    let lastSeq = 0;
    for (const part of this.parts) {
      const total = await this.#count(part);
      for (;;) {
        if (this.#stopped) return { rows, lastSeq };
        await this.#waitForRoom(part.mapping.name);
        const chunk = await this.context.database.transaction((db) => this.#queueChunk(db, part));
        if (chunk.seq !== undefined) this.#starts.delete(part.mapping.name);
        this.onProgress({ ...this.#describe(part), queued: chunk.position.queued, total, done: chunk.position.done });
        if (chunk.seq !== undefined) lastSeq = Math.max(lastSeq, chunk.seq);
        rows += chunk.rows;
        if (chunk.position.done) break;
      }
    }
    return { rows, lastSeq };
  }

  /** Resolves once the peer has acknowledged every batch up to `seq` of every part's sync. */
  async acknowledged(seq: number): Promise<void> {
    const syncs = [...new Set(this.parts.map((p) => p.mapping.name))];
    for (;;) {
      const acked = await Promise.all(syncs.map((sync) => readSeq(this.context.database.kysely, sync, 'acked')));
      if (acked.every((a) => a >= seq) || this.#stopped) return;
      await sleep(this.policy.pollMs * 4);
    }
  }

  #describe(part: InitialSyncPart): { sync: string; table: string; field?: string } {
    return { sync: part.mapping.name, table: part.table.name, ...(part.field === undefined ? {} : { field: part.field.column }) };
  }

  async #count(part: InitialSyncPart): Promise<number> {
    const row = (await this.context.database.kysely
      .selectFrom(part.table.name)
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirst()) as { n: number | string } | undefined;
    return Number(row?.n ?? 0);
  }

  async #waitForRoom(sync: string): Promise<void> {
    for (;;) {
      const row = (await this.context.database.kysely
        .selectFrom(stateTables.batchesOut)
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where('sync_name', '=', sync)
        .executeTakeFirst()) as { n: number | string } | undefined;
      if (Number(row?.n ?? 0) < this.policy.window || this.#stopped) return;
      await sleep(this.policy.pollMs);
    }
  }

  async #queueChunk(db: AnyKysely, part: InitialSyncPart): Promise<{ rows: number; seq?: number; position: Position }> {
    const { mapping, table } = part;
    const cursor = cursorName(part);
    const lock = this.context.database.adapter.lockingReads;
    const stored = await readCursor(db, mapping.name, cursor, lock);
    const position: Position = stored === undefined ? { last: null, queued: 0, done: false } : (JSON.parse(stored) as Position);
    if (position.done) return { rows: 0, position };

    const fields = part.field === undefined ? table.fields.filter((f) => f.sends) : [part.field];
    const status = table.config.status;
    const rows = await readKeysetPage(
      db,
      table.name,
      [...fields.map((f) => f.column), ...(status === undefined ? [] : [status.column])],
      [table.key],
      position.last === null ? undefined : [position.last],
      this.policy.chunkRows,
    );
    if (rows.length === 0) {
      const finished = { ...position, done: true };
      await writeCursor(db, mapping.name, cursor, JSON.stringify(finished));
      return { rows: 0, position: finished };
    }

    const ids = rows.map((r) => String(r[table.key]));
    const links = await readLinks(db, mapping.name, table.number, ids);
    const origins = await readOrigins(db, this.context, table.name, ids, { sync: mapping.name, links });
    const start = this.#starts.get(mapping.name);
    const events: (InitialEvent | InitialStartEvent)[] = start === undefined ? [] : [start];
    const serialized = events.map((event) => JSON.stringify(event));
    // The batch must fit the transport: stop before the row that would overflow it (the first one always goes).
    let bytes = 512 + (serialized[0]?.length ?? 0);
    const firstRow = events.length;
    for (const row of rows) {
      const id = String(row[table.key]);
      const record: Record<string, WireValue> = {};
      for (const field of fields) {
        record[field.number] =
          field.type === 'user' && this.context.users !== undefined ? await this.context.users.toWire(db, row[field.column], mapping.sync.users) : toWire(row[field.column]);
      }
      const peerId = links.get(id);
      const event: InitialEvent = {
        op: 'initial',
        table: table.number,
        id,
        ...(peerId === undefined ? {} : { peerId }),
        origin: origins.get(id) ?? `${this.context.config.instance}/${id}`,
        record,
        create: part.create,
        ...(status !== undefined && String(row[status.column]) === String(status.deleted) ? { deleted: true } : {}),
      };
      const text = JSON.stringify(event);
      const size = Buffer.byteLength(text) + 1;
      if (events.length > firstRow && bytes + size > this.maxBatchBytes) break;
      bytes += size;
      events.push(event);
      serialized.push(text);
    }

    const { seq } = (await queueBatch(this.context, db, mapping.name, events, serialized)).batch;
    const sent = events.length - firstRow;
    // At least one row went (the first always does), so the last event is a row's.
    const last = events.at(-1)?.id ?? position.last;
    const next: Position = { last, queued: position.queued + sent, done: false };
    await writeCursor(db, mapping.name, cursor, JSON.stringify(next));
    return { rows: sent, seq, position: next };
  }
}

export function cursorName(part: Pick<InitialSyncPart, 'table' | 'field'>): `initial:${string}` {
  return `initial:${part.table.number}${part.field === undefined ? '' : `:${part.field.number}`}`;
}

/** Forgets how far earlier runs came, so that the next run starts again from the first row. */
export async function restartInitialSync(context: EngineContext, parts: readonly InitialSyncPart[]): Promise<void> {
  await context.database.transaction(async (db) => {
    for (const part of parts) {
      await db.deleteFrom(stateTables.cursors).where('sync_name', '=', part.mapping.name).where('name', '=', cursorName(part)).execute();
    }
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
