import { loadConfigFile } from '../config/load-config.js';
import type { InstanceConfig, LogLevel } from '../config/types.js';
import { Daemon, logRefusedReload } from '../engine/daemon.js';
import { ConfigError, TablesyncError, type ConfigProblem } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { checkInstancesApart } from './config-option.js';

const verbosity: LogLevel[] = ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/** One process, one stream: the root logger lets through the most any instance asks for. */
function processLevel(configs: readonly InstanceConfig[]): LogLevel {
  return configs.map((c) => c.log.level).reduce((a, b) => (verbosity.indexOf(a) >= verbosity.indexOf(b) ? a : b));
}

/**
 * `tablesync run`: the daemon systemd runs. The first SIGTERM or SIGINT
 * finishes the work in hand and exits 0; a second one aborts with exit 1.
 * SIGHUP reads the same files again and, if they are valid, restarts the
 * syncs with them; if not, it logs every problem and keeps running as it was.
 */
export async function runCommand(configs: readonly InstanceConfig[]): Promise<number> {
  const logger = createLogger(processLevel(configs));
  const daemon = new Daemon(configs, logger);
  const files = configs.map((config) => config.file);

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals === 1) {
      logger.info({ signal }, 'signal received, finishing the work in hand');
      void daemon.close();
    } else {
      logger.warn({ signal }, 'second signal received, aborting');
      void daemon.destroy().finally(() => process.exit(1));
    }
  };
  // Reloads run one after the other, the first once the daemon has started. SIGHUP's default
  // action ends the process, so its handler is in place before anything starts.
  let reloads: Promise<void> = Promise.resolve();
  const onHangup = (signal: NodeJS.Signals): void => {
    if (signals > 0) return;
    logger.info({ signal, files }, 'signal received, reading the configuration again');
    reloads = reloads
      .then(() => reload(files, daemon, logger))
      .catch((err: unknown) => logger.error({ err }, `configuration not reloaded: ${(err as Error).message}; still running with the previous configuration`));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHangup);
  try {
    const started = daemon.start();
    reloads = started.catch(() => undefined);
    await started;
    await daemon.closed;
    if (daemon.failure !== undefined) throw daemon.failure;
    logger.info('stopped');
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onHangup);
  }
}

/** Reads `files` again and hands them to the daemon; a file with problems leaves the daemon as it was, with each problem logged. */
async function reload(files: readonly string[], daemon: Daemon, logger: Logger): Promise<void> {
  const configs: InstanceConfig[] = [];
  const problems: { file: string; problem: ConfigProblem }[] = [];
  for (const file of files) {
    try {
      configs.push(loadConfigFile(file));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems.map((problem) => ({ file, problem })));
    }
  }
  if (problems.length === 0) {
    try {
      checkInstancesApart(configs);
    } catch (err) {
      if (!(err instanceof TablesyncError)) throw err;
      problems.push({ file: files.join(', '), problem: { path: '', message: err.message } });
    }
  }
  if (problems.length > 0) {
    logRefusedReload(logger, problems);
    return;
  }
  if (await daemon.reload(configs)) logger.level = processLevel(configs);
}
