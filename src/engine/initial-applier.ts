import type { AnyKysely } from '../db/dialect.js';
import { append } from '../group-by.js';
import { stateTables } from '../db/state-names.js';
import { updateRows, type RowUpdate } from '../db/update-rows.js';
import type { MappedField, MappedTable, SyncMapping } from '../mapping/sync-mapping.js';
import type { InitialEvent } from '../protocol/batch.js';
import type { ApplyStats } from './applier.js';
import type { EngineContext } from './context.js';
import { readVersions, versionOf } from './field-versions.js';
import { bornAtPeer, localIdsFor, recordByOrigin, writeLinks, writeOrigins } from './links.js';
import { chunks, type OutboxWriter } from './outbox.js';
import { baseVersion } from './versions.js';

/**
 * How a value that arrived becomes what is written (user references resolved): the applier's own
 * conversion. A promise only where it must look something up (a user reference).
 */
export type LocalValue = (db: AnyKysely, table: MappedTable, fieldNumber: number, wire: InitialEvent['record'][string], peerRecord: string) => unknown;

/**
 * Applies `initial` events in bulk: one lookup of links per table, one
 * multi-row INSERT per few hundred new records, links written in bulk, and
 * no per-field versions at all: the values become the base both sides
 * agree on. A field this side changed since its record was linked keeps
 * its own value, which travels on as the newer change.
 */
export class InitialApplier {
  constructor(
    private readonly context: EngineContext,
    private readonly mapping: SyncMapping,
    private readonly localValue: LocalValue,
  ) {}

  private get sync(): string {
    return this.mapping.name;
  }

  /** `linked`: the links (the peer's id → ours) of these events' records, when the caller has read them already. */
  async apply(
    db: AnyKysely,
    table: MappedTable,
    events: readonly InitialEvent[],
    from: string,
    stats: ApplyStats,
    outbox: OutboxWriter,
    linked?: ReadonlyMap<string, string>,
  ): Promise<void> {
    linked ??= await localIdsFor(db, this.sync, table.number, events.map((e) => e.id));
    const found = new Map<InitialEvent, string>();
    const unresolved: InitialEvent[] = [];
    for (const event of events) {
      const local = linked.get(event.id);
      if (local === undefined) unresolved.push(event);
      else found.set(event, local);
    }

    const newLinks: { local: string; event: InitialEvent }[] = [];
    const matched = await this.matchExisting(db, table, unresolved, from);
    const toCreate: InitialEvent[] = [];
    for (const event of unresolved) {
      const local = matched.get(event);
      if (local !== undefined) {
        found.set(event, local);
        newLinks.push({ local, event });
      } else if (event.create) {
        toCreate.push(event);
      }
    }

    await this.updateBase(db, table, found, stats);
    const created = await this.create(db, table, toCreate, stats);
    // Only records created here get a birthplace: a matched record was born here too. Most were born
    // at the peer, and their link says so; one born farther away (a ring) has its origin written.
    const bornThere = new Set(created.filter(({ event }) => bornAtPeer(event.origin, from, event.id)).map(({ event }) => event));
    await writeLinks(db, this.sync, table.number, [
      ...newLinks.map(({ local, event }) => ({ localId: local, peerId: event.id, bornThere: false })),
      ...created.map(({ local, event }) => ({ localId: local, peerId: event.id, bornThere: bornThere.has(event) })),
    ]);
    await writeOrigins(
      db,
      table.name,
      created
        .filter(({ event }) => !bornThere.has(event) && !event.origin.startsWith(`${this.context.config.instance}/`))
        .map(({ local, event }) => ({ localId: local, origin: event.origin })),
    );
    newLinks.push(...created);
    const now = Date.now();
    // The sender learns our ids, in a batch of links of their own.
    for (const { local, event } of newLinks) outbox.linked(this.sync, table.number, local, event.id);
    for (const { local } of created) {
      for (const other of this.context.mappings) {
        const theirs = other.name === this.sync ? undefined : other.tablesByName.get(table.name);
        if (theirs !== undefined) outbox.touch(other.name, theirs.number, local, now);
      }
    }
  }

  /**
   * Records we already have for events with no link: the id the peer says we
   * gave it, the record's birthplace (a ring), or the table's `match:`
   * fields, and only records not linked to another peer record yet.
   */
  private async matchExisting(db: AnyKysely, table: MappedTable, events: readonly InitialEvent[], from: string): Promise<Map<InitialEvent, string>> {
    const out = new Map<InitialEvent, string>();
    if (events.length === 0) return out;
    const candidates = new Map<InitialEvent, string>();
    for (const event of events) {
      const byPeerId = event.peerId;
      const byOrigin = event.origin.startsWith(`${from}/`) ? undefined : await recordByOrigin(db, this.context, table.name, event.origin);
      const local = byPeerId ?? byOrigin;
      if (local !== undefined) candidates.set(event, local);
    }
    const matchFields = table.config.match.map((n) => table.fieldsByNumber.get(n)).filter((f) => f !== undefined);
    const toMatch = events.filter((e) => !candidates.has(e));
    if (matchFields.length > 0 && toMatch.length > 0) {
      for (const [event, local] of await this.byMatch(db, table, matchFields, toMatch, new Set(candidates.values()))) candidates.set(event, local);
    }
    // Only records that exist and have no link in this sync yet can be matched.
    const existing = await this.existingKeys(db, table, [...candidates.values()]);
    const taken = await this.linkedLocals(db, table, [...candidates.values()]);
    for (const [event, local] of candidates) if (existing.has(local) && !taken.has(local)) out.set(event, local);
    return out;
  }

  /**
   * Records whose `match:` fields hold the same values as the peer's, found
   * with one query per few hundred events (the first match field IN …) and
   * paired in memory; each local record is matched at most once, the lowest
   * key first.
   */
  private async byMatch(
    db: AnyKysely,
    table: MappedTable,
    matchFields: readonly MappedField[],
    events: readonly InitialEvent[],
    used: Set<string>,
  ): Promise<Map<InitialEvent, string>> {
    const [first] = matchFields;
    const out = new Map<InitialEvent, string>();
    if (first === undefined) return out;
    const wanted = new Map<InitialEvent, unknown[]>();
    for (const event of events) {
      const values: unknown[] = [];
      for (const field of matchFields) values.push(await this.localValue(db, table, field.number, event.record[field.number] ?? null, event.id));
      if (values.every((v) => v !== null && v !== undefined)) wanted.set(event, values);
    }
    // Compared as text: the database may return 5 where the peer sent "5".
    const signature = (values: readonly unknown[]): string => JSON.stringify(values.map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : String(v))));
    const keysBySignature = new Map<string, string[]>();
    const firstValues = [...new Set([...wanted.values()].map((v) => v[0]))];
    for (const chunk of chunks(firstValues, 500)) {
      const rows = (await db
        .selectFrom(table.name)
        .select([...new Set([table.key, ...matchFields.map((f) => f.column)])])
        .where(first.column, 'in', chunk)
        .orderBy(table.key)
        .execute()) as Record<string, unknown>[];
      for (const row of rows) {
        const key = signature(matchFields.map((f) => row[f.column]));
        append(keysBySignature, key, String(row[table.key]));
      }
    }
    const linked = await this.linkedLocals(db, table, [...keysBySignature.values()].flat());
    for (const [event, values] of wanted) {
      const local = keysBySignature.get(signature(values))?.find((id) => !linked.has(id) && !used.has(id));
      if (local === undefined) continue;
      used.add(local);
      out.set(event, local);
    }
    return out;
  }

  /** Sets each field that still holds its linked base value; a field changed here since keeps its own. */
  private async updateBase(db: AnyKysely, table: MappedTable, found: ReadonlyMap<InitialEvent, string>, stats: ApplyStats): Promise<void> {
    if (found.size === 0) return;
    const versions = await readVersions(db, table.name, [...found.values()]);
    const writes: RowUpdate[] = [];
    for (const [event, local] of found) {
      const set: Record<string, unknown> = {};
      for (const [number, wire] of Object.entries(event.record)) {
        const field = table.fieldsByNumber.get(Number(number));
        if (field?.receives !== true || versionOf(versions, local, field.column) !== baseVersion) continue;
        let value = this.localValue(db, table, field.number, wire, event.id);
        if (value instanceof Promise) value = await value;
        if (value !== undefined) set[field.column] = value;
      }
      if (event.deleted === true && table.config.status !== undefined) set[table.config.status.column] = table.config.status.deleted;
      writes.push({ key: local, set });
    }
    stats.updated += await updateRows(db, table.name, table.key, writes);
  }

  private async create(db: AnyKysely, table: MappedTable, events: readonly InitialEvent[], stats: ApplyStats): Promise<{ local: string; event: InitialEvent }[]> {
    // Rows with the same columns go in one multi-row INSERT. The signature is the numbers of the
    // fields present, in the table's order, and whether the status column is set: it names the
    // columns without sorting each row's keys (the fields and the status are walked per row anyway).
    const receiving = table.fields.filter((f) => f.receives);
    const status = table.config.status;
    const groups = new Map<string, { events: InitialEvent[]; rows: Record<string, unknown>[] }>();
    for (const event of events) {
      const row: Record<string, unknown> = {};
      let signature = '';
      for (const field of receiving) {
        const wire = event.record[field.number];
        if (wire === undefined) continue;
        let value = this.localValue(db, table, field.number, wire, event.id);
        if (value instanceof Promise) value = await value;
        row[field.column] = value === undefined ? null : value;
        signature += `${field.number},`;
      }
      if (signature === '') continue;
      if (event.deleted === true && status !== undefined) {
        row[status.column] = status.deleted;
        signature += 'deleted';
      }
      const group = groups.get(signature) ?? { events: [], rows: [] };
      group.events.push(event);
      group.rows.push(row);
      groups.set(signature, group);
    }
    const created: { local: string; event: InitialEvent }[] = [];
    for (const group of groups.values()) {
      const ids = await this.context.database.adapter.insertNumbered(db, table.name, group.rows, table.key);
      ids.forEach((local, i) => {
        const event = group.events[i];
        if (event !== undefined) created.push({ local, event });
      });
    }
    stats.created += created.length;
    return created;
  }

  private async existingKeys(db: AnyKysely, table: MappedTable, ids: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    for (const chunk of chunks([...new Set(ids)], 500)) {
      const rows = (await db.selectFrom(table.name).select(table.key).where(table.key, 'in', chunk).execute()) as Record<string, unknown>[];
      for (const row of rows) out.add(String(row[table.key]));
    }
    return out;
  }

  private async linkedLocals(db: AnyKysely, table: MappedTable, ids: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    for (const chunk of chunks([...new Set(ids)], 500)) {
      const rows = (await db
        .selectFrom(stateTables.links)
        .select('local_id')
        .where('sync_name', '=', this.sync)
        .where('table_number', '=', table.number)
        .where('local_id', 'in', chunk)
        .execute()) as { local_id: string }[];
      for (const row of rows) out.add(row.local_id);
    }
    return out;
  }
}
