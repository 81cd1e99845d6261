import type { AnyKysely } from '../db/dialect.js';
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

/** Writes new versions of one table's fields: the old rows of exactly those fields go, the new ones come. */
export async function writeVersions(db: AnyKysely, table: string, changes: RecordVersions): Promise<void> {
  const rows = [...changes].flatMap(([record_id, columns]) =>
    [...columns].map(([column_name, version]) => ({ table_name: table, record_id, column_name, version })),
  );
  for (const chunk of chunks(rows, 300)) {
    await db
      .deleteFrom(stateTables.fieldVersions)
      .where('table_name', '=', table)
      .where((eb) => eb.or(chunk.map((r) => eb.and([eb('record_id', '=', r.record_id), eb('column_name', '=', r.column_name)]))))
      .execute();
    await db.insertInto(stateTables.fieldVersions).values(chunk).execute();
  }
}
