import { sql } from 'kysely';
import { append } from '../../group-by.js';
import type { AnyKysely } from '../dialect.js';
import { columnFamily, type ColumnSchema, type DatabaseSchema, type TableSchema } from '../schema-types.js';

interface ColumnRow {
  table_name: string;
  column_name: string;
  column_type: string;
  is_nullable: string;
  column_default: string | null;
  extra: string;
  max_length: string | number | null;
}

interface UniqueRow {
  table_name: string;
  index_name: string;
  column_name: string;
}

export async function introspectMysql(db: AnyKysely): Promise<DatabaseSchema> {
  const columns = await sql<ColumnRow>`
    SELECT c.TABLE_NAME AS table_name, c.COLUMN_NAME AS column_name, c.COLUMN_TYPE AS column_type,
           c.IS_NULLABLE AS is_nullable, c.COLUMN_DEFAULT AS column_default, c.EXTRA AS extra,
           c.CHARACTER_MAXIMUM_LENGTH AS max_length
    FROM information_schema.COLUMNS c
    JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
    WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE'
    ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION`.execute(db);
  const uniques = await sql<UniqueRow>`
    SELECT TABLE_NAME AS table_name, INDEX_NAME AS index_name, COLUMN_NAME AS column_name
    FROM information_schema.STATISTICS
    WHERE TABLE_SCHEMA = DATABASE() AND NON_UNIQUE = 0`.execute(db);

  const tables = new Map<string, { columns: Map<string, ColumnSchema>; uniqueColumns: Set<string> }>();
  for (const row of columns.rows) {
    let table = tables.get(row.table_name);
    if (table === undefined) {
      table = { columns: new Map(), uniqueColumns: new Set() };
      tables.set(row.table_name, table);
    }
    const nullable = row.is_nullable === 'YES';
    table.columns.set(row.column_name, {
      name: row.column_name,
      dataType: row.column_type.toLowerCase(),
      family: columnFamily(row.column_type),
      nullable,
      // MariaDB reports the implicit default of a nullable column as the text NULL.
      hasDefault: row.column_default !== null && !(nullable && row.column_default === 'NULL'),
      autoIncrement: row.extra.toLowerCase().includes('auto_increment'),
      ...(row.max_length !== null && { maxLength: Number(row.max_length) }),
    });
  }

  const indexColumns = new Map<string, string[]>();
  for (const row of uniques.rows) {
    const id = `${row.table_name}\u0000${row.index_name}`;
    append(indexColumns, id, row.column_name);
  }
  for (const [id, indexed] of indexColumns) {
    const [tableName] = id.split('\u0000');
    const [only] = indexed;
    if (indexed.length === 1 && only !== undefined && tableName !== undefined) tables.get(tableName)?.uniqueColumns.add(only);
  }

  const schema = new Map<string, TableSchema>();
  for (const [name, table] of tables) schema.set(name, { name, ...table });
  return schema;
}
