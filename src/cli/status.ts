import { relative } from 'node:path';
import type { InstanceConfig } from '../config/types.js';
import type { AnyKysely } from '../db/dialect.js';
import { readSyncBacklog } from '../engine/backlog.js';
import { Instance } from '../engine/instance.js';
import { SyncMapping } from '../mapping/sync-mapping.js';
import { isoTime, secondsSince, type StoredTime } from './format.js';
import { stateIsCurrent } from './open-instance.js';
import { transportFor } from '../transports/create-transport.js';
import { TablesyncError } from '../errors.js';
import { formatTable } from './table.js';

/** Whether `status` reached a sync's peer, found without sending anything. */
export interface PeerReachability {
  /** False when this side cannot reach its peer by itself (a passive http side). */
  readonly checked: boolean;
  /** Null when not checked. */
  readonly reachable: boolean | null;
  /** One phrase: what was found, or why not. */
  readonly detail: string;
}

async function peerReachability(config: InstanceConfig, sync: InstanceConfig['syncs'][number]): Promise<PeerReachability> {
  let transport;
  try {
    transport = transportFor(config, sync);
  } catch (err) {
    if (err instanceof TablesyncError) return { checked: true, reachable: false, detail: err.message };
    throw err;
  }
  try {
    const detail = await transport.probe();
    return transport.reachesPeer ? { checked: true, reachable: true, detail } : { checked: false, reachable: null, detail };
  } catch (err) {
    if (err instanceof TablesyncError) return { checked: true, reachable: false, detail: err.message };
    throw err;
  } finally {
    await transport.close();
  }
}

/** A moment shown both ways: when, and how long ago. */
export interface Moment {
  readonly at: string;
  readonly secondsAgo: number;
}

/**
 * One sync as `status --json` prints it. The field names are part of the
 * command line contract (README, "tablesync status"). Fields read from
 * tablesync's state are null while the instance is not set up.
 */
export interface SyncStatus {
  readonly name: string;
  readonly role: 'active' | 'passive';
  readonly transport: 'http' | 'folder' | 'ftp';
  /** The peer's instance name, learnt from its first batch; null until then. */
  readonly peer: string | null;
  readonly peerReachable: PeerReachability;
  readonly waiting: {
    readonly total: number;
    /** Captured by the triggers, not yet read by tablesync (a record changed twice counts twice). */
    readonly captured: number;
    /** Records queued for this sync's next batch. */
    readonly queued: number;
    /** Events of batches sent but not yet acknowledged by the peer. */
    readonly inUnacknowledgedBatches: number;
  } | null;
  readonly unacknowledgedBatches: number | null;
  readonly lastBatchIn: Moment | null;
  readonly lastBatchOut: Moment | null;
  /** Age of the oldest change still waiting to reach the peer; null when nothing waits. */
  readonly lag: { readonly oldestAt: string; readonly seconds: number } | null;
  readonly openConflicts: number | null;
  readonly parkedChanges: number | null;
  /** Batches from the peer refused as bad input, kept in tablesync_refused_batches. */
  readonly refusedBatches: number | null;
}

export interface InstanceStatus {
  readonly instance: string;
  readonly file: string;
  /** Dialect and where the database is; never a password. */
  readonly database: string;
  /** Whether tablesync's state tables are installed at this build's version (tablesync setup). */
  readonly setUp: boolean;
  readonly syncs: readonly SyncStatus[];
}

/** `tablesync status`: per instance and sync, where the exchange stands. Changes nothing. */
export async function statusCommand(configs: readonly InstanceConfig[], out: NodeJS.WritableStream, options: { json: boolean }): Promise<number> {
  const statuses: InstanceStatus[] = [];
  // Everything is gathered before anything is printed, so --json never prints half a document.
  for (const config of configs) statuses.push(await instanceStatus(config));
  if (options.json) out.write(`${JSON.stringify(statuses, null, 2)}\n`);
  else out.write(statuses.map(formatInstance).join('\n\n') + '\n');
  return 0;
}

async function instanceStatus(config: InstanceConfig): Promise<InstanceStatus> {
  const instance = await Instance.open(config);
  try {
    const setUp = await stateIsCurrent(instance);
    const syncs: SyncStatus[] = [];
    for (const sync of config.syncs) syncs.push(await syncStatus(config, instance.database.kysely, new SyncMapping(sync), setUp));
    return { instance: config.instance, file: config.file, database: instance.database.target, setUp, syncs };
  } finally {
    await instance.close();
  }
}

async function syncStatus(config: InstanceConfig, db: AnyKysely, mapping: SyncMapping, setUp: boolean): Promise<SyncStatus> {
  const { sync } = mapping;
  const described = { name: sync.name, role: sync.mode, transport: sync.transport.type };
  const peerReachable = await peerReachability(config, sync);
  if (!setUp) {
    return { ...described, peer: null, peerReachable, waiting: null, unacknowledgedBatches: null, lastBatchIn: null, lastBatchOut: null, lag: null, openConflicts: null, parkedChanges: null, refusedBatches: null };
  }

  const now = Date.now();
  const backlog = await readSyncBacklog(db, mapping);
  const { captured, queued, inUnacknowledgedBatches, oldestWaitingAt: oldest } = backlog;
  return {
    ...described,
    peer: backlog.peer ?? null,
    peerReachable,
    waiting: { total: captured + queued + inUnacknowledgedBatches, captured, queued, inUnacknowledgedBatches },
    unacknowledgedBatches: backlog.unacknowledgedBatches,
    lastBatchIn: moment(backlog.lastInAt, now),
    lastBatchOut: moment(backlog.lastOutAt, now),
    lag: oldest === undefined ? null : { oldestAt: isoTime(oldest), seconds: secondsSince(oldest, now) },
    openConflicts: backlog.openConflicts,
    parkedChanges: backlog.parkedChanges,
    refusedBatches: backlog.refusedBatches,
  };
}

function moment(at: StoredTime | undefined, now: number): Moment | null {
  return at === undefined ? null : { at: isoTime(at), secondsAgo: secondsSince(at, now) };
}

function formatInstance(status: InstanceStatus): string {
  const file = relative(process.cwd(), status.file) || status.file;
  const header = `instance ${status.instance} (${file}): ${status.database}`;
  const row = (label: string, value: (sync: SyncStatus) => string): string[] => [label, ...status.syncs.map(value)];
  const reachable = row('peer reachable', ({ peerReachable: p }) => (p.checked ? `${p.reachable === true ? 'yes' : 'no'}: ${p.detail}` : p.detail));
  const described = [row('sync', (s) => s.name), row('role', (s) => s.role), row('transport', (s) => s.transport)];
  if (!status.setUp) {
    const note = "  tablesync's state tables are missing or of an older version, so nothing more is known: run tablesync setup";
    return `${header}\n${note}\n${formatTable([...described, reachable])}`;
  }
  const rows = [
    ...described,
    row('peer', (s) => s.peer ?? 'not heard from yet'),
    reachable,
    row('changes waiting', ({ waiting: w }) =>
      w === null ? '' : `${w.total} (${w.captured} captured, ${w.queued} queued, ${w.inUnacknowledgedBatches} in unacknowledged batches)`,
    ),
    row('unacknowledged batches', (s) => String(s.unacknowledgedBatches)),
    row('last batch in', (s) => lastBatch(s.lastBatchIn)),
    row('last batch out', (s) => lastBatch(s.lastBatchOut)),
    row('lag', (s) => (s.lag === null ? 'none: nothing waiting' : `${s.lag.seconds} s (oldest waiting change: ${s.lag.oldestAt})`)),
    row('open conflicts', (s) => String(s.openConflicts)),
    row('parked changes', (s) => String(s.parkedChanges)),
    row('refused batches', (s) => String(s.refusedBatches)),
  ];
  return `${header}\n${formatTable(rows)}`;
}

function lastBatch(value: Moment | null): string {
  return value === null ? 'never' : `${value.at} (${value.secondsAgo} s ago)`;
}
