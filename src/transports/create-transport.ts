import type { TransportConfig } from '../config/types.js';
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
