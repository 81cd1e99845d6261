import type { InstanceConfig } from '../config/types.js';
import type { EngineContext } from '../engine/context.js';
import { listConflicts, resolveConflict, type ConflictRow } from '../engine/operations.js';
import type { KeepSide } from './arguments.js';
import { isoTime, plural, storedValue } from './format.js';
import { withInstanceContext } from './open-instance.js';
import { formatTable } from './table.js';

/** `tablesync conflicts list [--all]`: the open conflicts (or every one recorded), as a table. */
export async function conflictsListCommand(config: InstanceConfig, out: NodeJS.WritableStream, options: { all: boolean }): Promise<number> {
  return withInstanceContext(config, async (context) => {
    const conflicts = await listConflicts(context, { all: options.all });
    if (conflicts.length === 0) {
      out.write(options.all ? 'no conflicts recorded\n' : 'no open conflicts\n');
      return 0;
    }
    const header = ['id', 'sync', 'table', 'local id', 'field', 'ours', 'theirs', 'detected', 'resolution'];
    const rows = conflicts.map((row) => {
      const { table, column } = names(context, row);
      return [
        String(row.id),
        row.sync_name,
        numbered(row.table_number, table),
        row.local_id,
        numbered(row.field_number, column),
        storedValue(row.ours),
        storedValue(row.theirs),
        isoTime(row.detected_at),
        row.resolved_at === null ? 'open' : (row.resolution ?? 'resolved'),
      ];
    });
    out.write(`${formatTable([header, ...rows])}\n`);
    const open = conflicts.filter((row) => row.resolved_at === null).length;
    if (open > 0) out.write(`${plural(open, 'open conflict')}: resolve each with tablesync conflicts -c FILE resolve ID --keep ours|theirs\n`);
    return 0;
  });
}

/** `tablesync conflicts resolve ID --keep ours|theirs`. */
export async function conflictsResolveCommand(config: InstanceConfig, out: NodeJS.WritableStream, id: number, keep: KeepSide): Promise<number> {
  return withInstanceContext(config, async (context) => {
    const row = await resolveConflict(context, id, keep);
    const { table, column } = names(context, row);
    const value = storedValue(keep === 'ours' ? row.ours : row.theirs);
    const where = table === undefined || column === undefined ? `table ${row.table_number}, field ${row.field_number}` : `${table}.${column}`;
    out.write(`conflict ${id} resolved: kept ${keep} (${value}) in ${where} of record ${row.local_id}; the peer of sync ${row.sync_name} hears of it at the next exchange\n`);
    return 0;
  });
}

/** This side's table and column of a conflict; undefined for a sync, table or field no longer configured. */
function names(context: EngineContext, row: ConflictRow): { table: string | undefined; column: string | undefined } {
  const table = context.mappings.find((m) => m.name === row.sync_name)?.tablesByNumber.get(row.table_number);
  return { table: table?.name, column: table?.fieldsByNumber.get(row.field_number)?.column };
}

function numbered(number: number, name: string | undefined): string {
  return `${number} ${name ?? '(not configured)'}`;
}
