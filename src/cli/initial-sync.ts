import type { InstanceConfig } from '../config/types.js';
import type { EngineContext } from '../engine/context.js';
import { readCursor } from '../engine/cursors.js';
import { InitialSync, initialSyncParts, restartInitialSync, type InitialSyncPart } from '../engine/initial-sync.js';
import { transportFor } from '../transports/create-transport.js';
import { safetyBackup } from './backup.js';
import { withInstanceContext } from './open-instance.js';
import { ProgressReport } from './progress.js';

export interface InitialSyncCommandOptions {
  readonly sync?: string;
  readonly table?: number;
  readonly field?: number;
  readonly create: boolean;
  readonly restart: boolean;
  /** A safety backup first, when the synced tables hold data (`--no-backup` turns it off). */
  readonly backup: boolean;
  /** Where the safety backup goes; default `backups/` beside the configuration file. */
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
    await warnOfUnbackedPeers(context, parts, out);
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
      out.write(`queued ${rows.toLocaleString('en')} rows; waiting for the peer to acknowledge them (tablesync run sends them)\n`);
      await sync.acknowledged(lastSeq);
      if (interrupted) return 1;
      const seconds = (Date.now() - started) / 1000;
      out.write(`done: ${rows.toLocaleString('en')} rows in ${seconds.toFixed(1)} s (${Math.round(rows / Math.max(seconds, 0.001)).toLocaleString('en')} rows/s)\n`);
      return 0;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
}

/**
 * The safety backup covers this side only, while the rows it sends change
 * the peer's tables most: say so every time, naming each receiving side,
 * since this command cannot reach into the peer's database to back it up.
 */
async function warnOfUnbackedPeers(context: EngineContext, parts: readonly InitialSyncPart[], out: NodeJS.WritableStream): Promise<void> {
  const peers: string[] = [];
  for (const mapping of new Set(parts.map((p) => p.mapping))) {
    const peer = await readCursor(context.database.kysely, mapping.name, 'peer');
    peers.push(peer === undefined ? `the peer of sync ${mapping.name}` : `instance ${peer} (sync ${mapping.name})`);
  }
  out.write(
    `the receiving side is not backed up by this command: back up ${peers.join(', ')} on its own machine before an initial sync, with\n` +
      '  tablesync backup -c <its configuration file> -o <a new file>\n',
  );
}
