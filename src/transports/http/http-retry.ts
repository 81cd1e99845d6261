import type { HttpPolicy } from './http-policy.js';

/**
 * How long the active side waits before trying a failed request again (see
 * the retry figures of `HttpPolicy`).
 *
 * `failedAttempts` counts the attempts made so far (1 before the first
 * retry). `retryAfterMs` is what the peer asked for, if anything: it wins
 * over the backoff, capped at `retryAfterCapMs`. Otherwise the wait is a
 * random one between 0 and min(cap, base × 2^(failedAttempts-1)) ("full
 * jitter"), so that callers that failed together do not retry together.
 */
export function retryDelayMs(
  policy: Pick<HttpPolicy, 'backoffBaseMs' | 'backoffCapMs' | 'retryAfterCapMs'>,
  failedAttempts: number,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.retryAfterCapMs);
  const ceiling = Math.min(policy.backoffCapMs, policy.backoffBaseMs * 2 ** Math.max(0, failedAttempts - 1));
  return Math.floor(random() * ceiling);
}

/**
 * Milliseconds that a `Retry-After` header asks for: a whole number of
 * seconds, or an HTTP date (a date in the past means now). Undefined when the
 * header is absent or neither.
 */
export function parseRetryAfter(value: string | readonly string[] | undefined, now: number = Date.now()): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (text === undefined || text === '') return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
