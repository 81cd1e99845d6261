import { Kysely, MysqlDialect, sql } from 'kysely';
import { createPool } from 'mysql2';
import type { DatabaseConfig } from '../../config/types.js';
import { DatabaseConnectError, redactUrl } from '../../errors.js';
import type { AnyKysely, DialectAdapter, InstalledTrigger } from '../dialect.js';
import { insertRows } from '../insert-rows.js';
import { skipTakenOnDuplicateKey, upsertOnDuplicateKey } from '../upsert.js';
import { triggerPrefix } from '../state-names.js';
import { mysqlCaptureTriggers, quoteMysql } from './mysql-capture.js';
import { introspectMysql } from './mysql-introspector.js';

/** MySQL 8 and MariaDB 10.6+, through mysql2. */
/**
 * Collations that compare utf8mb4 text byte for byte, the best first: MariaDB's nopad_bin and
 * MySQL 8's 0900_bin tell "a" from "a "; plain utf8mb4_bin (MySQL 5.7) pads, the best there is there.
 */
const byteCollations = ['utf8mb4_nopad_bin', 'utf8mb4_0900_bin', 'utf8mb4_bin'];

export const mysqlAdapter: DialectAdapter = {
  dialect: 'mysql',
  autoIncrementType: 'bigint',
  longTextType: 'longtext',
  lockingReads: true,
  readAheadConnections: 4,

  async diskPageReads(db) {
    // A status variable, read from memory: no table is touched.
    const result = await sql<{ Value: string }>`SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'`.execute(db);
    return Number(result.rows[0]?.Value ?? 0);
  },
  upsert: upsertOnDuplicateKey,
  skipTaken: skipTakenOnDuplicateKey,

  dataErrorReason(err) {
    const { code, errno, sqlMessage } = err as { code?: string; errno?: number; sqlMessage?: string };
    // Errors about a value or a constraint; see the MySQL/MariaDB server error reference.
    const dataErrors = new Set([1048, 1062, 1264, 1265, 1292, 1364, 1366, 1406, 1451, 1452, 1690, 3819, 4025]);
    if (errno === undefined || !dataErrors.has(errno)) return undefined;
    return `${sqlMessage ?? code ?? 'the database refused the value'} (${code ?? errno})`;
  },
  beginWrite: ['SET TRANSACTION ISOLATION LEVEL READ COMMITTED', 'START TRANSACTION'],
  // InnoDB's consistent read: one snapshot for every statement, taking no locks.
  beginRead: ['SET TRANSACTION ISOLATION LEVEL REPEATABLE READ', 'START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY'],
  markerSurvivesRollback: true,
  transactionalDdl: false,

  async open(config) {
    const url = requireUrl(config);
    const pool = createPool({
      uri: url,
      connectionLimit: 8,
      // Values travel as the database wrote them: no time zone shifts, no lost decimals or big ids.
      dateStrings: true,
      supportBigNumbers: true,
      bigNumberStrings: true,
      decimalNumbers: false,
      charset: 'utf8mb4',
      connectTimeout: 10_000,
    });
    const db: AnyKysely = new Kysely({ dialect: new MysqlDialect({ pool }) });
    try {
      await sql`SELECT 1`.execute(db);
    } catch (err) {
      await db.destroy().catch(() => undefined);
      throw connectError(err, url);
    }
    return db;
  },

  describeTarget(config) {
    const url = new URL(requireUrl(config));
    return `mysql ${url.host}${url.pathname}`;
  },

  async serverVersion(db) {
    const result = await sql<{ version: string }>`SELECT VERSION() AS version`.execute(db);
    return result.rows[0]?.version ?? 'unknown';
  },

  async cacheFit(db, tables) {
    const result = await sql<{ pool: number | string; bytes: number | string }>`
      SELECT @@innodb_buffer_pool_size AS pool,
             (SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables
               WHERE table_schema = DATABASE() AND table_name IN (${sql.join(tables)})) AS bytes`.execute(db);
    const row = result.rows[0];
    return { setting: 'innodb_buffer_pool_size', cacheBytes: Number(row?.pool ?? 0), tablesBytes: Number(row?.bytes ?? 0) };
  },

  async compareStateTextByBytes(db, tables) {
    const found = await sql<{ name: string }>`
      SELECT COLLATION_NAME AS name FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN (${sql.join(byteCollations)})`.execute(db);
    const names = new Set(found.rows.map((r) => r.name));
    const collation = byteCollations.find((name) => names.has(name));
    if (collation === undefined) throw new Error('the server has no binary utf8mb4 collation (utf8mb4_bin)');
    for (const table of tables) await sql`ALTER TABLE ${sql.table(table)} CONVERT TO CHARACTER SET utf8mb4 COLLATE ${sql.raw(collation)}`.execute(db);
  },

  introspect: introspectMysql,

  async installApplierMarker() {
    // Nothing to install: the marker is the session variable @tablesync_applying.
  },

  async markApplier(connection) {
    await sql`SET @tablesync_applying = 1`.execute(connection);
  },

  async unmarkApplier(connection) {
    await sql`SET @tablesync_applying = NULL`.execute(connection);
  },

  async insertNumbered(db, table, rows) {
    // One row needs no assumption about how a multi-row INSERT numbers its rows.
    if (rows.length === 1) return [String((await insertRows(db, table, rows)).insertId ?? 0)];
    const settings = (await sql<{ mode: number | string; step: number | string }>`
      SELECT @@innodb_autoinc_lock_mode AS mode, @@auto_increment_increment AS step`.execute(db)).rows[0];
    const ids: string[] = [];
    // Lock modes 0 and 1 give a multi-row INSERT consecutive keys (spaced by the increment); mode 2 may interleave them.
    if (Number(settings?.mode) <= 1) {
      const step = BigInt(settings?.step ?? 1);
      for (let i = 0; i < rows.length; i += 500) {
        const chunk = rows.slice(i, i + 500);
        const first = BigInt((await insertRows(db, table, chunk)).insertId ?? 0n);
        for (let k = 0; k < chunk.length; k++) ids.push(String(first + BigInt(k) * step));
      }
      return ids;
    }
    for (const row of rows) ids.push(String((await insertRows(db, table, [row])).insertId));
    return ids;
  },

  captureTriggers: mysqlCaptureTriggers,

  async listCaptureTriggers(db) {
    const result = await sql<{ name: string; table: string }>`
      SELECT TRIGGER_NAME AS name, EVENT_OBJECT_TABLE AS \`table\`
      FROM information_schema.TRIGGERS
      WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE ${`${triggerPrefix.replace(/_/g, '\\_')}%`}
      ORDER BY TRIGGER_NAME`.execute(db);
    return result.rows;
  },

  async createTrigger(db, trigger) {
    await sql.raw(trigger.sql).execute(db);
  },

  async dropTrigger(db, trigger: InstalledTrigger) {
    await sql.raw(`DROP TRIGGER IF EXISTS ${quoteMysql(trigger.name)}`).execute(db);
  },
};


function requireUrl(config: DatabaseConfig): string {
  if (config.url === undefined) throw new Error('a mysql database needs url (the configuration validator guarantees it)');
  return config.url;
}

/** mysql2's error codes → one sentence a user can act on. */
function connectError(err: unknown, url: string): DatabaseConnectError {
  const { code, message } = err as { code?: string; message?: string };
  const parsed = new URL(url);
  const server = `the mysql server at ${parsed.host}`;
  const database = decodeURIComponent(parsed.pathname.slice(1));
  const user = decodeURIComponent(parsed.username);
  switch (code) {
    case 'ECONNREFUSED':
      return new DatabaseConnectError(`cannot reach ${server}: connection refused; is it running, and is database.url right?`, true, { cause: err });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new DatabaseConnectError(`cannot reach ${server}: the host name ${parsed.hostname} does not resolve`, true, { cause: err });
    case 'ETIMEDOUT':
      return new DatabaseConnectError(`cannot reach ${server}: the connection timed out`, true, { cause: err });
    case 'ER_ACCESS_DENIED_ERROR':
    case 'ER_DBACCESS_DENIED_ERROR':
      return new DatabaseConnectError(`${server} refused user "${user}": wrong user name or password in database.url (or the variable that holds it)`, false, { cause: err });
    case 'ER_BAD_DB_ERROR':
      return new DatabaseConnectError(`database "${database}" does not exist on ${server}; create it or fix database.url`, false, { cause: err });
    default:
      return new DatabaseConnectError(`cannot connect to ${redactUrl(url)}: ${message ?? String(err)}`, true, { cause: err });
  }
}
