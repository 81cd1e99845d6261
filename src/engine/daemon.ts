import type { InstanceConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { describeSide } from '../protocol/description.js';
import { openTransports, type InstanceTransports } from '../transports/create-transport.js';
import { createEngineContext } from './context.js';
import { Instance } from './instance.js';
import { Mutex } from './mutex.js';
import { ExchangeScheduler } from './scheduler.js';
import { SyncSession } from './sync-session.js';

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
  #schedulers: ExchangeScheduler[] = [];
  #sessions: SyncSession[] = [];
  #transports: InstanceTransports[] = [];
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

  /** Opens every instance, installs its capture and starts its syncs; if any fails, what was opened is closed again. */
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
        const context = createEngineContext(config, instance.database, instance.schema, log);
        const lock = new Mutex();
        const transports = await openTransports(config, { logger: log });
        this.#transports.push(transports);
        for (const mapping of context.mappings) {
          const syncLog = log.child({ sync: mapping.name });
          const transport = transports.forSync(mapping.name);
          const session = new SyncSession(context, mapping, transport, lock, syncLog);
          // Published at the first exchange that reaches the peer: a peer that is down at start stops nothing.
          session.describeAs(Buffer.from(JSON.stringify(describeSide(config, mapping.sync))));
          this.#sessions.push(session);
          this.#schedulers.push(new ExchangeScheduler(session, mapping.sync, syncLog));
        }
      }
    } catch (err) {
      await this.destroy();
      throw err;
    }
    this.#state = 'running';
    for (const scheduler of this.#schedulers) scheduler.start();
    this.logger.info({ instances: this.#instances.map((i) => i.name), syncs: this.#sessions.map((s) => s.name) }, 'tablesync is running');
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
    if (this.#instances.length > 0) this.logger.info(how);
    const stopping = Promise.allSettled(this.#schedulers.map((scheduler) => scheduler.stop()));
    // Draining waits for the exchange in hand; aborting does not (its transaction rolls back with the connection).
    if (how === 'stopping') await stopping;
    await Promise.allSettled(this.#transports.map((transports) => transports.close()));
    await Promise.allSettled(this.#instances.map((instance) => instance.close()));
    this.#state = 'closed';
    this.#resolveClosed();
  }
}
