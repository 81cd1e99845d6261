import type { AnyKysely } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';

/**
 * Field versions: `<ms, 16 digits>.<counter, 6 digits>.<instance>`. Each
 * write of a field gets a version no other write anywhere has, and the text
 * order of versions is the order `newest-wins` uses: the time the
 * application made the change, then a counter for changes in the same
 * millisecond, then the instance name so that two sides never tie.
 *
 * The empty version '' stands for the value a record had when it was
 * linked, so that no state is kept for fields that never changed.
 */
export const baseVersion = '';

export function formatVersion(ms: number, counter: number, instance: string): string {
  return `${String(Math.max(0, Math.trunc(ms))).padStart(16, '0')}.${String(counter).padStart(6, '0')}.${instance}`;
}

export function versionTime(version: string): number {
  return version === baseVersion ? 0 : Number(version.slice(0, 16));
}

/** Where the last version issued is kept (created by the state migration), so that versions stay unique across restarts and processes. */
const clockCursor = { sync_name: '', name: 'version-clock' } as const;

/**
 * Issues versions inside one transaction. Load it at the start of the
 * transaction (which locks the clock row on MySQL) and save it before commit:
 * two processes on one database (the daemon and a command) then never issue
 * the same version.
 */
export class VersionClock {
  private constructor(
    private readonly instance: string,
    private lastMs: number,
    private counter: number,
  ) {}

  static async load(db: AnyKysely, instance: string, lockingReads: boolean): Promise<VersionClock> {
    let query = db
      .selectFrom(stateTables.cursors)
      .select('position')
      .where('sync_name', '=', clockCursor.sync_name)
      .where('name', '=', clockCursor.name);
    if (lockingReads) query = query.forUpdate();
    const row = (await query.executeTakeFirst()) as { position: string } | undefined;
    const [ms, counter] = (row?.position ?? '0.0').split('.');
    return new VersionClock(instance, Number(ms), Number(counter));
  }

  /** A new version for a write the application made at `atMs` (the database's clock). */
  next(atMs: number): string {
    if (atMs > this.lastMs) {
      this.lastMs = atMs;
      this.counter = 0;
    } else {
      // A write stamped earlier than one already versioned (clock steps, same millisecond): keep order and uniqueness.
      this.counter += 1;
      if (this.counter > 999_999) {
        this.lastMs += 1;
        this.counter = 0;
      }
    }
    return formatVersion(this.lastMs, this.counter, this.instance);
  }

  async save(db: AnyKysely): Promise<void> {
    await db
      .updateTable(stateTables.cursors)
      .set({ position: `${this.lastMs}.${this.counter}`, updated_at: Date.now() })
      .where('sync_name', '=', clockCursor.sync_name)
      .where('name', '=', clockCursor.name)
      .execute();
  }
}
