/** The slice of a logger this needs; a pino Logger fits. */
interface WarnLogger {
  warn(obj: object, msg: string): void;
}

/**
 * The listeners a transport calls when batches may have arrived (the
 * contract's `onArrival`): a burst of signals becomes one call after
 * `delayMs`, a listener that throws is logged and the others still run,
 * and nothing is called after `close()`. The timer never keeps a process
 * alive on its own.
 */
export class ArrivalListeners {
  readonly #listeners = new Set<() => void>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    private readonly transport: string,
    private readonly logger: WarnLogger,
    private readonly delayMs = 0,
  ) {}

  add(listener: () => void): void {
    if (!this.#closed) this.#listeners.add(listener);
  }

  /** Calls every listener once, soon, however often this is called meanwhile. */
  signal(): void {
    if (this.#closed || this.#timer !== undefined || this.#listeners.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#closed) return;
      for (const listener of this.#listeners) {
        try {
          listener();
        } catch (err) {
          this.logger.warn({ err }, `an arrival listener of the ${this.transport} transport threw`);
        }
      }
    }, this.delayMs);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#listeners.clear();
  }
}
