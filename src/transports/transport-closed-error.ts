import { TablesyncError } from '../errors.js';

/** A transport was used after `close()`: a bug in the caller's lifecycle, so trying again cannot help. */
export class TransportClosedError extends TablesyncError {
  readonly code = 'TS_ERR_TRANSPORT_CLOSED';
  readonly retryable = false;
  readonly exitCode = 1;

  /** `transport` names the closed transport for the message, such as `folder transport (upload /a, download /b)`. */
  constructor(
    readonly transport: string,
    readonly operation: string,
  ) {
    super(`cannot ${operation}: the ${transport} is closed. Create a new transport instead of reusing one after close().`);
  }
}
