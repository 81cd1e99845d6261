import type { ConflictRule } from '../config/types.js';
import type { AnyKysely } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';
import { chunks } from './outbox.js';

export type Winner = 'ours' | 'theirs';

/**
 * Who wins when the same field changed on both sides since they last
 * agreed. Both sides evaluate the same rule on the same two versions and
 * reach the same answer, so they converge without asking each other.
 * Under `manual`, each side keeps its own value until someone resolves it.
 */
export function conflictWinner(rule: ConflictRule, ourVersion: string, theirVersion: string, weAreActive: boolean): Winner {
  switch (rule) {
    case 'newest-wins':
      // Versions sort by the time the application made the change, then by instance name.
      return theirVersion > ourVersion ? 'theirs' : 'ours';
    case 'active-wins':
      return weAreActive ? 'ours' : 'theirs';
    case 'passive-wins':
      return weAreActive ? 'theirs' : 'ours';
    case 'manual':
      return 'ours';
  }
}

export interface ConflictRecord {
  sync: string;
  tableNumber: number;
  localId: string;
  fieldNumber: number;
  ours: string | null;
  theirs: string | null;
  ourVersion: string;
  theirVersion: string;
  /** Set when the rule decided; absent for a conflict waiting for a person. */
  resolution?: string;
}

export async function recordConflict(db: AnyKysely, conflict: ConflictRecord): Promise<void> {
  const now = Date.now();
  await db
    .insertInto(stateTables.conflicts)
    .values({
      sync_name: conflict.sync,
      table_number: conflict.tableNumber,
      local_id: conflict.localId,
      field_number: conflict.fieldNumber,
      ours: conflict.ours,
      theirs: conflict.theirs,
      our_version: conflict.ourVersion,
      their_version: conflict.theirVersion,
      detected_at: now,
      resolved_at: conflict.resolution === undefined ? null : now,
      resolution: conflict.resolution ?? null,
    })
    .execute();
}

/** Closes the open conflicts of a field once both sides hold the same version again. */
export async function closeConflicts(db: AnyKysely, sync: string, tableNumber: number, localId: string, fieldNumber: number, resolution: string): Promise<void> {
  await db
    .updateTable(stateTables.conflicts)
    .set({ resolved_at: Date.now(), resolution })
    .where('sync_name', '=', sync)
    .where('table_number', '=', tableNumber)
    .where('local_id', '=', localId)
    .where('field_number', '=', fieldNumber)
    .where('resolved_at', 'is', null)
    .execute();
}

/** Identifies a field of a record in the set `openConflictFields` returns. */
export const conflictFieldKey = (localId: string, fieldNumber: number): string => `${localId}\u0000${fieldNumber}`;

/**
 * The fields of these records with an open conflict: one query for a whole
 * batch's records rather than one update per applied field, since almost
 * every applied field has none.
 */
export async function openConflictFields(db: AnyKysely, sync: string, tableNumber: number, localIds: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const chunk of chunks([...new Set(localIds)], 500)) {
    const rows = (await db
      .selectFrom(stateTables.conflicts)
      .select(['local_id', 'field_number'])
      .where('sync_name', '=', sync)
      .where('resolved_at', 'is', null)
      .where('table_number', '=', tableNumber)
      .where('local_id', 'in', chunk)
      .execute()) as { local_id: string; field_number: number | string }[];
    for (const row of rows) out.add(conflictFieldKey(row.local_id, Number(row.field_number)));
  }
  return out;
}
