import { randomBytes } from 'node:crypto';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { onCleanup } from './cleanup.js';

/**
 * The benchmark's databases on one MariaDB server: created fresh with
 * unique names, dropped at the end (see cleanup.ts), and the `items` table
 * that everything moves.
 */

/** The same connection options as tablesync's own pool: values as the database writes them. */
const connectionOptions = { dateStrings: true, supportBigNumbers: true, bigNumberStrings: true, decimalNumbers: false, charset: 'utf8mb4' } as const;

export function quote(identifier: string): string {
  return `\`${identifier.replace(/`/g, '``')}\``;
}

export class BenchDatabase {
  /** Connections opened and not closed yet: destroyed by cleanup before the database is dropped. */
  readonly #open = new Set<Connection>();
  #drop: () => Promise<void> = async () => undefined;

  private constructor(
    readonly name: string,
    readonly url: string,
  ) {}

  /** Closes every connection still open and drops the database now rather than at the end. */
  async drop(): Promise<void> {
    for (const connection of this.#open) connection.destroy();
    this.#open.clear();
    await this.#drop();
  }

  /** Creates a database named `tsbench_<pid>_<random>_<suffix>`, dropped by cleanup whatever happens. */
  static async create(serverUrl: string, suffix: string): Promise<BenchDatabase> {
    const name = `tsbench_${process.pid}_${randomBytes(3).toString('hex')}_${suffix}`;
    const admin = await createConnection({ uri: serverUrl, ...connectionOptions });
    try {
      await admin.query(`CREATE DATABASE ${quote(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
    } finally {
      await admin.end();
    }
    const drop = onCleanup(`drop database ${name}`, async () => {
      const connection = await createConnection({ uri: serverUrl, ...connectionOptions });
      try {
        await connection.query(`DROP DATABASE IF EXISTS ${quote(name)}`);
      } finally {
        await connection.end();
      }
    });
    const url = new URL(serverUrl);
    url.pathname = `/${name}`;
    const db = new BenchDatabase(name, url.toString());
    db.#drop = drop;
    // Registered after the drop, so it runs before it.
    onCleanup(`close connections to ${name}`, () => {
      for (const connection of db.#open) connection.destroy();
      db.#open.clear();
    });
    return db;
  }

  /** A connection of the application's; close it with `release`. */
  async connect(): Promise<Connection> {
    const connection = await createConnection({ uri: this.url, ...connectionOptions });
    this.#open.add(connection);
    return connection;
  }

  async release(connection: Connection): Promise<void> {
    this.#open.delete(connection);
    await connection.end();
  }
}

/** Runs a query and returns its rows. */
export async function rows<T>(connection: Connection, statement: string, params: unknown[] = []): Promise<T[]> {
  const [result] = await connection.query<RowDataPacket[]>(statement, params);
  return result as unknown as T[];
}

export async function one<T>(connection: Connection, statement: string, params: unknown[] = []): Promise<T> {
  const [row] = await rows<T>(connection, statement, params);
  if (row === undefined) throw new Error(`no row from: ${statement}`);
  return row;
}

// ---------------------------------------------------------------- the items table

/** The 8 synced fields, in field-number order (numbers 2..9; the key is never synced). */
export const itemFields = ['sku', 'name', 'qty', 'price', 'created_at', 'note', 'revision', 'updated_ms'] as const;

export const itemsColumns = `
  id INT AUTO_INCREMENT PRIMARY KEY,
  sku VARCHAR(32) NOT NULL,
  name VARCHAR(120) NOT NULL,
  qty INT NOT NULL,
  price DECIMAL(12,2) NOT NULL,
  created_at DATETIME NOT NULL,
  note TEXT NULL,
  revision INT NOT NULL DEFAULT 0,
  updated_ms BIGINT NOT NULL`;

export function createItemsTable(table: string, extraColumns = ''): string {
  return `CREATE TABLE ${quote(table)} (${itemsColumns}${extraColumns}) ENGINE=InnoDB`;
}

/** One row's content as text, byte for byte: for checksums and row-by-row comparison. */
export function rowText(alias: string): string {
  const a = (c: string): string => `${alias}.${quote(c)}`;
  return `CONCAT_WS('|', ${a('sku')}, ${a('name')}, ${a('qty')}, ${a('price')}, ${a('created_at')}, COALESCE(${a('note')}, '\\\\N'), ${a('revision')}, ${a('updated_ms')})`;
}

export interface TableSum {
  rows: number;
  /** The sum of every row's CRC32 over its 8 fields: order- and id-independent. */
  checksum: string;
}

export async function tableSum(connection: Connection, database: string, table: string): Promise<TableSum> {
  const row = await one<{ n: string | number; sum: string | number | null }>(
    connection,
    `SELECT COUNT(*) AS n, SUM(CRC32(${rowText('t')})) AS sum FROM ${quote(database)}.${quote(table)} t`,
  );
  return { rows: Number(row.n), checksum: String(row.sum ?? 0) };
}

/**
 * Compares A's items with B's row by row through B's record links (B's id →
 * A's id): how many rows are linked, how many of those differ in any field,
 * and how many changes B is behind (A's revision minus B's, summed).
 */
export async function compareLinked(connection: Connection, a: string, b: string, sync: string): Promise<{ linked: number; differing: number; changesBehind: number }> {
  const row = await one<{ linked: string | number; differing: string | number | null; behind: string | number | null }>(
    connection,
    `SELECT COUNT(*) AS linked,
            SUM(CAST(${rowText('x')} AS BINARY) <> CAST(${rowText('y')} AS BINARY)) AS differing,
            SUM(GREATEST(x.revision - y.revision, 0)) AS behind
       FROM ${quote(b)}.tablesync_links l
       JOIN ${quote(a)}.items x ON x.id = CAST(l.peer_id AS SIGNED)
       JOIN ${quote(b)}.items y ON y.id = CAST(l.local_id AS SIGNED)
      WHERE l.sync_name = ? AND l.table_number = 1`,
    [sync],
  );
  return { linked: Number(row.linked), differing: Number(row.differing ?? 0), changesBehind: Number(row.behind ?? 0) };
}

// ---------------------------------------------------------------- generated rows

/** A small, fast, seeded generator (mulberry32): the same rows on every run. */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const words = (
  'alpha bravo copper delta ember falcon garnet harbor indigo juniper kestrel lumen maple nickel onyx pepper quartz ' +
  'raven saffron timber umber velvet willow xenon yarrow zephyr anchor basil cobalt dune elm fjord granite hazel iris jade'
).split(' ');

export function skuOf(id: number): string {
  return `SKU-${String(id).padStart(9, '0')}`;
}

export function idOfSku(sku: string): number {
  return Number(sku.slice(4));
}

/** Row `id` of the generated table: [id, sku, name, qty, price, created_at, note, revision, updated_ms]. */
export function generatedRow(id: number, rand: () => number): unknown[] {
  const word = (): string => words[Math.floor(rand() * words.length)] ?? 'item';
  const name = `${word()} ${word()} ${word()} ${id}`;
  const qty = Math.floor(rand() * 10_000);
  const price = `${Math.floor(rand() * 100_000)}.${String(Math.floor(rand() * 100)).padStart(2, '0')}`;
  const created = new Date(Date.UTC(2015, 0, 1) + Math.floor(rand() * 10 * 365 * 86_400) * 1000);
  const createdAt = created.toISOString().slice(0, 19).replace('T', ' ');
  let note: string | null = null;
  if (rand() >= 0.1) {
    const parts: string[] = [];
    const length = Math.floor(rand() * 40);
    for (let i = 0; i < length; i++) parts.push(word());
    note = parts.join(' ');
  }
  return [id, skuOf(id), name, qty, price, createdAt, note, 0, created.getTime()];
}

/**
 * Fills `table` with rows 1..count (explicit ids, so that `sku` names its
 * row's id on A), in multi-row INSERTs of `batch` rows over a few
 * connections. Returns the seconds it took.
 */
export async function generateRows(db: BenchDatabase, table: string, count: number, options: { batch?: number; connections?: number; progress?: (done: number) => void } = {}): Promise<number> {
  const batch = options.batch ?? 1000;
  const started = performance.now();
  let next = 1;
  let done = 0;
  const worker = async (): Promise<void> => {
    const connection = await db.connect();
    try {
      for (;;) {
        const from = next;
        if (from > count) return;
        next += batch;
        const to = Math.min(count, from + batch - 1);
        const rand = random(from);
        const values: unknown[][] = [];
        for (let id = from; id <= to; id++) values.push(generatedRow(id, rand));
        await connection.query(`INSERT INTO ${quote(table)} (id, ${itemFields.map(quote).join(', ')}) VALUES ?`, [values]);
        done += values.length;
        options.progress?.(done);
      }
    } finally {
      await db.release(connection);
    }
  };
  await Promise.all(Array.from({ length: options.connections ?? 3 }, worker));
  return (performance.now() - started) / 1000;
}
