import type { DialectName } from '../config/types.js';
import type { DialectAdapter } from './dialect.js';
import { mysqlAdapter } from './mysql/mysql-adapter.js';
import { postgresAdapter } from './postgres/postgres-adapter.js';
import { sqliteAdapter } from './sqlite/sqlite-adapter.js';

/** The one place that maps a dialect name to its implementation. */
const adapters: Record<DialectName, DialectAdapter> = {
  mysql: mysqlAdapter,
  postgres: postgresAdapter,
  sqlite: sqliteAdapter,
};

export function adapterFor(dialect: DialectName): DialectAdapter {
  return adapters[dialect];
}
