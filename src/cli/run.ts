import type { InstanceConfig, LogLevel } from '../config/types.js';
import { Daemon } from '../engine/daemon.js';
import { createLogger } from '../log.js';

const verbosity: LogLevel[] = ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/**
 * `tablesync run`: the daemon systemd runs. The first SIGTERM or SIGINT
 * finishes the work in hand and exits 0; a second one aborts with exit 1.
 */
export async function runCommand(configs: readonly InstanceConfig[]): Promise<number> {
  // One process, one stream: the root logger lets through the most any instance asks for.
  const level = configs.map((c) => c.log.level).reduce((a, b) => (verbosity.indexOf(a) >= verbosity.indexOf(b) ? a : b));
  const logger = createLogger(level);
  const daemon = new Daemon(configs, logger);

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
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await daemon.start();
    await daemon.closed;
    logger.info('stopped');
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
