import type { InstanceConfig } from '../config/types.js';
import type { EngineContext } from '../engine/context.js';
import { listParked, retryParked, type ParkedRow } from '../engine/operations.js';
import { isoTime, plural } from './format.js';
import { withInstanceContext } from './open-instance.js';
import { formatTable } from './table.js';

/** `tablesync errors list`: the peer's changes that could not be applied here and wait, parked. */
export async function errorsListCommand(config: InstanceConfig, out: NodeJS.WritableStream): Promise<number> {
  return withInstanceContext(config, async (context) => {
    const parked = await listParked(context);
    if (parked.length === 0) {
      out.write('no parked changes\n');
      return 0;
    }
    const header = ['id', 'sync', 'table', 'peer record', 'attempts', 'parked at', 'reason'];
    const rows = parked.map((row) => [
      String(row.id),
      row.sync_name,
      tableOf(context, row),
      row.peer_record_id,
      String(row.attempts),
      isoTime(row.parked_at),
      row.reason,
    ]);
    out.write(`${formatTable([header, ...rows])}\n`);
    out.write(`${plural(parked.length, 'parked change')}: fix the cause, then tablesync errors -c FILE retry [ID]\n`);
    return 0;
  });
}

/** `tablesync errors retry [ID]`: applies parked changes again. Exit 1 when any is still parked. */
export async function errorsRetryCommand(config: InstanceConfig, out: NodeJS.WritableStream, id: number | undefined): Promise<number> {
  return withInstanceContext(config, async (context) => {
    const parked = new Map((await listParked(context)).map((row) => [Number(row.id), row]));
    const results = await retryParked(context, id);
    if (results.length === 0) {
      out.write('no parked changes\n');
      return 0;
    }
    let still = 0;
    for (const result of results) {
      const row = parked.get(Number(result.id));
      const what = row === undefined ? `change ${result.id}` : `change ${result.id} (sync ${row.sync_name}, table ${tableOf(context, row)}, peer record ${row.peer_record_id})`;
      if (result.reason === undefined) {
        out.write(`${what}: applied\n`);
      } else {
        still += 1;
        out.write(`${what}: still parked: ${result.reason}\n`);
      }
    }
    out.write(`${results.length - still} applied, ${still} still parked\n`);
    return still === 0 ? 0 : 1;
  });
}

function tableOf(context: EngineContext, row: ParkedRow): string {
  const table = context.mappings.find((m) => m.name === row.sync_name)?.tablesByNumber.get(row.table_number);
  return `${row.table_number} ${table?.name ?? '(not configured)'}`;
}
