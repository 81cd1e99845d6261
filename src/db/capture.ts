import type { InstanceConfig } from '../config/types.js';
import type { Database } from './database.js';
import type { AnyKysely, CaptureSpec, InstalledTrigger, TriggerDefinition } from './dialect.js';
import { ensureStateTables, type StateUpgrade } from './state-tables.js';

/**
 * What capture must watch, from the configuration: each synced table once,
 * whichever syncs it takes part in, with the union of their columns (every
 * field, whatever its direction, so that turning a field from `off` to
 * `both` needs no new trigger; and the status column, which carries deletes).
 */
export function captureSpecs(config: InstanceConfig): CaptureSpec[] {
  const byTable = new Map<string, { key: string; columns: Set<string> }>();
  for (const sync of config.syncs) {
    for (const table of sync.tables) {
      const spec = byTable.get(table.table) ?? { key: table.key, columns: new Set<string>() };
      for (const field of table.fields) spec.columns.add(field.column);
      if (table.status !== undefined) spec.columns.add(table.status.column);
      byTable.set(table.table, spec);
    }
  }
  return [...byTable].map(([table, spec]) => ({ table, key: spec.key, columns: [...spec.columns] }));
}

export interface CaptureReport {
  readonly state: StateUpgrade;
  readonly created: readonly TriggerDefinition[];
  readonly dropped: readonly InstalledTrigger[];
  readonly unchanged: readonly TriggerDefinition[];
}

export interface CaptureState {
  /** Triggers the configuration wants that the database lacks. */
  readonly missing: readonly TriggerDefinition[];
  /** tablesync triggers in the database that the configuration no longer wants. */
  readonly stale: readonly InstalledTrigger[];
  readonly installed: readonly TriggerDefinition[];
}

/** Compares the triggers the configuration wants with those in the database, changing nothing. */
export async function inspectCapture(database: Database, specs: readonly CaptureSpec[], db: AnyKysely = database.kysely): Promise<CaptureState> {
  const wanted = specs.flatMap((spec) => database.adapter.captureTriggers(spec));
  const present = await database.adapter.listCaptureTriggers(db);
  const presentNames = new Set(present.map((t) => t.name));
  const wantedNames = new Set(wanted.map((t) => t.name));
  return {
    missing: wanted.filter((t) => !presentNames.has(t.name)),
    installed: wanted.filter((t) => presentNames.has(t.name)),
    stale: present.filter((t) => !wantedNames.has(t.name)),
  };
}

/**
 * Installs or upgrades tablesync's state tables and capture triggers;
 * idempotent. New triggers are created before stale ones are dropped, so a
 * table that stays configured is never without capture, even on a dialect
 * whose DDL cannot be wrapped in a transaction. Journal rows are never
 * touched.
 */
export async function installCapture(database: Database, specs: readonly CaptureSpec[]): Promise<CaptureReport> {
  const state = await ensureStateTables(database);
  const apply = async (db: AnyKysely): Promise<CaptureReport> => {
    const { missing, stale, installed } = await inspectCapture(database, specs, db);
    for (const trigger of missing) await database.adapter.createTrigger(db, trigger);
    for (const trigger of stale) await database.adapter.dropTrigger(db, trigger);
    return { state, created: missing, dropped: stale, unchanged: installed };
  };
  return database.adapter.transactionalDdl ? database.transaction(apply) : apply(database.kysely);
}
