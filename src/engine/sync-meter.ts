import type { ApplyStats } from './applier.js';

/**
 * What a sync session reports as it works. The daemon's meter (metrics.ts)
 * turns it into /metrics and /healthz; elsewhere (the demo, one-off
 * commands, tests of the engine) nothing listens.
 */
export interface SyncMeter {
  /** A batch of the peer's was applied here, taking `ms` milliseconds. */
  applied(stats: Readonly<ApplyStats>, ms: number): void;
  /** A new batch of ours left with `events` changes. */
  sent(events: number): void;
  /** A batch the peer had not acknowledged was sent again. */
  resent(): void;
  /** A batch of the peer's was refused as bad input. */
  refused(): void;
  /** An exchange reached the peer (or the folders or FTP server both sides share) at `at`. */
  reached(at: number): void;
}

export const silentMeter: SyncMeter = {
  applied: () => {},
  sent: () => {},
  resent: () => {},
  refused: () => {},
  reached: () => {},
};
