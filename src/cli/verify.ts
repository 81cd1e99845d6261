import type { InstanceConfig } from '../config/types.js';
import type { EngineContext } from '../engine/context.js';
import { verify, verifyThroughTransport, type RecordDifference, type TableVerification, type VerifyOptions, type VerifyReport } from '../engine/verify.js';
import { UsageError } from '../errors.js';
import { loadConfigs } from './config-option.js';
import { plural, storedValue } from './format.js';
import { singleConfig, withInstanceContext } from './open-instance.js';
import { ProgressReport } from './progress.js';

export interface VerifyCommandOptions {
  readonly sync?: string;
  readonly table?: number;
  readonly repair: boolean;
  /** Our records per chunk (default 1,000). */
  readonly chunkRows?: number;
  /** Through the transport: give up when the peer has not answered for this long (default 120 s). */
  readonly timeoutSeconds?: number;
}

export const defaultVerifyTimeoutSeconds = 120;

/**
 * Our file (`-c`, exactly one) and, for the local mode, the peer's
 * (`--peer-config`), whose database this machine must reach.
 */
export function verifyConfigs(files: readonly string[], peerFile: string | undefined): [InstanceConfig, InstanceConfig | undefined] {
  const ours = singleConfig(files, 'verify');
  if (peerFile === undefined) return [ours, undefined];
  const [, peer] = loadConfigs([...files, peerFile]);
  if (peer === undefined) throw new UsageError('tablesync verify --peer-config needs the peer\'s configuration file');
  return [ours, peer];
}

/**
 * `tablesync verify`: compares both sides, lists what differs, and with
 * `--repair` queues it to be sent again. Without a peer file it asks the
 * peer through each sync's transport (both daemons must run); with one, it
 * reads both databases from here. Exit 0 when both sides agree, 1 when any
 * difference was found (also with --repair: what was queued is only fixed
 * once the daemons have sent it; run verify again then) or the peer did not
 * answer.
 */
export async function verifyCommand(
  config: InstanceConfig,
  peerConfig: InstanceConfig | undefined,
  out: NodeJS.WriteStream | NodeJS.WritableStream,
  options: VerifyCommandOptions,
): Promise<number> {
  const progress = 'isTTY' in out && out.isTTY === true ? new ProgressReport(out, 'checked') : undefined;
  const engineOptions: VerifyOptions = {
    ...options,
    ...(progress === undefined ? {} : { onProgress: (p) => progress.update({ part: p.part, count: p.checked, total: p.total, done: p.done }) }),
  };
  return withInstanceContext(config, async (ours) => {
    let report: VerifyReport;
    if (peerConfig === undefined) {
      report = await throughTransport(ours, out, engineOptions, options.timeoutSeconds ?? defaultVerifyTimeoutSeconds);
    } else {
      report = await withInstanceContext(peerConfig, async (peer) => {
        out.write(`verifying instance ${config.instance} (${ours.database.target}) against its peer ${peerConfig.instance} (${peer.database.target})\n`);
        return verify(ours, peer, engineOptions);
      });
    }
    progress?.end();
    return summarise(report, out, options.repair);
  });
}

/** Ctrl-C ends the wait, and the run is forgotten (our daemon then drops the replies still on their way). */
async function throughTransport(ours: EngineContext, out: NodeJS.WritableStream, options: VerifyOptions, timeoutSeconds: number): Promise<VerifyReport> {
  const { config } = ours;
  const interrupted = new AbortController();
  const onSignal = (): void => interrupted.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await verifyThroughTransport(ours, {
      ...options,
      policy: {
        timeoutMs: timeoutSeconds * 1000,
        signal: interrupted.signal,
        onSlow: (why) => out.write(`still waiting for the peer's first answer: ${why}\n`),
      },
      onSync: (mapping, peer) =>
        out.write(
          `verifying instance ${config.instance} (${ours.database.target}) against its peer ${peer} through sync ${mapping.name} (${mapping.sync.transport.type}): ` +
            `the questions travel in the sync's batches, so tablesync run must be running here and on ${peer}; ` +
            `giving up when ${peer} has not answered for ${timeoutSeconds} s\n`,
        ),
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function summarise(report: VerifyReport, out: NodeJS.WritableStream, repair: boolean): number {
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
  if (repair) {
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
}

function formatTable(table: TableVerification): string {
  const where = table.peerTable === undefined ? `${table.table} here` : `${table.table} here, ${table.peerTable} on the peer`;
  const lines = [
    `sync ${table.sync}, table ${table.number}: ${where}; ` +
      (table.fields.length === 0 ? 'no field is both-ways on both sides, so only records and links are compared' : `fields ${table.fields.join(', ')} compared`),
    `  ${plural(table.records, 'record')} here, ${table.peerRecords} on the peer; ${table.differingChunks} of ${plural(table.chunks, 'chunk')} differ; ${plural(table.differences, 'difference')}`,
    `  fetched ${plural(table.fetchedRecords, 'record')} of the peer's for the differing chunks, ` +
      `and ${plural(table.fetchedIds, 'id')} of its records for ${table.differingGroups} of ${plural(table.groups, 'group')} that differ`,
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
      return `${pair}: ${d.fields
        .map((f) => {
          const columns = f.peerColumn === undefined ? f.column : `${f.column} / ${f.peerColumn}`;
          return `field ${f.number} (${columns}) is ${storedValue(JSON.stringify(f.ours))} here, ${storedValue(JSON.stringify(f.theirs))} on the peer`;
        })
        .join('; ')}`;
    case 'peer-unlinked':
      return `the peer's record ${d.peerId ?? '?'}: no link on either side; this side has never confirmed a record for it`;
    case 'our-record-missing':
      return `the peer's record ${d.peerId ?? '?'}: linked to record ${d.ourId ?? '?'} here, which does not exist${cannotRepair}`;
  }
}
