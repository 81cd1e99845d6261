import type { InstanceConfig } from '../config/types.js';
import { InitialSync, initialSyncParts, restartInitialSync, type InitialSyncProgress } from '../engine/initial-sync.js';
import { createTransport } from '../transports/create-transport.js';
import { withInstanceContext } from './open-instance.js';

export interface InitialSyncCommandOptions {
  readonly sync?: string;
  readonly table?: number;
  readonly field?: number;
  readonly create: boolean;
  readonly restart: boolean;
}

/**
 * `tablesync initial-sync`: queues every existing row for the daemon to
 * send, shows progress (a bar on a terminal, a line every few seconds
 * otherwise), then waits until the peer has acknowledged it all. Ctrl-C
 * stops after the chunk in hand; running the command again resumes.
 */
export async function initialSyncCommand(config: InstanceConfig, out: NodeJS.WriteStream | NodeJS.WritableStream, options: InitialSyncCommandOptions): Promise<number> {
  return withInstanceContext(config, async (context) => {
    const parts = initialSyncParts(context, options);
    if (options.restart) await restartInitialSync(context, parts);

    // Batches must fit every transport they go through.
    let maxBatchBytes = Number.POSITIVE_INFINITY;
    for (const mapping of new Set(parts.map((p) => p.mapping))) {
      const transport = createTransport(mapping.sync.transport, { sync: mapping.sync, ...(config.tls?.ca === undefined ? {} : { caFile: config.tls.ca }) });
      maxBatchBytes = Math.min(maxBatchBytes, transport.maxBatchBytes);
      await transport.close();
    }

    const progress = new ProgressReport(out);
    const sync = new InitialSync(context, parts, maxBatchBytes, (p) => progress.update(p));
    let interrupted = false;
    const onSignal = (): void => {
      interrupted = true;
      sync.stop();
      out.write('\nstopping after the chunk in hand; run the same command again to resume\n');
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const started = Date.now();
      const { rows, lastSeq } = await sync.run();
      progress.end();
      if (interrupted) return 1;
      if (lastSeq === 0) {
        out.write('nothing left to send: an earlier run finished (use --restart to send everything again)\n');
        return 0;
      }
      out.write(`queued ${rows.toLocaleString('en')} rows; waiting for the peer to acknowledge them (tablesync run sends them)\n`);
      await sync.acknowledged(lastSeq);
      if (interrupted) return 1;
      const seconds = (Date.now() - started) / 1000;
      out.write(`done: ${rows.toLocaleString('en')} rows in ${seconds.toFixed(1)} s (${Math.round(rows / Math.max(seconds, 0.001)).toLocaleString('en')} rows/s)\n`);
      return 0;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
}

/** A progress bar with rows per second and time left on a terminal; a plain line every few seconds otherwise. */
class ProgressReport {
  readonly #tty: boolean;
  #startedAt = Date.now();
  #firstQueued: number | undefined;
  #lastLine = 0;
  #open = false;
  #part = '';

  constructor(private readonly out: NodeJS.WriteStream | NodeJS.WritableStream) {
    this.#tty = 'isTTY' in out && out.isTTY === true;
  }

  update(p: InitialSyncProgress): void {
    const part = `${p.sync}: ${p.table}${p.field === undefined ? '' : `.${p.field}`}`;
    if (part !== this.#part) {
      this.end();
      this.#part = part;
      this.#startedAt = Date.now();
      this.#firstQueued = p.queued;
    }
    const seconds = Math.max((Date.now() - this.#startedAt) / 1000, 0.001);
    const rate = (p.queued - (this.#firstQueued ?? 0)) / seconds;
    const share = p.total === 0 ? 1 : Math.min(1, p.queued / p.total);
    const left = rate > 0 ? Math.max(0, (p.total - p.queued) / rate) : undefined;
    const figures = `${p.queued.toLocaleString('en')}/${p.total.toLocaleString('en')} rows, ${Math.round(rate).toLocaleString('en')} rows/s${
      p.done ? '' : left === undefined ? '' : `, ${Math.ceil(left)} s left`
    }`;
    if (this.#tty) {
      const width = 30;
      const bar = '#'.repeat(Math.round(share * width)).padEnd(width, '-');
      this.out.write(`\r${part} [${bar}] ${(share * 100).toFixed(0).padStart(3)}% ${figures}   `);
      this.#open = true;
    } else if (p.done || Date.now() - this.#lastLine >= 2000) {
      this.out.write(`${part}: ${(share * 100).toFixed(0)}% ${figures}${p.done ? ', all queued' : ''}\n`);
      this.#lastLine = Date.now();
    }
  }

  end(): void {
    if (this.#open) this.out.write('\n');
    this.#open = false;
  }
}
