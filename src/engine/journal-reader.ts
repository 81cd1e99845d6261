import type { AnyKysely } from '../db/dialect.js';
import { append } from '../group-by.js';
import { journalOps, stateTables } from '../db/state-names.js';
import type { EngineContext } from './context.js';
import { readVersions, versionOf, writeVersions, type RecordVersions } from './field-versions.js';
import { chunks, OutboxWriter } from './outbox.js';
import type { VersionClock } from './versions.js';

interface JournalRow {
  seq: number | string;
  table_name: string;
  record_id: string;
  op: string;
  columns: string;
  changed_at: number | string;
}

/** How many journal rows one pass reads; the caller loops while there are more. */
export const journalPassSize = 2000;

/**
 * Turns the application's captured changes into field versions and outbox
 * entries, then forgets the journal rows: all in the caller's transaction.
 *
 * Rows are taken and deleted rather than followed by a cursor: a
 * transaction that commits late with a lower sequence number is simply
 * taken next time, never skipped.
 *
 * Returns how many journal rows were absorbed.
 */
export async function absorbJournal(context: EngineContext, db: AnyKysely, clock: VersionClock): Promise<number> {
  let query = db.selectFrom(stateTables.journal).selectAll().orderBy('seq').limit(journalPassSize);
  // SKIP LOCKED: a row the application has not committed yet is taken next time. Waiting for it could close a
  // cycle (the application's transaction may be waiting for a record the applier has locked): a deadlock the
  // application would see. Absorbers never take the same rows twice: each holds the version clock's lock.
  if (context.database.adapter.lockingReads) query = query.forUpdate().skipLocked();
  const rows = (await query.execute()) as JournalRow[];
  if (rows.length === 0) return 0;

  const outbox = new OutboxWriter();
  const byTable = new Map<string, JournalRow[]>();
  for (const row of rows) append(byTable, row.table_name, row);

  for (const [table, tableRows] of byTable) {
    const versions = await readVersions(db, table, tableRows.map((r) => r.record_id));
    const changed: RecordVersions = new Map();
    for (const row of tableRows) absorbRow(context, row, versions, changed, clock, outbox);
    await writeVersions(db, context.database.adapter, table, changed);
  }
  await outbox.flush(db, context.database.adapter);
  for (const chunk of chunks(rows.map((r) => r.seq), 1000)) {
    await db.deleteFrom(stateTables.journal).where('seq', 'in', chunk).execute();
  }
  return rows.length;
}

function absorbRow(
  context: EngineContext,
  row: JournalRow,
  versions: RecordVersions,
  changed: RecordVersions,
  clock: VersionClock,
  outbox: OutboxWriter,
): void {
  const at = Number(row.changed_at);
  const columns = row.columns === '' ? [] : row.columns.split(',');

  // One new version per changed column, shared by every sync that sends it.
  const newVersions = new Map<string, { version: string; parent: string }>();
  if (row.op !== journalOps.delete) {
    for (const column of columns) {
      if (!context.mappings.some((m) => m.tablesByName.get(row.table_name)?.fieldsByColumn.has(column))) continue;
      const parent = changed.get(row.record_id)?.get(column) ?? versionOf(versions, row.record_id, column);
      const version = clock.next(at);
      newVersions.set(column, { version, parent });
      let record = changed.get(row.record_id);
      if (record === undefined) changed.set(row.record_id, (record = new Map()));
      record.set(column, version);
    }
  }

  for (const mapping of context.mappings) {
    const table = mapping.tablesByName.get(row.table_name);
    if (table === undefined) continue;
    if (row.op === journalOps.delete) {
      // Deletes travel only for tables with a status column.
      if (table.config.status !== undefined) outbox.deleted(mapping.name, table.number, row.record_id, at);
      continue;
    }
    const statusChanged = table.config.status !== undefined && columns.includes(table.config.status.column);
    if (row.op === journalOps.insert || statusChanged) outbox.touch(mapping.name, table.number, row.record_id, at);
    for (const [column, change] of newVersions) {
      const field = table.fieldsByColumn.get(column);
      if (field?.sends === true) outbox.field(mapping.name, table.number, row.record_id, field.number, change, at);
    }
  }
}
