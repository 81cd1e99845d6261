import { createHash } from 'node:crypto';

/** Names of tablesync's own objects in the instance's database. */
export const stateTables = {
  meta: 'tablesync_meta',
  journal: 'tablesync_journal',
  links: 'tablesync_links',
  fieldVersions: 'tablesync_field_versions',
  cursors: 'tablesync_cursors',
  conflicts: 'tablesync_conflicts',
  outbox: 'tablesync_outbox',
  batchesOut: 'tablesync_batches_out',
  parked: 'tablesync_parked',
  origins: 'tablesync_origins',
  refused: 'tablesync_refused_batches',
  /** `tablesync verify` runs waiting for their peer's replies (transient: a run's rows go when it ends). */
  verifyRuns: 'tablesync_verify_runs',
  /** The peer's replies to a verify run, as they arrived, until the command has read them. */
  verifyReplies: 'tablesync_verify_replies',
  /** What each peer did about the safety backup an initial sync from here asked of it, for the waiting command. */
  peerBackups: 'tablesync_peer_backups',
  /** SQLite only: a row here, inside the applier's transaction, tells the triggers to stand aside. */
  applier: 'tablesync_applier',
} as const;

/** Every capture trigger's name starts with this; no other trigger is ever touched. */
export const triggerPrefix = 'tsync_';

export type TriggerEvent = 'insert' | 'update' | 'delete';

/**
 * `tsync_<table>_<i|u|d>_<hash of the body>`, at most 64 characters (MySQL's
 * limit). Because the name follows the body, a changed configuration gives
 * new names: the new trigger is created before the old one is dropped, so no
 * write goes uncaptured in between.
 */
export function triggerName(table: string, event: TriggerEvent, body: string): string {
  const hash = createHash('sha256').update(body).digest('hex').slice(0, 10);
  return `${triggerPrefix}${table.slice(0, 44)}_${event[0]}_${hash}`;
}

/** Journal operation codes written by the triggers. */
export const journalOps = { insert: 'I', update: 'U', delete: 'D' } as const;
