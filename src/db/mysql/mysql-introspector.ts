import { sql } from 'kysely';
import { append } from '../../group-by.js';
import type { AnyKysely } from '../dialect.js';
import { columnFamily, schemaOf, type ColumnSchema, type DatabaseSchema } from '../schema-types.js';

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

  const columnsRead = columns.rows.map((row) => {
    const nullable = row.is_nullable === 'YES';
    const column: ColumnSchema = {
      name: row.column_name,
      dataType: row.column_type.toLowerCase(),
      family: columnFamily(row.column_type),
      nullable,
      // MariaDB reports the implicit default of a nullable column as the text NULL.
      hasDefault: row.column_default !== null && !(nullable && row.column_default === 'NULL'),
      autoIncrement: row.extra.toLowerCase().includes('auto_increment'),
      ...(row.max_length !== null && { maxLength: Number(row.max_length) }),
    };
    return { table: row.table_name, column };
  });

  const indexColumns = new Map<string, string[]>();
  for (const row of uniques.rows) {
    const id = `${row.table_name}\u0000${row.index_name}`;
    append(indexColumns, id, row.column_name);
  }
  const uniqueColumns: { table: string; column: string }[] = [];
  for (const [id, indexed] of indexColumns) {
    const [tableName] = id.split('\u0000');
    const [only] = indexed;
    if (indexed.length === 1 && only !== undefined && tableName !== undefined) uniqueColumns.push({ table: tableName, column: only });
  }
  return schemaOf(columnsRead, uniqueColumns);
}
