import type { UserMatch, UsersConfig } from '../config/types.js';
import type { AnyKysely } from '../db/dialect.js';
import type { WireValue } from '../protocol/batch.js';

/**
 * User references travel as the user's login, full name or id (the sync's
 * `users:` rule) and become the receiving instance's own user id.
 */
export class UserDirectory {
  constructor(private readonly config: UsersConfig) {}

  private column(rule: UserMatch): string {
    const column = rule === 'id' ? this.config.key : this.config[rule];
    // The configuration rules guarantee the column for any sync that has user fields.
    if (column === undefined) throw new Error(`users.${rule} is not configured`);
    return column;
  }

  /** Our user id → what travels. An id that names no user travels as null. */
  async toWire(db: AnyKysely, localId: unknown, rule: UserMatch): Promise<WireValue> {
    if (localId === null || localId === undefined) return null;
    if (rule === 'id') return String(localId);
    const row = (await db
      .selectFrom(this.config.table)
      .select(`${this.column(rule)} as match`)
      .where(this.config.key, '=', localId)
      .executeTakeFirst()) as { match: unknown } | undefined;
    return row?.match === null || row?.match === undefined ? null : String(row.match);
  }

  /** What arrived → our user id; `undefined` when no user matches. */
  async fromWire(db: AnyKysely, value: WireValue, rule: UserMatch): Promise<unknown> {
    if (value === null) return null;
    const row = (await db
      .selectFrom(this.config.table)
      .select(`${this.config.key} as id`)
      .where(this.column(rule), '=', typeof value === 'object' ? null : String(value))
      .limit(1)
      .executeTakeFirst()) as { id: unknown } | undefined;
    return row?.id;
  }
}
