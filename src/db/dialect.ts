import type { Kysely } from 'kysely';
import type { DatabaseConfig, DialectName } from '../config/types.js';
import type { DatabaseSchema } from './schema-types.js';
import type { Upsert } from './upsert.js';
import type { SkipTaken } from './insert-rows.js';

/**
 * A Kysely instance over tables known only at run time (the application's
 * tables come from the configuration file), so it is typed loosely on purpose.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyKysely = Kysely<any>;

/** The columns of one table that capture watches, and how a record is identified. */
export interface CaptureSpec {
  readonly table: string;
  readonly key: string;
  /** Columns whose changes are journaled: every synced field's column and the status column. */
  readonly columns: readonly string[];
}

/** One capture trigger as a dialect writes it; the name changes whenever the body does. */
export interface TriggerDefinition {
  readonly name: string;
  readonly table: string;
  readonly sql: string;
}

export interface InstalledTrigger {
  readonly name: string;
  readonly table: string;
}

/** See DialectAdapter.cacheFit. */
export interface CacheFit {
  /** The server setting that sizes the cache. */
  readonly setting: string;
  readonly cacheBytes: number;
  readonly tablesBytes: number;
}

/**
 * Everything that differs between database dialects. Each dialect folder
 * (`mysql/`, `postgres/`, `sqlite/`) implements this contract and nothing outside those
 * folders writes dialect-specific SQL.
 *
 * Leaves out: the engine's queries on tablesync's own tables, which Kysely
 * writes portably.
 */
export interface DialectAdapter {
  readonly dialect: DialectName;

  /**
   * Opens a connection (pool) and proves it works with one query.
   * Throws DatabaseConnectError with a sentence naming the target (never the password).
   */
  open(config: DatabaseConfig): Promise<AnyKysely>;

  /** The target as users should see it: `mysql 127.0.0.1:3306/crm`, `postgres 127.0.0.1:5432/crm`, `sqlite /data/east.sqlite`. */
  describeTarget(config: DatabaseConfig): string;

  /** The server's own version string, for `check`. */
  serverVersion(db: AnyKysely): Promise<string>;

  /**
   * The server's cache of table pages and what the named tables (rows and
   * indexes) take, for `check`: a change to a record whose pages are not
   * cached waits on the disk. Only where that cache alone decides it
   * (InnoDB's buffer pool); PostgreSQL and SQLite also read through the
   * system's page cache, which no setting of theirs sizes.
   */
  cacheFit?(db: AnyKysely, tables: readonly string[]): Promise<CacheFit>;

  /** Tables (not views) of the database with their columns and single-column unique keys. */
  introspect(db: AnyKysely): Promise<DatabaseSchema>;

  /**
   * SQL type of an auto-incrementing 64-bit primary key column in a CREATE
   * TABLE. A serial type (PostgreSQL's bigserial) numbers itself; the others
   * are declared AUTO_INCREMENT.
   */
  readonly autoIncrementType: 'bigint' | 'integer' | 'bigserial';

  /** SQL type for text that may be many megabytes (a stored batch). */
  readonly longTextType: 'longtext' | 'text';

  /**
   * Whether rows can be locked with SELECT … FOR UPDATE. Where they cannot
   * (SQLite), a write transaction already excludes every other writer.
   */
  readonly lockingReads: boolean;

  /**
   * On how many connections at once the daemon reads a batch's records ahead
   * of the transaction that applies or builds it (engine/read-ahead.ts), when
   * `database.readAhead` and its gate say so; 0 for never. Worth
   * it where a page missing from the server's own cache waits on the disk:
   * InnoDB (O_DIRECT, its buffer pool the only cache). PostgreSQL reads
   * through the system's page cache, which keeps what shared_buffers does
   * not; SQLite has one connection.
   */
  readonly readAheadConnections: number;

  /**
   * How many pages the server has read from the disk since it started (InnoDB's
   * Innodb_buffer_pool_reads): a counter that tells the read-ahead whether it is
   * worth its round trips now. Only where the dialect reads ahead.
   */
  readonly diskPageReads?: (db: AnyKysely) => Promise<number>;

  /**
   * When `err` is the database refusing a value (a constraint, a value too
   * long, a wrong type), a sentence saying so; undefined for anything else
   * (a lost connection, a bug), which must not be blamed on the data.
   */
  dataErrorReason(err: unknown): string | undefined;

  /** Creates whatever the dialect needs to tell applier writes from the application's. */
  installApplierMarker(db: AnyKysely): Promise<void>;

  /**
   * Statements that begin a transaction that will write. MySQL runs it READ
   * COMMITTED, so locking reads take no gap locks that would make the
   * application's inserts wait; PostgreSQL runs it READ COMMITTED whatever
   * the server's default; SQLite takes the write lock at once.
   */
  readonly beginWrite: readonly string[];

  /**
   * Statements that begin a read-only transaction seeing one consistent
   * snapshot of every table, without holding back the application's writes
   * where the database can (a backup reads every table in it). Optional:
   * without it, `BEGIN`, which on SQLite takes its snapshot at the first
   * read (writers go on in WAL mode and wait for its end otherwise).
   */
  readonly beginRead?: readonly string[];

  /** Within the transaction: from here on, capture triggers ignore this connection's writes. */
  markApplier(connection: AnyKysely): Promise<void>;

  /** Undoes `markApplier`; called before commit, and after a rollback when the marker survives it. */
  unmarkApplier(connection: AnyKysely): Promise<void>;

  /** Whether the marker outlives a rollback (a session variable does; a row does not). */
  readonly markerSurvivesRollback: boolean;

  /**
   * Inserts rows (each with the same columns) into a table whose key column
   * `key` the database numbers, and returns the new keys in row order.
   * Several rows per statement where the dialect can say which keys they
   * got (RETURNING, or consecutive auto-increment values); one by one where
   * it cannot.
   */
  insertNumbered(db: AnyKysely, table: string, rows: readonly Record<string, unknown>[], key: string): Promise<string[]>;

  /**
   * After rows were written with values of their own in a key column that
   * the database numbers (a restore), makes its numbering go on above the
   * largest, so that the next insert does not take a key already there.
   * Optional: MySQL and SQLite do that by themselves; PostgreSQL's
   * sequences do not.
   */
  continueNumbering?(db: AnyKysely, table: string, key: string): Promise<void>;

  /** Inserts rows or overwrites the `update` columns of those whose `key` exists: see upsert.ts. */
  readonly upsert: Upsert;

  /** For insertRows: leaves out the rows whose unique keys are taken (see upsert.ts). */
  readonly skipTaken: SkipTaken;

  /** The insert, update and delete capture triggers of one table. */
  captureTriggers(spec: CaptureSpec): TriggerDefinition[];

  /** Capture triggers present in the database (those tablesync created, by their name prefix). */
  listCaptureTriggers(db: AnyKysely): Promise<InstalledTrigger[]>;

  createTrigger(db: AnyKysely, trigger: TriggerDefinition): Promise<void>;

  dropTrigger(db: AnyKysely, trigger: InstalledTrigger): Promise<void>;

  /**
   * Makes tablesync's state tables compare their text byte for byte, so that
   * record ids "abc" and "ABC", or "a" and "a ", are different records.
   * Only where text columns otherwise follow a collation that folds case or
   * ignores trailing spaces (MySQL's); SQLite and PostgreSQL compare bytes.
   */
  compareStateTextByBytes?(db: AnyKysely, tables: readonly string[]): Promise<void>;

  /** Whether DDL takes part in transactions, so that capture can be replaced atomically. */
  readonly transactionalDdl: boolean;
}
