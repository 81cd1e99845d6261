import type { InstanceConfig } from '../config/types.js';
import { mappingFor } from '../engine/context.js';
import { pushRecord } from '../engine/operations.js';
import type { RecordTarget } from './arguments.js';
import { withInstanceContext } from './open-instance.js';

/** `tablesync push-record`: queues one record to be sent in full at the next exchange. */
export async function pushRecordCommand(config: InstanceConfig, out: NodeJS.WritableStream, target: RecordTarget): Promise<number> {
  return withInstanceContext(config, async (context) => {
    await pushRecord(context, target.sync, target.table, target.id);
    const table = mappingFor(context, target.sync).tablesByNumber.get(target.table)?.name ?? `table ${target.table}`;
    out.write(`record ${target.id} of ${table} is queued for sync ${target.sync}: it goes out in full at the next exchange\n`);
    return 0;
  });
}
