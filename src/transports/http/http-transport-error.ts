import { TablesyncError } from '../../errors.js';

/**
 * The http transport could not do what it was asked: the peer could not be
 * reached, answered with an error status, or sent something that is not an
 * answer of the http API; or the listener could not start.
 *
 * `target` is the peer's URL (never with a password) or the listen address.
 * `statusCode` is the peer's answer when there was one, `errno` the
 * connection's error code (`ECONNREFUSED`, `UND_ERR_CONNECT_TIMEOUT`...)
 * when there was none. `retryable` follows `HttpPolicy.retryableErrorCodes`
 * and `retryableStatuses`: true when the attempts were used up on a failure
 * that may pass by itself.
 */
export class HttpTransportError extends TablesyncError {
  readonly code = 'TS_ERR_HTTP';
  readonly exitCode = 1;

  readonly statusCode: number | undefined;
  readonly errno: string | undefined;

  constructor(
    message: string,
    readonly target: string,
    readonly retryable: boolean,
    details: { readonly statusCode?: number; readonly errno?: string; readonly cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.statusCode = details.statusCode;
    this.errno = details.errno;
  }
}
