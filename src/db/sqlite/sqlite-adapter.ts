import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, sql } from 'kysely';
import type { DatabaseConfig } from '../../config/types.js';
import { DatabaseConnectError } from '../../errors.js';
import type { AnyKysely, DialectAdapter, InstalledTrigger } from '../dialect.js';
import { insertRows } from '../insert-rows.js';
import { skipTakenOnConflict, upsertOnConflict } from '../upsert.js';
import { stateTables, triggerPrefix } from '../state-names.js';
import { quoteSqlite, sqliteCaptureTriggers } from './sqlite-capture.js';
import { introspectSqlite } from './sqlite-introspector.js';

/** How long a write waits for another connection's lock (the application's) before failing. */
const busyTimeoutMs = 10_000;

/** SQLite files, through better-sqlite3. */
export const sqliteAdapter: DialectAdapter = {
  dialect: 'sqlite',
  autoIncrementType: 'integer',
  longTextType: 'text',
  lockingReads: false,
  readAheadConnections: 0,
  upsert: upsertOnConflict,
  skipTaken: skipTakenOnConflict,

  dataErrorReason(err) {
    const { code, message } = err as { code?: string; message?: string };
    if (code === undefined || !(code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_TOOBIG' || code === 'SQLITE_MISMATCH')) return undefined;
    return `${message ?? 'the database refused the value'} (${code})`;
  },
  // IMMEDIATE takes the write lock at once: a deferred transaction that later
  // wants to write can fail with SQLITE_BUSY without waiting.
  beginWrite: ['BEGIN IMMEDIATE'],
  markerSurvivesRollback: false,
  transactionalDdl: true,

  async open(config) {
    const file = requireFile(config);
    let database: BetterSqlite3.Database;
    try {
      database = new BetterSqlite3(file, { fileMustExist: true, timeout: busyTimeoutMs });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_CANTOPEN') {
        throw new DatabaseConnectError(`the sqlite database file ${file} does not exist or cannot be opened; check database.file`, false, { cause: err });
      }
      throw new DatabaseConnectError(`cannot open the sqlite database ${file}: ${(err as Error).message}`, false, { cause: err });
    }
    const db: AnyKysely = new Kysely({ dialect: new SqliteDialect({ database }) });
    try {
      await sql`SELECT count(*) FROM sqlite_master`.execute(db);
    } catch (err) {
      await db.destroy().catch(() => undefined);
      throw new DatabaseConnectError(`${file} is not a usable sqlite database: ${(err as Error).message}`, false, { cause: err });
    }
    return db;
  },

  describeTarget(config) {
    return `sqlite ${requireFile(config)}`;
  },

  async serverVersion(db) {
    const result = await sql<{ version: string }>`SELECT sqlite_version() AS version`.execute(db);
    return `SQLite ${result.rows[0]?.version ?? 'unknown'}`;
  },

  introspect: introspectSqlite,

  async installApplierMarker(db) {
    await sql.raw(`CREATE TABLE IF NOT EXISTS ${quoteSqlite(stateTables.applier)} (marker INTEGER NOT NULL)`).execute(db);
  },

  async markApplier(connection) {
    await sql.raw(`INSERT INTO ${quoteSqlite(stateTables.applier)} (marker) VALUES (1)`).execute(connection);
  },

  async unmarkApplier(connection) {
    await sql.raw(`DELETE FROM ${quoteSqlite(stateTables.applier)}`).execute(connection);
  },

  async insertNumbered(db, table, rows) {
    const ids: string[] = [];
    const columns = Object.keys(rows[0] ?? {});
    // SQLite allows 32766 parameters per statement.
    const perStatement = Math.max(1, Math.floor(30_000 / Math.max(1, columns.length)));
    for (let i = 0; i < rows.length; i += perStatement) {
      const chunk = rows.slice(i, i + perStatement);
      await insertRows(db, table, chunk);
      // Inside our write transaction nobody else inserts: the chunk's rowids are the ones just below the last.
      const last = Number((await sql<{ id: number }>`SELECT last_insert_rowid() AS id`.execute(db)).rows[0]?.id);
      for (let k = chunk.length - 1; k >= 0; k--) ids.push(String(last - k));
    }
    return ids;
  },

  captureTriggers: sqliteCaptureTriggers,

  async listCaptureTriggers(db) {
    const result = await sql<{ name: string; table: string }>`
      SELECT name, tbl_name AS "table" FROM sqlite_master
      WHERE type = 'trigger' AND name LIKE ${`${triggerPrefix.replace(/_/g, '\\_')}%`} ESCAPE '\\'
      ORDER BY name`.execute(db);
    return result.rows;
  },

  async createTrigger(db, trigger) {
    await sql.raw(trigger.sql).execute(db);
  },

  async dropTrigger(db, trigger: InstalledTrigger) {
    await sql.raw(`DROP TRIGGER IF EXISTS ${quoteSqlite(trigger.name)}`).execute(db);
  },
};

function requireFile(config: DatabaseConfig): string {
  if (config.file === undefined) throw new Error('a sqlite database needs file (the configuration validator guarantees it)');
  return config.file;
}
