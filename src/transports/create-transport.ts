import type { HttpTransportConfig, InstanceConfig, SyncConfig, TransportConfig } from '../config/types.js';
import { UsageError } from '../errors.js';
import { FolderTransport } from './folder/folder-transport.js';
import { FtpTransport } from './ftp/ftp-transport.js';
import { HttpClientTransport } from './http/http-client-transport.js';
import { HttpListener, type ListenerMonitoring } from './http/http-listener.js';
import { HttpServerTransport } from './http/http-server-transport.js';
import type { Transport } from './transport.js';

/** The slice of a logger that transports use; a pino Logger fits. */
export interface TransportLogger {
  warn(obj: object, msg: string): void;
}

/** What every transport may be given besides its configuration. */
export interface TransportOptions {
  /** Where a transport reports what it skips or cannot do; default: nowhere. */
  readonly logger?: TransportLogger;
  /** A PEM file of certificates that a transport's TLS connections trust besides the system's: the instance's `tls.ca`. */
  readonly caFile?: string;
  /** The sync the transport serves: http signs its requests with the sync's name and takes its side (active or passive) from `mode`. */
  readonly sync?: Pick<SyncConfig, 'name' | 'mode'>;
}

/**
 * The one place that maps a configured transport type to its implementation,
 * so that no other file names a transport.
 */
export function createTransport(config: TransportConfig, options: TransportOptions = {}): Transport {
  switch (config.type) {
    case 'folder':
      return new FolderTransport(config, { logger: options.logger });
    case 'ftp':
      return new FtpTransport(config, { logger: options.logger, caFile: options.caFile });
    case 'http':
      return createHttpTransport(config, options);
  }
}

/** The transport of one sync of an instance, as its file configures it (trusting the instance's `tls.ca`). */
export function transportFor(config: Pick<InstanceConfig, 'tls'>, sync: SyncConfig, logger?: TransportLogger): Transport {
  return createTransport(sync.transport, { sync, caFile: config.tls?.ca, logger });
}

/**
 * The active side calls the passive side. The passive side only answers,
 * through the instance's HttpListener, to which openTransports attaches it;
 * made here alone (for `tablesync check`) it never hears from the peer.
 * Without `options.sync`, a side with a `url` is taken for the active one.
 */
function createHttpTransport(config: HttpTransportConfig, options: TransportOptions): Transport {
  const mode = options.sync?.mode ?? (config.url === undefined ? 'passive' : 'active');
  if (mode === 'passive') return new HttpServerTransport(options.sync?.name ?? '', { logger: options.logger });
  if (options.sync === undefined || config.url === undefined) {
    throw new UsageError("the active side of an http sync needs the sync's name and url: pass options.sync to createTransport");
  }
  return new HttpClientTransport(options.sync.name, { url: config.url, password: config.password }, { logger: options.logger, ca: options.caFile });
}

/** Every transport of one instance, and whatever they share (a listener for passive http syncs). */
export interface InstanceTransports {
  /** The transport of the named sync. */
  forSync(sync: string): Transport;
  /** Closes every transport and anything they share; safe to call twice. */
  close(): Promise<void>;
}

/**
 * Opens the transports of all of an instance's syncs. `monitoring` is what the
 * instance's listener, if `listen:` is set, serves on /healthz and /metrics.
 */
export async function openTransports(
  config: InstanceConfig,
  options: { logger: TransportLogger & { child(bindings: object): TransportLogger }; monitoring?: ListenerMonitoring },
): Promise<InstanceTransports> {
  const transports = new Map<string, Transport>();
  // Serves /healthz even when no sync is a passive http one.
  const serverTls = config.tls?.cert !== undefined && config.tls.key !== undefined ? { cert: config.tls.cert, key: config.tls.key } : undefined;
  const listener =
    config.listen === undefined
      ? undefined
      : new HttpListener(config.listen, serverTls, {
          logger: options.logger.child({ listen: `${config.listen.host}:${config.listen.port}` }),
          monitoring: options.monitoring,
        });
  try {
    await listener?.start();
    for (const sync of config.syncs) {
      const transport = transportFor(config, sync, options.logger.child({ sync: sync.name }));
      if (transport instanceof HttpServerTransport && sync.transport.type === 'http') listener?.serve(sync.name, sync.transport.password, transport);
      transports.set(sync.name, transport);
    }
  } catch (err) {
    await Promise.allSettled([listener?.close(), ...[...transports.values()].map((t) => t.close())]);
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
      // The listener first: the requests in flight finish while their syncs' transports are still open.
      closing ??= Promise.allSettled([listener?.close()])
        .then(() => Promise.allSettled([...transports.values()].map((t) => t.close())))
        .then(() => undefined);
      return closing;
    },
  };
}
