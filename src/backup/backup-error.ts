import { TablesyncError } from '../errors.js';

/**
 * A backup file that cannot be used: damaged, cut short, not a tablesync
 * backup, or of a format version this tablesync does not know. Restore
 * finds this before it touches the database.
 */
export class BackupFileError extends TablesyncError {
  readonly code = 'TS_ERR_BACKUP_FILE';
  readonly retryable = false;
  readonly exitCode = 1;
}

/** An encrypted backup given no password, or the wrong one: fixed on the command line, so exit 2. */
export class BackupPasswordError extends TablesyncError {
  readonly code = 'TS_ERR_BACKUP_PASSWORD';
  readonly retryable = false;
  readonly exitCode = 2;
}
