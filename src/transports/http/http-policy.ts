/**
 * The http transport's timing, retry, size and authentication figures, kept
 * as data so that they are documented once and read in one place. Every
 * class of the transport takes `policy?: Partial<HttpPolicy>` to override
 * some of them (tests shorten the timings that way).
 *
 * Unlike the folder transport, the active side retries by itself, within one
 * operation: a connection that fails or an answer that says "later" is tried
 * again with exponential backoff and full jitter (a random wait between 0 and
 * min(cap, base × 2^(n-1)) before the n-th retry), or after the wait the peer
 * asked for in `Retry-After`. Every operation of the http API is idempotent
 * (a batch is replaced by name, a batch is dropped by name and version), so a
 * retry never does anything twice. When the attempts are used up the
 * operation throws a retryable error and the engine's next exchange starts
 * over.
 */
export interface HttpPolicy {
  /** Default 10000. Milliseconds to open the TCP connection (and finish the TLS handshake) before giving up on that attempt. */
  readonly connectTimeoutMs: number;

  /** Default 30000. Milliseconds from sending a request to the answer's headers. */
  readonly headersTimeoutMs: number;

  /** Default 30000. Milliseconds the answer's body may stall between two chunks. */
  readonly bodyTimeoutMs: number;

  /**
   * Error codes of a failed attempt after which trying again may succeed:
   * the peer is restarting or the network hiccups (ECONNREFUSED,
   * ECONNRESET, EPIPE, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, EHOSTDOWN,
   * ENETDOWN, EAI_AGAIN: a name server that did not answer), undici's own
   * timeouts (UND_ERR_CONNECT_TIMEOUT, UND_ERR_HEADERS_TIMEOUT,
   * UND_ERR_BODY_TIMEOUT) and a connection closed in the middle of an answer
   * (UND_ERR_SOCKET, UND_ERR_CLOSED). Anything else (ENOTFOUND: no such host;
   * a certificate that is not trusted; a TLS handshake that fails) needs
   * someone to act, so it is not retried.
   */
  readonly retryableErrorCodes: ReadonlySet<string>;

  /**
   * Default 429, 500, 502, 503, 504: statuses after which the same request
   * may succeed later (the peer is busy, restarting, or behind a proxy that
   * cannot reach it yet). 501 and 505 say the peer cannot do it at all, and
   * 4xx statuses other than 429 say the request is wrong; neither is retried.
   */
  readonly retryableStatuses: ReadonlySet<number>;

  /** Default 5. Attempts per operation, the first one included; 1 turns retrying off. */
  readonly attempts: number;

  /** Default 200. Milliseconds: the backoff ceiling before the first retry; it doubles for each further one. */
  readonly backoffBaseMs: number;

  /** Default 5000. Milliseconds: the backoff ceiling never grows past this. */
  readonly backoffCapMs: number;

  /**
   * Default 30000. Milliseconds: the most we wait because an answer's
   * `Retry-After` (seconds, or an HTTP date) asked for it. A longer request is
   * cut to this, so that one answer cannot stall an exchange for an hour.
   */
  readonly retryAfterCapMs: number;

  /**
   * Default 8 MiB (8388608). The largest body of one request: a batch, a
   * description, a rejection. The passive side refuses a bigger one with 413
   * (before reading it when `Content-Length` says so, or as soon as the
   * streamed body passes the limit) and closes the connection instead of
   * reading the rest; the active side refuses to send one. The engine splits
   * its batches to fit.
   */
  readonly maxBatchBytes: number;

  /**
   * Default 16 MiB. The batch bytes (before base64) that one answer to
   * `GET /v1/syncs/{sync}/outbox` carries at most; it always carries at least
   * one waiting batch. The rest is fetched by the next `receive`.
   */
  readonly receivePageBytes: number;

  /** Default 64. The batches that one answer to `GET /v1/syncs/{sync}/outbox` carries at most. */
  readonly receivePageBatches: number;

  /**
   * Default 256. Batches the passive side keeps in memory per sync and
   * direction. The engine keeps far fewer unacknowledged (its window); the
   * bound only protects the passive side from a runaway peer. A new name
   * beyond it is answered 503 (the active side retries later).
   */
  readonly maxWaitingBatches: number;

  /**
   * Default 60000. Milliseconds: a signed request is accepted only when its
   * timestamp is within this much of the passive side's clock, either way.
   * Its nonce is remembered for that long, so that a replay inside the
   * window is refused too.
   */
  readonly clockWindowMs: number;

  /** Default 5. Failed authentications from one address within `authFailureWindowMs` after which it is throttled. */
  readonly authFailureLimit: number;

  /** Default 60000. Milliseconds over which failed authentications from one address are counted. */
  readonly authFailureWindowMs: number;

  /**
   * Default 1000. Milliseconds an address is answered 429 (with
   * `Retry-After`) after its `authFailureLimit`-th failure; the block doubles
   * with each further failure, up to `authThrottleCapMs`.
   */
  readonly authThrottleBaseMs: number;

  /** Default 5000. Milliseconds: the longest block of a throttled address. */
  readonly authThrottleCapMs: number;

  /** Default 10000. Addresses whose failures are remembered at most; the oldest are forgotten first. */
  readonly maxTrackedAddresses: number;

  /** Default 30000. Milliseconds the passive side waits for a request's headers (node's `server.headersTimeout`). */
  readonly serverHeadersTimeoutMs: number;

  /** Default 120000. Milliseconds the passive side waits for a whole request, body included (node's `server.requestTimeout`). */
  readonly serverRequestTimeoutMs: number;

  /** Default 5000. Milliseconds an idle keep-alive connection stays open on the passive side. */
  readonly keepAliveTimeoutMs: number;

  /** Default 10000. Milliseconds that closing the listener waits for requests in flight before cutting their connections. */
  readonly closeTimeoutMs: number;
}

export const httpPolicy: HttpPolicy = Object.freeze({
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  bodyTimeoutMs: 30_000,
  retryableErrorCodes: new Set([
    'ECONNREFUSED',
    'ECONNRESET',
    'EPIPE',
    'ETIMEDOUT',
    'EHOSTUNREACH',
    'ENETUNREACH',
    'EHOSTDOWN',
    'ENETDOWN',
    'EAI_AGAIN',
    'UND_ERR_CONNECT_TIMEOUT',
    'UND_ERR_HEADERS_TIMEOUT',
    'UND_ERR_BODY_TIMEOUT',
    'UND_ERR_SOCKET',
    'UND_ERR_CLOSED',
  ]),
  retryableStatuses: new Set([429, 500, 502, 503, 504]),
  attempts: 5,
  backoffBaseMs: 200,
  backoffCapMs: 5_000,
  retryAfterCapMs: 30_000,
  maxBatchBytes: 8 * 1024 * 1024,
  receivePageBytes: 16 * 1024 * 1024,
  receivePageBatches: 64,
  maxWaitingBatches: 256,
  clockWindowMs: 60_000,
  authFailureLimit: 5,
  authFailureWindowMs: 60_000,
  authThrottleBaseMs: 1_000,
  authThrottleCapMs: 5_000,
  maxTrackedAddresses: 10_000,
  serverHeadersTimeoutMs: 30_000,
  serverRequestTimeoutMs: 120_000,
  keepAliveTimeoutMs: 5_000,
  closeTimeoutMs: 10_000,
});

/** The default policy with `overrides` laid over it. */
export function resolveHttpPolicy(overrides: Partial<HttpPolicy> = {}): HttpPolicy {
  return Object.freeze({ ...httpPolicy, ...overrides });
}
