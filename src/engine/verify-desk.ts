import type { AnyKysely } from '../db/dialect.js';
import { keysetPages } from '../db/keyset.js';
import { stateTables } from '../db/state-names.js';
import type { MappedField, MappedTable, SyncMapping } from '../mapping/sync-mapping.js';
import type { WireValue } from '../protocol/batch.js';
import {
  isVerifyReply,
  maxVerifyPairs,
  type VerifyChunkEvent,
  type VerifyChunkReply,
  type VerifyEvent,
  type VerifyGroupsEvent,
  type VerifyGroupsReply,
  type VerifyPushEvent,
  type VerifyPushReply,
  type VerifyRecordState,
  type VerifyReply,
} from '../protocol/verify-events.js';
import { readSyncBacklog } from './backlog.js';
import { queueBatch } from './batch-builder.js';
import type { EngineContext } from './context.js';
import { localIdsFor, readLinks } from './links.js';
import type { OutboxWriter } from './outbox.js';
import { chunkLine, digestOf, GroupDigests, VerifySide, type ChunkState } from './verify-side.js';

/**
 * The daemon's side of `tablesync verify` through the transport. A request
 * of the peer's is answered from this side's own database, inside the
 * transaction that applies the batch carrying it, and the reply is queued
 * as this side's next batch in that same transaction: a crash loses
 * neither. A reply of the peer's is kept in tablesync_verify_replies for
 * the command that waits for it (verify-channel.ts), or dropped when no
 * command waits for that run any more.
 *
 * The answering functions are also what `verify --peer-config` calls on the
 * peer's database directly: one reduction, whichever way the peer is reached.
 */

/** Bytes of records or pairs per reply batch: well under the smallest transport limit (8 MiB over http). */
export const replyBudgetBytes = 4 * 1024 * 1024;

export class VerifyDesk {
  constructor(
    private readonly context: EngineContext,
    private readonly mapping: SyncMapping,
  ) {}

  async apply(db: AnyKysely, event: VerifyEvent, outbox: OutboxWriter): Promise<void> {
    if (isVerifyReply(event)) return this.#keep(db, event);
    const replies = await answerRequest(this.context, this.mapping, db, event, outbox);
    for (const reply of replies) await queueBatch(this.context, db, this.mapping.name, [reply]);
    this.context.logger.debug({ sync: this.mapping.name, verify: event.id, request: event.op, table: event.table, replies: replies.length }, 'verify request answered');
  }

  /** Keeps a reply for the waiting command; one to a run that no longer waits (it timed out, or was stopped) is dropped. */
  async #keep(db: AnyKysely, reply: VerifyReply): Promise<void> {
    const run = await db.selectFrom(stateTables.verifyRuns).select('run_id').where('run_id', '=', reply.id).where('sync_name', '=', this.mapping.name).executeTakeFirst();
    if (run === undefined) {
      this.context.logger.info({ sync: this.mapping.name, verify: reply.id, reply: reply.op }, 'verify reply for a run that no longer waits: dropped');
      return;
    }
    const row = replyRow(reply);
    // Deleted first: the same piece twice (which a well-behaved peer never sends) replaces, rather than failing the batch.
    await db
      .deleteFrom(stateTables.verifyReplies)
      .where('run_id', '=', row.run_id)
      .where('kind', '=', row.kind)
      .where('table_number', '=', row.table_number)
      .where('chunk', '=', row.chunk)
      .where('piece', '=', row.piece)
      .execute();
    await db.insertInto(stateTables.verifyReplies).values(row).execute();
  }
}

export type ReplyKind = 'chunk' | 'groups' | 'push';

export function replyKind(reply: VerifyReply): ReplyKind {
  return reply.op === 'verify-chunk-reply' ? 'chunk' : reply.op === 'verify-groups-reply' ? 'groups' : 'push';
}

function replyRow(reply: VerifyReply) {
  return {
    run_id: reply.id,
    kind: replyKind(reply),
    table_number: reply.table,
    chunk: reply.op === 'verify-groups-reply' ? 0 : reply.chunk,
    piece: reply.op === 'verify-push-reply' ? 0 : reply.piece,
    pieces: reply.op === 'verify-push-reply' ? 1 : reply.pieces,
    body: JSON.stringify(reply),
    received_at: Date.now(),
  };
}

/** Answers one request from this side's database; `outbox` takes what verify-push queues. */
export async function answerRequest(
  context: EngineContext,
  mapping: SyncMapping,
  db: AnyKysely,
  event: Exclude<VerifyEvent, VerifyReply>,
  outbox: OutboxWriter,
): Promise<VerifyReply[]> {
  switch (event.op) {
    case 'verify-chunk':
      return answerChunk(context, mapping, db, event);
    case 'verify-groups':
      return answerGroups(context, mapping, db, event);
    case 'verify-push':
      return [await answerPush(context, mapping, db, event, outbox)];
  }
}

/** The table a request names, or the sentence its reply says instead. */
function tableOf(context: EngineContext, mapping: SyncMapping, number: number): MappedTable | string {
  return mapping.tablesByNumber.get(number) ?? `instance ${context.config.instance} does not sync table ${number} in sync "${mapping.name}"`;
}

/** This side's fields among those asked for: those that are `both` here too, in the request's order, each once. */
function comparedFields(table: MappedTable, asked: readonly number[]): MappedField[] {
  return [...new Set(asked)].map((n) => table.fieldsByNumber.get(n)).filter((f): f is MappedField => f?.direction === 'both');
}

/**
 * One chunk of the asker's records: for each, the record of ours that our
 * links give for it, reduced to the line the asker wrote if both agree.
 * Only when the digests (or the compared fields) differ do our records of
 * the chunk go back, record by record.
 */
export async function answerChunk(context: EngineContext, mapping: SyncMapping, db: AnyKysely, event: VerifyChunkEvent): Promise<VerifyChunkReply[]> {
  const base = { op: 'verify-chunk-reply', table: event.table, id: event.id, chunk: event.chunk } as const;
  const table = tableOf(context, mapping, event.table);
  if (typeof table === 'string') return [{ ...base, piece: 0, pieces: 1, error: table }];
  const side = new VerifySide(context, mapping, table, comparedFields(table, event.fields));
  const fields = side.fields.map((f) => f.number);

  const asked = [...event.ids, ...event.unsent];
  const ours = await localIdsFor(db, mapping.name, table.number, asked);
  const rows = await side.rowsByIds(db, [...ours.values()]);
  const unsent = new Set(event.unsent);
  const lines: string[] = [];
  const records: VerifyRecordState[] = [];
  for (const id of asked) {
    const peerId = ours.get(id);
    // Deleted there before it ever travelled, and unknown here: nothing to compare (the asker wrote no line either).
    if (peerId === undefined && unsent.has(id)) continue;
    const row = peerId === undefined ? undefined : rows.get(peerId);
    const linked = peerId === undefined ? {} : { peerId };
    let state: ChunkState;
    if (row === undefined) {
      state = 'absent';
      records.push({ id, ...linked, state: 'absent' });
    } else if (side.deleted(row)) {
      state = 'deleted';
      records.push({ id, ...linked, state: 'deleted' });
    } else {
      const wire = await side.wire(db, row);
      state = side.comparable(wire);
      records.push({ id, ...linked, state: 'live', values: Object.fromEntries(fields.map((n, i): [string, WireValue] => [String(n), wire[i] ?? null])) });
    }
    lines.push(chunkLine(id, peerId, state));
  }
  const answer = { ...base, fields, numeric: side.numeric, digest: digestOf(lines) };
  if (answer.digest === event.digest && sameNumbers(fields, event.fields)) return [{ ...answer, piece: 0, pieces: 1 }];
  const pieces = splitBySize(records, replyBudgetBytes, Number.POSITIVE_INFINITY);
  return pieces.map((piece, i) => ({ ...answer, piece: i, pieces: pieces.length, records: piece }));
}

/**
 * Our records that no record of the asker's may account for: every record
 * of ours (but those deleted before they were ever linked) as the pair (our
 * id, the asker's id our link gives), digested per group; the pairs of the
 * groups whose digests differ from the asker's go back. Reads the table
 * once, and once more only when a group differs.
 */
export async function answerGroups(context: EngineContext, mapping: SyncMapping, db: AnyKysely, event: VerifyGroupsEvent): Promise<VerifyGroupsReply[]> {
  const base = { op: 'verify-groups-reply', table: event.table, id: event.id } as const;
  const table = tableOf(context, mapping, event.table);
  if (typeof table === 'string') return [{ ...base, piece: 0, pieces: 1, error: table }];
  if (event.digests.length !== event.groups) {
    return [{ ...base, piece: 0, pieces: 1, error: `the request gives ${event.digests.length} digests for ${event.groups} groups` }];
  }
  const side = new VerifySide(context, mapping, table, comparedFields(table, event.fields));

  const groups = new GroupDigests(event.groups);
  const records = await eachPair(db, mapping, side, (id, link) => groups.add(id, link));
  const theirs = event.digests;
  const differing = new Set(groups.digests().flatMap((digest, group) => (digest === theirs[group] ? [] : [group])));
  const pairs: [string, string | null][] = [];
  if (differing.size > 0) {
    await eachPair(db, mapping, side, (id, link) => {
      if (differing.has(GroupDigests.groupOf(id, event.groups))) pairs.push([id, link]);
    });
  }
  const answer = { ...base, records, differing: differing.size, waiting: await waitingChanges(db, mapping), fields: side.fields.map((f) => f.number) };
  const pieces = splitBySize(pairs, replyBudgetBytes, maxVerifyPairs);
  return pieces.map((piece, i) => ({ ...answer, piece: i, pieces: pieces.length, pairs: piece }));
}

/** Calls `visit` with (our id, the asker's id our link gives) for each record of ours but those deleted and never linked; returns how many records the table holds. */
async function eachPair(db: AnyKysely, mapping: SyncMapping, side: VerifySide, visit: (id: string, link: string | null) => void): Promise<number> {
  const { table } = side;
  const status = table.config.status;
  let records = 0;
  for await (const page of keysetPages(db, table.name, status === undefined ? [] : [status.column], [table.key], 1000)) {
    const links = await readLinks(db, mapping.name, table.number, page.map((row) => side.idOf(row)));
    for (const row of page) {
      records += 1;
      const id = side.idOf(row);
      const link = links.get(id);
      if (link === undefined && side.deleted(row)) continue;
      visit(id, link ?? null);
    }
  }
  return records;
}

/**
 * `--repair` of records only this side has: each of those named that exists
 * and that we have not linked is queued (a mention in the outbox, as for a
 * new record), so that the next batch carries it in full and the asker
 * creates or links it. A record we have linked meanwhile is left alone.
 */
export async function answerPush(context: EngineContext, mapping: SyncMapping, db: AnyKysely, event: VerifyPushEvent, outbox: OutboxWriter): Promise<VerifyPushReply> {
  const base = { op: 'verify-push-reply', table: event.table, id: event.id, chunk: event.chunk } as const;
  const table = tableOf(context, mapping, event.table);
  if (typeof table === 'string') return { ...base, error: table };
  const side = new VerifySide(context, mapping, table, []);
  // The id as our database spells it (`01` finds record 1): links and the outbox use that spelling.
  const found = [...(await side.rowsByIds(db, event.ids)).keys()];
  const linked = await readLinks(db, mapping.name, table.number, found);
  const now = Date.now();
  let queued = 0;
  for (const id of found) {
    if (linked.has(id)) continue;
    outbox.touch(mapping.name, table.number, id, now);
    queued += 1;
  }
  return { ...base, queued };
}

/**
 * Changes of a sync captured or sent and not yet acknowledged, but for
 * verify's own batches: requests and replies carry no change, and each is
 * the only event of its batch. `"op":"verify-` with its quotes bare can only
 * be an event's op: inside a value, JSON escapes them.
 */
export async function waitingChanges(db: AnyKysely, mapping: SyncMapping): Promise<number> {
  const backlog = await readSyncBacklog(db, mapping);
  const verifying = (await db
    .selectFrom(stateTables.batchesOut)
    .select((eb) => eb.fn.sum<number | string | null>('events').as('n'))
    .where('sync_name', '=', mapping.name)
    .where('body', 'like', '%"op":"verify-%')
    .executeTakeFirst()) as { n: number | string | null } | undefined;
  return Math.max(0, backlog.captured + backlog.queued + backlog.inUnacknowledgedBatches - Number(verifying?.n ?? 0));
}

/** Items cut into pieces of at most `budget` bytes of JSON and `maxItems` items; at least one piece, and an item bigger than the budget goes alone. */
export function splitBySize<T>(items: readonly T[], budget: number, maxItems: number): T[][] {
  const pieces: T[][] = [[]];
  let bytes = 0;
  for (const item of items) {
    const size = Buffer.byteLength(JSON.stringify(item)) + 1;
    let piece = pieces[pieces.length - 1] as T[];
    if (piece.length > 0 && (bytes + size > budget || piece.length >= maxItems)) {
      piece = [];
      pieces.push(piece);
      bytes = 0;
    }
    piece.push(item);
    bytes += size;
  }
  return pieces;
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}
