import { createHash } from 'node:crypto';
import type { AnyKysely } from '../db/dialect.js';
import type { ColumnFamily } from '../db/schema-types.js';
import type { MappedField, MappedTable, SyncMapping } from '../mapping/sync-mapping.js';
import type { WireValue } from '../protocol/batch.js';
import type { EngineContext } from './context.js';
import { chunks } from './outbox.js';
import { toWire } from './values.js';

/**
 * What both sides of `tablesync verify` reduce their records to, each from
 * its own database only: the code that the asking side and the answering
 * side (whether its database is reached directly or through the sync's
 * transport) must share, or their digests would never agree.
 */

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

/** What one side holds for a record of a chunk: gone (or never linked), deleted by status, or its compared values. */
export type ChunkState = 'absent' | 'deleted' | readonly (string | null)[];

/**
 * One record's line of a chunk's digest: the asker's id, the link (the
 * asker's link on its side; on the answerer's side, the answerer's record
 * linked to that id), and the state. Two sides that agree write the same line.
 */
export function chunkLine(askerId: string, link: string | undefined, state: ChunkState): string {
  return `${JSON.stringify([askerId, link ?? null, state])}\n`;
}

export function digestOf(lines: readonly string[]): string {
  const hash = createHash('sha256');
  for (const line of lines) hash.update(line);
  return hash.digest('hex');
}

/**
 * The answerer's records put into groups by a hash of their id, and one
 * digest per group of (the answerer's id, the asker's id) pairs. A sum of
 * each pair's SHA-256 (mod 2^256) rather than one running hash: the two
 * sides meet the pairs in unrelated orders (the asker by its own key, the
 * answerer by its own), and a sum does not depend on order.
 */
export class GroupDigests {
  readonly #sums: bigint[];

  constructor(readonly groups: number) {
    this.#sums = Array.from({ length: groups }, () => 0n);
  }

  /** The group of the answerer's record `answererId`. */
  static groupOf(answererId: string, groups: number): number {
    return createHash('sha256').update(`group\u0000${answererId}`).digest().readUIntBE(0, 6) % groups;
  }

  add(answererId: string, askerId: string | null): void {
    const group = GroupDigests.groupOf(answererId, this.groups);
    const pair = BigInt(`0x${createHash('sha256').update(JSON.stringify([answererId, askerId])).digest('hex')}`);
    this.#sums[group] = ((this.#sums[group] ?? 0n) + pair) & ((1n << 256n) - 1n);
  }

  digests(): string[] {
    return this.#sums.map((sum) => sum.toString(16).padStart(64, '0'));
  }
}

/**
 * One side's table as verify reads it: its records, whether each is
 * deleted, and the compared fields as they travel (a user reference as the
 * user's login, full name or id), from whichever connection it is given:
 * the answering daemon reads inside the transaction that applies the request.
 */
export class VerifySide {
  readonly #users = new Map<string, WireValue>();

  constructor(
    readonly context: EngineContext,
    readonly mapping: SyncMapping,
    readonly table: MappedTable,
    /** This side's fields, in the order compared. */
    readonly fields: readonly MappedField[],
  ) {}

  /** The key, the compared columns and the status column. */
  get columns(): string[] {
    const status = this.table.config.status;
    return [...new Set([this.table.key, ...this.fields.map((f) => f.column), ...(status === undefined ? [] : [status.column])])];
  }

  /** Field numbers of the compared fields whose column holds numbers here. */
  get numeric(): number[] {
    return this.fields.filter((field) => numericFamilies.has(this.#family(field))).map((f) => f.number);
  }

  idOf(row: Record<string, unknown>): string {
    return String(row[this.table.key]);
  }

  deleted(row: Record<string, unknown>): boolean {
    const status = this.table.config.status;
    return status !== undefined && String(row[status.column]) === String(status.deleted);
  }

  async wire(db: AnyKysely, row: Record<string, unknown>): Promise<WireValue[]> {
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
        user = await this.context.users.toWire(db, value, this.mapping.sync.users);
        this.#users.set(cacheKey, user);
      }
      out.push(user ?? null);
    }
    return out;
  }

  /** The compared values, ready to compare with the other side's. */
  comparable(wire: readonly WireValue[]): (string | null)[] {
    return wire.map((value, i) => comparable(value, this.#family(this.fields[i] as MappedField)));
  }

  #family(field: MappedField): ColumnFamily {
    return field.type === 'user' ? 'text' : (this.context.schema.get(this.table.name)?.columns.get(field.column)?.family ?? 'other');
  }

  /** Records by id (those that exist), for the ids given. */
  async rowsByIds(db: AnyKysely, ids: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
    const out = new Map<string, Record<string, unknown>>();
    for (const chunk of chunks([...new Set(ids)], 500)) {
      const rows = (await db.selectFrom(this.table.name).select(this.columns).where(this.table.key, 'in', chunk).execute()) as Record<string, unknown>[];
      for (const row of rows) out.set(this.idOf(row), row);
    }
    return out;
  }

  async count(db: AnyKysely): Promise<number> {
    const row = (await db
      .selectFrom(this.table.name)
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirst()) as { n: number | string } | undefined;
    return Number(row?.n ?? 0);
  }
}

/** The other side's values, which arrive in wire form with which of them are numbers there, made comparable. */
export function comparableTheirs(values: readonly WireValue[], fields: readonly number[], numeric: ReadonlySet<number>): (string | null)[] {
  return values.map((value, i) => comparable(value, numeric.has(fields[i] ?? 0) ? 'decimal' : 'text'));
}
