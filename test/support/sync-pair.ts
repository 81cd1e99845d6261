import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load-config.js';
import type { ConflictRule } from '../../src/config/types.js';
import { stateTables } from '../../src/db/state-names.js';
import { createEngineContext } from '../../src/engine/context.js';
import { Instance } from '../../src/engine/instance.js';
import { Mutex } from '../../src/engine/mutex.js';
import { SyncSession, type ExchangeReport, type SessionPolicy } from '../../src/engine/sync-session.js';
import { createLogger } from '../../src/log.js';
import { FolderTransport } from '../../src/transports/folder/folder-transport.js';
import type { AppConnection, DialectCase, TestDatabase } from './databases.js';

/**
 * Two instances of one sync, driven in this process exchange by exchange:
 * each with its own real database (SQLite file or MariaDB database), its
 * own capture triggers, its own SyncSession and a real FolderTransport over
 * folders of its own. Nothing connects the two sides' folders: whoever
 * drives the pair carries the files across (see batch-network.ts).
 *
 * The synced table has four `both` fields (the first `fieldCount` of them
 * configured) under different table and column names on each side, and a
 * soft-delete status column with a different deleted value on each side.
 */

/** One side's own names for the synced table. */
export interface SideShape {
  readonly instance: string;
  readonly mode: 'active' | 'passive';
  readonly table: string;
  readonly key: string;
  /** The columns of field numbers 2, 3, 4, 5, in that order. */
  readonly columns: readonly [string, string, string, string];
  readonly status: { readonly column: string; readonly deleted: number };
}

export const eastShape: SideShape = {
  instance: 'east',
  mode: 'active',
  table: 'clients',
  key: 'id',
  columns: ['name', 'email', 'phone', 'city'],
  status: { column: 'record_status', deleted: 2 },
};

export const westShape: SideShape = {
  instance: 'west',
  mode: 'passive',
  table: 'customers',
  key: 'cid',
  columns: ['full_name', 'mail', 'telephone', 'town'],
  status: { column: 'state', deleted: 9 },
};

export const syncName = 'hq';
export const tableNumber = 1;
/** Field numbers of the (up to) four synced fields, in column order. */
export const fieldNumbers = [2, 3, 4, 5] as const;

export type FieldValue = string | null;

/** One application row, as the test compares it: values in field order, whatever the side calls its columns. */
export interface AppRow {
  readonly id: string;
  readonly values: readonly FieldValue[];
  readonly deleted: boolean;
}

/** What is still under way in tablesync's own tables. */
export interface Backlog {
  readonly journal: number;
  readonly outbox: number;
  readonly batchesOut: number;
  readonly parked: number;
  /** Batches from the peer that this side refused (kept in tablesync_refused_batches). */
  readonly refused: number;
}

export interface PairOptions {
  readonly conflicts: ConflictRule;
  /** How many of the four fields the sync configures (3 or 4). */
  readonly fieldCount: number;
  readonly policy: SessionPolicy;
}

export class SyncSide {
  private constructor(
    readonly shape: SideShape,
    readonly fieldCount: number,
    readonly testDb: TestDatabase,
    readonly app: AppConnection,
    readonly instance: Instance,
    readonly session: SyncSession,
    readonly transport: FolderTransport,
    /** Where this side's transport writes (its outbox folder). */
    readonly upload: string,
    /** Where this side's transport reads (the network delivers here). */
    readonly download: string,
  ) {}

  static async open(shape: SideShape, testDb: TestDatabase, root: string, options: PairOptions): Promise<SyncSide> {
    const app = await testDb.connect();
    try {
      const { table, key, columns, status } = shape;
      await app.exec(
        `CREATE TABLE ${table} (${key} ${testDb.autoId}, ${columns[0]} VARCHAR(80), ${columns[1]} VARCHAR(120), ` +
          `${columns[2]} VARCHAR(40), ${columns[3]} VARCHAR(60), ${status.column} INT NOT NULL DEFAULT 0)`,
      );
      const upload = join(root, `${shape.instance}-out`);
      const download = join(root, `${shape.instance}-in`);
      await mkdir(upload, { recursive: true });
      await mkdir(download, { recursive: true });
      const yaml = [
        `instance: ${shape.instance}`,
        'database:',
        ...(testDb.config.dialect === 'sqlite'
          ? ['  dialect: sqlite', `  file: ${JSON.stringify(testDb.config.file)}`]
          : [`  dialect: ${testDb.config.dialect}`, `  url: ${JSON.stringify(testDb.config.url)}`]),
        'log: { level: silent }',
        'syncs:',
        `  - name: ${syncName}`,
        `    mode: ${shape.mode}`,
        `    transport: { type: folder, upload: ${JSON.stringify(upload)}, download: ${JSON.stringify(download)} }`,
        `    conflicts: ${options.conflicts}`,
        '    tables:',
        `      - table: ${table}`,
        `        number: ${tableNumber}`,
        `        key: ${key}`,
        `        status: { column: ${status.column}, deleted: ${status.deleted} }`,
        '        fields:',
        ...columns.slice(0, options.fieldCount).map((column, i) => `          - { column: ${column}, number: ${fieldNumbers[i]}, direction: both }`),
        '',
      ].join('\n');
      const config = parseConfig(yaml, join(root, `${shape.instance}.yaml`), {}, root);
      const instance = await Instance.open(config);
      try {
        await instance.installCapture();
        const logger = createLogger('silent');
        const context = createEngineContext(config, instance.database, instance.schema, logger);
        const [mapping] = context.mappings;
        if (mapping === undefined) throw new Error('the test configuration has one sync');
        const transport = new FolderTransport({ type: 'folder', upload, download }, { watch: false });
        const session = new SyncSession(context, mapping, transport, new Mutex(), logger, options.policy);
        return new SyncSide(shape, options.fieldCount, testDb, app, instance, session, transport, upload, download);
      } catch (err) {
        await instance.close();
        throw err;
      }
    } catch (err) {
      await app.close();
      throw err;
    }
  }

  get name(): string {
    return this.shape.instance;
  }

  /** The configured fields' columns, in field order. */
  get fields(): readonly string[] {
    return this.shape.columns.slice(0, this.fieldCount);
  }

  exchange(): Promise<ExchangeReport> {
    return this.session.exchange();
  }

  // --- the application -------------------------------------------------

  async insert(values: readonly FieldValue[]): Promise<string> {
    const columns = this.fields;
    await this.app.exec(
      `INSERT INTO ${this.shape.table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`,
      columns.map((_, i) => values[i] ?? null),
    );
    const [row] = await this.app.query<{ id: number | string }>(`SELECT MAX(${this.shape.key}) AS id FROM ${this.shape.table}`);
    return String(row?.id);
  }

  async update(id: string, field: number, value: FieldValue): Promise<void> {
    await this.app.exec(`UPDATE ${this.shape.table} SET ${this.column(field)} = ? WHERE ${this.shape.key} = ?`, [value, id]);
  }

  async softDelete(id: string): Promise<void> {
    await this.app.exec(`UPDATE ${this.shape.table} SET ${this.shape.status.column} = ? WHERE ${this.shape.key} = ?`, [this.shape.status.deleted, id]);
  }

  column(field: number): string {
    const column = this.fields[field];
    if (column === undefined) throw new Error(`field index ${field} is not configured (${this.fieldCount} fields)`);
    return column;
  }

  // --- what the test reads -------------------------------------------------

  async rows(): Promise<AppRow[]> {
    const { table, key, status } = this.shape;
    const rows = await this.app.query<Record<string, unknown>>(
      `SELECT ${key} AS id, ${this.fields.join(', ')}, ${status.column} AS status FROM ${table} ORDER BY ${key}`,
    );
    return rows.map((row) => ({
      id: String(row.id),
      values: this.fields.map((column) => (row[column] === null || row[column] === undefined ? null : String(row[column]))),
      deleted: Number(row.status) === status.deleted,
    }));
  }

  /** Ids of the records the application still works with (not soft-deleted), in id order. */
  async liveIds(): Promise<string[]> {
    return (await this.rows()).filter((r) => !r.deleted).map((r) => r.id);
  }

  /** Our record id → the peer's, as tablesync_links holds them. */
  async links(): Promise<{ local: string; peer: string }[]> {
    const rows = await this.app.query<{ local_id: string; peer_id: string }>(
      `SELECT local_id, peer_id FROM ${stateTables.links} WHERE sync_name = ? AND table_number = ? ORDER BY local_id`,
      [syncName, tableNumber],
    );
    return rows.map((r) => ({ local: String(r.local_id), peer: String(r.peer_id) }));
  }

  async peerOf(id: string): Promise<string | undefined> {
    return (await this.links()).find((l) => l.local === id)?.peer;
  }

  async backlog(): Promise<Backlog> {
    const count = async (table: string, bySync: boolean): Promise<number> => {
      const [row] = await this.app.query<{ n: number | string }>(
        `SELECT COUNT(*) AS n FROM ${table}${bySync ? ' WHERE sync_name = ?' : ''}`,
        bySync ? [syncName] : [],
      );
      return Number(row?.n ?? 0);
    };
    return {
      journal: await count(stateTables.journal, false),
      outbox: await count(stateTables.outbox, true),
      batchesOut: await count(stateTables.batchesOut, true),
      parked: await count(stateTables.parked, true),
      refused: await count(stateTables.refused, true),
    };
  }

  /** The cursors of the sync (`in`, `out`, `acked`...), for failure reports. */
  async cursors(): Promise<Record<string, string>> {
    const rows = await this.app.query<{ name: string; position: string }>(
      `SELECT name, position FROM ${stateTables.cursors} WHERE sync_name = ? AND name IN ('in', 'out', 'acked') ORDER BY name`,
      [syncName],
    );
    return Object.fromEntries(rows.map((r) => [r.name, String(r.position)]));
  }

  /** Changes this side parked, with the database's reason, for failure reports. */
  async parked(): Promise<string[]> {
    const rows = await this.app.query<Record<string, unknown>>(`SELECT batch_seq, event, reason FROM ${stateTables.parked} ORDER BY id`);
    return rows.map((r) => `batch ${String(r.batch_seq)}: ${String(r.reason)}; event ${String(r.event)}`);
  }

  /** Conflicts this side recorded, one line each, for failure reports. */
  async conflicts(): Promise<string[]> {
    const rows = await this.app.query<Record<string, unknown>>(
      `SELECT local_id, field_number, ours, theirs, our_version, their_version, resolution FROM ${stateTables.conflicts} ORDER BY id`,
    );
    return rows.map(
      (r) =>
        `record ${String(r.local_id)} field ${String(r.field_number)}: ours ${String(r.ours)} (${String(r.our_version)}) ` +
        `theirs ${String(r.theirs)} (${String(r.their_version)}) → ${String(r.resolution)}`,
    );
  }

  async close(): Promise<void> {
    await this.transport.close().catch(() => undefined);
    await this.instance.close().catch(() => undefined);
    await this.app.close().catch(() => undefined);
  }
}

export interface SyncPair {
  readonly root: string;
  readonly east: SyncSide;
  readonly west: SyncSide;
  /** Closes both sides, drops both databases and removes every folder; safe whatever state the pair is in. */
  dispose(): Promise<void>;
}

/** Fresh databases (east on `eastDialect`, the active side; west on `westDialect`), fresh folders, both sides open. */
export async function openSyncPair(eastDialect: DialectCase, westDialect: DialectCase, options: PairOptions): Promise<SyncPair> {
  const root = await mkdtemp(join(tmpdir(), 'tablesync-pair-'));
  const databases: TestDatabase[] = [];
  const sides: SyncSide[] = [];
  const dispose = async (): Promise<void> => {
    for (const side of sides) await side.close();
    for (const db of databases) await db.drop().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  };
  try {
    for (const [shape, dialect] of [
      [eastShape, eastDialect],
      [westShape, westDialect],
    ] as const) {
      const db = await dialect.create();
      databases.push(db);
      sides.push(await SyncSide.open(shape, db, root, options));
    }
  } catch (err) {
    await dispose();
    throw err;
  }
  const [east, west] = sides as [SyncSide, SyncSide];
  return { root, east, west, dispose };
}
