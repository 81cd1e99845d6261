import type { InstanceConfig } from '../config/types.js';
import { ConfigError, formatProblem, TablesyncError, type ConfigProblem } from '../errors.js';
import type { Logger } from '../log.js';
import { describeSide } from '../protocol/description.js';
import { openTransports, type InstanceTransports } from '../transports/create-transport.js';
import type { HttpRefusal } from '../transports/http/http-listener.js';
import { createEngineContext, type EngineContext } from './context.js';
import { peerHealth } from './health.js';
import { Instance } from './instance.js';
import { DaemonMetrics, type DaemonSyncMeter, type MeasuredSync } from './metrics.js';
import { Mutex } from './mutex.js';
import { ExchangeScheduler } from './scheduler.js';
import { defaultSessionPolicy, SyncSession } from './sync-session.js';

type DaemonState = 'new' | 'starting' | 'running' | 'reloading' | 'closing' | 'closed';

/** One sync as the daemon runs it. */
interface RunningSync {
  readonly instance: string;
  readonly context: EngineContext;
  readonly session: SyncSession;
  readonly scheduler: ExchangeScheduler;
  readonly meter: DaemonSyncMeter;
}

/** Everything one set of configuration files started; a reload replaces it whole. */
interface Generation {
  readonly configs: readonly InstanceConfig[];
  readonly instances: Instance[];
  readonly transports: InstanceTransports[];
  readonly syncs: RunningSync[];
}

/**
 * A reload refused: one error line per problem (with its file, path and line), then one that
 * says the previous configuration still runs.
 */
export function logRefusedReload(logger: Logger, problems: readonly { readonly file: string; readonly problem: ConfigProblem }[]): void {
  for (const { file, problem } of problems) {
    logger.error({ file, path: problem.path, line: problem.line }, `configuration not reloaded: ${file}: ${formatProblem(problem)}`);
  }
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  logger.error({ problems: problems.length }, `configuration not reloaded: ${count}, listed above; still running with the previous configuration`);
}

function generationOf(configs: readonly InstanceConfig[]): Generation {
  return { configs, instances: [], transports: [], syncs: [] };
}

/**
 * The long-running process behind `tablesync run`: one or more instances,
 * started once, stopped once. `close()` drains (finishes the work in hand,
 * then releases the databases); `destroy()` aborts at once. Both are safe to
 * call twice and resolve `closed`. `reload()` swaps in a new configuration
 * in between. Each instance with `listen:` serves /healthz (its own syncs)
 * and /metrics (every sync of the daemon).
 */
export class Daemon {
  #state: DaemonState = 'new';
  #generation: Generation;
  #closing: Promise<void> | undefined;
  #failure: Error | undefined;
  /** Reloads and the graceful stop wait for one another. */
  readonly #lifecycle = new Mutex();
  readonly #metrics: DaemonMetrics;
  #resolveClosed!: () => void;
  /** Resolves once the daemon has stopped, by close() or destroy(), or because a reload failed beyond repair (see `failure`). */
  readonly closed = new Promise<void>((resolve) => (this.#resolveClosed = resolve));

  constructor(
    configs: readonly InstanceConfig[],
    private readonly logger: Logger,
  ) {
    this.#generation = generationOf(configs);
    this.#metrics = new DaemonMetrics(logger.child({ component: 'metrics' }));
  }

  get state(): DaemonState {
    return this.#state;
  }

  /** Why the daemon stopped on its own: set when neither a reloaded configuration nor the previous one could start again. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /** Opens every instance, installs its capture and starts its syncs; if any fails, what was opened is closed again. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new Error(`the daemon cannot start: it is ${this.#state}`);
    this.#state = 'starting';
    const generation = this.#generation;
    try {
      await this.#openInstances(generation);
      await this.#launch(generation);
    } catch (err) {
      await this.destroy();
      throw err;
    }
    this.#run(generation);
  }

  /**
   * Replaces the configuration, as on SIGHUP. The new files' databases are
   * opened and checked while the running syncs go on; only if that succeeds do
   * the running syncs finish the exchange in hand and stop, and the new ones
   * start. Resolves true once the new configuration runs; false (with the
   * reason logged) when it did not, and the previous one still runs. If
   * neither can start again, the daemon stops, with `failure` set.
   */
  reload(configs: readonly InstanceConfig[]): Promise<boolean> {
    return this.#lifecycle.run(() => this.#reload(configs));
  }

  /** Graceful stop: lets the work in hand (and a reload under way) finish, then releases every database. */
  close(): Promise<void> {
    this.#closing ??= this.#lifecycle.run(() => this.#shutdown('stopping'));
    return this.#closing;
  }

  /** Immediate stop: releases every database without waiting for work in hand. */
  destroy(): Promise<void> {
    this.#closing ??= this.#shutdown('aborting');
    return this.#closing;
  }

  async #reload(configs: readonly InstanceConfig[]): Promise<boolean> {
    if (this.#state !== 'running') {
      this.logger.warn({ state: this.#state }, `configuration not reloaded: the daemon is ${this.#state}`);
      return false;
    }
    const previous = this.#generation;
    const next = generationOf(configs);
    // Checked against the databases before anything stops: a database that cannot be reached, or lacks a table or
    // column the new files name, leaves the running configuration alone.
    try {
      await this.#openInstances(next);
    } catch (err) {
      // The instance that failed is the one after those that opened.
      const file = configs[next.instances.length]?.file ?? '';
      await this.#release(next, 'aborting');
      if (!(err instanceof TablesyncError)) this.logger.error({ err }, `configuration not reloaded: ${file}: ${(err as Error).message}`);
      logRefusedReload(this.logger, err instanceof ConfigError ? err.problems.map((problem) => ({ file: err.file, problem })) : [{ file, problem: { path: '', message: (err as Error).message } }]);
      return false;
    }
    if (this.#stopping()) {
      await this.#release(next, 'aborting');
      return false;
    }
    this.#state = 'reloading';
    this.logger.info('reloading: the running syncs finish the work in hand, then the new configuration starts');
    await this.#release(previous, 'stopping');
    this.#generation = next;
    try {
      await this.#launch(next);
    } catch (err) {
      await this.#release(next, 'aborting');
      this.logger.error({ err }, `the new configuration failed to start: ${(err as Error).message}; starting the previous configuration again`);
      return this.#restore(previous.configs);
    }
    if (this.#stopping()) {
      await this.#release(next, 'aborting');
      return false;
    }
    this.#run(next);
    this.logger.info({ files: configs.map((c) => c.file) }, 'configuration reloaded');
    return true;
  }

  /** After a reload that failed to start: the configuration that ran before, or a stop if even that fails. */
  async #restore(configs: readonly InstanceConfig[]): Promise<false> {
    const again = generationOf(configs);
    this.#generation = again;
    try {
      await this.#openInstances(again);
      await this.#launch(again);
    } catch (err) {
      this.#failure = err as Error;
      this.logger.fatal({ err }, `the previous configuration failed to start again too: ${(err as Error).message}; stopping`);
      // Not through destroy(): a close() queued behind this reload would make it wait for itself.
      const shutdown = this.#shutdown('aborting');
      this.#closing ??= shutdown;
      await shutdown;
      return false;
    }
    this.#run(again);
    this.logger.warn('running with the previous configuration again');
    return false;
  }

  #stopping(): boolean {
    return this.#state === 'closing' || this.#state === 'closed';
  }

  async #openInstances(generation: Generation): Promise<void> {
    for (const config of generation.configs) generation.instances.push(await Instance.open(config));
  }

  /** Installs capture in each opened instance, opens its transports and prepares its syncs; nothing runs yet. */
  async #launch(generation: Generation): Promise<void> {
    for (const instance of generation.instances) {
      const { config } = instance;
      const log = this.logger.child({ instance: config.instance }, { level: config.log.level });
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
      const monitoring = {
        health: () => peerHealth(this.#generation.syncs.filter((s) => s.instance === config.instance).map((s) => s.meter.peerWatch), Date.now()),
        metrics: () => this.#metrics.render(this.#generation.syncs.map((s): MeasuredSync => ({ meter: s.meter, database: s.context.database.kysely, mapping: s.session.mapping }))),
        refused: (sync: string | undefined, reason: HttpRefusal) => this.#metrics.httpRefused(config.instance, sync, reason),
      };
      const transports = await openTransports(config, { logger: log, monitoring });
      generation.transports.push(transports);
      for (const mapping of context.mappings) {
        const syncLog = log.child({ sync: mapping.name });
        const transport = transports.forSync(mapping.name);
        const meter = this.#metrics.meterFor(config.instance, mapping.name);
        meter.watch(transport, config.health.peerTimeoutMs);
        // The syncs that openTransports hands to the listener.
        if (config.listen !== undefined && mapping.sync.mode === 'passive' && mapping.sync.transport.type === 'http') this.#metrics.servesHttp(config.instance, mapping.name);
        const session = new SyncSession(context, mapping, transport, lock, syncLog, defaultSessionPolicy, meter);
        // Published at the first exchange that reaches the peer: a peer that is down at start stops nothing.
        session.describeAs(Buffer.from(JSON.stringify(describeSide(config, mapping.sync))));
        generation.syncs.push({ instance: config.instance, context, session, meter, scheduler: new ExchangeScheduler(session, mapping.sync, syncLog) });
      }
    }
  }

  #run(generation: Generation): void {
    this.#state = 'running';
    for (const { scheduler } of generation.syncs) scheduler.start();
    this.logger.info({ instances: generation.instances.map((i) => i.name), syncs: generation.syncs.map((s) => s.session.name) }, 'tablesync is running');
  }

  /** Stops a generation's syncs (draining: after the exchange in hand; aborting: at once), then its transports and databases. */
  async #release(generation: Generation, how: 'stopping' | 'aborting'): Promise<void> {
    const stopping = Promise.allSettled(generation.syncs.map(({ scheduler }) => scheduler.stop()));
    // Aborting does not wait: the exchange in hand rolls back with its connection.
    if (how === 'stopping') await stopping;
    await Promise.allSettled(generation.transports.map((transports) => transports.close()));
    await Promise.allSettled(generation.instances.map((instance) => instance.close()));
  }

  async #shutdown(how: 'stopping' | 'aborting'): Promise<void> {
    this.#state = 'closing';
    if (this.#generation.instances.length > 0) this.logger.info(how);
    await this.#release(this.#generation, how);
    this.#state = 'closed';
    this.#resolveClosed();
  }
}
