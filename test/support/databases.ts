import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { createConnection, type Connection } from 'mysql2/promise';
import { describe, it } from 'vitest';
import type { DatabaseConfig, DialectName } from '../../src/config/types.js';

/**
 * Real databases for tests, one fresh database per test: a SQLite file in a
 * temporary folder, or a uniquely named MariaDB/MySQL database that is
 * dropped afterwards. Nothing is shared between tests, so they can run in
 * parallel.
 *
 * MariaDB is found at TABLESYNC_TEST_MYSQL_URL (default
 * mysql://root@127.0.0.1:3306). When it does not answer, the MariaDB tests
 * are skipped with a warning, unless TABLESYNC_REQUIRE_MYSQL=1, which makes
 * that a failure (CI sets it).
 */
export const mysqlServerUrl = process.env.TABLESYNC_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';
const mysqlRequired = process.env.TABLESYNC_REQUIRE_MYSQL === '1';

async function probeMysql(): Promise<string | undefined> {
  try {
    const connection = await createConnection({ uri: mysqlServerUrl, connectTimeout: 3000 });
    await connection.end();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

const mysqlProblem = await probeMysql();
if (mysqlProblem !== undefined && !mysqlRequired) {
  process.stderr.write(
    `\n[tablesync tests] MariaDB is not reachable at ${mysqlServerUrl} (${mysqlProblem}): skipping the MariaDB tests. ` +
      'Set TABLESYNC_REQUIRE_MYSQL=1 to make this a failure.\n',
  );
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

export interface DialectCase {
  readonly dialect: DialectName;
  create(): Promise<TestDatabase>;
}

const cases: DialectCase[] = [
  { dialect: 'sqlite', create: createSqliteDatabase },
  { dialect: 'mysql', create: createMysqlDatabase },
];

/** The case of one dialect, for suites that combine several (a MariaDB instance syncing with a SQLite one). */
export function dialectCase(dialect: DialectName): DialectCase {
  const found = cases.find((c) => c.dialect === dialect);
  if (found === undefined) throw new Error(`no test databases for dialect ${dialect}`);
  return found;
}

/**
 * A describe block that needs databases of every dialect in `dialects`:
 * with MariaDB among them and not reachable, it is skipped with the warning
 * printed above, or replaced by one failing test when
 * TABLESYNC_REQUIRE_MYSQL=1. describeEachDialect and the sync tests' pairs
 * and rings go through here, so that there is one rule for all of them.
 * `concurrent` runs its tests (and those of concurrent neighbours) at the
 * same time: for tests that mostly wait on other processes.
 */
export function describeWithDialects(name: string, dialects: readonly DialectName[], body: () => void, options: { concurrent?: boolean } = {}): void {
  const run = options.concurrent === true ? describe.concurrent : describe;
  if (dialects.includes('mysql') && mysqlProblem !== undefined) {
    if (mysqlRequired) {
      run(name, () => {
        it('needs MariaDB, which TABLESYNC_REQUIRE_MYSQL=1 makes mandatory', () => {
          throw new Error(`MariaDB is not reachable at ${mysqlServerUrl}: ${mysqlProblem}`);
        });
      });
    } else {
      describe.skip(`${name} (MariaDB not reachable)`, body);
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
