/**
 * The configuration of one instance, as the rest of tablesync sees it: loaded,
 * validated, defaults filled in, relative paths resolved against the file's
 * folder, and frozen. Nothing downstream checks it again.
 */

import type { ConfigProblem } from '../errors.js';

export type DialectName = 'mysql' | 'sqlite' | 'postgres';

export interface DatabaseConfig {
  readonly dialect: DialectName;
  /** Connection URL (mysql, postgres); never logged unredacted. */
  readonly url?: string;
  /** Absolute path of the database file (sqlite). */
  readonly file?: string;
  /**
   * Whether the daemon reads a batch's records ahead of its transaction (engine/read-ahead.ts), where
   * the dialect can (MySQL/MariaDB): `auto` (the default), only while the server reads pages from the
   * disk; `always`; `never`.
   */
  readonly readAhead?: ReadAheadMode;
}

export type ReadAheadMode = 'auto' | 'always' | 'never';

export interface ListenConfig {
  readonly host: string;
  readonly port: number;
}

/**
 * `cert` and `key` (always together) make the listener serve https; `ca`
 * is trusted, besides the system's authorities, by this side's own TLS
 * connections (an http peer, an FTPS server).
 */
export interface TlsConfig {
  readonly cert?: string;
  readonly key?: string;
  readonly ca?: string;
}

/** The certificate and key the listener serves https with. */
export interface ServerTlsConfig {
  readonly cert: string;
  readonly key: string;
}

/** What `/healthz` on the listener holds the instance to. */
export interface HealthConfig {
  /** A sync whose peer has not been reached for longer than this makes `/healthz` answer 503. */
  readonly peerTimeoutMs: number;
}

/** Where the safety backups before an initial sync go, on either side of it. */
export interface BackupsConfig {
  /** An absolute path; by default `backups/` beside the configuration file. */
  readonly dir: string;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface UsersConfig {
  readonly table: string;
  readonly key: string;
  readonly login?: string;
  readonly fullName?: string;
}

/** Per field, seen from this side: what travels. */
export type Direction = 'both' | 'upload' | 'download' | 'off';

export interface FieldConfig {
  readonly column: string;
  readonly number: number;
  readonly direction: Direction;
  /** `user`: the value is a reference to the users table, matched by the sync's `users` rule. */
  readonly type: 'value' | 'user';
}

export interface StatusConfig {
  readonly column: string;
  readonly deleted: string | number;
}

export interface TableConfig {
  readonly table: string;
  readonly number: number;
  readonly key: string;
  readonly status?: StatusConfig;
  readonly addedAt?: string;
  /** Field numbers that identify an existing record at initial sync. */
  readonly match: readonly number[];
  readonly fields: readonly FieldConfig[];
}

export interface HttpTransportConfig {
  readonly type: 'http';
  readonly url?: string;
  readonly password: string;
}

export interface FolderTransportConfig {
  readonly type: 'folder';
  readonly upload: string;
  readonly download: string;
}

export interface FtpTransportConfig {
  readonly type: 'ftp';
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly secure: boolean;
  readonly upload: string;
  readonly download: string;
}

export type TransportConfig = HttpTransportConfig | FolderTransportConfig | FtpTransportConfig;

export type ConflictRule = 'newest-wins' | 'active-wins' | 'passive-wins' | 'manual';
export type UserMatch = 'login' | 'fullName' | 'id';

export interface SyncConfig {
  readonly name: string;
  readonly mode: 'active' | 'passive';
  readonly transport: TransportConfig;
  /** Milliseconds between exchanges; absent when `schedule` is given. */
  readonly everyMs?: number;
  /** Cron expression with seconds; absent when `every` is given. */
  readonly schedule?: string;
  readonly conflicts: ConflictRule;
  readonly users: UserMatch;
  readonly tables: readonly TableConfig[];
}

export interface InstanceConfig {
  /** Absolute path of the file this configuration was loaded from. */
  readonly file: string;
  readonly instance: string;
  readonly database: DatabaseConfig;
  readonly listen?: ListenConfig;
  readonly tls?: TlsConfig;
  readonly log: { readonly level: LogLevel };
  readonly health: HealthConfig;
  readonly backups: BackupsConfig;
  readonly users?: UsersConfig;
  readonly syncs: readonly SyncConfig[];
  /** What loading found that does not stop tablesync but should be fixed (a password file others can read); shown by run, setup and check. */
  readonly warnings?: readonly ConfigProblem[];
}
