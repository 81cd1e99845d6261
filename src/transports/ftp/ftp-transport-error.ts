import { TablesyncError } from '../../errors.js';

/** What an FtpTransportError carries besides its message. */
export interface FtpFailure {
  /** `host:port` of the server. */
  readonly server: string;
  /** The server path (folder or file) concerned, when there is one. */
  readonly path?: string;
  /** The server's FTP reply code (530, 550...) when it answered with a refusal. */
  readonly replyCode?: number;
  /** The socket or TLS code (`ECONNREFUSED`, `DEPTH_ZERO_SELF_SIGNED_CERT`...) when the connection failed. */
  readonly errno?: string;
  /** Follows `ftpPolicy`: whether the same operation may succeed later without anyone changing anything. */
  readonly retryable: boolean;
}

/**
 * The FTP server could not be reached, refused us, or refused an operation.
 * The message names the server as `host:port` and the folder or file
 * concerned, and never the password.
 */
export class FtpTransportError extends TablesyncError {
  readonly code = 'TS_ERR_FTP';
  readonly exitCode = 1;
  readonly server: string;
  readonly path: string | undefined;
  readonly replyCode: number | undefined;
  readonly errno: string | undefined;
  readonly retryable: boolean;

  constructor(message: string, failure: FtpFailure, options?: { cause?: unknown }) {
    super(message, options);
    this.server = failure.server;
    this.path = failure.path;
    this.replyCode = failure.replyCode;
    this.errno = failure.errno;
    this.retryable = failure.retryable;
  }
}
