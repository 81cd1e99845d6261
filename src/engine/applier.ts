import { sql } from 'kysely';
import { append } from '../group-by.js';
import type { AnyKysely } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';
import type { ColumnSchema } from '../db/schema-types.js';
import { updateRows, type RowUpdate } from '../db/update-rows.js';
import type { MappedField, MappedTable, SyncMapping } from '../mapping/sync-mapping.js';
import { isInitialStartMessage, type Batch, type BatchEvent, type DeleteEvent, type InitialEvent, type LinksEvent, type RecordEvent, type TableEvent, type UpsertEvent, type WireValue } from '../protocol/batch.js';
import { InitialApplier } from './initial-applier.js';
import { queueBatch } from './batch-builder.js';
import { BatchRefused } from '../protocol/decode.js';
import { closeConflicts, conflictFieldKey, conflictWinner, openConflictFields, recordConflict } from './conflicts.js';
import type { EngineContext } from './context.js';
import { readCursor, readSeq, writeCursor } from './cursors.js';
import { readVersions, versionOf, writeVersions, type RecordVersions } from './field-versions.js';
import { absorbJournal, journalPassSize } from './journal-reader.js';
import { bornAtPeer, localIdFor, localIdsFor, recordByOrigin, writeLink, writeLinks, writeOrigins } from './links.js';
import { chunks, OutboxWriter } from './outbox.js';
import { readAhead } from './read-ahead.js';
import { checkWire, fromWire, toWire } from './values.js';
import { VersionClock } from './versions.js';
import { VerifyDesk } from './verify-desk.js';
import { isVerifyEvent } from '../protocol/verify-events.js';
import { InitialStarts } from './initial-start.js';

export interface ApplyStats {
  events: number;
  created: number;
  updated: number;
  deleted: number;
  conflicts: number;
  parked: number;
}

export type ApplyOutcome =
  /** `readAhead`: how many of its records were read ahead of its transaction (see read-ahead.ts). */
  | { readonly kind: 'applied'; readonly stats: ApplyStats; readonly readAhead: number }
  /** Only an acknowledgement (seq 0). */
  | { readonly kind: 'ack' }
  /** Applied before: skipped; the peer should hear our acknowledgement again. */
  | { readonly kind: 'duplicate' }
  /** Arrived before the batch it follows: left where it is for later. */
  | { readonly kind: 'early'; readonly expected: number };

type FieldChange = UpsertEvent['fields'][string];

/** A change of the peer's and the record of ours it applies to. */
interface UpdateTarget {
  readonly event: UpsertEvent;
  readonly localId: string;
}

/**
 * Per table, the links (the peer's id → ours) that the records a batch names had before it was
 * applied, read once for the whole batch; a table missing from it is looked up when applied.
 */
type LinkedBefore = ReadonlyMap<MappedTable, ReadonlyMap<string, string>>;

/** Link pairs per queued batch: ids of up to 191 characters still keep one under 8 MiB. */
const linksPerBatch = 10_000;

export const emptyStats = (): ApplyStats => ({ events: 0, created: 0, updated: 0, deleted: 0, conflicts: 0, parked: 0 });

/**
 * Applies the peer's batches of one sync: each in one transaction together
 * with the cursor that records it as applied, in sequence order, skipping
 * what was applied before. A change the database refuses (a constraint, a
 * value too long) is parked with its reason; the rest of the batch goes on.
 */
export class BatchApplier {
  readonly #initial: InitialApplier;
  /** `tablesync verify`'s requests and replies: answered or stored here, in the batch's transaction. */
  readonly #verify: VerifyDesk;
  /** Initial syncs' starts: the safety backup taken before a start is applied, and the answers about it. */
  readonly #starts: InitialStarts;
  /** The sending instance of the batch in hand. */
  #from: string | undefined;

  constructor(
    private readonly context: EngineContext,
    private readonly mapping: SyncMapping,
  ) {
    this.#verify = new VerifyDesk(context, mapping);
    this.#starts = new InitialStarts(context, mapping);
    this.#initial = new InitialApplier(context, mapping, (db, table, fieldNumber, wire, peerRecord) => {
      const field = table.fieldsByNumber.get(fieldNumber);
      return field === undefined ? undefined : this.localValue(db, table, field, wire, peerRecord);
    });
  }

  private get sync(): string {
    return this.mapping.name;
  }

  /** Refuses what no well-behaved peer sends; nothing is read or written before this passes. */
  validate(batch: Batch): void {
    if (batch.sync !== this.sync) throw new BatchRefused(`the batch is for sync "${batch.sync}", not "${this.sync}"`);
    if (batch.from === this.context.config.instance) {
      throw new BatchRefused(`the batch comes from this instance (${batch.from}) itself; the upload and download places must differ`);
    }
    batch.events.forEach((event, index) => {
      // A verify event names no field to write; the desk answers what it cannot verify instead of refusing the batch.
      if (isVerifyEvent(event) || isInitialStartMessage(event)) return;
      const where = `event ${index}`;
      const table = this.mapping.tablesByNumber.get(event.table);
      if (table === undefined) throw new BatchRefused(`${where} names table ${event.table}, which sync "${this.sync}" does not sync here`);
      if (event.op === 'delete' || event.op === 'links') return;
      const check = (number: string, value: WireValue): void => {
        const field = table.fieldsByNumber.get(Number(number));
        if (field === undefined) throw new BatchRefused(`${where} names field ${number}, which table ${table.number} (${table.name}) does not sync here`);
        if (field.type === 'user' && value !== null && typeof value !== 'string') {
          throw new BatchRefused(`${where}: field ${number} (${table.name}.${field.column}) is a user reference and must travel as text`);
        }
        const reason = field.type === 'user' ? undefined : checkWire(value, this.column(table, field));
        if (reason !== undefined) throw new BatchRefused(`${where}: field ${number}: ${table.name}.${reason}`);
      };
      if (event.op === 'upsert') for (const [number, change] of Object.entries(event.fields)) check(number, change.value);
      for (const [number, value] of Object.entries(event.record ?? {})) check(number, value);
    });
  }

  /** Throws SafetyBackupFailed, applying nothing, when the batch starts an initial sync and the backup it asks for fails. */
  async apply(batch: Batch): Promise<ApplyOutcome> {
    this.validate(batch);
    await this.#starts.prepare(batch);
    const { database } = this.context;
    const lock = database.adapter.lockingReads;
    const readAheadRecords = await readAhead(database.kysely, this.mapping, batch.events, this.context.readAhead);
    return database.asApplier(async (db) => {
      const inSeq = await readSeq(db, this.sync, 'in', lock);
      const peer = await readCursor(db, this.sync, 'peer');
      if (peer !== undefined && peer !== batch.from) {
        throw new BatchRefused(`the batch says it comes from "${batch.from}", but the peer of sync "${this.sync}" is "${peer}"`);
      }
      if (peer === undefined) await writeCursor(db, this.sync, 'peer', batch.from);
      await this.acknowledged(db, batch.ack);
      if (batch.seq === 0) return { kind: 'ack' };
      if (batch.seq <= inSeq) return { kind: 'duplicate' };
      if (batch.seq > inSeq + 1) return { kind: 'early', expected: inSeq + 1 };

      const clock = await VersionClock.load(db, this.context.config.instance, lock);
      const linkedBefore = lock ? await this.lockTargets(db, batch.events) : undefined;
      // Versions must include every change the application made before ours, or a conflict would go unseen.
      while ((await absorbJournal(this.context, db, clock)) === journalPassSize);

      const stats = emptyStats();
      const outbox = new OutboxWriter();
      this.#from = batch.from;
      const initial = batch.events.filter((e): e is InitialEvent => e.op === 'initial');
      const starts = batch.events.filter(isInitialStartMessage);
      if (initial.length > 0 && initial.length + starts.length === batch.events.length) {
        // An initial sync's batch, the first of which begins with the sync's start.
        for (const start of starts) await this.#starts.apply(db, start);
        await this.applyInitialBatch(db, initial, batch.seq, stats, outbox, linkedBefore);
      } else {
        await this.applyEvents(db, batch.events, batch.seq, stats, outbox, linkedBefore);
      }
      await outbox.flush(db, this.context.database.adapter);
      await writeCursor(db, this.sync, 'in', batch.seq);
      // In the batch's own transaction: a separate one would cost the receiver a commit per batch.
      await writeCursor(db, this.sync, 'last-in-at', Date.now());
      await this.confirmLinks(db, outbox);
      await clock.save(db);
      return { kind: 'applied', stats, readAhead: readAheadRecords };
    });
  }

  /**
   * An initial sync's batch, table by table in bulk; when the database
   * refuses part of it, that table's events are applied one by one so that
   * only the refused records are parked.
   */
  private async applyInitialBatch(
    db: AnyKysely,
    events: readonly InitialEvent[],
    batchSeq: number,
    stats: ApplyStats,
    outbox: OutboxWriter,
    linkedBefore: LinkedBefore | undefined,
  ): Promise<void> {
    for (const [table, tableEvents] of this.byTable(events)) {
      const applied = await this.tryBulk(db, tableEvents.length, stats, outbox, async (bulkStats, bulkOutbox) =>
        this.#initial.apply(db, table, tableEvents, await this.#peer(db), bulkStats, bulkOutbox, linkedBefore?.get(table)),
      );
      if (!applied) for (const event of tableEvents) await this.applyOrPark(db, event, batchSeq, stats, outbox);
    }
  }

  /**
   * An ordinary batch. Changes to records linked already, the bulk of any
   * steady stream, are applied table by table with a few queries for all of
   * them rather than several per change. The rest (new records, deletes,
   * links, a record the batch mentions twice) and any table whose bulk write
   * the database refused go event by event, in the batch's order, so that
   * only a refused change is parked.
   */
  private async applyEvents(
    db: AnyKysely,
    events: readonly BatchEvent[],
    batchSeq: number,
    stats: ApplyStats,
    outbox: OutboxWriter,
    linkedBefore: LinkedBefore | undefined,
  ): Promise<void> {
    const mentions = new Map<string, number>();
    const mentionKey = (event: Exclude<TableEvent, LinksEvent>): string => `${event.table}\u0000${event.id}`;
    for (const event of events) if (event.op !== 'links' && !isInitialStartMessage(event)) mentions.set(mentionKey(event), (mentions.get(mentionKey(event)) ?? 0) + 1);
    const upserts = events.filter((e): e is UpsertEvent => e.op === 'upsert' && mentions.get(mentionKey(e)) === 1);

    const done = new Set<BatchEvent>();
    for (const [table, tableEvents] of this.byTable(upserts)) {
      const linked = linkedBefore?.get(table) ?? (await localIdsFor(db, this.sync, table.number, tableEvents.map((e) => e.id)));
      const targets = tableEvents.flatMap((event) => {
        const localId = linked.get(event.id);
        return localId === undefined ? [] : [{ event, localId }];
      });
      if (targets.length === 0) continue;
      const applied = await this.tryBulk(db, targets.length, stats, outbox, (bulkStats, bulkOutbox) => this.updateRecords(db, table, targets, bulkStats, bulkOutbox));
      if (applied) for (const { event } of targets) done.add(event);
    }
    for (const event of events) {
      if (done.has(event)) continue;
      // Not parked when it fails: it writes only tablesync's own tables, so a failure is not the data's.
      if (isInitialStartMessage(event)) await this.#starts.apply(db, event);
      else await this.applyOrPark(db, event, batchSeq, stats, outbox);
    }
  }

  /** Events grouped by the table they name here, in order; a table not synced here has none. */
  private byTable<E extends TableEvent>(events: readonly E[]): Map<MappedTable, E[]> {
    const out = new Map<MappedTable, E[]>();
    for (const event of events) {
      const table = this.mapping.tablesByNumber.get(event.table);
      if (table !== undefined) append(out, table, event);
    }
    return out;
  }

  /**
   * Runs the bulk write of `count` events under a savepoint. When the
   * database refuses some of its data, undoes it all and returns false: the
   * caller then applies those events one by one, parking only what is
   * refused. Counts and outbox entries are kept only when it succeeds.
   */
  private async tryBulk(
    db: AnyKysely,
    count: number,
    stats: ApplyStats,
    outbox: OutboxWriter,
    work: (stats: ApplyStats, outbox: OutboxWriter) => Promise<void>,
  ): Promise<boolean> {
    const own = new OutboxWriter();
    const ownStats = emptyStats();
    await sql.raw('SAVEPOINT tablesync_bulk').execute(db);
    try {
      await work(ownStats, own);
      await sql.raw('RELEASE SAVEPOINT tablesync_bulk').execute(db);
    } catch (err) {
      if (this.context.database.adapter.dataErrorReason(err) === undefined) throw err;
      await sql.raw('ROLLBACK TO SAVEPOINT tablesync_bulk').execute(db);
      await sql.raw('RELEASE SAVEPOINT tablesync_bulk').execute(db);
      return false;
    }
    outbox.absorb(own);
    for (const key of Object.keys(stats) as (keyof ApplyStats)[]) stats[key] += ownStats[key];
    stats.events += count;
    return true;
  }

  /**
   * Queues the links an initial batch made as batches of `links` events for
   * their syncs, numbered after what is queued already, a few thousand
   * pairs each so that a batch stays well within any transport's limit.
   */
  private async confirmLinks(db: AnyKysely, outbox: OutboxWriter): Promise<void> {
    for (const [sync, tables] of outbox.takeLinks()) {
      for (const [table, pairs] of tables) {
        for (const chunk of chunks(pairs, linksPerBatch)) await queueBatch(this.context, db, sync, [{ op: 'links', table, pairs: chunk }]);
      }
    }
  }

  /** The peer's instance name: the batch's sender, or (retrying a parked change) the one recorded. */
  async #peer(db: AnyKysely): Promise<string> {
    this.#from ??= (await readCursor(db, this.sync, 'peer')) ?? '';
    return this.#from;
  }

  /** Applies one event, or parks it with the reason the database gave. */
  private async applyOrPark(db: AnyKysely, event: TableEvent, batchSeq: number, stats: ApplyStats, outbox: OutboxWriter): Promise<void> {
    const reason = await this.tryEvent(db, event, stats, outbox);
    if (reason === undefined) return;
    await db
      .insertInto(stateTables.parked)
      .values({
        sync_name: this.sync,
        batch_seq: batchSeq,
        table_number: event.table,
        peer_record_id: event.op === 'links' ? `${event.pairs.length} links` : event.id,
        event: JSON.stringify(event),
        reason,
        parked_at: Date.now(),
        attempts: 1,
      })
      .execute();
    stats.parked += 1;
    this.context.logger.warn({ sync: this.sync, table: event.table, event: event.op, reason }, 'change parked: the database refused it');
  }

  /**
   * Applies one event under a savepoint. When the database refuses its data,
   * only the event's own writes are undone and the reason is returned; any
   * other error ends the whole transaction.
   */
  async tryEvent(db: AnyKysely, event: TableEvent, stats: ApplyStats, outbox: OutboxWriter): Promise<string | undefined> {
    const own = new OutboxWriter();
    await sql.raw('SAVEPOINT tablesync_event').execute(db);
    try {
      await this.applyEvent(db, event, stats, own);
      await sql.raw('RELEASE SAVEPOINT tablesync_event').execute(db);
      outbox.absorb(own);
      stats.events += 1;
      return undefined;
    } catch (err) {
      const reason = this.context.database.adapter.dataErrorReason(err);
      if (reason === undefined) throw err;
      await sql.raw('ROLLBACK TO SAVEPOINT tablesync_event').execute(db);
      await sql.raw('RELEASE SAVEPOINT tablesync_event').execute(db);
      return reason;
    }
  }

  private async acknowledged(db: AnyKysely, ack: number): Promise<void> {
    if (ack <= (await readSeq(db, this.sync, 'acked'))) return;
    await db.deleteFrom(stateTables.batchesOut).where('sync_name', '=', this.sync).where('seq', '<=', ack).execute();
    await writeCursor(db, this.sync, 'acked', ack);
  }

  /**
   * MySQL: lock the records the batch touches first, so no application write can slip in between
   * our checks and our writes. Returns the links it read on the way (see LinkedBefore), so that
   * applying does not look them up again.
   */
  private async lockTargets(db: AnyKysely, events: readonly BatchEvent[]): Promise<LinkedBefore> {
    const records = events.filter((e): e is Exclude<RecordEvent, LinksEvent> => e.op !== 'links' && !isVerifyEvent(e) && !isInitialStartMessage(e));
    const linkedBefore = new Map<MappedTable, ReadonlyMap<string, string>>();
    for (const [table, tableEvents] of this.byTable(records)) {
      const linked = await localIdsFor(db, this.sync, table.number, tableEvents.map((e) => e.id));
      linkedBefore.set(table, linked);
      const ids = tableEvents.map((e) => linked.get(e.id) ?? e.peerId).filter((id) => id !== undefined);
      for (const chunk of chunks(ids, 500)) await db.selectFrom(table.name).select(table.key).where(table.key, 'in', chunk).forUpdate().execute();
    }
    return linkedBefore;
  }

  private async applyEvent(db: AnyKysely, event: TableEvent, stats: ApplyStats, outbox: OutboxWriter): Promise<void> {
    if (isVerifyEvent(event)) return this.#verify.apply(db, event, outbox);
    const table = this.mapping.tablesByNumber.get(event.table);
    if (table === undefined) return;
    if (event.op === 'initial') return this.#initial.apply(db, table, [event], await this.#peer(db), stats, outbox);
    if (event.op === 'links') return this.applyLinks(db, table, event);
    const localId = await this.resolveLocal(db, table, event);
    if (event.op === 'delete') return this.applyDelete(db, table, localId, stats, outbox);
    if (localId !== undefined) return this.updateRecords(db, table, [{ event, localId }], stats, outbox);
    // Reached us by another path already (a ring): link it, then treat this as an update.
    const known = event.origin === undefined ? undefined : await recordByOrigin(db, this.context, table.name, event.origin);
    if (known !== undefined && (await this.unlinked(db, table, known))) {
      await writeLink(db, this.sync, table.number, { localId: known, peerId: event.id, bornThere: false });
      return this.updateRecords(db, table, [{ event, localId: known }], stats, outbox);
    }
    return this.create(db, table, event, stats, outbox);
  }

  /**
   * Links the peer confirms in bulk: (its id, our id) pairs. A pair whose record of ours, or of
   * theirs, is linked already is left out by the insert itself: an initial sync confirms every
   * record it sent, and looking each one up first cost as much as writing it.
   */
  private async applyLinks(db: AnyKysely, table: MappedTable, event: LinksEvent): Promise<void> {
    const links = event.pairs.map(([theirs, ours]) => ({ localId: ours, peerId: theirs, bornThere: false }));
    await writeLinks(db, this.sync, table.number, links, this.context.database.adapter.skipTaken);
  }

  /** Whether a record of ours exists and has no link in this sync yet. */
  private async unlinked(db: AnyKysely, table: MappedTable, localId: string): Promise<boolean> {
    const exists = await db.selectFrom(table.name).select(table.key).where(table.key, '=', localId).executeTakeFirst();
    if (exists === undefined) return false;
    const link = await db
      .selectFrom(stateTables.links)
      .select('peer_id')
      .where('sync_name', '=', this.sync)
      .where('table_number', '=', table.number)
      .where('local_id', '=', localId)
      .executeTakeFirst();
    return link === undefined;
  }

  /** Our record for the peer's: by link, else by the id the peer says we gave it. */
  private async resolveLocal(db: AnyKysely, table: MappedTable, event: UpsertEvent | DeleteEvent): Promise<string | undefined> {
    const linked = await localIdFor(db, this.sync, table.number, event.id);
    if (linked !== undefined) return linked;
    if (event.peerId === undefined || !(await this.unlinked(db, table, event.peerId))) return undefined;
    await writeLink(db, this.sync, table.number, { localId: event.peerId, peerId: event.id, bornThere: false });
    return event.peerId;
  }

  private async applyDelete(db: AnyKysely, table: MappedTable, localId: string | undefined, stats: ApplyStats, outbox: OutboxWriter): Promise<void> {
    const status = table.config.status;
    if (localId === undefined || status === undefined) return;
    await db.updateTable(table.name).set({ [status.column]: status.deleted }).where(table.key, '=', localId).execute();
    stats.deleted += 1;
    this.passOn(table, (sync, tableNumber) => outbox.deleted(sync, tableNumber, localId, Date.now()));
  }

  private async create(db: AnyKysely, table: MappedTable, event: UpsertEvent, stats: ApplyStats, outbox: OutboxWriter): Promise<void> {
    if (event.record === undefined) {
      // The peer believes we have this record, but we do not (deleted here for good): nothing to update.
      this.context.logger.debug({ sync: this.sync, table: table.number, peerRecord: event.id }, 'change for a record this side does not have');
      return;
    }
    const values: Record<string, unknown> = {};
    const incoming = { ...event.record, ...Object.fromEntries(Object.entries(event.fields).map(([n, c]) => [n, c.value])) };
    for (const [number, wire] of Object.entries(incoming)) {
      const field = table.fieldsByNumber.get(Number(number));
      if (field?.receives !== true) continue;
      const value = await this.localValue(db, table, field, wire, event.id);
      values[field.column] = value === undefined ? null : value;
    }
    if (Object.keys(values).length === 0) return;
    // Through the dialect: PostgreSQL reports no insert id, it returns the key (RETURNING).
    const [localId] = await this.context.database.adapter.insertNumbered(db, table.name, [values], table.key);
    // MySQL reports 0 for a table whose key it does not number.
    if (localId === undefined || localId === '0') throw new Error(`${table.name} did not number the new record; its key ${table.key} must be numbered by the database`);
    // Peers always send the origin with a full record; without one, the peer is the birthplace.
    const peer = await this.#peer(db);
    const origin = event.origin ?? `${peer}/${event.id}`;
    const bornThere = bornAtPeer(origin, peer, event.id);
    await writeLink(db, this.sync, table.number, { localId, peerId: event.id, bornThere });
    if (!bornThere) await writeOrigins(db, table.name, [{ localId, origin }]);
    const versions: RecordVersions = new Map([[localId, new Map()]]);
    for (const [number, change] of Object.entries(event.fields)) {
      const field = table.fieldsByNumber.get(Number(number));
      if (field?.receives === true) versions.get(localId)?.set(field.column, change.version);
    }
    await writeVersions(db, this.context.database.adapter, table.name, versions);
    stats.created += 1;
    // Tells the peer our id; and hands the new record to our other syncs.
    outbox.touch(this.sync, table.number, localId, Date.now());
    this.passOn(table, (sync, tableNumber) => outbox.touch(sync, tableNumber, localId, Date.now()));
    this.passOnFields(table, localId, versions, outbox);
  }

  /**
   * Applies the peer's changes to records linked here: for each changed
   * field, takes theirs, keeps ours (a conflict the rule gives to us), or
   * does nothing (both sides already agree). Reads versions, open conflicts
   * and (for conflicts only) current values with one query each for all the
   * records, then writes the records and their versions in bulk.
   */
  private async updateRecords(db: AnyKysely, table: MappedTable, targets: readonly UpdateTarget[], stats: ApplyStats, outbox: OutboxWriter): Promise<void> {
    const localIds = targets.map((t) => t.localId);
    const versions = await readVersions(db, table.name, localIds);
    const openConflicts = await openConflictFields(db, this.sync, table.number, localIds);
    // Changed on both sides since they last agreed. A field we never send ("download": take theirs,
    // never send ours) has no conflict: the peer's value always wins.
    const inConflict = (field: MappedField, change: FieldChange, local: string): boolean => change.version !== local && change.parent !== local && field.sends;
    const conflicting = targets.filter(({ event, localId }) =>
      this.incomingFields(table, event).some(([field, change]) => inConflict(field, change, versionOf(versions, localId, field.column))),
    );
    const current = await this.readRecords(db, table, conflicting.map((t) => t.localId));
    const taken: RecordVersions = new Map();
    const closing: { localId: string; fieldNumber: number; resolution: string }[] = [];
    const writes: RowUpdate[] = [];

    for (const { event, localId } of targets) {
      const takenHere = new Map<string, string>();
      taken.set(localId, takenHere);
      const parents = new Map<string, string>();
      const updates: Record<string, unknown> = {};
      const closeOpen = (field: MappedField, resolution: string): void => {
        if (openConflicts.has(conflictFieldKey(localId, field.number))) closing.push({ localId, fieldNumber: field.number, resolution });
      };

      for (const [field, change] of this.incomingFields(table, event)) {
        const local = versionOf(versions, localId, field.column);
        if (change.version === local) {
          closeOpen(field, 'both sides agree');
          continue;
        }
        if (inConflict(field, change, local)) {
          const rule = this.mapping.sync.conflicts;
          const winner = conflictWinner(rule, local, change.version, this.mapping.sync.mode === 'active');
          const ours = toWire(current.get(localId)?.[field.column]);
          stats.conflicts += 1;
          this.context.logger.warn(
            { sync: this.sync, table: table.name, record: localId, field: field.column, ours, theirs: change.value, ourVersion: local, theirVersion: change.version, rule, kept: winner },
            rule === 'manual' ? 'conflict: kept ours until someone resolves it' : `conflict: ${winner} kept by ${rule}`,
          );
          await recordConflict(db, {
            sync: this.sync,
            tableNumber: table.number,
            localId,
            fieldNumber: field.number,
            ours: ours === null ? null : JSON.stringify(ours),
            theirs: JSON.stringify(change.value),
            ourVersion: local,
            theirVersion: change.version,
            ...(rule === 'manual' ? {} : { resolution: `${rule}: ${winner}` }),
          });
          if (winner === 'ours') continue;
        } else {
          closeOpen(field, 'resolved on the peer');
        }
        const value = await this.localValue(db, table, field, change.value, event.id);
        if (value !== undefined) updates[field.column] = value;
        takenHere.set(field.column, change.version);
        parents.set(field.column, local);
      }

      writes.push({ key: localId, set: updates });
      // The peer does not know our id yet: tell it.
      if (event.peerId === undefined) outbox.touch(this.sync, table.number, localId, Date.now());
      this.passOnFields(table, localId, taken, outbox, parents);
    }

    stats.updated += await updateRows(db, table.name, table.key, writes);
    for (const { localId, fieldNumber, resolution } of closing) await closeConflicts(db, this.sync, table.number, localId, fieldNumber, resolution);
    await writeVersions(db, this.context.database.adapter, table.name, taken);
    await this.dropSuperseded(db, table, taken);
  }

  /** The fields of an upsert that this side takes from the peer, with their changes. */
  private incomingFields(table: MappedTable, event: UpsertEvent): [MappedField, FieldChange][] {
    const out: [MappedField, FieldChange][] = [];
    for (const [number, change] of Object.entries(event.fields)) {
      const field = table.fieldsByNumber.get(Number(number));
      if (field?.receives === true) out.push([field, change]);
    }
    return out;
  }

  /** Current rows of some records, by key. */
  private async readRecords(db: AnyKysely, table: MappedTable, localIds: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
    const out = new Map<string, Record<string, unknown>>();
    for (const chunk of chunks([...new Set(localIds)], 500)) {
      const rows = (await db.selectFrom(table.name).selectAll().where(table.key, 'in', chunk).execute()) as Record<string, unknown>[];
      for (const row of rows) out.set(String(row[table.key]), row);
    }
    return out;
  }

  /**
   * Our unsent changes of fields we just took from the peer are void: the
   * next batch would read the peer's value and send it under our version.
   */
  private async dropSuperseded(db: AnyKysely, table: MappedTable, taken: RecordVersions): Promise<void> {
    const touched = [...taken].filter(([, columns]) => columns.size > 0).map(([localId]) => localId);
    for (const chunk of chunks(touched, 500)) {
      const rows = (await db
        .selectFrom(stateTables.outbox)
        .select(['record_id', 'fields'])
        .where('sync_name', '=', this.sync)
        .where('table_number', '=', table.number)
        .where('record_id', 'in', chunk)
        .execute()) as { record_id: string; fields: string }[];
      for (const row of rows) {
        const pending = JSON.parse(row.fields) as Record<string, unknown>;
        const numbers = [...(taken.get(row.record_id)?.keys() ?? [])].map((column) => table.fieldsByColumn.get(column)?.number).filter((n) => n !== undefined && String(n) in pending);
        if (numbers.length === 0) continue;
        for (const number of numbers) delete pending[String(number)];
        await db
          .updateTable(stateTables.outbox)
          .set({ fields: JSON.stringify(pending) })
          .where('sync_name', '=', this.sync)
          .where('table_number', '=', table.number)
          .where('record_id', '=', row.record_id)
          .execute();
      }
    }
  }

  /**
   * A value that arrived → what to write; undefined for a user reference that matches nobody here.
   * A promise only for a user reference (it is looked up): a bulk apply converts millions of plain
   * values, and awaiting each one would cost a turn of the event loop apiece.
   */
  localValue(db: AnyKysely, table: MappedTable, field: MappedField, wire: WireValue, peerRecord: string): unknown {
    if (field.type === 'user' && this.context.users !== undefined) return this.localUser(db, table, field, wire, peerRecord);
    return fromWire(wire, this.column(table, field));
  }

  private async localUser(db: AnyKysely, table: MappedTable, field: MappedField, wire: WireValue, peerRecord: string): Promise<unknown> {
    const id = await this.context.users?.fromWire(db, wire, this.mapping.sync.users);
    if (id === undefined) {
      this.context.logger.warn(
        { sync: this.sync, table: table.name, field: field.column, peerRecord, user: wire, matchBy: this.mapping.sync.users },
        'user reference matches no user here: the field is left unset',
      );
    }
    return id;
  }

  private column(table: MappedTable, field: MappedField): ColumnSchema {
    const column = this.context.schema.get(table.name)?.columns.get(field.column);
    if (column === undefined) throw new Error(`${table.name}.${field.column} is missing from the database; tablesync checked it at start`);
    return column;
  }

  /** Runs `mention` for every other sync that syncs this table, so the change travels on (never back). */
  private passOn(table: MappedTable, mention: (sync: string, tableNumber: number) => void): void {
    for (const other of this.context.mappings) {
      if (other.name === this.sync) continue;
      const theirs = other.tablesByName.get(table.name);
      if (theirs !== undefined) mention(other.name, theirs.number);
    }
  }

  private passOnFields(table: MappedTable, localId: string, taken: RecordVersions, outbox: OutboxWriter, parents = new Map<string, string>()): void {
    this.passOn(table, (sync, tableNumber) => {
      const theirs = this.context.mappings.find((m) => m.name === sync)?.tablesByNumber.get(tableNumber);
      for (const [column, version] of taken.get(localId) ?? []) {
        const field = theirs?.fieldsByColumn.get(column);
        if (field?.sends === true) outbox.field(sync, tableNumber, localId, field.number, { version, parent: parents.get(column) ?? '' }, Date.now());
      }
    });
  }
}
