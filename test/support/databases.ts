import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { createConnection, type Connection } from 'mysql2/promise';
import pg from 'pg';
import { describe, it } from 'vitest';
import type { DatabaseConfig, DialectName } from '../../src/config/types.js';
import { redactUrl } from '../../src/errors.js';

/**
 * Real databases for tests, one fresh database per test: a SQLite file in a
 * temporary folder, or a uniquely named MariaDB/MySQL or PostgreSQL database
 * that is dropped afterwards. Nothing is shared between tests, so they can
 * run in parallel.
 *
 * MariaDB is found at TABLESYNC_TEST_MYSQL_URL (default
 * mysql://root@127.0.0.1:3306), PostgreSQL at TABLESYNC_TEST_POSTGRES_URL
 * (default postgres://postgres@127.0.0.1:5432/postgres, the database it
 * connects to in order to create and drop the tests' own). When a server
 * does not answer, its tests are skipped with a warning, unless
 * TABLESYNC_REQUIRE_MYSQL=1 or TABLESYNC_REQUIRE_POSTGRES=1, which makes
 * that a failure (CI sets both).
 */
export const mysqlServerUrl = process.env.TABLESYNC_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';
export const postgresServerUrl = process.env.TABLESYNC_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function probeMysql(): Promise<string | undefined> {
  try {
    const connection = await createConnection({ uri: mysqlServerUrl, connectTimeout: 3000 });
    await connection.end();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

async function probePostgres(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: postgresServerUrl, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    return (err as Error).message || String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A database server the tests need: whether it answered, and whether it must. */
interface Server {
  readonly label: string;
  readonly url: string;
  /** Why it cannot be used; undefined when it answered. */
  readonly problem: string | undefined;
  /** The variable that makes its absence a failure, and whether it is set. */
  readonly requireVariable: string;
  readonly required: boolean;
}

const [mysqlProblem, postgresProblem] = await Promise.all([probeMysql(), probePostgres()]);
const servers: Partial<Record<DialectName, Server>> = {
  mysql: { label: 'MariaDB', url: mysqlServerUrl, problem: mysqlProblem, requireVariable: 'TABLESYNC_REQUIRE_MYSQL', required: process.env.TABLESYNC_REQUIRE_MYSQL === '1' },
  postgres: {
    label: 'PostgreSQL',
    url: redactUrl(postgresServerUrl),
    problem: postgresProblem,
    requireVariable: 'TABLESYNC_REQUIRE_POSTGRES',
    required: process.env.TABLESYNC_REQUIRE_POSTGRES === '1',
  },
};
for (const server of Object.values(servers)) {
  if (server.problem !== undefined && !server.required) {
    process.stderr.write(
      `\n[tablesync tests] ${server.label} is not reachable at ${server.url} (${server.problem}): skipping the ${server.label} tests. ` +
        `Set ${server.requireVariable}=1 to make this a failure.\n`,
    );
  }
}

/** The application's own connection: plain SQL with `?` placeholders, the same on both dialects. */
export interface AppConnection {
  exec(statement: string, params?: unknown[]): Promise<void>;
  query<T = Record<string, unknown>>(statement: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

export interface TestDatabase {
  readonly dialect: DialectName;
  readonly config: DatabaseConfig;
  /** DDL for an auto-numbered integer primary key column. */
  readonly autoId: string;
  /** A new application connection (each call opens another one). */
  connect(): Promise<AppConnection>;
  /** Drops the database (or deletes the file); called by the `using` helpers. */
  drop(): Promise<void>;
}

function uniqueName(): string {
  return `ts_test_${process.pid}_${randomBytes(4).toString('hex')}`;
}

export async function createSqliteDatabase(): Promise<TestDatabase> {
  const dir = mkdtempSync(join(tmpdir(), 'tablesync-test-'));
  const file = join(dir, 'app.sqlite');
  new BetterSqlite3(file).close();
  return {
    dialect: 'sqlite',
    config: { dialect: 'sqlite', file },
    autoId: 'INTEGER PRIMARY KEY AUTOINCREMENT',
    async connect() {
      const db = new BetterSqlite3(file, { timeout: 10_000 });
      return {
        async exec(statement, params = []) {
          if (params.length === 0) db.exec(statement);
          else db.prepare(statement).run(...params);
        },
        async query<T>(statement: string, params: unknown[] = []) {
          return db.prepare(statement).all(...params) as T[];
        },
        async close() {
          db.close();
        },
      };
    },
    async drop() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function createMysqlDatabase(): Promise<TestDatabase> {
  const name = uniqueName();
  const admin = await createConnection({ uri: mysqlServerUrl });
  await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
  await admin.end();
  const url = new URL(mysqlServerUrl);
  url.pathname = `/${name}`;
  return {
    dialect: 'mysql',
    config: { dialect: 'mysql', url: url.toString() },
    autoId: 'INT AUTO_INCREMENT PRIMARY KEY',
    async connect() {
      const connection: Connection = await createConnection({ uri: url.toString(), dateStrings: true });
      return {
        async exec(statement, params = []) {
          await connection.query(statement, params);
        },
        async query<T>(statement: string, params: unknown[] = []) {
          const [rows] = await connection.query(statement, params);
          return rows as T[];
        },
        async close() {
          await connection.end();
        },
      };
    },
    async drop() {
      const connection = await createConnection({ uri: mysqlServerUrl });
      await connection.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await connection.end();
    },
  };
}

/**
 * `?` placeholders, as the tests write them for every dialect, → PostgreSQL's
 * `$1`, `$2`…; a `?` inside a quoted string or identifier stays as it is.
 */
export function numberedPlaceholders(statement: string): string {
  let n = 0;
  return statement.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|\?/g, (match) => (match === '?' ? `$${++n}` : match));
}

/**
 * Values as text where the JavaScript value would lose what the database
 * holds, as mysql2's dateStrings does for MariaDB: dates and time stamps
 * (not a Date in this process's time zone) and json (not re-serialised).
 */
const postgresTextTypes = new Set<number>([pg.types.builtins.DATE, pg.types.builtins.TIMESTAMP, pg.types.builtins.TIMESTAMPTZ, pg.types.builtins.JSON, pg.types.builtins.JSONB]);
const postgresTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    postgresTextTypes.has(oid) ? (value: string) => value : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

async function postgresAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: postgresServerUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export async function createPostgresDatabase(): Promise<TestDatabase> {
  const name = uniqueName();
  await postgresAdmin((admin) => admin.query(`CREATE DATABASE "${name}"`));
  const url = new URL(postgresServerUrl);
  url.pathname = `/${name}`;
  return {
    dialect: 'postgres',
    config: { dialect: 'postgres', url: url.toString() },
    autoId: 'SERIAL PRIMARY KEY',
    async connect() {
      const client = new pg.Client({ connectionString: url.toString(), types: postgresTypes });
      // A connection the server ends (the database dropped under it) must not end the test process.
      client.on('error', () => undefined);
      await client.connect();
      return {
        async exec(statement, params = []) {
          // Without parameters, several statements may go in one (a simple query), as on the other dialects.
          await client.query(numberedPlaceholders(statement), params.length === 0 ? undefined : params);
        },
        async query<T>(statement: string, params: unknown[] = []) {
          return (await client.query(numberedPlaceholders(statement), params)).rows as T[];
        },
        async close() {
          await client.end();
        },
      };
    },
    async drop() {
      // FORCE ends the connections still open on it (a daemon killed mid-transaction leaves none, but a command may).
      await postgresAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    },
  };
}

export interface DialectCase {
  readonly dialect: DialectName;
  create(): Promise<TestDatabase>;
}

const cases: DialectCase[] = [
  { dialect: 'sqlite', create: createSqliteDatabase },
  { dialect: 'mysql', create: createMysqlDatabase },
  { dialect: 'postgres', create: createPostgresDatabase },
];

/** The case of one dialect, for suites that combine several (a MariaDB instance syncing with a SQLite one). */
export function dialectCase(dialect: DialectName): DialectCase {
  const found = cases.find((c) => c.dialect === dialect);
  if (found === undefined) throw new Error(`no test databases for dialect ${dialect}`);
  return found;
}

/**
 * A describe block that needs databases of every dialect in `dialects`:
 * with MariaDB or PostgreSQL among them and not reachable, it is skipped
 * with the warning printed above, or replaced by one failing test when
 * TABLESYNC_REQUIRE_MYSQL=1 (TABLESYNC_REQUIRE_POSTGRES=1). describeEachDialect
 * and the sync tests' pairs and rings go through here, so that there is one
 * rule for all of them.
 * `concurrent` runs its tests (and those of concurrent neighbours) at the
 * same time: for tests that mostly wait on other processes.
 */
export function describeWithDialects(name: string, dialects: readonly DialectName[], body: () => void, options: { concurrent?: boolean } = {}): void {
  const run = options.concurrent === true ? describe.concurrent : describe;
  const missing = dialects.map((dialect) => servers[dialect]).find((server) => server?.problem !== undefined);
  if (missing !== undefined) {
    if (missing.required) {
      run(name, () => {
        it(`needs ${missing.label}, which ${missing.requireVariable}=1 makes mandatory`, () => {
          throw new Error(`${missing.label} is not reachable at ${missing.url}: ${missing.problem}`);
        });
      });
    } else {
      describe.skip(`${name} (${missing.label} not reachable)`, body);
    }
    return;
  }
  run(name, body);
}

/**
 * Runs the same suite once per dialect, like kysely's test setup: the body
 * receives a factory for fresh databases of that dialect.
 */
export function describeEachDialect(title: string, body: (dialect: DialectCase) => void): void {
  for (const dialectCase of cases) {
    describeWithDialects(`${title} [${dialectCase.dialect}]`, [dialectCase.dialect], () => body(dialectCase));
  }
}

/** Creates a fresh database, runs `work`, and drops the database whatever happens. */
export async function withDatabase<T>(dialect: DialectCase, work: (db: TestDatabase) => Promise<T>): Promise<T> {
  const db = await dialect.create();
  try {
    return await work(db);
  } finally {
    await db.drop();
  }
}
