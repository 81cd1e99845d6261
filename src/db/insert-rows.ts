import { CompiledQuery, type InsertQueryBuilder, type QueryResult } from 'kysely';
import type { AnyKysely } from './dialect.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tablesync's state and the application's tables have no static types here
export type AnyInsert = InsertQueryBuilder<any, any, any>;

/**
 * Makes an INSERT leave out each row that a row already there (or an earlier
 * row of the same statement) holds a unique key of, any unique key, instead
 * of failing: each dialect says it its own way (see upsert.ts).
 */
export type SkipTaken = (query: AnyInsert, firstColumn: string) => AnyInsert;

export interface InsertRowsOptions {
  /** A column to return the inserted rows' values of (PostgreSQL's way to learn new keys). */
  readonly returning?: string;
  /** Rows whose unique keys are taken are left out rather than refused. */
  readonly skipTaken?: SkipTaken;
}

/**
 * Statements already compiled, by the one-row form of the statement (which names the dialect's
 * quoting and placeholders, the table, the columns and RETURNING) and the number of rows.
 */
const statements = new Map<string, string>();
/** A few tables × a few chunk sizes each; past this the cache starts over rather than grow. */
const maxStatements = 256;

/**
 * One multi-row INSERT of `rows`, which all have the same columns (those of the first row, in its
 * order) and no undefined value. Kysely's insert builder makes a node per value and compiles them
 * all for every statement, much of the CPU of a bulk create; here Kysely compiles the statement
 * once per shape, with the dialect's quoting and placeholders, and each chunk only lays its values
 * out in the order of those placeholders (row by row, column by column).
 */
export async function insertRows(db: AnyKysely, table: string, rows: readonly Record<string, unknown>[], options: InsertRowsOptions = {}): Promise<QueryResult<Record<string, unknown>>> {
  const [first] = rows;
  if (first === undefined) throw new Error(`insertRows: no rows for ${table}`);
  const columns = Object.keys(first);
  const parameters: unknown[] = new Array(rows.length * columns.length);
  let i = 0;
  for (const row of rows) {
    for (const column of columns) {
      const value = row[column];
      // Kysely would write DEFAULT for an undefined value; a statement shared by every row cannot.
      if (value === undefined) throw new Error(`insertRows: row ${i / columns.length} of ${table} has no value for ${column}`);
      parameters[i++] = value;
    }
  }
  return db.executeQuery<Record<string, unknown>>(CompiledQuery.raw(statement(db, table, columns, rows.length, options), parameters));
}

function statement(db: AnyKysely, table: string, columns: readonly string[], count: number, { returning, skipTaken }: InsertRowsOptions): string {
  const compile = (n: number): CompiledQuery => {
    const row = Object.fromEntries(columns.map((c) => [c, null]));
    let query: AnyInsert = db.insertInto(table).values(Array.from({ length: n }, () => row));
    if (skipTaken !== undefined && columns[0] !== undefined) query = skipTaken(query, columns[0]);
    return (returning === undefined ? query : query.returning(returning)).compile();
  };
  const key = `${compile(1).sql}\u0000${count}`;
  let text = statements.get(key);
  if (text === undefined) {
    const compiled = compile(count);
    // Every value a parameter, in row order: what insertRows lays out.
    if (compiled.parameters.length !== count * columns.length) throw new Error(`insertRows: the statement for ${table} does not take one parameter per value`);
    text = compiled.sql;
    if (statements.size >= maxStatements) statements.clear();
    statements.set(key, text);
  }
  return text;
}
