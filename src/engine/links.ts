import type { AnyKysely } from '../db/dialect.js';
import { insertRows, type SkipTaken } from '../db/insert-rows.js';
import { stateTables } from '../db/state-names.js';
import type { EngineContext } from './context.js';
import { readCursor } from './cursors.js';
import { chunks } from './outbox.js';

/**
 * Our record id → the peer's, for the given records of one table of one sync;
 * with `bornThere`, only the links of records created here from the peer's.
 */
export async function readLinks(
  db: AnyKysely,
  sync: string,
  tableNumber: number,
  localIds: readonly string[],
  options: { readonly bornThere?: boolean } = {},
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const chunk of chunks([...new Set(localIds)], 500)) {
    let query = db
      .selectFrom(stateTables.links)
      .select(['local_id', 'peer_id'])
      .where('sync_name', '=', sync)
      .where('table_number', '=', tableNumber)
      .where('local_id', 'in', chunk);
    if (options.bornThere === true) query = query.where('born_there', '=', 1);
    const rows = (await query.execute()) as { local_id: string; peer_id: string }[];
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

/** A link to write: our record, the peer's, and whether ours was created here from the peer's (see bornAtPeer). */
export interface NewLink {
  readonly localId: string;
  readonly peerId: string;
  readonly bornThere: boolean;
}

export async function writeLink(db: AnyKysely, sync: string, tableNumber: number, link: NewLink): Promise<void> {
  await writeLinks(db, sync, tableNumber, [link]);
}

/**
 * Links of one table of one sync, a few hundred per statement (an initial sync writes one per record
 * on both sides). With `skipTaken` (the dialect's), a link whose record of ours or of the peer's is
 * linked already is left out; without, it fails the statement.
 */
export async function writeLinks(db: AnyKysely, sync: string, tableNumber: number, links: readonly NewLink[], skipTaken?: SkipTaken): Promise<void> {
  const now = Date.now();
  for (const chunk of chunks(links, 500)) {
    await insertRows(
      db,
      stateTables.links,
      chunk.map((l) => ({ sync_name: sync, table_number: tableNumber, local_id: l.localId, peer_id: l.peerId, linked_at: now, born_there: l.bornThere ? 1 : 0 })),
      skipTaken === undefined ? {} : { skipTaken },
    );
  }
}

/**
 * Whether a record we create from the peer's record `peerId`, born at
 * `origin`, was born at that peer: its link then says so (born_there), and
 * it needs no row in tablesync_origins. A record born farther away (a ring)
 * gets that row (writeOrigins).
 */
export function bornAtPeer(origin: string, peer: string, peerId: string): boolean {
  return origin === `${peer}/${peerId}`;
}

/** The links (our id → the peer's) a caller has read already for some records, in one sync. */
export interface KnownLinks {
  readonly sync: string;
  readonly links: ReadonlyMap<string, string>;
}

/**
 * Where our records were born: `<instance>/<id>`. A record born here is
 * `<our instance>/<its id>`; one created here from a peer's record is that
 * record's (its link says so); one created on behalf of a farther instance
 * has its birthplace in tablesync_origins.
 */
export async function readOrigins(
  db: AnyKysely,
  context: Pick<EngineContext, 'config' | 'mappings'>,
  table: string,
  localIds: readonly string[],
  known?: KnownLinks,
): Promise<Map<string, string>> {
  const out = new Map(localIds.map((id) => [id, `${context.config.instance}/${id}`]));
  const ids = [...new Set(localIds)];
  for (const mapping of context.mappings) {
    const theirs = mapping.tablesByName.get(table);
    if (theirs === undefined) continue;
    // Only a linked record can have been created from the peer's: in the sync whose links the caller holds, only those are looked up.
    const candidates = mapping.name === known?.sync ? ids.filter((id) => known.links.has(id)) : ids;
    if (candidates.length === 0) continue;
    const bornThere = await readLinks(db, mapping.name, theirs.number, candidates, { bornThere: true });
    if (bornThere.size === 0) continue;
    const peer = await readCursor(db, mapping.name, 'peer');
    // Written with the first batch the peer sent, before any record could be created from it.
    if (peer === undefined) throw new Error(`sync "${mapping.name}" has records created from its peer's but does not know the peer's name`);
    for (const [localId, peerId] of bornThere) out.set(localId, `${peer}/${peerId}`);
  }
  for (const chunk of chunks(ids, 500)) {
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
 * Remembers where records created here on behalf of an instance farther
 * than the peer were born: passing one on to a third instance, we must say
 * where it was born. (One born at the peer that sent it has a link that
 * says so: see bornAtPeer.)
 */
export async function writeOrigins(db: AnyKysely, table: string, records: readonly { localId: string; origin: string }[]): Promise<void> {
  for (const chunk of chunks(records, 500)) {
    await insertRows(
      db,
      stateTables.origins,
      chunk.map((r) => ({ table_name: table, record_id: r.localId, origin: r.origin })),
    );
  }
}
