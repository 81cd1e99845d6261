import type { AnyKysely } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';
import type { EngineContext } from './context.js';
import { readCursor } from './cursors.js';
import { chunks } from './outbox.js';

/** Our record id → the peer's, for the given records of one table of one sync. */
export async function readLinks(db: AnyKysely, sync: string, tableNumber: number, localIds: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const chunk of chunks([...new Set(localIds)], 500)) {
    const rows = (await db
      .selectFrom(stateTables.links)
      .select(['local_id', 'peer_id'])
      .where('sync_name', '=', sync)
      .where('table_number', '=', tableNumber)
      .where('local_id', 'in', chunk)
      .execute()) as { local_id: string; peer_id: string }[];
    for (const row of rows) out.set(row.local_id, row.peer_id);
  }
  return out;
}

/** The peer's record id → ours. */
export async function localIdFor(db: AnyKysely, sync: string, tableNumber: number, peerId: string): Promise<string | undefined> {
  const row = (await db
    .selectFrom(stateTables.links)
    .select('local_id')
    .where('sync_name', '=', sync)
    .where('table_number', '=', tableNumber)
    .where('peer_id', '=', peerId)
    .executeTakeFirst()) as { local_id: string } | undefined;
  return row?.local_id;
}

/** The peers' record ids → ours, for many records of one table of one sync. */
export async function localIdsFor(db: AnyKysely, sync: string, tableNumber: number, peerIds: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const chunk of chunks([...new Set(peerIds)], 500)) {
    const rows = (await db
      .selectFrom(stateTables.links)
      .select(['local_id', 'peer_id'])
      .where('sync_name', '=', sync)
      .where('table_number', '=', tableNumber)
      .where('peer_id', 'in', chunk)
      .execute()) as { local_id: string; peer_id: string }[];
    for (const row of rows) out.set(row.peer_id, row.local_id);
  }
  return out;
}

export async function peerIdFor(db: AnyKysely, sync: string, tableNumber: number, localId: string): Promise<string | undefined> {
  return (await readLinks(db, sync, tableNumber, [localId])).get(localId);
}

export async function writeLink(db: AnyKysely, sync: string, tableNumber: number, localId: string, peerId: string): Promise<void> {
  await db
    .insertInto(stateTables.links)
    .values({ sync_name: sync, table_number: tableNumber, local_id: localId, peer_id: peerId, linked_at: Date.now() })
    .execute();
}

/** Where our records were born: `<instance>/<id>`; a record born here is `<our instance>/<its id>`. */
export async function readOrigins(db: AnyKysely, table: string, localIds: readonly string[], instance: string): Promise<Map<string, string>> {
  const out = new Map(localIds.map((id) => [id, `${instance}/${id}`]));
  for (const chunk of chunks([...new Set(localIds)], 500)) {
    const rows = (await db
      .selectFrom(stateTables.origins)
      .select(['record_id', 'origin'])
      .where('table_name', '=', table)
      .where('record_id', 'in', chunk)
      .execute()) as { record_id: string; origin: string }[];
    for (const row of rows) out.set(row.record_id, row.origin);
  }
  return out;
}

/**
 * Our record born at `origin` (`<instance>/<id>`), if we have it: one born
 * here; one linked to its birthplace directly (a sync whose peer is that
 * instance); or one created here on behalf of a farther instance, whose
 * birthplace tablesync_origins remembers.
 */
export async function recordByOrigin(db: AnyKysely, context: Pick<EngineContext, 'config' | 'mappings'>, table: string, origin: string): Promise<string | undefined> {
  const instance = context.config.instance;
  if (origin.startsWith(`${instance}/`)) return origin.slice(instance.length + 1);
  const slash = origin.indexOf('/');
  const [born, id] = [origin.slice(0, slash), origin.slice(slash + 1)];
  for (const mapping of context.mappings) {
    const theirs = mapping.tablesByName.get(table);
    if (theirs === undefined || (await readCursor(db, mapping.name, 'peer')) !== born) continue;
    const local = await localIdFor(db, mapping.name, theirs.number, id);
    if (local !== undefined) return local;
  }
  const row = (await db
    .selectFrom(stateTables.origins)
    .select('record_id')
    .where('table_name', '=', table)
    .where('origin', '=', origin)
    .executeTakeFirst()) as { record_id: string } | undefined;
  return row?.record_id;
}

/**
 * Remembers where records created here on a peer's behalf were born. Every
 * one needs it, even one born at the peer that sent it: passing it on to a
 * third instance, we must say it was born there, and a link cannot tell
 * which side created a record.
 */
export async function writeOrigins(db: AnyKysely, table: string, records: readonly { localId: string; origin: string }[]): Promise<void> {
  for (const chunk of chunks(records, 500)) {
    await db
      .insertInto(stateTables.origins)
      .values(chunk.map((r) => ({ table_name: table, record_id: r.localId, origin: r.origin })))
      .execute();
  }
}
