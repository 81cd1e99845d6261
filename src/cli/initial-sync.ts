import type { InstanceConfig } from '../config/types.js';
import type { EngineContext } from '../engine/context.js';
import { readCursor } from '../engine/cursors.js';
import { readPeerBackup } from '../engine/initial-start.js';
import { InitialSync, initialSyncParts, restartInitialSync } from '../engine/initial-sync.js';
import type { InitialStartReply } from '../protocol/batch.js';
import { transportFor } from '../transports/create-transport.js';
import { safetyBackup } from './backup.js';
import { plural } from './format.js';
import { withInstanceContext } from './open-instance.js';
import { ProgressReport } from './progress.js';

export interface InitialSyncCommandOptions {
  readonly sync?: string;
  readonly table?: number;
  readonly field?: number;
  readonly create: boolean;
  readonly restart: boolean;
  /** Safety backups first, here and on the receiving side, when the synced tables hold data (`--no-backup` turns them off). */
  readonly backup: boolean;
  /** Where this side's safety backup goes; default the configuration's `backups.dir`. */
  readonly backupDir?: string;
}

/**
 * `tablesync initial-sync`: queues every existing row for the daemon to
 * send, shows progress (a bar on a terminal, a line every few seconds
 * otherwise), then waits until the peer has acknowledged it all. Ctrl-C
 * stops after the chunk in hand; running the command again resumes.
 */
export async function initialSyncCommand(config: InstanceConfig, out: NodeJS.WriteStream | NodeJS.WritableStream, options: InitialSyncCommandOptions): Promise<number> {
  return withInstanceContext(config, async (context, instance) => {
    const parts = initialSyncParts(context, options);
    if (options.backup) await safetyBackup(instance, options.backupDir, out);
    if (options.restart) await restartInitialSync(context, parts);

    // Batches must fit every transport they go through.
    let maxBatchBytes = Number.POSITIVE_INFINITY;
    for (const mapping of new Set(parts.map((p) => p.mapping))) {
      const transport = transportFor(config, mapping.sync);
      maxBatchBytes = Math.min(maxBatchBytes, transport.maxBatchBytes);
      await transport.close();
    }

    const progress = new ProgressReport(out, 'queued');
    const sync = new InitialSync(context, parts, maxBatchBytes, (p) =>
      progress.update({ part: `${p.sync}: ${p.table}${p.field === undefined ? '' : `.${p.field}`}`, count: p.queued, total: p.total, done: p.done }),
    );
    const runs = await sync.announce(options.backup);
    await describePeerBackups(context, runs, options.backup, out);
    const peerBackups = new PeerBackupWatch(context, runs, progress);
    let interrupted = false;
    const onSignal = (): void => {
      interrupted = true;
      sync.stop();
      out.write('\nstopping after the chunk in hand; run the same command again to resume\n');
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const started = Date.now();
      const { rows, lastSeq } = await sync.run();
      progress.end();
      if (interrupted) return 1;
      if (lastSeq === 0) {
        out.write('nothing left to send: an earlier run finished (use --restart to send everything again)\n');
        return 0;
      }
      if (runs.size === 0) out.write('resumed the initial sync begun earlier: the receiving side was asked for its safety backup when it began\n');
      out.write(`queued ${rows.toLocaleString('en')} rows; waiting for the peer to acknowledge them (tablesync run sends them)\n`);
      await sync.acknowledged(lastSeq);
      if (interrupted) return 1;
      // The peer's answer about its backup comes with its acknowledgement of the first batch at the latest.
      await peerBackups.stop();
      const seconds = (Date.now() - started) / 1000;
      out.write(`done: ${rows.toLocaleString('en')} rows in ${seconds.toFixed(1)} s (${Math.round(rows / Math.max(seconds, 0.001)).toLocaleString('en')} rows/s)\n`);
      return 0;
    } finally {
      await peerBackups.stop();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
}

/** Who the peer of `sync` is, in words, for the lines about its backup. */
async function peerOf(context: EngineContext, sync: string): Promise<string> {
  const peer = await readCursor(context.database.kysely, sync, 'peer');
  return peer === undefined ? `the peer of sync ${sync}` : `instance ${peer} (sync ${sync})`;
}

/** Says what this run asks of the receiving sides, whose answers PeerBackupWatch prints. */
async function describePeerBackups(context: EngineContext, runs: ReadonlyMap<string, string>, backup: boolean, out: NodeJS.WritableStream): Promise<void> {
  // Nothing begins anew: a resumed run (said below once it sends something) or a finished one.
  if (runs.size === 0) return;
  const peers = await Promise.all([...runs.keys()].map((sync) => peerOf(context, sync)));
  out.write(
    backup
      ? `the receiving side backs itself up before it applies any of these rows: ${peers.join(', ')}; where it put the backup is printed here once it answers\n`
      : `--no-backup: the receiving side takes no safety backup either: ${peers.join(', ')}\n`,
  );
}

/**
 * Prints each peer's answer about its safety backup as it arrives (the
 * daemon applies it into tablesync_peer_backups): where the backup went, or
 * why it failed, in which case the peer applies nothing until it succeeds.
 */
class PeerBackupWatch {
  readonly #timer: NodeJS.Timeout;
  readonly #printed = new Map<string, string>();
  #polling = false;

  constructor(
    private readonly context: EngineContext,
    private readonly runs: ReadonlyMap<string, string>,
    private readonly progress: ProgressReport,
  ) {
    this.#timer = setInterval(() => void this.poll(), 500);
  }

  /** Looks once more, so that an answer that came with the last acknowledgement is not missed. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.poll();
  }

  async poll(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      for (const [sync, id] of this.runs) {
        const reply = await readPeerBackup(this.context.database.kysely, sync, id);
        if (reply === undefined || this.#printed.get(sync) === reply.outcome) continue;
        this.#printed.set(sync, reply.outcome);
        const text = describeReply(await peerOf(this.context, sync), reply);
        if (text !== '') this.progress.note(text);
      }
    } catch {
      // The next poll tries again; the daemon's log has the answer too.
    } finally {
      this.#polling = false;
    }
  }
}

function describeReply(peer: string, reply: InitialStartReply): string {
  switch (reply.outcome) {
    case 'taken':
      return (
        `${peer} backed up its synced tables and tablesync's state before applying anything (${plural(reply.rows ?? 0, 'row')}): ${reply.file ?? '?'}, on its machine\n` +
        `  to go back to it there: tablesync restore -c <its configuration file> -i ${reply.file ?? '?'}\n`
      );
    case 'empty':
      return `${peer} holds no rows in its synced tables: it needed no safety backup\n`;
    case 'failed':
      return (
        `${peer} could not take its safety backup, so it applies none of these rows yet: ${reply.error ?? 'no reason given'}\n` +
        '  the rows stay queued; it tries again every minute, and at once when its configuration is reloaded\n'
      );
    case 'skipped':
      return '';
  }
}
