import { randomBytes } from 'node:crypto';
import { stateTables } from '../db/state-names.js';
import { TablesyncError } from '../errors.js';
import type { SyncMapping } from '../mapping/sync-mapping.js';
import type {
  VerifyChunkEvent,
  VerifyChunkReply,
  VerifyGroupsEvent,
  VerifyGroupsReply,
  VerifyPushEvent,
  VerifyPushReply,
  VerifyRecordState,
  VerifyReply,
  VerifyRequest,
} from '../protocol/verify-events.js';
import { queueBatch } from './batch-builder.js';
import type { EngineContext } from './context.js';
import { OutboxWriter } from './outbox.js';
import { answerRequest, replyKind, type ReplyKind } from './verify-desk.js';

/**
 * How `tablesync verify` puts its questions to the peer and gets the
 * answers: directly on the peer's database (`--peer-config`), or through
 * the sync's transport, as events in the sync's batches that the peer's
 * daemon answers (the default). Either way the peer's side is reduced by
 * the same code (verify-desk.ts), from the peer's database only.
 */

/** A chunk's answer, its pieces put together. */
export interface ChunkAnswer {
  readonly fields: readonly number[];
  readonly numeric: readonly number[];
  readonly digest: string;
  /** Only when the peer found that its digest differs: its side of each record. */
  readonly records: readonly VerifyRecordState[] | undefined;
}

export interface GroupsAnswer {
  readonly records: number;
  readonly differing: number;
  readonly waiting: number;
  readonly fields: readonly number[];
  readonly pairs: readonly (readonly [string, string | null])[];
}

export interface PeerChannel {
  /** `instance beta`, for messages. */
  readonly peer: string;
  /** Chunk requests that may wait for their answers at a time. */
  readonly window: number;
  chunk(request: VerifyChunkEvent): Promise<ChunkAnswer>;
  groups(request: VerifyGroupsEvent): Promise<GroupsAnswer>;
  /** How many of the records the peer queued. */
  push(request: VerifyPushEvent): Promise<number>;
  /** The peer's names for a table and its columns, where this side may know them (its file is at hand). */
  peerTable?(tableNumber: number): { readonly name: string; column(fieldNumber: number): string | undefined } | undefined;
}

/** The peer answered that it cannot verify something (a table it does not sync), or answered nonsense. */
export class PeerCannotVerify extends TablesyncError {
  readonly code = 'TS_ERR_VERIFY_PEER';
  readonly retryable = false;
  readonly exitCode = 1;
}

/** The peer has not answered in time. */
export class VerifyNoAnswer extends TablesyncError {
  readonly code = 'TS_ERR_VERIFY_NO_ANSWER';
  readonly retryable = true;
  readonly exitCode = 1;
}

function failed(peer: string, reply: VerifyReply): never {
  throw new PeerCannotVerify(`${peer} could not answer verify's ${reply.op.replace(/-reply$/, '')} request for table ${reply.table}: ${reply.error ?? 'no reason given'}`);
}

/** Pieces of a chunk's reply, in piece order, as one answer. */
export function chunkAnswer(peer: string, pieces: readonly VerifyChunkReply[]): ChunkAnswer {
  const [first] = pieces;
  if (first === undefined) throw new PeerCannotVerify(`${peer} sent a reply of no pieces`);
  if (first.error !== undefined) failed(peer, first);
  if (first.fields === undefined || first.numeric === undefined || first.digest === undefined) {
    throw new PeerCannotVerify(`${peer}'s reply to chunk ${first.chunk} of table ${first.table} lacks its fields or digest`);
  }
  const records = pieces.some((p) => p.records !== undefined) ? pieces.flatMap((p) => p.records ?? []) : undefined;
  return { fields: first.fields, numeric: first.numeric, digest: first.digest, records };
}

export function groupsAnswer(peer: string, pieces: readonly VerifyGroupsReply[]): GroupsAnswer {
  const [first] = pieces;
  if (first === undefined) throw new PeerCannotVerify(`${peer} sent a reply of no pieces`);
  if (first.error !== undefined) failed(peer, first);
  if (first.records === undefined || first.differing === undefined || first.waiting === undefined || first.fields === undefined) {
    throw new PeerCannotVerify(`${peer}'s reply about its records of table ${first.table} lacks its counts or fields`);
  }
  return { records: first.records, differing: first.differing, waiting: first.waiting, fields: first.fields, pairs: pieces.flatMap((p) => p.pairs ?? []) };
}

function pushAnswer(peer: string, reply: VerifyPushReply): number {
  if (reply.error !== undefined) failed(peer, reply);
  return reply.queued ?? 0;
}

/** `--peer-config`: the peer's database is reached from here, and the peer's side is reduced here, by the peer's own configuration. */
export class DirectChannel implements PeerChannel {
  readonly peer: string;
  /** Nothing travels: one request at a time is as fast as several. */
  readonly window = 1;

  constructor(
    private readonly context: EngineContext,
    private readonly mapping: SyncMapping,
  ) {
    this.peer = `instance ${context.config.instance}`;
  }

  async chunk(request: VerifyChunkEvent): Promise<ChunkAnswer> {
    return chunkAnswer(this.peer, (await this.#answer(request)) as VerifyChunkReply[]);
  }

  async groups(request: VerifyGroupsEvent): Promise<GroupsAnswer> {
    return groupsAnswer(this.peer, (await this.#answer(request)) as VerifyGroupsReply[]);
  }

  async push(request: VerifyPushEvent): Promise<number> {
    const [reply] = await this.context.database.transaction(async (db) => {
      const outbox = new OutboxWriter();
      const replies = await answerRequest(this.context, this.mapping, db, request, outbox);
      await outbox.flush(db, this.context.database.adapter);
      return replies;
    });
    return pushAnswer(this.peer, reply as VerifyPushReply);
  }

  peerTable(tableNumber: number): { name: string; column(fieldNumber: number): string | undefined } | undefined {
    const table = this.mapping.tablesByNumber.get(tableNumber);
    return table === undefined ? undefined : { name: table.name, column: (n) => table.fieldsByNumber.get(n)?.column };
  }

  #answer(request: VerifyRequest): Promise<VerifyReply[]> {
    // Only reads: verify-push, the one request that writes, has its own transaction above.
    return answerRequest(this.context, this.mapping, this.context.database.kysely, request, new OutboxWriter());
  }
}

export interface TransportPolicy {
  /** Give up when no reply has come for this long, while one is awaited (ms). */
  readonly timeoutMs: number;
  /** How often the replies the daemon stored are looked for (ms). Default 100. */
  readonly pollMs?: number;
  /** Requests that may wait for their answers at a time. Default 8. */
  readonly window?: number;
  /** Called once when the first answer is slow to come, with what holds it up. */
  readonly onSlow?: (why: string) => void;
  /** When the first answer is slow (ms). Default 10 s. */
  readonly slowAfterMs?: number;
  /** Ends the wait at once (Ctrl-C): every waiting request fails, and `close` still forgets the run. */
  readonly signal?: AbortSignal;
}

interface Waiter {
  readonly kind: ReplyKind;
  readonly table: number;
  readonly chunk: number;
  /** The batch that carries the request. */
  readonly seq: number;
  resolve(pieces: VerifyReply[]): void;
  reject(err: Error): void;
}

interface ReplyRow {
  kind: string;
  table_number: number;
  chunk: number;
  piece: number;
  pieces: number;
  body: string;
}

/** Runs older than this are a command that died (kill -9, power cut) and are cleared by the next one. */
const staleRunMs = 24 * 60 * 60 * 1000;

/**
 * Through the sync's transport: each request is queued as a batch of its
 * own for our daemon to send (as `initial-sync` queues its batches), the
 * peer's daemon answers as it applies it, our daemon stores the reply
 * (verify-desk.ts), and this channel reads it from tablesync_verify_replies.
 * Both daemons must be running; when no reply comes for `timeoutMs`, every
 * waiting request fails with what holds it up.
 */
export class TransportChannel implements PeerChannel {
  readonly window: number;
  readonly #waiters = new Map<string, Waiter>();
  #timer: NodeJS.Timeout | undefined;
  #lastProgress = Date.now();
  #answered = false;
  #slowSaid = false;
  #closed = false;
  #polling = false;

  private constructor(
    private readonly context: EngineContext,
    private readonly mapping: SyncMapping,
    readonly runId: string,
    readonly peer: string,
    private readonly policy: TransportPolicy,
  ) {
    this.window = policy.window ?? 8;
    policy.signal?.addEventListener('abort', () => this.#fail(new VerifyNoAnswer('verify was interrupted before the peer answered')), { once: true });
  }

  #fail(err: Error): void {
    for (const waiter of this.#waiters.values()) waiter.reject(err);
    this.#waiters.clear();
  }

  /** Registers a new run, so that our daemon keeps the replies to it; clears runs left by commands that died. */
  static async open(context: EngineContext, mapping: SyncMapping, peer: string, policy: TransportPolicy): Promise<TransportChannel> {
    const runId = randomBytes(16).toString('hex');
    await context.database.transaction(async (db) => {
      const stale = (await db
        .selectFrom(stateTables.verifyRuns)
        .select('run_id')
        .where('sync_name', '=', mapping.name)
        .where('started_at', '<', Date.now() - staleRunMs)
        .execute()) as { run_id: string }[];
      for (const { run_id } of stale) {
        await db.deleteFrom(stateTables.verifyReplies).where('run_id', '=', run_id).execute();
        await db.deleteFrom(stateTables.verifyRuns).where('run_id', '=', run_id).execute();
      }
      await db.insertInto(stateTables.verifyRuns).values({ run_id: runId, sync_name: mapping.name, started_at: Date.now() }).execute();
    });
    return new TransportChannel(context, mapping, runId, peer, policy);
  }

  async chunk(request: VerifyChunkEvent): Promise<ChunkAnswer> {
    return chunkAnswer(this.peer, (await this.#ask(request, 'chunk', request.chunk)) as VerifyChunkReply[]);
  }

  async groups(request: VerifyGroupsEvent): Promise<GroupsAnswer> {
    return groupsAnswer(this.peer, (await this.#ask(request, 'groups', 0)) as VerifyGroupsReply[]);
  }

  async push(request: VerifyPushEvent): Promise<number> {
    const [reply] = await this.#ask(request, 'push', request.chunk);
    return pushAnswer(this.peer, reply as VerifyPushReply);
  }

  /** Forgets the run: replies still on their way are dropped by our daemon when they arrive. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#fail(new VerifyNoAnswer('verify stopped before the peer answered'));
    await this.context.database.transaction(async (db) => {
      await db.deleteFrom(stateTables.verifyReplies).where('run_id', '=', this.runId).execute();
      await db.deleteFrom(stateTables.verifyRuns).where('run_id', '=', this.runId).execute();
    });
  }

  async #ask(request: VerifyRequest, kind: ReplyKind, chunk: number): Promise<VerifyReply[]> {
    if (this.#closed || this.policy.signal?.aborted === true) throw new VerifyNoAnswer('verify has stopped');
    const { batch } = await this.context.database.transaction((db) => queueBatch(this.context, db, this.mapping.name, [request]));
    if (this.#waiters.size === 0) this.#lastProgress = Date.now();
    const answer = new Promise<VerifyReply[]>((resolve, reject) => {
      this.#waiters.set(keyOf(kind, request.table, chunk), { kind, table: request.table, chunk, seq: batch.seq, resolve, reject });
    });
    this.#schedule();
    return answer;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed || this.#polling) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#poll();
    }, this.policy.pollMs ?? 100);
  }

  async #poll(): Promise<void> {
    this.#polling = true;
    try {
      await this.#collect();
      if (this.#waiters.size > 0) await this.#checkTime();
    } catch (err) {
      this.#fail(err as Error);
    } finally {
      this.#polling = false;
    }
    if (this.#waiters.size > 0) this.#schedule();
  }

  /** Hands the replies our daemon stored to their requests, once all of a reply's pieces are in. */
  async #collect(): Promise<void> {
    const rows = (await this.context.database.kysely
      .selectFrom(stateTables.verifyReplies)
      .select(['kind', 'table_number', 'chunk', 'piece', 'pieces', 'body'])
      .where('run_id', '=', this.runId)
      .execute()) as ReplyRow[];
    if (rows.length === 0) return;
    const byRequest = new Map<string, ReplyRow[]>();
    for (const row of rows) {
      const key = keyOf(row.kind as ReplyKind, Number(row.table_number), Number(row.chunk));
      byRequest.set(key, [...(byRequest.get(key) ?? []), row]);
    }
    for (const [key, pieces] of byRequest) {
      const waiter = this.#waiters.get(key);
      const complete = pieces.length >= Number(pieces[0]?.pieces ?? 1);
      if (waiter === undefined || !complete) continue;
      const replies = pieces.sort((a, b) => Number(a.piece) - Number(b.piece)).map((row) => JSON.parse(row.body) as VerifyReply);
      if (replies.some((reply) => replyKind(reply) !== waiter.kind)) throw new PeerCannotVerify(`${this.peer} answered ${waiter.kind} request ${key} with another kind of reply`);
      await this.context.database.transaction((db) =>
        db
          .deleteFrom(stateTables.verifyReplies)
          .where('run_id', '=', this.runId)
          .where('kind', '=', waiter.kind)
          .where('table_number', '=', waiter.table)
          .where('chunk', '=', waiter.chunk)
          .execute(),
      );
      this.#waiters.delete(key);
      this.#lastProgress = Date.now();
      this.#answered = true;
      waiter.resolve(replies);
    }
  }

  async #checkTime(): Promise<void> {
    const waited = Date.now() - this.#lastProgress;
    if (!this.#answered && !this.#slowSaid && waited >= (this.policy.slowAfterMs ?? 10_000)) {
      this.#slowSaid = true;
      this.policy.onSlow?.(await this.#holdUp());
    }
    if (waited < this.policy.timeoutMs) return;
    const seconds = Math.round(this.policy.timeoutMs / 1000);
    throw new VerifyNoAnswer(`${this.peer} has not answered verify for ${seconds} s (sync "${this.mapping.name}"): ${await this.#holdUp()}`);
  }

  /** What the oldest unanswered request waits for, read from our batches_out. */
  async #holdUp(): Promise<string> {
    const oldest = Math.min(...[...this.#waiters.values()].map((w) => w.seq));
    const row = (await this.context.database.kysely
      .selectFrom(stateTables.batchesOut)
      .select('sent_at')
      .where('sync_name', '=', this.mapping.name)
      .where('seq', '=', oldest)
      .executeTakeFirst()) as { sent_at: number | string | null } | undefined;
    const file = this.context.config.file;
    if (row !== undefined && row.sent_at === null) {
      return `its request (batch ${oldest}) has not left this side yet: tablesync run -c ${file} must be running here and reach ${this.peer} (tablesync status -c ${file} shows whether it does)`;
    }
    if (row !== undefined) {
      return `its request (batch ${oldest}) was sent but the peer has not acknowledged it: is tablesync run running on ${this.peer}, and can the two reach each other (tablesync status -c ${file})?`;
    }
    return `the peer acknowledged the request (batch ${oldest}) but its reply has not arrived: is tablesync run -c ${file} still running here, and does the peer run a tablesync that answers verify?`;
  }
}

function keyOf(kind: ReplyKind, table: number, chunk: number): string {
  return `${kind}:${table}:${chunk}`;
}
