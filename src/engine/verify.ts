import { createHash } from 'node:crypto';
import type { AnyKysely } from '../db/dialect.js';
import { keysetPages } from '../db/keyset.js';
import type { ColumnFamily } from '../db/schema-types.js';
import { UsageError } from '../errors.js';
import type { MappedField, MappedTable, SyncMapping } from '../mapping/sync-mapping.js';
import type { WireValue } from '../protocol/batch.js';
import { readSyncBacklog } from './backlog.js';
import { mappingFor, type EngineContext } from './context.js';
import { readCursor } from './cursors.js';
import { localIdsFor, readLinks } from './links.js';
import { pushRecords } from './operations.js';
import { chunks } from './outbox.js';
import { toWire } from './values.js';

/**
 * `tablesync verify`: compares the two sides of a sync, table by table, as
 * the guarantee of convergence states it: every field whose direction is
 * `both` on both sides holds the same value in linked records, and each
 * side's links agree with the other's.
 *
 * Both instances' databases are read by this process (their configuration
 * files say how to reach them). Our table is read in key order, in chunks;
 * for each chunk, each side reduces what it holds (the records, their links
 * as that side sees them, the compared fields as they would travel) to one
 * SHA-256 digest, from its own database only. Equal digests: the chunk
 * agrees and nothing more is done with it. Different digests: its records
 * are compared one by one and the differences listed. The peer's table is
 * then read once more, in key order, for records that no record of ours
 * accounts for. Digests are computed here, not in SQL: the values go
 * through the engine's wire conversion (values.ts), which SQL cannot
 * reproduce identically in every dialect (a MariaDB DECIMAL is the text
 * "10.50", SQLite's copy the number 10.5).
 */

export interface VerifyOptions {
  readonly sync?: string;
  /** Only this table (its number); needs `sync` when the instance has several syncs. */
  readonly table?: number;
  /** Queue what differs to be sent again (see RecordDifference.repair). */
  readonly repair: boolean;
  /** Our records per chunk; default 1,000. */
  readonly chunkRows?: number;
  /** Differences kept per table for the report; all are counted and repaired. Default 100. */
  readonly listLimit?: number;
  readonly onProgress?: (progress: VerifyProgress) => void;
}

export interface VerifyProgress {
  /** `<sync>: <our table>`. */
  readonly part: string;
  /** Records checked so far, ours and the peer's. */
  readonly checked: number;
  readonly total: number;
  readonly done: boolean;
}

export type Problem =
  /** Ours, linked on neither side: the peer has never confirmed a record for it. */
  | 'unlinked'
  /** Ours: the peer links one of its records to it, we have no link. */
  | 'unlinked-here'
  /** Ours links to a peer record; the peer has no link back. */
  | 'unlinked-there'
  /** We link to one peer record, the peer links another one to ours. */
  | 'links-differ'
  /** Linked on both sides, but the peer's record does not exist. */
  | 'peer-record-missing'
  /** Deleted (status) here, live on the peer. */
  | 'deleted-here'
  /** Live here, deleted on the peer. */
  | 'deleted-there'
  /** Linked both ways, both live, and fields differ. */
  | 'values'
  /** The peer's, linked on neither side. */
  | 'peer-unlinked'
  /** The peer's record is linked to one of ours that does not exist. */
  | 'our-record-missing';

export interface FieldDifference {
  readonly number: number;
  readonly column: string;
  readonly peerColumn: string;
  readonly ours: WireValue;
  readonly theirs: WireValue;
}

export interface RecordDifference {
  readonly problem: Problem;
  readonly ourId?: string;
  readonly peerId?: string;
  /** links-differ: the peer record that the peer links to ours. */
  readonly otherPeerId?: string;
  readonly fields: readonly FieldDifference[];
  /**
   * What `--repair` does: `ours`, queue our record to be sent in full;
   * `peer`, queue the peer's record on the peer (a record only the peer
   * has); `none`, sending again cannot fix it (a record gone for good, a
   * delete that one side does not have).
   */
  readonly repair: 'ours' | 'peer' | 'none';
}

export interface TableVerification {
  readonly sync: string;
  readonly number: number;
  readonly table: string;
  readonly peerTable: string;
  /** Field numbers compared: `both` on both sides. */
  readonly fields: readonly number[];
  readonly records: number;
  readonly peerRecords: number;
  readonly chunks: number;
  readonly differingChunks: number;
  readonly differences: number;
  /** Differences that sending again cannot fix (repair `none`). */
  readonly unrepairable: number;
  /** The first differences (up to listLimit). */
  readonly listed: readonly RecordDifference[];
  readonly queuedHere: number;
  readonly queuedOnPeer: number;
}

export interface VerifyReport {
  readonly tables: readonly TableVerification[];
  /** Syncs of ours that the peer's file does not have (another peer's), and tables it does not sync. */
  readonly skipped: readonly string[];
  /** Changes captured or sent and not yet acknowledged, per side: differences may be on their way. */
  readonly waiting: { readonly here: number; readonly peer: number };
}

/** One table of one sync, as both sides configure it. */
interface TablePair {
  readonly mapping: SyncMapping;
  readonly peerMapping: SyncMapping;
  readonly table: MappedTable;
  readonly peerTable: MappedTable;
}

/** The syncs and tables to verify; a peer file that is not this sync's peer is a usage error. */
export async function verifyTargets(ours: EngineContext, peer: EngineContext, options: Pick<VerifyOptions, 'sync' | 'table'>): Promise<{ pairs: TablePair[]; skipped: string[] }> {
  const mappings = options.sync === undefined ? ours.mappings : [mappingFor(ours, options.sync)];
  if (options.table !== undefined && mappings.length !== 1) {
    throw new UsageError('--table needs --sync when the instance has several syncs (numbers belong to a sync)');
  }
  const pairs: TablePair[] = [];
  const skipped: string[] = [];
  for (const mapping of mappings) {
    const peerMapping = peer.mappings.find((m) => m.name === mapping.name);
    if (peerMapping === undefined) {
      if (options.sync !== undefined) throw new UsageError(`${peer.config.file} has no sync named "${mapping.name}": give the file of this sync's peer`);
      skipped.push(`sync ${mapping.name} (not in ${peer.config.file})`);
      continue;
    }
    if (peerMapping.sync.mode === mapping.sync.mode) {
      throw new UsageError(`${ours.config.file} and ${peer.config.file} are both ${mapping.sync.mode} in sync "${mapping.name}": they are not the two sides of one sync`);
    }
    for (const [context, other] of [
      [ours, peer],
      [peer, ours],
    ] as const) {
      const known = await readCursor(context.database.kysely, mapping.name, 'peer');
      if (known !== undefined && known !== other.config.instance) {
        throw new UsageError(`instance ${context.config.instance} syncs "${mapping.name}" with instance ${known}, not with ${other.config.instance} (${other.config.file})`);
      }
    }
    const tables = [...mapping.tablesByNumber.values()].filter((t) => options.table === undefined || t.number === options.table);
    if (tables.length === 0) throw new UsageError(`sync "${mapping.name}" has no table number ${options.table ?? '?'}`);
    for (const table of tables) {
      const peerTable = peerMapping.tablesByNumber.get(table.number);
      if (peerTable === undefined) skipped.push(`sync ${mapping.name} table ${table.number} ${table.name} (${peer.config.file} does not sync it)`);
      else pairs.push({ mapping, peerMapping, table, peerTable });
    }
  }
  if (pairs.length === 0) throw new UsageError(`${ours.config.file} and ${peer.config.file} have no synced table in common to verify`);
  return { pairs, skipped };
}

/** Compares every selected table of both sides; with `repair`, queues what differs to be sent again. */
export async function verify(ours: EngineContext, peer: EngineContext, options: VerifyOptions): Promise<VerifyReport> {
  const { pairs, skipped } = await verifyTargets(ours, peer, options);
  const tables: TableVerification[] = [];
  for (const pair of pairs) tables.push(await new TableVerifier(ours, peer, pair, options).run());
  let here = 0;
  let there = 0;
  for (const mapping of new Set(pairs.map((p) => p.mapping))) {
    const backlog = await readSyncBacklog(ours.database.kysely, mapping);
    here += backlog.captured + backlog.queued + backlog.inUnacknowledgedBatches;
  }
  for (const mapping of new Set(pairs.map((p) => p.peerMapping))) {
    const backlog = await readSyncBacklog(peer.database.kysely, mapping);
    there += backlog.captured + backlog.queued + backlog.inUnacknowledgedBatches;
  }
  return { tables, skipped, waiting: { here, peer: there } };
}

const numericFamilies = new Set<ColumnFamily>(['integer', 'decimal', 'float', 'boolean']);

/**
 * A value as verify compares it: as it travels (values.ts), with a number
 * written one way whatever held it (`10.50` from a DECIMAL, `10.5` from a
 * REAL, `42` as a number or as the text of a BIGINT), so that dialects agree.
 * Text stays text: in a text column, "10.50" and "10.5" differ.
 */
export function comparable(value: WireValue, family: ColumnFamily): string | null {
  if (value === null) return null;
  if (typeof value === 'object') return `\u0000bytes:${value.b64}`;
  if (typeof value === 'boolean') return value ? '1' : '0';
  if (typeof value === 'number') return canonicalNumber(String(value));
  return numericFamilies.has(family) ? canonicalNumber(value) : value;
}

function canonicalNumber(text: string): string {
  const match = /^([+-]?)([0-9]*)(?:\.([0-9]*))?$/.exec(text.trim());
  if (match === null) {
    const number = Number(text);
    return text.trim() !== '' && Number.isFinite(number) ? String(number) : text;
  }
  const [, sign, whole = '', fraction = ''] = match;
  if (whole === '' && fraction === '') return text;
  const integer = whole.replace(/^0+(?=[0-9])/, '') || '0';
  const decimals = fraction.replace(/0+$/, '');
  const body = decimals === '' ? integer : `${integer}.${decimals}`;
  return sign === '-' && body !== '0' ? `-${body}` : body;
}

/** One side's table: reads its records and reduces them to what is compared. */
class Side {
  readonly #users = new Map<string, WireValue>();

  constructor(
    readonly context: EngineContext,
    readonly mapping: SyncMapping,
    readonly table: MappedTable,
    /** This side's fields, in the order compared. */
    readonly fields: readonly MappedField[],
  ) {}

  get db(): AnyKysely {
    return this.context.database.kysely;
  }

  get columns(): string[] {
    const status = this.table.config.status;
    return [this.table.key, ...this.fields.map((f) => f.column), ...(status === undefined ? [] : [status.column])];
  }

  idOf(row: Record<string, unknown>): string {
    return String(row[this.table.key]);
  }

  deleted(row: Record<string, unknown>): boolean {
    const status = this.table.config.status;
    return status !== undefined && String(row[status.column]) === String(status.deleted);
  }

  /** The compared fields as they travel (a user reference as the user's login, full name or id). */
  async wire(row: Record<string, unknown>): Promise<WireValue[]> {
    const out: WireValue[] = [];
    for (const field of this.fields) {
      const value = row[field.column];
      if (field.type !== 'user' || this.context.users === undefined) {
        out.push(toWire(value));
        continue;
      }
      const cacheKey = String(value);
      let user = this.#users.get(cacheKey);
      if (user === undefined && !this.#users.has(cacheKey)) {
        user = await this.context.users.toWire(this.db, value, this.mapping.sync.users);
        this.#users.set(cacheKey, user);
      }
      out.push(user ?? null);
    }
    return out;
  }

  /** The compared values, ready to compare with the other side's. */
  comparable(wire: readonly WireValue[]): (string | null)[] {
    return wire.map((value, i) => {
      const field = this.fields[i] as MappedField;
      const family = field.type === 'user' ? 'text' : (this.context.schema.get(this.table.name)?.columns.get(field.column)?.family ?? 'other');
      return comparable(value, family);
    });
  }

  /** Records by id (those that exist), for the ids given. */
  async rowsByIds(ids: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
    const out = new Map<string, Record<string, unknown>>();
    for (const chunk of chunks([...new Set(ids)], 500)) {
      const rows = (await this.db.selectFrom(this.table.name).select(this.columns).where(this.table.key, 'in', chunk).execute()) as Record<string, unknown>[];
      for (const row of rows) out.set(this.idOf(row), row);
    }
    return out;
  }

  async count(): Promise<number> {
    const row = (await this.db
      .selectFrom(this.table.name)
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirst()) as { n: number | string } | undefined;
    return Number(row?.n ?? 0);
  }
}

/** A record of ours with what each side holds about it, for one chunk. */
interface Entry {
  readonly id: string;
  readonly deleted: boolean;
  readonly wire: WireValue[];
  readonly values: (string | null)[];
  /** The peer record our link names. */
  readonly link: string | undefined;
  /** The peer record that the peer links to ours. */
  readonly back: string | undefined;
  readonly peerRow: Record<string, unknown> | undefined;
}

class TableVerifier {
  readonly #ours: Side;
  readonly #peer: Side;
  readonly #chunkRows: number;
  readonly #listLimit: number;
  readonly #listed: RecordDifference[] = [];
  #differences = 0;
  #unrepairable = 0;
  #chunks = 0;
  #differingChunks = 0;
  #records = 0;
  #peerRecords = 0;
  #queuedHere = 0;
  #queuedOnPeer = 0;
  #total = 0;

  constructor(
    ours: EngineContext,
    peer: EngineContext,
    private readonly pair: TablePair,
    private readonly options: VerifyOptions,
  ) {
    const compared = pair.table.fields.filter((f) => f.direction === 'both' && pair.peerTable.fieldsByNumber.get(f.number)?.direction === 'both');
    this.#ours = new Side(ours, pair.mapping, pair.table, compared);
    this.#peer = new Side(peer, pair.peerMapping, pair.peerTable, compared.map((f) => pair.peerTable.fieldsByNumber.get(f.number) as MappedField));
    this.#chunkRows = options.chunkRows ?? 1000;
    this.#listLimit = options.listLimit ?? 100;
  }

  get #sync(): string {
    return this.pair.mapping.name;
  }

  get #number(): number {
    return this.pair.table.number;
  }

  async run(): Promise<TableVerification> {
    this.#total = (await this.#ours.count()) + (await this.#peer.count());
    this.#progress(false);
    for await (const page of keysetPages(this.#ours.db, this.pair.table.name, this.#ours.columns, [this.pair.table.key], this.#chunkRows)) {
      await this.#ourChunk(page);
      this.#records += page.length;
      this.#progress(false);
    }
    for await (const page of keysetPages(this.#peer.db, this.pair.peerTable.name, this.#peer.columns, [this.pair.peerTable.key], this.#chunkRows)) {
      await this.#peerChunk(page);
      this.#peerRecords += page.length;
      this.#progress(false);
    }
    this.#progress(true);
    return {
      sync: this.#sync,
      number: this.#number,
      table: this.pair.table.name,
      peerTable: this.pair.peerTable.name,
      fields: this.#ours.fields.map((f) => f.number),
      records: this.#records,
      peerRecords: this.#peerRecords,
      chunks: this.#chunks,
      differingChunks: this.#differingChunks,
      differences: this.#differences,
      unrepairable: this.#unrepairable,
      listed: this.#listed,
      queuedHere: this.#queuedHere,
      queuedOnPeer: this.#queuedOnPeer,
    };
  }

  #progress(done: boolean): void {
    const checked = this.#records + this.#peerRecords;
    this.options.onProgress?.({ part: `${this.#sync}: ${this.pair.table.name}`, checked, total: Math.max(checked, this.#total), done });
  }

  /** One chunk of our records, against whatever the peer holds for them. */
  async #ourChunk(page: readonly Record<string, unknown>[]): Promise<void> {
    this.#chunks += 1;
    const ids = page.map((row) => this.#ours.idOf(row));
    // Each side's half comes from its own database only.
    const links = await readLinks(this.#ours.db, this.#sync, this.#number, ids);
    const back = await localIdsFor(this.#peer.db, this.#sync, this.#number, ids);
    const peerRows = await this.#peer.rowsByIds([...back.values()]);

    const entries: Entry[] = [];
    const ourDigest = createHash('sha256');
    const peerDigest = createHash('sha256');
    for (const row of page) {
      const id = this.#ours.idOf(row);
      const deleted = this.#ours.deleted(row);
      const link = links.get(id);
      const peerId = back.get(id);
      // Deleted before it ever travelled, and unknown to the peer: nothing to compare.
      if (deleted && link === undefined && peerId === undefined) continue;
      const wire = await this.#ours.wire(row);
      const values = this.#ours.comparable(wire);
      const peerRow = peerId === undefined ? undefined : peerRows.get(peerId);
      entries.push({ id, deleted, wire, values, link, back: peerId, peerRow });
      ourDigest.update(`${JSON.stringify([id, link ?? null, deleted ? 'deleted' : values])}\n`);
      const theirs = peerRow === undefined ? 'absent' : this.#peer.deleted(peerRow) ? 'deleted' : this.#peer.comparable(await this.#peer.wire(peerRow));
      peerDigest.update(`${JSON.stringify([id, peerId ?? null, theirs])}\n`);
    }
    if (ourDigest.digest('hex') === peerDigest.digest('hex')) return;

    this.#differingChunks += 1;
    const repairs: string[] = [];
    for (const entry of entries) {
      const difference = await this.#compare(entry);
      if (difference === undefined) continue;
      this.#found(difference);
      if (difference.repair === 'ours') repairs.push(entry.id);
    }
    if (this.options.repair && repairs.length > 0) this.#queuedHere += (await pushRecords(this.#ours.context, this.#sync, this.#number, repairs)).length;
  }

  async #compare(entry: Entry): Promise<RecordDifference | undefined> {
    const { id, link, back } = entry;
    if (link === undefined && back === undefined) return { problem: 'unlinked', ourId: id, fields: [], repair: 'ours' };
    if (link === undefined) return { problem: 'unlinked-here', ourId: id, peerId: back, fields: [], repair: 'ours' };
    if (back === undefined) return { problem: 'unlinked-there', ourId: id, peerId: link, fields: [], repair: 'ours' };
    // Sending again takes the peer's link as it is: two sides that disagree on which records are one stay so.
    if (link !== back) return { problem: 'links-differ', ourId: id, peerId: link, otherPeerId: back, fields: [], repair: 'none' };
    const peerRow = entry.peerRow;
    // Sending again cannot bring back a record that is gone for good.
    if (peerRow === undefined) return { problem: 'peer-record-missing', ourId: id, peerId: link, fields: [], repair: 'none' };
    const peerDeleted = this.#peer.deleted(peerRow);
    if (entry.deleted && peerDeleted) return undefined;
    if (entry.deleted) return { problem: 'deleted-here', ourId: id, peerId: link, fields: [], repair: 'ours' };
    // A delete is never undone by sending values again.
    if (peerDeleted) return { problem: 'deleted-there', ourId: id, peerId: link, fields: [], repair: 'none' };
    const theirWire = await this.#peer.wire(peerRow);
    const theirs = this.#peer.comparable(theirWire);
    const fields: FieldDifference[] = [];
    this.#ours.fields.forEach((field, i) => {
      if (entry.values[i] === theirs[i]) return;
      const peerField = this.#peer.fields[i] as MappedField;
      fields.push({ number: field.number, column: field.column, peerColumn: peerField.column, ours: entry.wire[i] ?? null, theirs: theirWire[i] ?? null });
    });
    return fields.length === 0 ? undefined : { problem: 'values', ourId: id, peerId: link, fields, repair: 'ours' };
  }

  /** One chunk of the peer's records: those that no record of ours accounts for. */
  async #peerChunk(page: readonly Record<string, unknown>[]): Promise<void> {
    const ids = page.map((row) => this.#peer.idOf(row));
    const peerLinks = await readLinks(this.#peer.db, this.#sync, this.#number, ids);
    const ourLinks = await localIdsFor(this.#ours.db, this.#sync, this.#number, ids);
    const named = [...new Set([...peerLinks.values(), ...ourLinks.values()])];
    const existing = new Set((await this.#ours.rowsByIds(named)).keys());
    const repairs: string[] = [];
    for (const row of page) {
      const peerId = this.#peer.idOf(row);
      const ourIds = [peerLinks.get(peerId), ourLinks.get(peerId)].filter((id) => id !== undefined);
      if (ourIds.length === 0) {
        // Deleted on the peer before it ever travelled: nothing to compare.
        if (this.#peer.deleted(row)) continue;
        this.#found({ problem: 'peer-unlinked', peerId, fields: [], repair: 'peer' });
        repairs.push(peerId);
      } else if (!ourIds.some((id) => existing.has(id))) {
        this.#found({ problem: 'our-record-missing', peerId, ourId: ourIds[0], fields: [], repair: 'none' });
      }
      // Otherwise one of ours names it, and our chunk compared the two.
    }
    if (this.options.repair && repairs.length > 0) this.#queuedOnPeer += (await pushRecords(this.#peer.context, this.#sync, this.#number, repairs)).length;
  }

  #found(difference: RecordDifference): void {
    this.#differences += 1;
    if (difference.repair === 'none') this.#unrepairable += 1;
    if (this.#listed.length < this.#listLimit) this.#listed.push(difference);
  }
}
