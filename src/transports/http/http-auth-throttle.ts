import type { HttpPolicy } from './http-policy.js';

type ThrottlePolicy = Pick<HttpPolicy, 'authFailureLimit' | 'authFailureWindowMs' | 'authThrottleBaseMs' | 'authThrottleCapMs' | 'maxTrackedAddresses'>;

interface AddressRecord {
  /** When each recent failure happened, oldest first. */
  failures: number[];
  blockedUntil: number;
}

/**
 * Slows down whoever keeps failing to authenticate, per remote address: after
 * `authFailureLimit` failures within `authFailureWindowMs`, the address is
 * answered 429 for `authThrottleBaseMs`, a block that doubles with every
 * further failure up to `authThrottleCapMs`. Failures age out of the window;
 * a success does not wipe them, so an attacker cannot reset the count by
 * replaying one good request.
 *
 * Behind a reverse proxy every caller has the proxy's address, so one
 * guesser throttles everyone; the legitimate side then only waits a few
 * seconds and retries (429 is retryable).
 */
export class HttpAuthThrottle {
  readonly #addresses = new Map<string, AddressRecord>();

  constructor(
    private readonly policy: ThrottlePolicy,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds that `address` is still blocked for; 0 when it may try. */
  blockedFor(address: string): number {
    const record = this.#addresses.get(address);
    if (record === undefined) return 0;
    return Math.max(0, record.blockedUntil - this.now());
  }

  /** Counts one failed authentication from `address`, and blocks it once it has failed too often. */
  recordFailure(address: string): void {
    const now = this.now();
    let record = this.#addresses.get(address);
    if (record === undefined) {
      this.#makeRoom(now);
      record = { failures: [], blockedUntil: 0 };
      this.#addresses.set(address, record);
    }
    record.failures = record.failures.filter((at) => at > now - this.policy.authFailureWindowMs);
    record.failures.push(now);
    const beyond = record.failures.length - this.policy.authFailureLimit;
    if (beyond >= 0) {
      const block = Math.min(this.policy.authThrottleCapMs, this.policy.authThrottleBaseMs * 2 ** beyond);
      record.blockedUntil = now + block;
    }
  }

  /** Keeps memory bounded when many addresses fail: the forgotten first, then the oldest. */
  #makeRoom(now: number): void {
    if (this.#addresses.size < this.policy.maxTrackedAddresses) return;
    for (const [address, record] of this.#addresses) {
      const latest = record.failures[record.failures.length - 1] ?? 0;
      if (latest <= now - this.policy.authFailureWindowMs && record.blockedUntil <= now) this.#addresses.delete(address);
    }
    for (const address of this.#addresses.keys()) {
      if (this.#addresses.size < this.policy.maxTrackedAddresses) break;
      this.#addresses.delete(address);
    }
  }
}
