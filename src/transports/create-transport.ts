import type { InstanceConfig, TransportConfig } from '../config/types.js';
import { UsageError } from '../errors.js';
import { FolderTransport } from './folder/folder-transport.js';
import type { Transport } from './transport.js';

/** The slice of a logger that transports use; a pino Logger fits. */
export interface TransportLogger {
  warn(obj: object, msg: string): void;
}

/** What every transport may be given besides its configuration. */
export interface TransportOptions {
  /** Where a transport reports what it skips or cannot do; default: nowhere. */
  readonly logger?: TransportLogger;
}

/**
 * The one place that maps a configured transport type to its implementation,
 * so that no other file names a transport.
 */
export function createTransport(config: TransportConfig, options: TransportOptions = {}): Transport {
  switch (config.type) {
    case 'folder':
      return new FolderTransport(config, { logger: options.logger });
    case 'http':
    case 'ftp':
      throw new UsageError(`the ${config.type} transport is not built yet; use type: folder for now`);
  }
}

/** Every transport of one instance, and whatever they share (a listener for passive http syncs). */
export interface InstanceTransports {
  /** The transport of the named sync. */
  forSync(sync: string): Transport;
  /** Closes every transport and anything they share; safe to call twice. */
  close(): Promise<void>;
}

/** Opens the transports of all of an instance's syncs. */
export async function openTransports(config: InstanceConfig, options: { logger: TransportLogger & { child(bindings: object): TransportLogger } }): Promise<InstanceTransports> {
  const transports = new Map<string, Transport>();
  try {
    for (const sync of config.syncs) transports.set(sync.name, createTransport(sync.transport, { logger: options.logger.child({ sync: sync.name }) }));
  } catch (err) {
    await Promise.allSettled([...transports.values()].map((t) => t.close()));
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    forSync(sync) {
      const transport = transports.get(sync);
      if (transport === undefined) throw new Error(`no transport for sync ${sync}`);
      return transport;
    },
    close() {
      closing ??= Promise.allSettled([...transports.values()].map((t) => t.close())).then(() => undefined);
      return closing;
    },
  };
}
