import type { AnyKysely, DialectAdapter } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';
import { chunks } from './outbox.js';
import { baseVersion } from './versions.js';

/** Versions of one table's fields, by record id then column; a missing entry is the base version. */
export type RecordVersions = Map<string, Map<string, string>>;

export async function readVersions(db: AnyKysely, table: string, recordIds: readonly string[]): Promise<RecordVersions> {
  const out: RecordVersions = new Map();
  for (const chunk of chunks([...new Set(recordIds)], 500)) {
    const rows = (await db
      .selectFrom(stateTables.fieldVersions)
      .select(['record_id', 'column_name', 'version'])
      .where('table_name', '=', table)
      .where('record_id', 'in', chunk)
      .execute()) as { record_id: string; column_name: string; version: string }[];
    for (const row of rows) {
      let record = out.get(row.record_id);
      if (record === undefined) out.set(row.record_id, (record = new Map()));
      record.set(row.column_name, row.version);
    }
  }
  return out;
}

export function versionOf(versions: RecordVersions, recordId: string, column: string): string {
  return versions.get(recordId)?.get(column) ?? baseVersion;
}

/** Writes new versions of one table's fields: those fields' rows are inserted or overwritten in one statement per few hundred. */
export async function writeVersions(db: AnyKysely, adapter: Pick<DialectAdapter, 'upsert'>, table: string, changes: RecordVersions): Promise<void> {
  const rows = [...changes].flatMap(([record_id, columns]) =>
    [...columns].map(([column_name, version]) => ({ table_name: table, record_id, column_name, version })),
  );
  for (const chunk of chunks(rows, 500)) await adapter.upsert(db, stateTables.fieldVersions, chunk, ['table_name', 'record_id', 'column_name'], ['version']);
}
