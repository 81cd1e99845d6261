/** What tablesync needs to know of a database's tables, whatever the dialect. */

/** Broad kinds of column type, enough to decide what a value can become on the other side. */
export type ColumnFamily =
  | 'integer'
  | 'decimal'
  | 'float'
  | 'text'
  | 'binary'
  | 'datetime'
  | 'date'
  | 'time'
  | 'boolean'
  | 'json'
  | 'other';

export interface ColumnSchema {
  readonly name: string;
  /** The type as the database declares it, lower case (`varchar(80)`, `int unsigned`). */
  readonly dataType: string;
  readonly family: ColumnFamily;
  readonly nullable: boolean;
  readonly hasDefault: boolean;
  readonly autoIncrement: boolean;
  /** Longest text or binary value the column holds, where the database says. */
  readonly maxLength?: number;
}

export interface TableSchema {
  readonly name: string;
  /** In the table's own order. */
  readonly columns: ReadonlyMap<string, ColumnSchema>;
  /** Columns that identify a row alone: a one-column primary key or unique index. */
  readonly uniqueColumns: ReadonlySet<string>;
}

export type DatabaseSchema = ReadonlyMap<string, TableSchema>;

const families: [RegExp, ColumnFamily][] = [
  [/^(bool|boolean)$/, 'boolean'],
  [/^(tinyint|smallint|mediumint|int|integer|bigint|year|serial|bigserial|smallserial|int2|int4|int8)$/, 'integer'],
  [/^(decimal|numeric|dec|fixed|money)$/, 'decimal'],
  [/^(float|double|real|double precision|float4|float8)$/, 'float'],
  [/^(char|varchar|nchar|nvarchar|character|character varying|tinytext|text|mediumtext|longtext|enum|set|clob|citext|uuid)$/, 'text'],
  [/^(binary|varbinary|tinyblob|blob|mediumblob|longblob|bytea|bit)$/, 'binary'],
  [/^(datetime|timestamp|timestamptz|timestamp with time zone|timestamp without time zone)$/, 'datetime'],
  [/^date$/, 'date'],
  [/^(time|timetz|time with time zone|time without time zone)$/, 'time'],
  [/^(json|jsonb)$/, 'json'],
];

/**
 * The family of a declared type. `declared` may carry a length and modifiers
 * (`varchar(80)`, `int(11) unsigned`); only the base name counts. Names
 * nobody uses in MySQL or PostgreSQL fall back to SQLite's affinity rules,
 * since SQLite accepts any name.
 */
export function columnFamily(declared: string): ColumnFamily {
  const base = declared
    .toLowerCase()
    .replace(/\(.*\)/, '')
    .replace(/\b(unsigned|signed|zerofill)\b/g, '')
    .trim();
  for (const [pattern, family] of families) if (pattern.test(base)) return family;
  if (base.includes('int')) return 'integer';
  if (/char|clob|text/.test(base)) return 'text';
  if (base === '' || base.includes('blob')) return 'binary';
  if (/real|floa|doub/.test(base)) return 'float';
  return 'other';
}

/**
 * A DatabaseSchema from what a dialect's introspection read: each table's
 * columns in the order given, then the columns that identify a row alone.
 * A unique column of a table with no columns listed is ignored.
 */
export function schemaOf(columns: Iterable<{ readonly table: string; readonly column: ColumnSchema }>, uniqueColumns: Iterable<{ readonly table: string; readonly column: string }>): DatabaseSchema {
  const tables = new Map<string, { columns: Map<string, ColumnSchema>; uniqueColumns: Set<string> }>();
  for (const { table, column } of columns) {
    let found = tables.get(table);
    if (found === undefined) tables.set(table, (found = { columns: new Map(), uniqueColumns: new Set() }));
    found.columns.set(column.name, column);
  }
  for (const { table, column } of uniqueColumns) tables.get(table)?.uniqueColumns.add(column);
  const schema = new Map<string, TableSchema>();
  for (const [name, table] of tables) schema.set(name, { name, ...table });
  return schema;
}
