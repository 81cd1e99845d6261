import type { InstanceConfig } from '../config/types.js';
import { mappingFor } from '../engine/context.js';
import { linkOf } from '../engine/operations.js';
import type { RecordTarget } from './arguments.js';
import { withInstanceContext } from './open-instance.js';

/** `tablesync link`: the peer's record id linked to one of ours. Exit 1 when there is no link yet. */
export async function linkCommand(config: InstanceConfig, out: NodeJS.WritableStream, target: RecordTarget): Promise<number> {
  return withInstanceContext(config, async (context) => {
    const peerId = await linkOf(context, target.sync, target.table, target.id);
    const table = mappingFor(context, target.sync).tablesByNumber.get(target.table)?.name ?? `table ${target.table}`;
    if (peerId === undefined) {
      out.write(`record ${target.id} of ${table} has no link in sync ${target.sync} yet: the peer has not confirmed a record of its own for it\n`);
      return 1;
    }
    out.write(`record ${target.id} of ${table} is linked to the peer's record ${peerId} in sync ${target.sync}\n`);
    return 0;
  });
}
