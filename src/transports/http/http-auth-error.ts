import { TablesyncError } from '../../errors.js';
import type { AuthRefusal } from './http-auth.js';

/**
 * The two sides of an http sync do not trust each other: the passive side
 * refused our signature (`refusal` says why: the passwords differ, the clocks
 * disagree, a replay...), or an answer came back without the passive side's
 * valid signature (`bad-response-signature`: something between the two
 * altered it, or the peer does not hold the sync's password).
 *
 * `target` is the peer's URL, never with a password. Retryable only when the
 * cause may pass by itself (a replay refusal or a body altered on the way);
 * different passwords or clocks need someone to act.
 */
export class HttpAuthError extends TablesyncError {
  readonly code = 'TS_ERR_HTTP_AUTH';
  readonly exitCode = 1;

  constructor(
    message: string,
    readonly target: string,
    readonly refusal: AuthRefusal | 'bad-response-signature',
    readonly retryable: boolean,
  ) {
    super(message);
  }
}
