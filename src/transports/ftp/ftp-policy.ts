/**
 * The ftp transport's timing and retry figures, kept as data so that they
 * are documented once and read in one place.
 *
 * The transport retries by itself only where a connection was lost: it
 * reconnects (up to `reconnectDelaysMs.length + 1` attempts) and runs the
 * operation once more. Anything else throws, and the engine's next exchange
 * is the retry; what this policy decides then is what the thrown error's
 * `retryable` says.
 */
export interface FtpPolicy {
  /**
   * Default 64 MiB. The largest batch uploaded: batches are downloaded whole
   * into memory, so a bound keeps a backlog of batches affordable. The
   * engine splits its batches to fit.
   */
  readonly maxBatchBytes: number;

  /**
   * Default 30000 (30 s). Milliseconds that the server may stay silent while
   * a command, a connection or a transfer is under way. Then the connection
   * is given up, and handled like one the server dropped: reconnected, and
   * the operation run once more. An idle connection never times out on our
   * side; a server that closed it meanwhile is reconnected on the next use.
   */
  readonly timeoutMs: number;

  /**
   * Default `[250, 1000, 2500]`. Milliseconds to wait before each further
   * attempt to connect, after a first attempt failed in a way that may pass
   * (the server refuses connections while it restarts, a timeout, a reset):
   * four attempts within about four seconds, so that a restarted server is
   * found again within one exchange. A refused login or certificate is never
   * tried again. Its length plus one is the number of attempts.
   */
  readonly reconnectDelaysMs: readonly number[];

  /**
   * Default 5000. Milliseconds between two listings of the download folder
   * while `onArrival` is in use: FTP has no notifications, so arrivals are
   * found by listing. A listing made by `receive` meanwhile counts, so a
   * side that exchanges more often than this costs no extra listing.
   * Overridden by the `pollIntervalMs` option.
   */
  readonly pollIntervalMs: number;

  /**
   * Default 3600000 (one hour). A temporary file of ours
   * (`.<name>.<milliseconds>.<random>.tmp`) whose name says it was started
   * longer ago than this, found in the upload folder at first use, is left
   * over from a send that a lost connection or a crash interrupted, and is
   * deleted. The age keeps a send still running in another process safe.
   * The time is read from the name, not the server, whose listings rarely
   * give seconds and whose clock may differ from ours.
   */
  readonly staleTempMs: number;

  /**
   * FTP replies after which the same operation may succeed later without
   * anyone changing anything: every transient negative reply of RFC 959
   * (421 service closing, 425 cannot open the data connection, 426 transfer
   * aborted, 450 file busy, 451 local error, 452 not enough storage), and
   * 552 (storage allocation exceeded), since the peer frees the space by
   * taking its batches. Any other 5xx reply (530 not logged in, 550 no such
   * file or no access, 553 name not allowed...) needs someone to act.
   */
  readonly retryableReplyCodes: ReadonlySet<number>;

  /**
   * Socket error codes after which connecting may succeed later: a server
   * restarting or unreachable for a while, a connection reset or timed out,
   * a name server that did not answer (EAI_AGAIN). ENOTFOUND (no such host
   * name) and TLS certificate errors are not among them: they need the
   * configuration or the server to change.
   */
  readonly retryableSocketCodes: ReadonlySet<string>;

  /** Default `rejected`. The sub-folder of the download folder where rejected batches are kept. */
  readonly rejectedFolder: string;
}

export const ftpPolicy: FtpPolicy = Object.freeze({
  maxBatchBytes: 64 * 1024 * 1024,
  timeoutMs: 30_000,
  reconnectDelaysMs: Object.freeze([250, 1000, 2500]),
  pollIntervalMs: 5000,
  staleTempMs: 60 * 60 * 1000,
  retryableReplyCodes: new Set([421, 425, 426, 450, 451, 452, 552]),
  retryableSocketCodes: new Set([
    'ECONNREFUSED',
    'ECONNRESET',
    'ECONNABORTED',
    'ETIMEDOUT',
    'EPIPE',
    'EHOSTUNREACH',
    'EHOSTDOWN',
    'ENETUNREACH',
    'ENETDOWN',
    'EAI_AGAIN',
  ]),
  rejectedFolder: 'rejected',
});
