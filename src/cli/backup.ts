import { resolve } from 'node:path';
import type { BackupTable } from '../backup/backup-format.js';
import { writeBackup, type BackupOptions, type BackupReport, type BackupSource } from '../backup/backup-writer.js';
import { takeSafetyBackup } from '../backup/safety-backup.js';
import type { InstanceConfig } from '../config/types.js';
import { Instance } from '../engine/instance.js';
import { UsageError } from '../errors.js';
import { plural } from './format.js';
import { passwordFromEnv } from './password-env.js';
import { ProgressReport } from './progress.js';
import { formatTable } from './table.js';

export interface BackupCommandOptions {
  readonly output?: string;
  readonly passwordEnv?: string;
}

/**
 * `tablesync backup`: the synced tables and tablesync's state, to one
 * portable file. Needs no state tables (an instance never set up gets a
 * backup of its synced tables alone).
 */
export async function backupCommand(config: InstanceConfig, out: NodeJS.WriteStream | NodeJS.WritableStream, options: BackupCommandOptions): Promise<number> {
  if (options.output === undefined) throw new UsageError('tablesync backup needs -o FILE: where to write the backup (a file that does not exist yet)');
  const password = passwordFromEnv(options.passwordEnv);
  const file = resolve(options.output);
  const instance = await Instance.open(config);
  try {
    const report = await backupWithProgress(instance, file, out, password);
    out.write(
      `backup of instance ${config.instance} (${instance.database.target}) written to ${file}: ${plural(report.total, 'row')} in ${plural(report.rows.size, 'table')}, ` +
        `${password === undefined ? 'not encrypted' : `encrypted with the password in ${options.passwordEnv ?? ''}`}\n`,
    );
    out.write(`${formatTable(tableLines(report.header.tables, (name) => report.rows.get(name) ?? 0))}\n`);
    return 0;
  } finally {
    await instance.close();
  }
}

/** One line per synced table, and one for all of tablesync's state tables. */
export function tableLines(tables: readonly BackupTable[], rows: (table: string) => number, note: (table: string) => string = () => ''): string[][] {
  const synced = tables.filter((t) => t.kind === 'application').map((t) => [t.name, plural(rows(t.name), 'row'), note(t.name)].filter((cell) => cell !== ''));
  const state = tables.filter((t) => t.kind === 'state');
  if (state.length === 0) return synced;
  const stateRows = state.reduce((n, t) => n + rows(t.name), 0);
  return [...synced, ["tablesync's state", `${plural(stateRows, 'row')} in ${plural(state.length, 'table')}`]];
}

/** Writes a backup, with a progress bar when `out` is a terminal. */
async function backupWithProgress(source: BackupSource, file: string, out: NodeJS.WriteStream | NodeJS.WritableStream, password?: string): Promise<BackupReport> {
  const progress = backupProgress(out);
  try {
    return await writeBackup(source, file, { ...(password === undefined ? {} : { password }), ...progress.options });
  } finally {
    progress.end();
  }
}

/** A bar per table while a backup is written, on a terminal only (a log file should not fill with bars). */
function backupProgress(out: NodeJS.WriteStream | NodeJS.WritableStream): { options: Pick<BackupOptions, 'onProgress'>; end(): void } {
  if (!('isTTY' in out && out.isTTY === true)) return { options: {}, end: () => undefined };
  const progress = new ProgressReport(out, 'written');
  return {
    options: { onProgress: (p) => progress.update({ part: `backup: ${p.table}`, count: p.rows, total: p.total, done: p.done }) },
    end: () => progress.end(),
  };
}

/**
 * The safety backup of this side before an initial sync, when the synced
 * tables hold data: into `dir`, or the configuration's `backups.dir`
 * (default: `backups/` beside the configuration file). Not encrypted (the
 * command takes no password), and readable by its owner only. Returns the
 * file, or undefined when there was nothing to back up.
 */
export async function safetyBackup(source: BackupSource, dir: string | undefined, out: NodeJS.WriteStream | NodeJS.WritableStream): Promise<string | undefined> {
  // The default folder is beside the configuration file, which is often not the command's to write:
  // /etc/tablesync under systemd, a read-only mount in a container. Say where else to go.
  const remedy =
    'give a folder this user can write with --backup-dir or with backups.dir in the configuration file ' +
    '(under systemd or in the container: /var/lib/tablesync/backups), or skip it with --no-backup';
  const progress = backupProgress(out);
  const outcome = await takeSafetyBackup(source, dir ?? source.config.backups.dir, remedy, progress.options.onProgress).finally(() => progress.end());
  if (outcome.kind === 'empty') return undefined;
  const { file, total } = outcome.report;
  out.write(
    `safety backup of the synced tables and tablesync's state (${plural(total, 'row')}): ${file}\n` +
      `  to go back to it: tablesync restore -c ${source.config.file} -i ${file}\n`,
  );
  return file;
}
