/**
 * What /healthz holds a daemon to: every sync has reached its peer within
 * the instance's `health.peerTimeout`. For `folder` and `ftp`, reaching the
 * peer means reaching the folders or the FTP server both sides share: there,
 * a quiet peer and a stopped one look the same.
 */

/** One sync, as the health check sees it. Times in milliseconds since the epoch. */
export interface PeerWatch {
  readonly sync: string;
  /** The last time the peer was reached; undefined if it has not been yet. */
  readonly lastContactAt: number | undefined;
  /** Since when the daemon runs this sync: a sync that never reached its peer is late once this is too long ago. */
  readonly watchedSince: number;
  readonly timeoutMs: number;
}

/** What is wrong, in the shape the listener serves with a 503. */
export interface HealthProblem {
  /** Stable, for monitoring to branch on. */
  readonly error: 'peer-unreachable';
  readonly reason: string;
  readonly syncs: readonly string[];
}

/** Whether the sync's peer has gone unreached for longer than its timeout. */
export function isLate(watch: PeerWatch, now: number): boolean {
  return now - (watch.lastContactAt ?? watch.watchedSince) > watch.timeoutMs;
}

/** Undefined when every sync reached its peer in time; otherwise which did not, and for how long. */
export function peerHealth(watches: readonly PeerWatch[], now: number): HealthProblem | undefined {
  const late = watches.filter((watch) => isLate(watch, now));
  if (late.length === 0) return undefined;
  const seconds = (ms: number): string => `${Math.floor(ms / 1000)} s`;
  const timeout = (ms: number): string => `${ms / 1000} s`;
  const sentences = late.map((watch) =>
    watch.lastContactAt === undefined
      ? `sync ${watch.sync} has not reached its peer in the ${seconds(now - watch.watchedSince)} since it started (health.peerTimeout: ${timeout(watch.timeoutMs)})`
      : `sync ${watch.sync} last reached its peer ${seconds(now - watch.lastContactAt)} ago (health.peerTimeout: ${timeout(watch.timeoutMs)})`,
  );
  return { error: 'peer-unreachable', reason: `${sentences.join('; ')}; see the log for why`, syncs: late.map((watch) => watch.sync) };
}
