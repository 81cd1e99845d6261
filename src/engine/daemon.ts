import type { InstanceConfig } from '../config/types.js';
import { stateTables } from '../db/state-names.js';
import type { Logger } from '../log.js';
import { Instance } from './instance.js';

/** How often the daemon reports how many captured changes wait in each journal. */
const backlogReportMs = 60_000;

type DaemonState = 'new' | 'starting' | 'running' | 'closing' | 'closed';

/**
 * The long-running process behind `tablesync run`: one or more instances,
 * started once, stopped once. `close()` drains (finishes the work in hand,
 * then releases the databases); `destroy()` aborts at once. Both are safe to
 * call twice and resolve `closed`.
 */
export class Daemon {
  #state: DaemonState = 'new';
  #instances: Instance[] = [];
  #timer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  #resolveClosed!: () => void;
  /** Resolves once the daemon has stopped, by close() or destroy(). */
  readonly closed = new Promise<void>((resolve) => (this.#resolveClosed = resolve));

  constructor(
    private readonly configs: readonly InstanceConfig[],
    private readonly logger: Logger,
  ) {}

  get state(): DaemonState {
    return this.#state;
  }

  /** Opens every instance and installs its capture; if any fails, the ones opened are closed again. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new Error(`the daemon cannot start: it is ${this.#state}`);
    this.#state = 'starting';
    try {
      for (const config of this.configs) {
        const log = this.logger.child({ instance: config.instance }, { level: config.log.level });
        const instance = await Instance.open(config);
        this.#instances.push(instance);
        for (const warning of instance.warnings) log.warn({ path: warning.path }, warning.message);
        const report = await instance.installCapture();
        log.info(
          {
            database: instance.database.target,
            stateVersion: report.state.to,
            triggersCreated: report.created.length,
            triggersDropped: report.dropped.length,
            tables: [...new Set([...report.created, ...report.unchanged].map((t) => t.table))],
          },
          'capture installed',
        );
      }
    } catch (err) {
      await this.destroy();
      throw err;
    }
    this.#state = 'running';
    this.#timer = setInterval(() => void this.#reportBacklog(), backlogReportMs);
    this.logger.info({ instances: this.#instances.map((i) => i.name) }, 'tablesync is running');
  }

  async #reportBacklog(): Promise<void> {
    for (const instance of this.#instances) {
      try {
        const row = (await instance.database.kysely
          .selectFrom(stateTables.journal)
          .select((eb) => eb.fn.countAll<number | string>().as('waiting'))
          .executeTakeFirst()) as { waiting: number | string } | undefined;
        this.logger.info({ instance: instance.name, waiting: Number(row?.waiting ?? 0) }, 'captured changes waiting in the journal');
      } catch (err) {
        this.logger.error({ instance: instance.name, err }, 'cannot read the journal');
      }
    }
  }

  /** Graceful stop: lets the work in hand finish, then releases every database. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown('stopping');
    return this.#closing;
  }

  /** Immediate stop: releases every database without waiting for work in hand. */
  destroy(): Promise<void> {
    this.#closing ??= this.#shutdown('aborting');
    return this.#closing;
  }

  async #shutdown(how: 'stopping' | 'aborting'): Promise<void> {
    this.#state = 'closing';
    clearInterval(this.#timer);
    if (this.#instances.length > 0) this.logger.info(how);
    await Promise.allSettled(this.#instances.map((instance) => instance.close()));
    this.#state = 'closed';
    this.#resolveClosed();
  }
}
