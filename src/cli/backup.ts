import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BackupFileError } from '../backup/backup-error.js';
import type { BackupTable } from '../backup/backup-format.js';
import { writeBackup, syncedTablesHoldData, type BackupReport, type BackupSource } from '../backup/backup-writer.js';
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
  const progress = 'isTTY' in out && out.isTTY === true ? new ProgressReport(out, 'written') : undefined;
  try {
    return await writeBackup(source, file, {
      ...(password === undefined ? {} : { password }),
      ...(progress === undefined ? {} : { onProgress: (p) => progress.update({ part: `backup: ${p.table}`, count: p.rows, total: p.total, done: p.done }) }),
    });
  } finally {
    progress?.end();
  }
}

/**
 * The safety backup before an initial sync, when the synced tables hold
 * data: into `dir` (default: `backups/` beside the configuration file),
 * named after the instance and the time. Not encrypted (the command takes
 * no password), and readable by its owner only. Returns the file, or
 * undefined when there was nothing to back up.
 */
export async function safetyBackup(source: BackupSource, dir: string | undefined, out: NodeJS.WriteStream | NodeJS.WritableStream): Promise<string | undefined> {
  if (!(await syncedTablesHoldData(source))) return undefined;
  const folder = resolve(dir ?? join(resolve(source.config.file, '..'), 'backups'));
  // The default folder is beside the configuration file, which is often not the command's to write:
  // /etc/tablesync under systemd, a read-only mount in a container. Say where else to go.
  const elsewhere =
    dir === undefined
      ? 'give a folder this user can write with --backup-dir (under systemd or in the container: --backup-dir /var/lib/tablesync/backups), or skip it with --no-backup'
      : 'give a folder this user can write with --backup-dir, or skip it with --no-backup';
  await mkdir(folder, { recursive: true, mode: 0o700 }).catch((err: Error) => {
    throw new BackupFileError(`cannot create the folder for the safety backup, ${folder}: ${err.message}; ${elsewhere}`, { cause: err });
  });
  const stamp = new Date().toISOString().replace(/[-:]/g, '');
  const file = join(folder, `${source.config.instance}-before-initial-sync-${stamp}.tsbackup`);
  const report = await backupWithProgress(source, file, out).catch((err: unknown) => {
    // A folder that exists but is not ours to write fails only here.
    if (err instanceof BackupFileError) throw new BackupFileError(`${err.message}; ${elsewhere}`, { cause: err });
    throw err;
  });
  out.write(
    `safety backup of the synced tables and tablesync's state (${plural(report.total, 'row')}): ${file}\n` +
      `  to go back to it: tablesync restore -c ${source.config.file} -i ${file}\n`,
  );
  return file;
}
