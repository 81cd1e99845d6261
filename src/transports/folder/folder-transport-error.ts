import { TablesyncError } from '../../errors.js';

/**
 * A folder of the folder transport could not be created, listed, read or
 * written. `path` is the file or folder concerned; `errno` is the file
 * system's code (`EACCES`, `ENOTDIR`...) when the file system refused, and
 * `retryable` follows `folderPolicy.retryableCodes`.
 */
export class FolderTransportError extends TablesyncError {
  readonly code = 'TS_ERR_FOLDER';
  readonly exitCode = 1;

  constructor(
    message: string,
    readonly path: string,
    readonly errno: string | undefined,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
