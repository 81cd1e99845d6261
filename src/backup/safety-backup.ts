import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BackupFileError } from './backup-error.js';
import { syncedTablesHoldData, writeBackup, type BackupOptions, type BackupReport, type BackupSource } from './backup-writer.js';

/** What the safety backup before an initial sync came to. */
export type SafetyBackupOutcome = { readonly kind: 'taken'; readonly report: BackupReport } | { readonly kind: 'empty' };

/**
 * The safety backup before an initial sync: taken when the synced tables
 * hold data, into `folder` (made with mode 0700 if need be), named after the
 * instance and the time, not encrypted. Both sides take one: the command on
 * the sending side, the daemon on the receiving side before it applies the
 * first rows. `remedy` ends the message of a folder that cannot be written,
 * since what to do differs between the two.
 */
export async function takeSafetyBackup(
  source: Omit<BackupSource, 'schema'>,
  folder: string,
  remedy: string,
  onProgress?: BackupOptions['onProgress'],
): Promise<SafetyBackupOutcome> {
  // Read now, not when the instance was opened: the state tables may have been made or upgraded since.
  const current: BackupSource = { ...source, schema: await source.database.introspect() };
  if (!(await syncedTablesHoldData(current))) return { kind: 'empty' };
  const dir = resolve(folder);
  await mkdir(dir, { recursive: true, mode: 0o700 }).catch((err: Error) => {
    throw new BackupFileError(`cannot create the folder for the safety backup, ${dir}: ${err.message}; ${remedy}`, { cause: err });
  });
  const stamp = new Date().toISOString().replace(/[-:]/g, '');
  const file = join(dir, `${source.config.instance}-before-initial-sync-${stamp}.tsbackup`);
  try {
    return { kind: 'taken', report: await writeBackup(current, file, onProgress === undefined ? {} : { onProgress }) };
  } catch (err) {
    // A folder that exists but is not ours to write, or a full disk, fails only here.
    if (err instanceof BackupFileError) throw new BackupFileError(`${err.message}; ${remedy}`, { cause: err });
    throw err;
  }
}
