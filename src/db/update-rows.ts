import { sql, type RawBuilder } from 'kysely';
import { groupBy } from '../group-by.js';
import type { AnyKysely } from './dialect.js';

/** New values for some columns of the record whose key is `key`. */
export interface RowUpdate {
  readonly key: string;
  readonly set: Readonly<Record<string, unknown>>;
}

/** Records per statement: a few hundred keep statements small and the saving large. */
const rowsPerStatement = 200;

/**
 * Updates many records by key with one statement per few hundred that
 * change the same columns:
 *
 *   UPDATE t SET a = CASE id WHEN ? THEN ? … ELSE a END, … WHERE id IN (…)
 *
 * rather than one round trip per record. The ELSE keeps a column as it is
 * and, on PostgreSQL, gives the untyped parameters the column's own type.
 * A record that no longer exists is left alone, as a plain UPDATE would.
 * Returns how many records it was asked to update.
 */
export async function updateRows(db: AnyKysely, table: string, keyColumn: string, updates: readonly RowUpdate[]): Promise<number> {
  const wanted = updates.filter((u) => Object.keys(u.set).length > 0);
  const byColumns = groupBy(wanted, (u) => Object.keys(u.set).sort().join('\u0000'));
  for (const group of byColumns.values()) {
    const columns = Object.keys(group[0]?.set ?? {});
    for (let i = 0; i < group.length; i += rowsPerStatement) {
      const chunk = group.slice(i, i + rowsPerStatement);
      if (chunk.length === 1 && chunk[0] !== undefined) {
        await db.updateTable(table).set(chunk[0].set).where(keyColumn, '=', chunk[0].key).execute();
        continue;
      }
      const set: Record<string, RawBuilder<unknown>> = {};
      for (const column of columns) {
        const cases = chunk.map((u) => sql`WHEN ${u.key} THEN ${u.set[column]}`);
        set[column] = sql`CASE ${sql.ref(keyColumn)} ${sql.join(cases, sql` `)} ELSE ${sql.ref(column)} END`;
      }
      await db
        .updateTable(table)
        .set(set)
        .where(
          keyColumn,
          'in',
          chunk.map((u) => u.key),
        )
        .execute();
    }
  }
  return wanted.length;
}
