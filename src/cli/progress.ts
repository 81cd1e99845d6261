/** How far a long command has come through one part of its work (a table, a field). */
export interface ProgressStep {
  /** What is being worked through (`hq: clients`); a new part starts a new line. */
  readonly part: string;
  /** Rows of this part handled so far, earlier runs included. */
  readonly count: number;
  /** Rows of this part in all. */
  readonly total: number;
  readonly done: boolean;
}

/**
 * A progress bar with rows per second and time left on a terminal; a plain
 * line every few seconds otherwise (a log file should not fill with bars).
 * `verb` says what happens to the rows: `queued`, `checked`, `written`.
 */
export class ProgressReport {
  readonly #tty: boolean;
  #startedAt = Date.now();
  #firstCount: number | undefined;
  #lastLine = 0;
  #open = false;
  #part = '';

  constructor(
    private readonly out: NodeJS.WriteStream | NodeJS.WritableStream,
    private readonly verb: string,
  ) {
    this.#tty = 'isTTY' in out && out.isTTY === true;
  }

  update(p: ProgressStep): void {
    if (p.part !== this.#part) {
      this.end();
      this.#part = p.part;
      this.#startedAt = Date.now();
      this.#firstCount = p.count;
    }
    const seconds = Math.max((Date.now() - this.#startedAt) / 1000, 0.001);
    const rate = (p.count - (this.#firstCount ?? 0)) / seconds;
    const share = p.total === 0 ? 1 : Math.min(1, p.count / p.total);
    const left = rate > 0 ? Math.max(0, (p.total - p.count) / rate) : undefined;
    const figures = `${p.count.toLocaleString('en')}/${p.total.toLocaleString('en')} rows, ${Math.round(rate).toLocaleString('en')} rows/s${
      p.done ? '' : left === undefined ? '' : `, ${Math.ceil(left)} s left`
    }`;
    if (this.#tty) {
      const width = 30;
      const bar = '#'.repeat(Math.round(share * width)).padEnd(width, '-');
      this.out.write(`\r${p.part} [${bar}] ${(share * 100).toFixed(0).padStart(3)}% ${figures}   `);
      this.#open = true;
    } else if (p.done || Date.now() - this.#lastLine >= 2000) {
      this.out.write(`${p.part}: ${(share * 100).toFixed(0)}% ${figures}${p.done ? `, all ${this.verb}` : ''}\n`);
      this.#lastLine = Date.now();
    }
  }

  /** Writes lines of text between updates: the bar, if one is open, goes on below them. */
  note(text: string): void {
    this.end();
    this.out.write(text);
  }

  /** Ends the bar's line, so that what is written next starts on a line of its own. */
  end(): void {
    if (this.#open) this.out.write('\n');
    this.#open = false;
  }
}
