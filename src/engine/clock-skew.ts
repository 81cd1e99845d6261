import type { Logger } from '../log.js';

/** When a peer's clock counts as ahead of ours, and how often that is said again. */
export interface ClockSkewPolicy {
  /** A batch stamped this far in our future or less is taken for clocks that agree. Default 5 s. */
  readonly toleranceMs: number;
  /** While the peer's clock stays ahead, the warning is repeated at most this often. Default 10 min. */
  readonly repeatAfterMs: number;
}

export const defaultClockSkewPolicy: ClockSkewPolicy = { toleranceMs: 5_000, repeatAfterMs: 10 * 60_000 };

/**
 * Reports a peer whose clock runs ahead of ours, per sync.
 *
 * Every batch carries its sender's clock at the time it was built
 * (`sentAt`). A batch may reach us late (in transit, waiting in a folder
 * until we look, sent again byte for byte), never early: a batch stamped in
 * our future proves the sender's clock is ahead, by at least that much.
 * How late a batch is proves nothing, so a peer's clock that is behind is
 * not reported here; it is reported by the peer, to which our batches come
 * from its future. Each side watches the other, so two clocks that
 * disagree are always reported on one side.
 *
 * Why it matters: a change's version carries the time the application made
 * it by its own side's clock, and `newest-wins` keeps the later version, so
 * the side whose clock is ahead wins conflicts it should lose.
 */
export class ClockSkewWatch {
  #lastWarnedAt: number | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly policy: ClockSkewPolicy = defaultClockSkewPolicy,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes note of a batch the peer sent (one that passed validation); warns when the sender's clock is ahead, at most once per `repeatAfterMs`. */
  observe(batch: { readonly from: string; readonly sentAt: number }, name: string): void {
    const now = this.now();
    const aheadMs = batch.sentAt - now;
    if (aheadMs <= this.policy.toleranceMs) return;
    if (this.#lastWarnedAt !== undefined && now - this.#lastWarnedAt < this.policy.repeatAfterMs) return;
    this.#lastWarnedAt = now;
    const seconds = Math.round(aheadMs / 1000);
    this.logger.warn(
      { peer: batch.from, batch: name, aheadMs, peerClock: new Date(batch.sentAt).toISOString(), ourClock: new Date(now).toISOString() },
      `clocks disagree: ${batch.from}'s clock is at least ${seconds} s ahead of this side's (batch ${name} was sent at ${new Date(batch.sentAt).toISOString()}, ` +
        `which is still ${seconds} s away here). newest-wins favours the changes of the side whose clock is ahead: synchronise both clocks (NTP)`,
    );
  }
}
