import { randomBytes } from 'node:crypto';
import type { AnyKysely } from '../db/dialect.js';
import { keysetPages } from '../db/keyset.js';
import { UsageError } from '../errors.js';
import type { MappedField, MappedTable, SyncMapping } from '../mapping/sync-mapping.js';
import type { WireValue } from '../protocol/batch.js';
import { maxVerifyChunkRows, maxVerifyGroups, type VerifyRecordState } from '../protocol/verify-events.js';
import { mappingFor, type EngineContext } from './context.js';
import { readCursor } from './cursors.js';
import { localIdsFor, readLinks } from './links.js';
import { pushRecords } from './operations.js';
import { chunks } from './outbox.js';
import { DirectChannel, PeerCannotVerify, TransportChannel, type ChunkAnswer, type PeerChannel, type TransportPolicy } from './verify-channel.js';
import { waitingChanges } from './verify-desk.js';
import { chunkLine, comparableTheirs, digestOf, GroupDigests, VerifySide } from './verify-side.js';

export { comparable } from './verify-side.js';

/**
 * `tablesync verify`: compares the two sides of a sync, table by table, as
 * the guarantee of convergence states it: every field whose direction is
 * `both` on both sides holds the same value in linked records, and each
 * side's links agree with the other's.
 *
 * Our table is read in key order, in chunks. For each chunk we send the
 * peer our ids and our digest of the chunk (ids, links as we see them,
 * deleted or not, the compared fields as they travel); the peer reduces its
 * own side of the chunk (its records linked to those ids, deleted or not,
 * their fields) to a digest the same way, from its own database only, and
 * sends its records of the chunk back only when the two differ: a chunk
 * that agrees costs its ids and two digests. The peer's records that no
 * record of ours accounts for (unlinked there, or linked to a record we do
 * not have) are found by digests too, of groups of its records by a hash of
 * their id; only the ids of groups that differ come back.
 *
 * The peer is reached through a PeerChannel (verify-channel.ts): through
 * the sync's own transport and the two daemons (the default), or directly on
 * the peer's database when its configuration file is at hand. Digests are
 * computed by tablesync, not in SQL: the values go through the engine's wire
 * conversion (values.ts), which SQL cannot reproduce identically in every
 * dialect (a MariaDB DECIMAL is the text "10.50", SQLite's copy the number 10.5).
 */

export interface VerifyOptions {
  readonly sync?: string;
  /** Only this table (its number); needs `sync` when the instance has several syncs. */
  readonly table?: number;
  /** Queue what differs to be sent again (see RecordDifference.repair). */
  readonly repair: boolean;
  /** Our records per chunk; default 1,000, at most maxVerifyChunkRows. */
  readonly chunkRows?: number;
  /** Differences kept per table for the report; all are counted and repaired. Default 100. */
  readonly listLimit?: number;
  readonly onProgress?: (progress: VerifyProgress) => void;
}

export interface VerifyProgress {
  /** `<sync>: <our table>`. */
  readonly part: string;
  /** Our records checked so far. */
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
  /** The peer's column, when its file is at hand (through the transport, only numbers travel). */
  readonly peerColumn?: string;
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
   * `peer`, ask the peer to queue its record (a record only the peer has);
   * `none`, sending again cannot fix it (a record gone for good, a delete
   * that one side does not have).
   */
  readonly repair: 'ours' | 'peer' | 'none';
}

export interface TableVerification {
  readonly sync: string;
  readonly number: number;
  readonly table: string;
  /** The peer's table, when its file is at hand. */
  readonly peerTable?: string;
  /** Field numbers compared: `both` on both sides. */
  readonly fields: readonly number[];
  readonly records: number;
  readonly peerRecords: number;
  readonly chunks: number;
  readonly differingChunks: number;
  /** The peer's records that came back record by record: those of the chunks the peer found differing. */
  readonly fetchedRecords: number;
  /** Groups of the peer's records, and how many of them differ. */
  readonly groups: number;
  readonly differingGroups: number;
  /** Ids of the peer's records that came back: those of the differing groups. */
  readonly fetchedIds: number;
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
  /** Changes captured or sent and not yet acknowledged, per side: differences may be among them. */
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
  const mappings = selectedSyncs(ours, options);
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
    for (const table of selectedTables(mapping, options)) {
      const peerTable = peerMapping.tablesByNumber.get(table.number);
      if (peerTable === undefined) skipped.push(`sync ${mapping.name} table ${table.number} ${table.name} (${peer.config.file} does not sync it)`);
      else pairs.push({ mapping, peerMapping, table, peerTable });
    }
  }
  if (pairs.length === 0) throw new UsageError(`${ours.config.file} and ${peer.config.file} have no synced table in common to verify`);
  return { pairs, skipped };
}

function selectedSyncs(ours: EngineContext, options: Pick<VerifyOptions, 'sync' | 'table'>): readonly SyncMapping[] {
  const mappings = options.sync === undefined ? ours.mappings : [mappingFor(ours, options.sync)];
  if (options.table !== undefined && mappings.length !== 1) {
    throw new UsageError('--table needs --sync when the instance has several syncs (numbers belong to a sync)');
  }
  return mappings;
}

function selectedTables(mapping: SyncMapping, options: Pick<VerifyOptions, 'table'>): MappedTable[] {
  const tables = [...mapping.tablesByNumber.values()].filter((t) => options.table === undefined || t.number === options.table);
  if (tables.length === 0) throw new UsageError(`sync "${mapping.name}" has no table number ${options.table ?? '?'}`);
  return tables;
}

function checkOptions(options: VerifyOptions): void {
  const rows = options.chunkRows;
  if (rows !== undefined && (!Number.isInteger(rows) || rows < 1 || rows > maxVerifyChunkRows)) {
    throw new UsageError(`--chunk-rows must be a whole number from 1 to ${maxVerifyChunkRows} (it was ${rows})`);
  }
}

/**
 * `--peer-config`: both databases are read from here; the peer's side is
 * reduced by the same code its daemon would run. With `repair`, queues what
 * differs to be sent again.
 */
export async function verify(ours: EngineContext, peer: EngineContext, options: VerifyOptions): Promise<VerifyReport> {
  checkOptions(options);
  const { pairs, skipped } = await verifyTargets(ours, peer, options);
  const tables: TableVerification[] = [];
  let here = 0;
  for (const mapping of new Set(pairs.map((p) => p.mapping))) here += await waitingChanges(ours.database.kysely, mapping);
  let there = 0;
  for (const pair of pairs) {
    const result = await new TableVerifier(ours, pair.mapping, pair.table, new DirectChannel(peer, pair.peerMapping), randomBytes(16).toString('hex'), options).run();
    tables.push(result.table);
    there += result.peerWaiting;
  }
  return { tables, skipped, waiting: { here, peer: there } };
}

export interface TransportVerifyOptions extends VerifyOptions {
  readonly policy: TransportPolicy;
  /** Called before each sync is verified, with its peer's instance name. */
  readonly onSync?: (mapping: SyncMapping, peer: string) => void;
}

/**
 * The default: each sync's peer is asked through the sync's own transport,
 * by events in its batches that our daemon sends and the peer's daemon
 * answers (verify-channel.ts, verify-desk.ts); both must be running.
 */
export async function verifyThroughTransport(ours: EngineContext, options: TransportVerifyOptions): Promise<VerifyReport> {
  checkOptions(options);
  const mappings = selectedSyncs(ours, options);
  const tables: TableVerification[] = [];
  const skipped: string[] = [];
  let here = 0;
  let there = 0;
  for (const mapping of mappings) {
    const targets = selectedTables(mapping, options);
    const peer = await readCursor(ours.database.kysely, mapping.name, 'peer');
    if (peer === undefined) {
      throw new PeerCannotVerify(
        `sync "${mapping.name}" has not heard from its peer yet, so verify has no one to ask: start tablesync run on both sides and let them exchange once`,
      );
    }
    options.onSync?.(mapping, peer);
    here += await waitingChanges(ours.database.kysely, mapping);
    const channel = await TransportChannel.open(ours, mapping, `instance ${peer}`, options.policy);
    try {
      for (const table of targets) {
        try {
          const result = await new TableVerifier(ours, mapping, table, channel, channel.runId, options).run();
          tables.push(result.table);
          there += result.peerWaiting;
        } catch (err) {
          // A table the peer does not sync: the others can still be verified.
          if (!(err instanceof PeerCannotVerify)) throw err;
          skipped.push(`sync ${mapping.name} table ${table.number} ${table.name} (${err.message})`);
        }
      }
    } finally {
      await channel.close();
    }
  }
  if (tables.length === 0 && skipped.length > 0) throw new PeerCannotVerify(`no table could be verified: ${skipped.join('; ')}`);
  return { tables, skipped, waiting: { here, peer: there } };
}

/** A record of ours in a chunk, with what we hold about it. */
interface Entry {
  readonly id: string;
  readonly deleted: boolean;
  /** The peer record our link names. */
  readonly link: string | undefined;
  /** Deleted before it was ever linked: nothing to compare unless the peer links a record to it. */
  readonly unsent: boolean;
  /** Live records only: our compared fields as they travel, and as they compare. */
  readonly wire: readonly WireValue[];
  readonly values: readonly (string | null)[];
}

interface Chunk {
  readonly number: number;
  readonly entries: readonly Entry[];
  /** The field numbers the request asked about. */
  readonly fields: readonly number[];
  readonly digest: string;
}

class TableVerifier {
  readonly #side: VerifySide;
  readonly #chunkRows: number;
  readonly #listLimit: number;
  readonly #listed: RecordDifference[] = [];
  readonly #peerTable: ReturnType<NonNullable<PeerChannel['peerTable']>>;
  /** The fields asked about: ours that are `both`, until the peer's first answer says which it compares too. */
  #fields: readonly number[];
  #differences = 0;
  #unrepairable = 0;
  #chunks = 0;
  #differingChunks = 0;
  #fetchedRecords = 0;
  #records = 0;
  #queuedHere = 0;
  #queuedOnPeer = 0;
  #pushes = 0;
  #total = 0;

  constructor(
    private readonly ours: EngineContext,
    private readonly mapping: SyncMapping,
    private readonly table: MappedTable,
    private readonly channel: PeerChannel,
    private readonly runId: string,
    private readonly options: VerifyOptions,
  ) {
    this.#side = new VerifySide(ours, mapping, table, table.fields.filter((f) => f.direction === 'both'));
    this.#fields = this.#side.fields.map((f) => f.number);
    this.#chunkRows = options.chunkRows ?? 1000;
    this.#listLimit = options.listLimit ?? 100;
    this.#peerTable = channel.peerTable?.(table.number);
  }

  get #db(): AnyKysely {
    return this.ours.database.kysely;
  }

  get #sync(): string {
    return this.mapping.name;
  }

  async run(): Promise<{ table: TableVerification; peerWaiting: number }> {
    this.#total = await this.#side.count(this.#db);
    this.#progress(false);
    const groups = new GroupDigests(Math.min(maxVerifyGroups, Math.max(1, Math.ceil(this.#total / this.#chunkRows))));
    const inFlight: { chunk: Chunk; answer: Promise<ChunkAnswer> }[] = [];
    try {
      for await (const page of keysetPages(this.#db, this.table.name, this.#side.columns, [this.table.key], this.#chunkRows)) {
        const chunk = await this.#read(page, groups);
        const answer = this.channel.chunk({
          op: 'verify-chunk',
          table: this.table.number,
          id: this.runId,
          chunk: chunk.number,
          fields: chunk.fields,
          digest: chunk.digest,
          ids: chunk.entries.filter((e) => !e.unsent).map((e) => e.id),
          unsent: chunk.entries.filter((e) => e.unsent).map((e) => e.id),
        });
        // Awaited in order below; until then a failure must not count as unhandled.
        answer.catch(() => undefined);
        inFlight.push({ chunk, answer });
        if (inFlight.length >= this.channel.window) await this.#settle(inFlight.shift() as (typeof inFlight)[number]);
      }
      while (inFlight.length > 0) await this.#settle(inFlight.shift() as (typeof inFlight)[number]);
    } finally {
      // A chunk that failed leaves the others unread: their failures are the same one.
      for (const { answer } of inFlight) answer.catch(() => undefined);
    }

    const theirs = await this.channel.groups({
      op: 'verify-groups',
      table: this.table.number,
      id: this.runId,
      fields: this.#fields,
      groups: groups.groups,
      digests: groups.digests(),
    });
    await this.#peerRecords(theirs.pairs);
    this.#progress(true);
    return {
      peerWaiting: theirs.waiting,
      table: {
        sync: this.#sync,
        number: this.table.number,
        table: this.table.name,
        ...(this.#peerTable === undefined ? {} : { peerTable: this.#peerTable.name }),
        fields: theirs.fields,
        records: this.#records,
        peerRecords: theirs.records,
        chunks: this.#chunks,
        differingChunks: this.#differingChunks,
        fetchedRecords: this.#fetchedRecords,
        groups: groups.groups,
        differingGroups: theirs.differing,
        fetchedIds: theirs.pairs.length,
        differences: this.#differences,
        unrepairable: this.#unrepairable,
        listed: this.#listed,
        queuedHere: this.#queuedHere,
        queuedOnPeer: this.#queuedOnPeer,
      },
    };
  }

  #progress(done: boolean): void {
    this.options.onProgress?.({ part: `${this.#sync}: ${this.table.name}`, checked: this.#records, total: Math.max(this.#records, this.#total), done });
  }

  /** One page of our records as a chunk: what we hold about each, and our digest of it over the fields asked about. */
  async #read(page: readonly Record<string, unknown>[], groups: GroupDigests): Promise<Chunk> {
    const links = await readLinks(this.#db, this.#sync, this.table.number, page.map((row) => this.#side.idOf(row)));
    const entries: Entry[] = [];
    for (const row of page) {
      const id = this.#side.idOf(row);
      const deleted = this.#side.deleted(row);
      const link = links.get(id);
      // The peer's record that our link names, as the peer's records are grouped: see VerifyGroupsEvent.
      if (link !== undefined) groups.add(link, id);
      const unsent = deleted && link === undefined;
      const wire = deleted ? [] : await this.#side.wire(this.#db, row);
      entries.push({ id, deleted, link, unsent, wire, values: this.#side.comparable(wire) });
    }
    this.#records += page.length;
    this.#progress(false);
    const fields = this.#fields;
    return { number: this.#chunks++, entries, fields, digest: this.#digest(entries, fields) };
  }

  /** Our digest of a chunk over `fields` (a selection of ours, in our order): the lines the peer writes when it agrees. */
  #digest(entries: readonly Entry[], fields: readonly number[]): string {
    const positions = this.#positions(fields);
    const lines = entries
      .filter((e) => !e.unsent)
      .map((e) => chunkLine(e.id, e.link, e.deleted ? 'deleted' : positions.map((i) => e.values[i] ?? null)));
    return digestOf(lines);
  }

  #positions(fields: readonly number[]): number[] {
    const ours = this.#side.fields.map((f) => f.number);
    return fields.map((n) => {
      const i = ours.indexOf(n);
      if (i < 0) throw new PeerCannotVerify(`${this.channel.peer} compared field ${n} of table ${this.table.number}, which is not both-ways here`);
      return i;
    });
  }

  /** One chunk's answer: the chunk agrees, or its records are compared one by one. */
  async #settle({ chunk, answer }: { chunk: Chunk; answer: Promise<ChunkAnswer> }): Promise<void> {
    const theirs = await answer;
    // The peer compares only the fields that are both-ways there too: ask only about those from now on.
    this.#fields = theirs.fields;
    const ourDigest = sameNumbers(theirs.fields, chunk.fields) ? chunk.digest : this.#digest(chunk.entries, theirs.fields);
    this.#fetchedRecords += theirs.records?.length ?? 0;
    if (ourDigest === theirs.digest) return;
    if (theirs.records === undefined) throw new PeerCannotVerify(`${this.channel.peer} found chunk ${chunk.number} of table ${this.table.number} differing but sent no records`);

    this.#differingChunks += 1;
    const byId = new Map(theirs.records.map((r) => [r.id, r]));
    const positions = this.#positions(theirs.fields);
    const numeric = new Set(theirs.numeric);
    const repairs: string[] = [];
    for (const entry of chunk.entries) {
      const difference = this.#compare(entry, byId.get(entry.id), theirs.fields, positions, numeric);
      if (difference === undefined) continue;
      this.#found(difference);
      if (difference.repair === 'ours') repairs.push(entry.id);
    }
    if (this.options.repair && repairs.length > 0) this.#queuedHere += (await pushRecords(this.ours, this.#sync, this.table.number, repairs)).length;
  }

  #compare(entry: Entry, peer: VerifyRecordState | undefined, fields: readonly number[], positions: readonly number[], numeric: ReadonlySet<number>): RecordDifference | undefined {
    const { id, link } = entry;
    const back = peer?.peerId;
    if (entry.unsent && back === undefined) return undefined;
    if (link === undefined && back === undefined) return { problem: 'unlinked', ourId: id, fields: [], repair: 'ours' };
    if (link === undefined) return { problem: 'unlinked-here', ourId: id, peerId: back, fields: [], repair: 'ours' };
    if (back === undefined) return { problem: 'unlinked-there', ourId: id, peerId: link, fields: [], repair: 'ours' };
    // Sending again takes the peer's link as it is: two sides that disagree on which records are one stay so.
    if (link !== back) return { problem: 'links-differ', ourId: id, peerId: link, otherPeerId: back, fields: [], repair: 'none' };
    const state = peer?.state ?? 'absent';
    // Sending again cannot bring back a record that is gone for good.
    if (state === 'absent') return { problem: 'peer-record-missing', ourId: id, peerId: link, fields: [], repair: 'none' };
    if (entry.deleted && state === 'deleted') return undefined;
    if (entry.deleted) return { problem: 'deleted-here', ourId: id, peerId: link, fields: [], repair: 'ours' };
    // A delete is never undone by sending values again.
    if (state === 'deleted') return { problem: 'deleted-there', ourId: id, peerId: link, fields: [], repair: 'none' };
    const theirWire = fields.map((n) => peer?.values?.[String(n)] ?? null);
    const theirs = comparableTheirs(theirWire, fields, numeric);
    const differing: FieldDifference[] = [];
    fields.forEach((number, i) => {
      const position = positions[i] as number;
      if (entry.values[position] === theirs[i]) return;
      const field = this.#side.fields[position] as MappedField;
      const peerColumn = this.#peerTable?.column(number);
      differing.push({ number, column: field.column, ...(peerColumn === undefined ? {} : { peerColumn }), ours: entry.wire[position] ?? null, theirs: theirWire[i] ?? null });
    });
    return differing.length === 0 ? undefined : { problem: 'values', ourId: id, peerId: link, fields: differing, repair: 'ours' };
  }

  /** The peer's records of the groups that differ: those that no record of ours accounts for. */
  async #peerRecords(pairs: readonly (readonly [string, string | null])[]): Promise<void> {
    const repairs: string[] = [];
    for (const chunk of chunks(pairs, 500)) {
      const ourLinks = await localIdsFor(this.#db, this.#sync, this.table.number, chunk.map(([peerId]) => peerId));
      const named = [...new Set([...chunk.flatMap(([, ours]) => (ours === null ? [] : [ours])), ...ourLinks.values()])];
      const existing = new Set((await this.#side.rowsByIds(this.#db, named)).keys());
      for (const [peerId, theirLink] of chunk) {
        const ourIds = [theirLink ?? undefined, ourLinks.get(peerId)].filter((id) => id !== undefined);
        if (ourIds.length === 0) {
          this.#found({ problem: 'peer-unlinked', peerId, fields: [], repair: 'peer' });
          repairs.push(peerId);
        } else if (!ourIds.some((id) => existing.has(id))) {
          this.#found({ problem: 'our-record-missing', peerId, ourId: ourIds[0], fields: [], repair: 'none' });
        }
        // Otherwise one of ours names it, and our chunks compared the two.
      }
    }
    if (!this.options.repair) return;
    for (const ids of chunks(repairs, maxVerifyChunkRows)) {
      this.#queuedOnPeer += await this.channel.push({ op: 'verify-push', table: this.table.number, id: this.runId, chunk: this.#pushes++, ids });
    }
  }

  #found(difference: RecordDifference): void {
    this.#differences += 1;
    if (difference.repair === 'none') this.#unrepairable += 1;
    if (this.#listed.length < this.#listLimit) this.#listed.push(difference);
  }
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

