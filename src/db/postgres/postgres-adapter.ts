import { CompiledQuery, Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { DatabaseConfig } from '../../config/types.js';
import { DatabaseConnectError, redactUrl } from '../../errors.js';
import type { AnyKysely, DialectAdapter, InstalledTrigger } from '../dialect.js';
import { insertRows } from '../insert-rows.js';
import { skipTakenOnConflict, upsertOnConflict } from '../upsert.js';
import { triggerPrefix } from '../state-names.js';
import { applierSetting, postgresCaptureTriggers, quotePostgres } from './postgres-capture.js';
import { introspectPostgres } from './postgres-introspector.js';

/** PostgreSQL allows 65535 parameters per statement. */
const maxParameters = 60_000;

/**
 * Values travel as the database wrote them, as mysql2's dateStrings does on
 * MySQL: dates and time stamps as their text, not a JavaScript Date shifted
 * into this process's time zone; json as its text, not re-serialised.
 * (bigint and numeric already come as text.) A timestamptz, which tablesync's
 * connections read in UTC, travels as its UTC time without the `+00`, the
 * form a DATETIME column of a MySQL or SQLite peer takes too; written back
 * into a timestamptz, it is read in UTC again.
 */
const asText = (value: string): string => value;
const parsers = new Map<number, (value: string) => string>([
  [pg.types.builtins.DATE, asText],
  [pg.types.builtins.TIMESTAMP, asText],
  [pg.types.builtins.TIMESTAMPTZ, (value) => (value.endsWith('+00') ? value.slice(0, -3) : value)],
  [pg.types.builtins.JSON, asText],
  [pg.types.builtins.JSONB, asText],
]);
const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => parsers.get(oid) ?? pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

/** A `postgres://` url split into what pg takes and the schema tablesync works in (`?schema=`, default public). */
interface PostgresTarget {
  readonly url: URL;
  readonly connectionString: string;
  readonly schema: string;
  /** Whether the schema was named in the url (it is then shown in the target). */
  readonly schemaGiven: boolean;
}

function parseTarget(config: DatabaseConfig): PostgresTarget {
  if (config.url === undefined) throw new Error('a postgres database needs url (the configuration validator guarantees it)');
  const url = new URL(config.url);
  const schema = url.searchParams.get('schema');
  const forPg = new URL(url);
  // Only rewritten when needed: pg reads every other query parameter (sslmode, application_name…) itself.
  if (schema !== null) forPg.searchParams.delete('schema');
  return { url, connectionString: schema === null ? config.url : forPg.toString(), schema: schema ?? 'public', schemaGiven: schema !== null };
}

/** PostgreSQL, through pg (node-postgres). */
export const postgresAdapter: DialectAdapter = {
  dialect: 'postgres',
  autoIncrementType: 'bigserial',
  longTextType: 'text',
  lockingReads: true,
  readAheadConnections: 0,
  upsert: upsertOnConflict,
  skipTaken: skipTakenOnConflict,

  dataErrorReason(err) {
    // SQLSTATE class 22 (data exception: too long, out of range, bad input) and 23 (integrity constraint violation).
    if (!(err instanceof pg.DatabaseError) || err.code === undefined || !/^2[23]/.test(err.code)) return undefined;
    return `${err.message}${err.detail === undefined ? '' : `: ${err.detail}`} (${err.code})`;
  },
  // Explicit, whatever default_transaction_isolation says: the engine's locking reads are written for READ COMMITTED.
  beginWrite: ['BEGIN ISOLATION LEVEL READ COMMITTED'],
  // One snapshot for every statement (READ COMMITTED takes a new one per statement); MVCC holds back no writer.
  beginRead: ['BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'],
  markerSurvivesRollback: false,
  transactionalDdl: true,

  async open(config) {
    const target = parseTarget(config);
    const pool = new pg.Pool({
      connectionString: target.connectionString,
      max: 8,
      connectionTimeoutMillis: 10_000,
      // As InnoDB's default lock wait: an exchange that waits on the application's locks longer fails and is tried again.
      lock_timeout: 50_000,
      application_name: 'tablesync',
      types: typeParsers,
    });
    // An idle connection the server closed (a restart, pg_terminate_backend) is dropped by the pool and
    // opened again when next needed; without a listener, the pool's 'error' event would end the process.
    pool.on('error', () => undefined);
    const db: AnyKysely = new Kysely({
      dialect: new PostgresDialect({
        pool,
        async onCreateConnection(connection) {
          // tablesync's own tables, its triggers and the tables it syncs are all in this one schema; time
          // stamps are written and read in UTC, in ISO form, whatever the server's defaults.
          await connection.executeQuery(
            CompiledQuery.raw("SELECT set_config('search_path', $1, false), set_config('TimeZone', 'UTC', false), set_config('DateStyle', 'ISO', false)", [
              quotePostgres(target.schema),
            ]),
          );
        },
      }),
    });
    let schemaExists: boolean;
    try {
      const result = await sql<{ found: boolean }>`SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ${target.schema}) AS found`.execute(db);
      schemaExists = result.rows[0]?.found === true;
    } catch (err) {
      await db.destroy().catch(() => undefined);
      throw connectError(err, target);
    }
    if (!schemaExists) {
      await db.destroy().catch(() => undefined);
      throw new DatabaseConnectError(
        `schema "${target.schema}" does not exist in database "${databaseName(target)}" on ${server(target)}; create it, or fix ?schema= in database.url`,
        false,
      );
    }
    return db;
  },

  describeTarget(config) {
    const target = parseTarget(config);
    return `postgres ${target.url.host}${target.url.pathname}${target.schemaGiven ? ` (schema ${target.schema})` : ''}`;
  },

  async serverVersion(db) {
    const result = await sql<{ version: string }>`SELECT current_setting('server_version') AS version`.execute(db);
    return `PostgreSQL ${result.rows[0]?.version ?? 'unknown'}`;
  },

  introspect: introspectPostgres,

  async installApplierMarker() {
    // Nothing to install: the marker is the transaction-local setting tablesync.applier.
  },

  async markApplier(connection) {
    await sql`SELECT set_config(${applierSetting}, '1', true)`.execute(connection);
  },

  async unmarkApplier(connection) {
    // The setting is transaction-local and would end with the transaction anyway; cleared so the contract holds.
    await sql`SELECT set_config(${applierSetting}, '', true)`.execute(connection);
  },

  async insertNumbered(db, table, rows, key) {
    const ids: string[] = [];
    const perStatement = Math.max(1, Math.floor(maxParameters / Math.max(1, Object.keys(rows[0] ?? {}).length)));
    for (let i = 0; i < rows.length; i += perStatement) {
      const chunk = rows.slice(i, i + perStatement);
      // INSERT … VALUES … RETURNING gives the rows back in the order of VALUES.
      for (const row of (await insertRows(db, table, chunk, { returning: key })).rows) ids.push(String(row[key]));
    }
    return ids;
  },

  async continueNumbering(db, table, key) {
    // The sequence of a serial or identity column; none for a key the database does not number.
    const found = await sql<{ sequence: string | null }>`SELECT pg_get_serial_sequence(${quotePostgres(table)}, ${key}) AS sequence`.execute(db);
    const sequence = found.rows[0]?.sequence;
    if (sequence === null || sequence === undefined) return;
    // The third argument false: an empty table's next key is 1 again.
    await sql`SELECT setval(${sequence}::regclass, coalesce(max(${sql.ref(key)}), 1), max(${sql.ref(key)}) IS NOT NULL) FROM ${sql.table(table)}`.execute(db);
  },

  captureTriggers: postgresCaptureTriggers,

  async listCaptureTriggers(db) {
    const result = await sql<{ name: string; table: string }>`
      SELECT t.tgname AS name, c.relname AS "table"
      FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND NOT t.tgisinternal AND t.tgname LIKE ${`${triggerPrefix.replace(/_/g, '\\_')}%`}
      ORDER BY t.tgname`.execute(db);
    return result.rows;
  },

  async createTrigger(db, trigger) {
    // The function and the trigger in one string: without parameters, pg sends it as one simple query, which may hold several statements.
    await sql.raw(trigger.sql).execute(db);
  },

  async dropTrigger(db, trigger: InstalledTrigger) {
    const name = quotePostgres(trigger.name);
    await sql.raw(`DROP TRIGGER IF EXISTS ${name} ON ${quotePostgres(trigger.table)}`).execute(db);
    await sql.raw(`DROP FUNCTION IF EXISTS ${name}()`).execute(db);
  },
};

function server(target: PostgresTarget): string {
  return `the postgres server at ${target.url.host}`;
}

function databaseName(target: PostgresTarget): string {
  return decodeURIComponent(target.url.pathname.slice(1));
}

/** pg's error codes (SQLSTATE, or Node's for the network) → one sentence a user can act on. */
function connectError(err: unknown, target: PostgresTarget): DatabaseConnectError {
  const { code, message } = err as { code?: string; message?: string };
  const user = decodeURIComponent(target.url.username) || 'the default user';
  switch (code) {
    case 'ECONNREFUSED':
      return new DatabaseConnectError(`cannot reach ${server(target)}: connection refused; is it running, and is database.url right?`, true, { cause: err });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new DatabaseConnectError(`cannot reach ${server(target)}: the host name ${target.url.hostname} does not resolve`, true, { cause: err });
    case 'ETIMEDOUT':
      return new DatabaseConnectError(`cannot reach ${server(target)}: the connection timed out`, true, { cause: err });
    case '28P01':
      return new DatabaseConnectError(`${server(target)} refused user "${user}": wrong user name or password in database.url (or the variable that holds it)`, false, { cause: err });
    case '28000':
      return new DatabaseConnectError(`${server(target)} refused user "${user}": ${message ?? 'not allowed to connect'}; check the user in database.url and the server's pg_hba.conf`, false, { cause: err });
    case '3D000':
      return new DatabaseConnectError(`database "${databaseName(target)}" does not exist on ${server(target)}; create it or fix database.url`, false, { cause: err });
    default:
      return new DatabaseConnectError(`cannot connect to ${redactUrl(target.url.toString())}: ${message ?? String(err)}`, true, { cause: err });
  }
}
