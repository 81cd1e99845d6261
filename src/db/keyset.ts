import type { Expression, SqlBool } from 'kysely';
import type { AnyKysely } from './dialect.js';

/**
 * Reading a whole table in key order, one page at a time (keyset
 * pagination): each page starts after the last key of the one before, so
 * no page costs more than the rows it returns (never OFFSET), and the table
 * is never in memory as a whole. Initial sync, backup and verify read this
 * way.
 */

/**
 * One page: up to `limit` rows of `columns` (the key columns are always
 * read too), ordered by `key`, after the row whose key is `after` (from the
 * first row when undefined). A composite key is compared column by column,
 * `(a > x) OR (a = x AND b > y) ...`, which every dialect understands.
 */
export async function readKeysetPage(
  db: AnyKysely,
  table: string,
  columns: readonly string[],
  key: readonly string[],
  after: readonly unknown[] | undefined,
  limit: number,
): Promise<Record<string, unknown>[]> {
  let query = db.selectFrom(table).select([...new Set([...key, ...columns])]);
  for (const column of key) query = query.orderBy(column);
  if (after !== undefined) {
    query = query.where((eb) =>
      eb.or(
        key.map((column, i) => {
          const equalBefore: Expression<SqlBool>[] = key.slice(0, i).map((earlier, k) => eb(earlier, '=', after[k]));
          return eb.and([...equalBefore, eb(column, '>', after[i])]);
        }),
      ),
    );
  }
  return (await query.limit(limit).execute()) as Record<string, unknown>[];
}

/** Every row of a table, page by page, in key order (see readKeysetPage). */
export async function* keysetPages(
  db: AnyKysely,
  table: string,
  columns: readonly string[],
  key: readonly string[],
  pageRows: number,
): AsyncGenerator<Record<string, unknown>[]> {
  let after: unknown[] | undefined;
  for (;;) {
    const rows = await readKeysetPage(db, table, columns, key, after, pageRows);
    if (rows.length === 0) return;
    yield rows;
    if (rows.length < pageRows) return;
    const last = rows[rows.length - 1] as Record<string, unknown>;
    after = key.map((column) => last[column]);
  }
}
