import { ConfigError, type ConfigProblem } from '../errors.js';
import type { ColumnFamily, ColumnSchema, DatabaseSchema, TableSchema } from '../db/schema-types.js';
import { formatPath, type DocPath } from './path.js';
import { suggestion } from './suggest.js';
import type { InstanceConfig, TableConfig } from './types.js';

export interface DatabaseFinding extends ConfigProblem {
  readonly severity: 'error' | 'warning';
}

/** Families a value can travel as; anything else (geometry, …) cannot be synced. */
const syncable = new Set<ColumnFamily>(['integer', 'decimal', 'float', 'text', 'binary', 'datetime', 'date', 'time', 'boolean', 'json']);
const numeric = new Set<ColumnFamily>(['integer', 'decimal', 'float', 'boolean']);

/**
 * Checks the configuration against the database it names: every table and
 * column exists, keys identify one record, types can hold what will be
 * written. Errors stop tablesync from starting; warnings point at what will
 * fail later (a peer's record that cannot be inserted here). The warnings
 * found while loading the file (a password others can read) come first, so
 * that every command that checks the database shows them too.
 */
export function checkAgainstDatabase(config: InstanceConfig, schema: DatabaseSchema, target: string): DatabaseFinding[] {
  const findings: DatabaseFinding[] = (config.warnings ?? []).map((w) => ({ severity: 'warning', path: w.path, message: w.message }));
  const error = (path: DocPath, message: string): void => void findings.push({ severity: 'error', path: formatPath(path), message });
  const warning = (path: DocPath, message: string): void => void findings.push({ severity: 'warning', path: formatPath(path), message });
  const tableNames = [...schema.keys()].filter((name) => !name.startsWith('tablesync_'));

  const findColumn = (table: TableSchema, column: string, path: DocPath): ColumnSchema | undefined => {
    const found = table.columns.get(column);
    if (found === undefined) {
      error(path, `column ${column} does not exist in table ${table.name} (${suggestion(column, [...table.columns.keys()], 'its columns')})`);
    }
    return found;
  };

  if (config.users !== undefined) {
    const users = config.users;
    const table = schema.get(users.table);
    if (table === undefined) {
      error(['users', 'table'], `table ${users.table} does not exist in ${target} (${suggestion(users.table, tableNames, 'tables there')})`);
    } else {
      findColumn(table, users.key, ['users', 'key']);
      if (users.login !== undefined) findColumn(table, users.login, ['users', 'login']);
      if (users.fullName !== undefined) findColumn(table, users.fullName, ['users', 'fullName']);
    }
  }

  config.syncs.forEach((sync, s) =>
    sync.tables.forEach((tableConfig, t) => {
      const path = ['syncs', s, 'tables', t];
      const table = schema.get(tableConfig.table);
      if (table === undefined) {
        error([...path, 'table'], `table ${tableConfig.table} does not exist in ${target} (${suggestion(tableConfig.table, tableNames, 'tables there')})`);
        return;
      }
      checkTable(tableConfig, table, path, { error, warning, findColumn });
    }),
  );
  return findings;
}

interface Reporters {
  error(path: DocPath, message: string): void;
  warning(path: DocPath, message: string): void;
  findColumn(table: TableSchema, column: string, path: DocPath): ColumnSchema | undefined;
}

function checkTable(config: TableConfig, table: TableSchema, path: DocPath, { error, warning, findColumn }: Reporters): void {
  const key = findColumn(table, config.key, [...path, 'key']);
  if (key !== undefined) {
    if (!table.uniqueColumns.has(key.name)) {
      error([...path, 'key'], `${key.name} is neither the primary key nor a unique column of ${table.name}; the key must identify one record`);
    } else if (!key.autoIncrement && !key.hasDefault && receivesRecords(config)) {
      warning([...path, 'key'], `${key.name} is not numbered by the database, so records created on the peer cannot be inserted into ${table.name}`);
    }
  }

  config.fields.forEach((field, f) => {
    const column = findColumn(table, field.column, [...path, 'fields', f, 'column']);
    if (column === undefined) return;
    if (!syncable.has(column.family)) {
      error([...path, 'fields', f, 'column'], `${table.name}.${column.name} has type ${column.dataType}, which tablesync cannot sync`);
    } else if (field.type === 'user' && column.family !== 'integer' && column.family !== 'text') {
      error([...path, 'fields', f, 'type'], `${table.name}.${column.name} has type ${column.dataType}; a user field must be a number or text column`);
    }
  });

  if (config.status !== undefined) {
    const column = findColumn(table, config.status.column, [...path, 'status', 'column']);
    const deleted = config.status.deleted;
    if (column !== undefined && typeof deleted === 'string' && numeric.has(column.family) && !/^-?[0-9]+$/.test(deleted)) {
      error([...path, 'status', 'deleted'], `"${deleted}" cannot be stored in ${table.name}.${column.name}, which has type ${column.dataType}`);
    }
  }

  if (config.addedAt !== undefined) {
    const column = findColumn(table, config.addedAt, [...path, 'addedAt']);
    if (column !== undefined && !['datetime', 'date', 'integer', 'text'].includes(column.family)) {
      error([...path, 'addedAt'], `${table.name}.${column.name} has type ${column.dataType}; the time a record was added must be a date, time stamp, number or text column`);
    }
  }

  if (receivesRecords(config)) {
    const filled = new Set([config.key, ...config.fields.map((f) => f.column), config.status?.column, config.addedAt]);
    for (const column of table.columns.values()) {
      if (!filled.has(column.name) && !column.nullable && !column.hasDefault && !column.autoIncrement) {
        warning([...path, 'fields'], `${table.name}.${column.name} is NOT NULL without a default and is not synced, so records created on the peer cannot be inserted here`);
      }
    }
  }
}

/** Whether the peer can create records in this table on this side. */
function receivesRecords(config: TableConfig): boolean {
  return config.fields.some((field) => field.direction === 'both' || field.direction === 'download');
}

/** Throws a ConfigError (exit code 2) listing every error; returns the warnings. */
export function assertMatchesDatabase(config: InstanceConfig, schema: DatabaseSchema, target: string): DatabaseFinding[] {
  const findings = checkAgainstDatabase(config, schema, target);
  const errors = findings.filter((f) => f.severity === 'error');
  if (errors.length > 0) throw new ConfigError(config.file, errors.map(({ path, message }) => ({ path, message })));
  return findings.filter((f) => f.severity === 'warning');
}
