import { randomBytes } from 'node:crypto';
import { takeSafetyBackup, type SafetyBackupOutcome } from '../backup/safety-backup.js';
import type { AnyKysely } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';
import { TablesyncError } from '../errors.js';
import type { SyncMapping } from '../mapping/sync-mapping.js';
import type { Batch, InitialStartEvent, InitialStartMessage, InitialStartReply } from '../protocol/batch.js';
import { queueBatch } from './batch-builder.js';
import type { EngineContext } from './context.js';
import { readCursor, readSeq } from './cursors.js';

/**
 * The start of an initial sync, and the safety backup it asks of the
 * receiving side (see InitialStartEvent). The sending command sends the
 * start at the head of its first batch of rows; the receiving daemon backs up before it applies
 * the batch that carries it and answers where the backup went; the sending
 * daemon keeps the answer in tablesync_peer_backups for the command, which
 * prints it.
 */

/** After a safety backup failed, batches from the peer wait this long before it is tried again (a reload tries at once). */
const safetyBackupRetryMs = 60_000;

/** The receiving side could not take the safety backup asked of it: nothing more from the peer is applied until it can. */
export class SafetyBackupFailed extends TablesyncError {
  readonly code = 'TS_ERR_SAFETY_BACKUP';
  readonly retryable = true;
  readonly exitCode = 1;

  constructor(
    message: string,
    /** False when this is an earlier failure repeated while the next attempt waits. */
    readonly attempted: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A new initial sync's start, with a new id, which the peer's answer names. */
export function initialStart(tables: readonly number[], backup: boolean): InitialStartEvent {
  return { op: 'initial-start', id: randomBytes(16).toString('hex'), backup, tables: [...tables] };
}

/** What the peer of `sync` answered about the backup the initial sync `id` asked for, once it has. */
export async function readPeerBackup(db: AnyKysely, sync: string, id: string): Promise<InitialStartReply | undefined> {
  const row = (await db
    .selectFrom(stateTables.peerBackups)
    .select(['outcome', 'file', 'rows', 'error'])
    .where('sync_name', '=', sync)
    .where('run_id', '=', id)
    .executeTakeFirst()) as { outcome: InitialStartReply['outcome']; file: string | null; rows: number | string | null; error: string | null } | undefined;
  if (row === undefined) return undefined;
  return {
    op: 'initial-start-reply',
    id,
    outcome: row.outcome,
    ...(row.file === null ? {} : { file: row.file }),
    ...(row.rows === null ? {} : { rows: Number(row.rows) }),
    ...(row.error === null ? {} : { error: row.error }),
  };
}

/** One sync's side of initial-sync starts: the receiver's backups and answers, and the sender's record of them. */
export class InitialStarts {
  /** Backups taken for the batch about to be applied, by run id. */
  readonly #taken = new Map<string, SafetyBackupOutcome>();
  /** The last failure, so that it is answered once and tried again only after a while. */
  #failure: { id: string; message: string; at: number } | undefined;

  constructor(
    private readonly context: EngineContext,
    private readonly mapping: SyncMapping,
  ) {}

  /**
   * Before `batch` is applied: when it starts an initial sync that asks for
   * a backup and is the next batch to apply, backs this side up. Throws
   * SafetyBackupFailed (after queuing the answer that says so) when it
   * cannot, so that the batch is left for later.
   */
  async prepare(batch: Batch): Promise<void> {
    const starts = batch.events.filter((e): e is InitialStartEvent => e.op === 'initial-start' && e.backup);
    if (starts.length === 0) return;
    const { kysely } = this.context.database;
    if (batch.seq !== (await readSeq(kysely, this.mapping.name, 'in')) + 1) return;
    // A batch from another instance than the peer is refused when applied: it gets no backup either.
    const peer = await readCursor(kysely, this.mapping.name, 'peer');
    if (peer !== undefined && peer !== batch.from) return;
    const { id } = starts[0] as InitialStartEvent;
    if (this.#failure?.id === id && Date.now() - this.#failure.at < safetyBackupRetryMs) {
      throw new SafetyBackupFailed(this.#failure.message, false);
    }
    const log = this.context.logger.child({ sync: this.mapping.name, initialSync: id });
    log.info({ peer: batch.from }, `an initial sync from ${batch.from} starts: backing up the synced tables before applying it`);
    let outcome: SafetyBackupOutcome;
    try {
      outcome = await takeSafetyBackup(this.context, this.context.config.backups.dir, this.#remedy(batch.from), progressLogger(log));
    } catch (err) {
      const message = `cannot take the safety backup before the initial sync from ${batch.from}: ${(err as Error).message}`;
      if (this.#failure?.id !== id || this.#failure.message !== message) {
        await this.context.database.transaction((db) =>
          queueBatch(this.context, db, this.mapping.name, [{ op: 'initial-start-reply', id, outcome: 'failed', error: message.slice(0, 4096) }]),
        );
      }
      this.#failure = { id, message, at: Date.now() };
      throw new SafetyBackupFailed(message, true, { cause: err });
    }
    this.#failure = undefined;
    for (const start of starts) this.#taken.set(start.id, outcome);
    if (outcome.kind === 'empty') {
      log.info('the synced tables hold no rows: no safety backup needed');
    } else {
      const { file, total } = outcome.report;
      log.info({ file, rows: total }, `safety backup before the initial sync from ${batch.from}: ${file}; to go back to it: tablesync restore -c ${this.context.config.file} -i ${file}`);
    }
  }

  /** Applies one start or answer, in the batch's transaction: a start is answered, an answer kept for the command. */
  async apply(db: AnyKysely, event: InitialStartMessage): Promise<void> {
    if (event.op === 'initial-start') {
      await queueBatch(this.context, db, this.mapping.name, [this.#answer(event)]);
      return;
    }
    // A later answer to the same run (taken, after failed) replaces the earlier one.
    const answer = { outcome: event.outcome, file: event.file ?? null, rows: event.rows ?? null, error: event.error ?? null, reported_at: Date.now() };
    await this.context.database.adapter.upsert(db, stateTables.peerBackups, [{ sync_name: this.mapping.name, run_id: event.id, ...answer }], ['sync_name', 'run_id'], Object.keys(answer));
  }

  #answer(event: InitialStartEvent): InitialStartReply {
    const base = { op: 'initial-start-reply', id: event.id } as const;
    if (!event.backup) return { ...base, outcome: 'skipped' };
    const outcome = this.#taken.get(event.id);
    this.#taken.delete(event.id);
    // Not reached: the applier prepares every batch before it applies it. Should that change, say nothing was taken.
    if (outcome === undefined) return { ...base, outcome: 'skipped' };
    if (outcome.kind === 'empty') return { ...base, outcome: 'empty' };
    return { ...base, outcome: 'taken', file: outcome.report.file, rows: outcome.report.total };
  }

  #remedy(peer: string): string {
    return (
      `set backups.dir in ${this.context.config.file} to a folder this daemon's user can write (under systemd or in the container: ` +
      `/var/lib/tablesync/backups) and reload (systemctl reload, or SIGHUP); until then nothing more from ${peer} is applied`
    );
  }
}

/** Progress of a long backup in the daemon's log: a line per table once done, and one every 10 s meanwhile. */
function progressLogger(log: EngineContext['logger']): (p: { table: string; rows: number; total: number; done: boolean }) => void {
  let last = Date.now();
  return (p) => {
    if (!p.done && Date.now() - last < 10_000) return;
    last = Date.now();
    log.info({ table: p.table, rows: p.rows, total: p.total }, p.done ? `backed up ${p.table}` : `backing up ${p.table}`);
  };
}
