/**
 * The folder transport's timing and retry figures, kept as data so that they
 * are documented once and read in one place.
 *
 * The transport never retries by itself: a failed `send` or `receive` throws,
 * and the engine's next exchange is the retry. What this policy decides is
 * what the thrown error's `retryable` says, and how quickly arrivals are
 * noticed.
 */
export interface FolderPolicy {
  /**
   * Default 64 MiB. The largest batch file written: files are read whole
   * into memory, so a bound keeps a backlog of batches affordable. The
   * engine splits its batches to fit.
   */
  readonly maxBatchBytes: number;

  /**
   * Default 1000. Milliseconds between two listings of the download folder
   * while `onArrival` is in use. File-system events are lost on some network
   * mounts (NFS, SMB) and when the folder is replaced under the watcher; the
   * scan bounds how late an arrival is noticed then. Overridden by the
   * `scanIntervalMs` option.
   */
  readonly scanIntervalMs: number;

  /**
   * Default 20. Milliseconds that arrival events are gathered before the
   * listener is called once for all of them, so that a burst of batches
   * costs one call. It is a delay from the first event, not from the last,
   * so a steady stream of events cannot postpone the call forever.
   */
  readonly arrivalDelayMs: number;

  /**
   * Default 3600000 (one hour). A temporary file of ours (`.<name>...tmp`)
   * older than this, found in the upload folder at first use, is left over
   * from a crash in the middle of a send and is deleted. The age keeps a send
   * that is still running in another process of ours safe.
   */
  readonly staleTempMs: number;

  /**
   * Error codes after which the same operation may succeed later without
   * anyone changing anything: a network mount that hiccups (EIO, ESTALE,
   * ETIMEDOUT, ENOTCONN, EHOSTDOWN), a busy or locked file (EBUSY, EAGAIN),
   * too many open files
   * (EMFILE, ENFILE), a full disk that the peer empties by reading (ENOSPC),
   * and a folder removed under us (ENOENT: it is created again on the next
   * attempt). Any other code (EACCES, EROFS, ENOTDIR, EEXIST...) needs
   * someone to act, so it is not retryable.
   */
  readonly retryableCodes: ReadonlySet<string>;

  /**
   * Codes that are retryable on Windows only: there EPERM is how a rename
   * onto a file that a reader holds open fails, while on POSIX systems it is
   * a real refusal (sticky bit, immutable file).
   */
  readonly retryableOnWindows: ReadonlySet<string>;

  /**
   * Error codes that mean "this platform or file system cannot fsync a
   * folder" (Windows cannot open one, some network file systems refuse the
   * call, a write-only drop folder cannot be opened for reading). Then the
   * rename is trusted as it stands; any other error fails the send.
   */
  readonly folderSyncUnsupportedCodes: ReadonlySet<string>;

  /** Default `rejected`. The sub-folder of the download folder where rejected batches are kept. */
  readonly rejectedFolder: string;
}

export const folderPolicy: FolderPolicy = Object.freeze({
  maxBatchBytes: 64 * 1024 * 1024,
  scanIntervalMs: 1000,
  arrivalDelayMs: 20,
  staleTempMs: 60 * 60 * 1000,
  retryableCodes: new Set([
    'EIO',
    'ESTALE',
    'ETIMEDOUT',
    'ENOTCONN',
    'EHOSTDOWN',
    'ECONNRESET',
    'EBUSY',
    'EAGAIN',
    'EMFILE',
    'ENFILE',
    'ENOSPC',
    'ENOENT',
  ]),
  retryableOnWindows: new Set(['EPERM']),
  folderSyncUnsupportedCodes: new Set(['EISDIR', 'EPERM', 'EACCES', 'EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EBADF']),
  rejectedFolder: 'rejected',
});
