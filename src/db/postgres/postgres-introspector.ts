import { sql } from 'kysely';
import type { AnyKysely } from '../dialect.js';
import { columnFamily, schemaOf, type ColumnFamily, type ColumnSchema, type DatabaseSchema } from '../schema-types.js';

interface ColumnRow {
  table_name: string;
  column_name: string;
  data_type: string;
  base_type: string;
  category: string;
  not_null: boolean;
  has_default: boolean;
  auto_increment: boolean;
  max_length: number | null;
}

interface UniqueRow {
  table_name: string;
  column_name: string;
}

/**
 * pg_type.typcategory of types that no value travels as: arrays, composites,
 * geometric, network, pseudo, ranges, intervals, bit strings, unknown.
 * Their names would otherwise fool columnFamily's fallbacks (`interval` and
 * `point` contain "int").
 */
const unsyncableCategories = new Set(['A', 'C', 'G', 'I', 'P', 'R', 'T', 'V', 'X', 'Z']);

function familyOf(category: string, baseType: string): ColumnFamily {
  // An enum's values travel as their labels.
  if (category === 'E') return 'text';
  if (unsyncableCategories.has(category)) return 'other';
  return columnFamily(baseType);
}

/**
 * The tables (ordinary and partitioned, not views) of the schema tablesync
 * works in: current_schema(), which the adapter has set to the schema of
 * the URL's `?schema=` (public by default). A domain counts as its base type.
 */
export async function introspectPostgres(db: AnyKysely): Promise<DatabaseSchema> {
  const columns = await sql<ColumnRow>`
    SELECT c.relname AS table_name, a.attname AS column_name,
           format_type(a.atttypid, a.atttypmod) AS data_type,
           format_type(b.oid, m.typmod) AS base_type,
           b.typcategory AS category,
           a.attnotnull AS not_null,
           (a.atthasdef OR a.attidentity <> '') AS has_default,
           (a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%', false)) AS auto_increment,
           CASE WHEN b.typname IN ('varchar', 'bpchar') AND m.typmod > 4 THEN m.typmod - 4 END AS max_length
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_type t ON t.oid = a.atttypid
    CROSS JOIN LATERAL (
      SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END AS base_oid,
             CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod
    ) m
    JOIN pg_type b ON b.oid = m.base_oid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
    ORDER BY c.relname, a.attnum`.execute(db);
  // Single-column unique indexes (primary keys included) that hold for every row: no predicate, no expression.
  const uniques = await sql<UniqueRow>`
    SELECT c.relname AS table_name, a.attname AS column_name
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE n.nspname = current_schema() AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1
      AND i.indpred IS NULL AND i.indexprs IS NULL`.execute(db);

  const columnsRead = columns.rows.map((row) => {
    const column: ColumnSchema = {
      name: row.column_name,
      dataType: row.data_type,
      family: familyOf(row.category, row.base_type),
      nullable: !row.not_null,
      hasDefault: row.has_default,
      autoIncrement: row.auto_increment,
      ...(row.max_length !== null && { maxLength: Number(row.max_length) }),
    };
    return { table: row.table_name, column };
  });
  return schemaOf(
    columnsRead,
    uniques.rows.map((row) => ({ table: row.table_name, column: row.column_name })),
  );
}
