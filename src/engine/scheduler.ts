import cron, { type ScheduledTask } from 'node-cron';
import type { SyncConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { SyncSession } from './sync-session.js';

/**
 * Runs a sync's exchanges: every `every`, or on the `schedule`, and as soon
 * as the transport says something arrived. Never two at once: a request
 * during an exchange runs one more exchange right after it, and so does an
 * exchange that moved anything (a backlog drains at full speed, not one
 * batch per period).
 */
export class ExchangeScheduler {
  #timer: NodeJS.Timeout | undefined;
  #task: ScheduledTask | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #failures = 0;
  #busy = false;

  constructor(
    private readonly session: SyncSession,
    private readonly sync: SyncConfig,
    private readonly logger: Logger,
  ) {}

  start(): void {
    if (this.sync.schedule !== undefined) {
      this.#task = cron.schedule(this.sync.schedule, () => this.trigger(), { name: `tablesync-${this.sync.name}` });
    }
    this.session.transport.onArrival(() => this.trigger());
    this.trigger();
  }

  /** Asks for an exchange as soon as possible. */
  trigger(): void {
    if (this.#stopped) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
      if (this.#stopped) return;
      if (this.#again || this.#busy) {
        this.#again = false;
        this.trigger();
      } else if (this.sync.everyMs !== undefined) {
        this.#timer = setTimeout(() => this.trigger(), this.#delay(this.sync.everyMs));
      }
    });
  }

  async #run(): Promise<void> {
    try {
      const report = await this.session.exchange();
      this.#failures = 0;
      this.#busy = report.received + report.sent + report.resent > 0;
      if (this.#busy || report.refused > 0) this.logger.debug(report, 'exchange done');
    } catch (err) {
      this.#busy = false;
      this.#failures += 1;
      this.logger.error({ err, failures: this.#failures }, 'exchange failed; trying again');
    }
  }

  /** After failures, wait longer (up to a minute) so a broken peer or database is not hammered. */
  #delay(everyMs: number): number {
    if (this.#failures === 0) return everyMs;
    return Math.min(60_000, everyMs * 2 ** Math.min(this.#failures, 8));
  }

  /** Stops scheduling and waits for the exchange in hand, if any, to finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#task?.stop();
    await this.#running;
  }
}
