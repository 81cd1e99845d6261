import { sql } from 'kysely';
import type { DatabaseConfig } from '../config/types.js';
import type { AnyKysely, DialectAdapter } from './dialect.js';
import { adapterFor } from './dialects.js';
import type { DatabaseSchema } from './schema-types.js';

/**
 * One instance's database: a Kysely instance plus the dialect that knows its
 * SQL. Opened once, closed once; `close` is safe to call twice.
 */
export class Database {
  #closed = false;

  private constructor(
    readonly config: DatabaseConfig,
    readonly adapter: DialectAdapter,
    readonly kysely: AnyKysely,
  ) {}

  /** Connects and proves the connection works; throws DatabaseConnectError with a plain sentence. */
  static async open(config: DatabaseConfig): Promise<Database> {
    const adapter = adapterFor(config.dialect);
    return new Database(config, adapter, await adapter.open(config));
  }

  /** `mysql 127.0.0.1:3306/crm`, `sqlite /data/east.sqlite`: never a password. */
  get target(): string {
    return this.adapter.describeTarget(this.config);
  }

  serverVersion(): Promise<string> {
    return this.adapter.serverVersion(this.kysely);
  }

  introspect(): Promise<DatabaseSchema> {
    return this.adapter.introspect(this.kysely);
  }

  /** Runs `work` in one write transaction on one connection: committed if it returns, rolled back if it throws. */
  transaction<T>(work: (connection: AnyKysely) => Promise<T>): Promise<T> {
    return this.#transaction(false, work);
  }

  /**
   * As `transaction`, but the application's capture triggers ignore every
   * write made inside: this is how tablesync applies a peer's changes without
   * journaling them as if the application had made them.
   */
  asApplier<T>(work: (connection: AnyKysely) => Promise<T>): Promise<T> {
    return this.#transaction(true, work);
  }

  /**
   * Runs `work` in one read-only transaction that sees a single snapshot of
   * the whole database (see DialectAdapter.beginRead), then ends it; for
   * reading several tables as they were at one moment.
   */
  readSnapshot<T>(work: (connection: AnyKysely) => Promise<T>): Promise<T> {
    this.#assertOpen();
    return this.kysely.connection().execute(async (connection) => {
      for (const statement of this.adapter.beginRead ?? ['BEGIN']) await sql.raw(statement).execute(connection);
      try {
        return await work(connection);
      } finally {
        await sql.raw('ROLLBACK').execute(connection).catch(() => undefined);
      }
    });
  }

  async #transaction<T>(applier: boolean, work: (connection: AnyKysely) => Promise<T>): Promise<T> {
    this.#assertOpen();
    return this.kysely.connection().execute(async (connection) => {
      for (const statement of this.adapter.beginWrite) await sql.raw(statement).execute(connection);
      try {
        if (applier) await this.adapter.markApplier(connection);
        const result = await work(connection);
        if (applier) await this.adapter.unmarkApplier(connection);
        await sql.raw('COMMIT').execute(connection);
        return result;
      } catch (err) {
        await sql.raw('ROLLBACK').execute(connection).catch(() => undefined);
        if (applier && this.adapter.markerSurvivesRollback) {
          await this.adapter.unmarkApplier(connection).catch(() => undefined);
        }
        throw err;
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.kysely.destroy();
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error(`the database ${this.target} is already closed`);
  }
}
