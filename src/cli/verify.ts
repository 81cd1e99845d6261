import type { InstanceConfig } from '../config/types.js';
import { verify, type RecordDifference, type TableVerification } from '../engine/verify.js';
import { UsageError } from '../errors.js';
import { loadConfigs } from './config-option.js';
import { plural, storedValue } from './format.js';
import { singleConfig, withInstanceContext } from './open-instance.js';
import { ProgressReport } from './progress.js';

export interface VerifyCommandOptions {
  readonly sync?: string;
  readonly table?: number;
  readonly repair: boolean;
}

/**
 * Our file (`-c`, exactly one) and the peer's (`--peer-config`): verify
 * reads both databases from here, so both files must be at hand, with the
 * variables they name set.
 */
export function verifyConfigs(files: readonly string[], peerFile: string | undefined): [InstanceConfig, InstanceConfig] {
  if (files.length !== 1) singleConfig(files, 'verify');
  if (peerFile === undefined) {
    throw new UsageError(
      "tablesync verify needs --peer-config FILE: the peer's configuration file, whose database this machine must be able to reach (verify reads both sides)",
    );
  }
  const [ours, peer] = loadConfigs([...files, peerFile]);
  if (ours === undefined || peer === undefined) throw new UsageError('tablesync verify needs -c FILE and --peer-config FILE');
  return [ours, peer];
}

/**
 * `tablesync verify`: compares both sides, lists what differs, and with
 * `--repair` queues it to be sent again. Exit 0 when both sides agree, 1
 * when any difference was found (also with --repair: what was queued is
 * only fixed once the daemons have sent it; run verify again then).
 */
export async function verifyCommand(config: InstanceConfig, peerConfig: InstanceConfig, out: NodeJS.WriteStream | NodeJS.WritableStream, options: VerifyCommandOptions): Promise<number> {
  return withInstanceContext(config, (ours) =>
    withInstanceContext(peerConfig, async (peer) => {
      out.write(`verifying instance ${config.instance} (${ours.database.target}) against its peer ${peerConfig.instance} (${peer.database.target})\n`);
      const progress = 'isTTY' in out && out.isTTY === true ? new ProgressReport(out, 'checked') : undefined;
      const report = await verify(ours, peer, {
        ...options,
        ...(progress === undefined ? {} : { onProgress: (p) => progress.update({ part: p.part, count: p.checked, total: p.total, done: p.done }) }),
      });
      progress?.end();

      for (const table of report.tables) out.write(formatTable(table));
      for (const skipped of report.skipped) out.write(`skipped ${skipped}\n`);
      const differences = report.tables.reduce((n, t) => n + t.differences, 0);
      const unrepairable = report.tables.reduce((n, t) => n + t.unrepairable, 0);
      if (report.waiting.here + report.waiting.peer > 0) {
        out.write(
          `note: ${plural(report.waiting.here, 'change')} here and ${report.waiting.peer} on the peer are still on their way; ` +
            'differences may be among them (verify again once both sides have settled)\n',
        );
      }
      if (differences === 0) {
        out.write(`no differences: both sides agree in ${plural(report.tables.length, 'table')}\n`);
        return 0;
      }
      const tables = report.tables.filter((t) => t.differences > 0).length;
      out.write(`${plural(differences, 'difference')} in ${plural(tables, 'table')}`);
      if (unrepairable > 0) out.write(` (${unrepairable} of them cannot be repaired by sending again)`);
      out.write('\n');
      if (options.repair) {
        const here = report.tables.reduce((n, t) => n + t.queuedHere, 0);
        const there = report.tables.reduce((n, t) => n + t.queuedOnPeer, 0);
        out.write(
          `queued ${plural(here, 'record')} here and ${there} on the peer to be sent again in full: the daemons send them at their next exchange; ` +
            'run tablesync verify again once they have\n',
        );
      } else if (differences > unrepairable) {
        out.write("tablesync verify --repair queues them to be sent again (this side's records win; a record only the peer has is sent from the peer)\n");
      }
      return 1;
    }),
  );
}

function formatTable(table: TableVerification): string {
  const lines = [
    `sync ${table.sync}, table ${table.number}: ${table.table} here, ${table.peerTable} on the peer; ` +
      (table.fields.length === 0 ? 'no field is both-ways on both sides, so only records and links are compared' : `fields ${table.fields.join(', ')} compared`),
    `  ${plural(table.records, 'record')} here, ${table.peerRecords} on the peer; ${table.differingChunks} of ${plural(table.chunks, 'chunk')} differ; ${plural(table.differences, 'difference')}`,
    ...table.listed.map((d) => `  ${describe(d)}`),
  ];
  if (table.differences > table.listed.length) lines.push(`  … and ${table.differences - table.listed.length} more (the first ${table.listed.length} are listed)`);
  return `${lines.join('\n')}\n`;
}

const cannotRepair = ' (sending again cannot repair this)';

function describe(d: RecordDifference): string {
  const ours = `record ${d.ourId ?? '?'}`;
  const pair = `${ours} (the peer's ${d.peerId ?? '?'})`;
  switch (d.problem) {
    case 'unlinked':
      return `${ours}: no link on either side; the peer has never confirmed a record for it`;
    case 'unlinked-here':
      return `${ours}: no link here, but the peer links its record ${d.peerId ?? '?'} to it`;
    case 'unlinked-there':
      return `${ours}: linked to the peer's record ${d.peerId ?? '?'}, which the peer does not link back`;
    case 'links-differ':
      return `${ours}: linked to the peer's record ${d.peerId ?? '?'}, but the peer links its record ${d.otherPeerId ?? '?'} to it${cannotRepair}`;
    case 'peer-record-missing':
      return `${ours}: linked to the peer's record ${d.peerId ?? '?'}, which does not exist${cannotRepair}`;
    case 'deleted-here':
      return `${pair}: deleted here, live on the peer`;
    case 'deleted-there':
      return `${pair}: live here, deleted on the peer${cannotRepair}`;
    case 'values':
      return `${pair}: ${d.fields.map((f) => `field ${f.number} (${f.column} / ${f.peerColumn}) is ${storedValue(JSON.stringify(f.ours))} here, ${storedValue(JSON.stringify(f.theirs))} on the peer`).join('; ')}`;
    case 'peer-unlinked':
      return `the peer's record ${d.peerId ?? '?'}: no link on either side; this side has never confirmed a record for it`;
    case 'our-record-missing':
      return `the peer's record ${d.peerId ?? '?'}: linked to record ${d.ourId ?? '?'} here, which does not exist${cannotRepair}`;
  }
}
