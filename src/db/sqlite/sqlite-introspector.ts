import { sql } from 'kysely';
import type { AnyKysely } from '../dialect.js';
import { columnFamily, type ColumnSchema, type DatabaseSchema, type TableSchema } from '../schema-types.js';

interface ColumnRow {
  name: string;
  type: string;
  notnull: number;
  dflt_value: string | null;
  pk: number;
}

export async function introspectSqlite(db: AnyKysely): Promise<DatabaseSchema> {
  const tableNames = await sql<{ name: string }>`
    SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`.execute(db);
  const schema = new Map<string, TableSchema>();
  for (const { name } of tableNames.rows) {
    const columnRows = (await sql<ColumnRow>`SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(${name})`.execute(db)).rows;
    const primaryKey = columnRows.filter((c) => c.pk > 0);
    // INTEGER PRIMARY KEY is the rowid: SQLite numbers it by itself.
    const rowidAlias = primaryKey.length === 1 && primaryKey[0]?.type.toLowerCase() === 'integer' ? primaryKey[0].name : undefined;

    const columns = new Map<string, ColumnSchema>();
    for (const row of columnRows) {
      const length = /\(\s*(\d+)\s*\)/.exec(row.type)?.[1];
      columns.set(row.name, {
        name: row.name,
        dataType: row.type.toLowerCase(),
        family: columnFamily(row.type),
        nullable: row.notnull === 0 && row.pk === 0,
        hasDefault: row.dflt_value !== null,
        autoIncrement: row.name === rowidAlias,
        ...(length !== undefined && { maxLength: Number(length) }),
      });
    }

    const uniqueColumns = new Set<string>();
    const [onlyKey] = primaryKey;
    if (primaryKey.length === 1 && onlyKey !== undefined) uniqueColumns.add(onlyKey.name);
    const indexes = (await sql<{ name: string; unique: number; partial: number }>`
      SELECT name, "unique", partial FROM pragma_index_list(${name})`.execute(db)).rows;
    for (const index of indexes.filter((i) => i.unique === 1 && i.partial === 0)) {
      const indexed = (await sql<{ name: string | null }>`SELECT name FROM pragma_index_info(${index.name})`.execute(db)).rows;
      const [only] = indexed;
      if (indexed.length === 1 && only?.name != null) uniqueColumns.add(only.name);
    }
    schema.set(name, { name, columns, uniqueColumns });
  }
  return schema;
}
