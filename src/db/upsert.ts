import { sql } from 'kysely';
import type { AnyKysely } from './dialect.js';
import type { SkipTaken } from './insert-rows.js';

/**
 * Writes rows that may already exist: one statement inserts the new ones
 * and overwrites `update` columns of those whose key is taken. It replaces
 * a DELETE and an INSERT (or an UPDATE per row) for tablesync's own state,
 * whose writes per change are what a busy sync spends most of its time on.
 * Each dialect picks the form its database speaks.
 */
export type Upsert = (db: AnyKysely, table: string, rows: readonly object[], key: readonly string[], update: readonly string[]) => Promise<void>;

/** SQLite and PostgreSQL: `INSERT … ON CONFLICT (key) DO UPDATE SET c = excluded.c`. */
export const upsertOnConflict: Upsert = async (db, table, rows, key, update) => {
  if (rows.length === 0) return;
  await db
    .insertInto(table)
    .values([...rows])
    .onConflict((conflict) => conflict.columns([...key]).doUpdateSet(Object.fromEntries(update.map((column) => [column, sql.ref(`excluded.${column}`)]))))
    .execute();
};

/** MySQL and MariaDB: `INSERT … ON DUPLICATE KEY UPDATE c = VALUES(c)` (the key is the table's primary or unique key). */
export const upsertOnDuplicateKey: Upsert = async (db, table, rows, _key, update) => {
  if (rows.length === 0) return;
  await db
    .insertInto(table)
    .values([...rows])
    .onDuplicateKeyUpdate(Object.fromEntries(update.map((column) => [column, sql`VALUES(${sql.ref(column)})`])))
    .execute();
};

/** SQLite and PostgreSQL: `ON CONFLICT DO NOTHING`, for a conflict on any unique key. */
export const skipTakenOnConflict: SkipTaken = (query) => query.onConflict((conflict) => conflict.doNothing());

/**
 * MySQL and MariaDB: `ON DUPLICATE KEY UPDATE c = c`, which changes nothing.
 * Not INSERT IGNORE: that would also turn a value too long or out of range
 * into a warning and write it cut.
 */
export const skipTakenOnDuplicateKey: SkipTaken = (query, firstColumn) => query.onDuplicateKeyUpdate({ [firstColumn]: sql.ref(firstColumn) });
