import { sql, type CreateTableBuilder } from 'kysely';
import { DatabaseError } from '../errors.js';
import type { Database } from './database.js';
import type { AnyKysely, DialectAdapter } from './dialect.js';
import { stateTables } from './state-names.js';

/**
 * tablesync's own tables, kept in the instance's database so that one
 * transaction can hold both a batch's effect and the fact that it was applied.
 *
 * Each migration is applied once, in order, and recorded in
 * tablesync_meta.schema_version. A migration only adds; it never drops what
 * an older tablesync wrote, so a journal survives every upgrade.
 */
interface Migration {
  readonly version: number;
  readonly description: string;
  up(db: AnyKysely, adapter: DialectAdapter): Promise<void>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyTableBuilder = CreateTableBuilder<any, any>;

function withSerialKey(builder: AnyTableBuilder, column: string, adapter: DialectAdapter): AnyTableBuilder {
  const type = adapter.autoIncrementType;
  // A serial type numbers itself: AUTO_INCREMENT beside it would be refused.
  return builder.addColumn(column, type, (c) => (type === 'bigserial' ? c : c.autoIncrement()).primaryKey().notNull());
}

const migrations: readonly Migration[] = [
  {
    version: 1,
    description: 'journal, record links, field versions, cursors, conflicts',
    async up(db, adapter) {
      // One row per changed record: which columns changed, and when (the database's clock, in ms).
      await withSerialKey(db.schema.createTable(stateTables.journal).ifNotExists(), 'seq', adapter)
        .addColumn('table_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('record_id', 'varchar(191)', (c) => c.notNull())
        .addColumn('op', 'char(1)', (c) => c.notNull())
        .addColumn('columns', 'text', (c) => c.notNull())
        .addColumn('changed_at', 'bigint', (c) => c.notNull())
        .execute();

      // Which peer record each local record is, per sync; ids themselves never travel.
      await db.schema
        .createTable(stateTables.links)
        .ifNotExists()
        .addColumn('sync_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('table_number', 'integer', (c) => c.notNull())
        .addColumn('local_id', 'varchar(191)', (c) => c.notNull())
        .addColumn('peer_id', 'varchar(191)', (c) => c.notNull())
        .addColumn('linked_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('tablesync_links_pk', ['sync_name', 'table_number', 'local_id'])
        .addUniqueConstraint('tablesync_links_peer', ['sync_name', 'table_number', 'peer_id'])
        .execute();

      // The version of a field's current value; a row exists only for fields changed since their record was linked.
      await db.schema
        .createTable(stateTables.fieldVersions)
        .ifNotExists()
        .addColumn('table_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('record_id', 'varchar(191)', (c) => c.notNull())
        .addColumn('column_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('version', 'varchar(96)', (c) => c.notNull())
        .addPrimaryKeyConstraint('tablesync_field_versions_pk', ['table_name', 'record_id', 'column_name'])
        .execute();

      // Positions per sync: last batch sent, last batch applied, initial sync progress.
      await db.schema
        .createTable(stateTables.cursors)
        .ifNotExists()
        .addColumn('sync_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(64)', (c) => c.notNull())
        .addColumn('position', 'varchar(191)', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('tablesync_cursors_pk', ['sync_name', 'name'])
        .execute();

      await withSerialKey(db.schema.createTable(stateTables.conflicts).ifNotExists(), 'id', adapter)
        .addColumn('sync_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('table_number', 'integer', (c) => c.notNull())
        .addColumn('local_id', 'varchar(191)', (c) => c.notNull())
        .addColumn('field_number', 'integer', (c) => c.notNull())
        .addColumn('ours', 'text')
        .addColumn('theirs', 'text')
        .addColumn('our_version', 'varchar(96)', (c) => c.notNull())
        .addColumn('their_version', 'varchar(96)', (c) => c.notNull())
        .addColumn('detected_at', 'bigint', (c) => c.notNull())
        .addColumn('resolved_at', 'bigint')
        .addColumn('resolution', 'varchar(64)')
        .execute();
      await db.schema
        .createIndex('tablesync_conflicts_open')
        .ifNotExists()
        .on(stateTables.conflicts)
        .columns(['sync_name', 'resolved_at'])
        .execute();
    },
  },
  {
    version: 2,
    description: 'outbox, batches sent, parked changes, record origins, refused batches',
    async up(db, adapter) {
      // Per sync, the records to mention in the next batch and the fields that changed, with their
      // versions. One row per record however often it changes: state stays small.
      await db.schema
        .createTable(stateTables.outbox)
        .ifNotExists()
        .addColumn('sync_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('table_number', 'integer', (c) => c.notNull())
        .addColumn('record_id', 'varchar(191)', (c) => c.notNull())
        .addColumn('fields', 'text', (c) => c.notNull())
        .addColumn('deleted', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('changed_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('tablesync_outbox_pk', ['sync_name', 'table_number', 'record_id'])
        .execute();
      // The builder takes a sync's oldest entries first: without this, every batch sorted the whole outbox.
      await db.schema.createIndex('tablesync_outbox_age').ifNotExists().on(stateTables.outbox).columns(['sync_name', 'changed_at']).execute();

      // Batches built but not yet acknowledged by the peer, kept byte for byte so that a resend is identical.
      await db.schema
        .createTable(stateTables.batchesOut)
        .ifNotExists()
        .addColumn('sync_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('body', sql.raw(adapter.longTextType), (c) => c.notNull())
        .addColumn('events', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('sent_at', 'bigint')
        .addPrimaryKeyConstraint('tablesync_batches_out_pk', ['sync_name', 'seq'])
        .execute();

      // Changes from the peer that could not be applied (a constraint, a value too long), with the reason.
      await withSerialKey(db.schema.createTable(stateTables.parked).ifNotExists(), 'id', adapter)
        .addColumn('sync_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('batch_seq', 'bigint', (c) => c.notNull())
        .addColumn('table_number', 'integer', (c) => c.notNull())
        .addColumn('peer_record_id', 'varchar(191)', (c) => c.notNull())
        .addColumn('event', sql.raw(adapter.longTextType), (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('parked_at', 'bigint', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(1))
        .execute();

      // Where records created here on a peer's behalf were born (`<instance>/<id>`), so that a record
      // reaching us by a second path is linked, not created again. Records born here have no row.
      await db.schema
        .createTable(stateTables.origins)
        .ifNotExists()
        .addColumn('table_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('record_id', 'varchar(191)', (c) => c.notNull())
        .addColumn('origin', 'varchar(255)', (c) => c.notNull())
        .addPrimaryKeyConstraint('tablesync_origins_pk', ['table_name', 'record_id'])
        .addUniqueConstraint('tablesync_origins_origin', ['table_name', 'origin'])
        .execute();

      // Batches refused as bad input (malformed, unauthenticated origin, unknown numbers), kept for
      // inspection whatever the transport; the body is cut at 1 MiB.
      await withSerialKey(db.schema.createTable(stateTables.refused).ifNotExists(), 'id', adapter)
        .addColumn('sync_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(255)', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('body', sql.raw(adapter.longTextType), (c) => c.notNull())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('refused_at', 'bigint', (c) => c.notNull())
        .execute();

      // The version clock's row exists from the start, so that concurrent writers lock it rather than race to create it.
      await db.insertInto(stateTables.cursors).values({ sync_name: '', name: 'version-clock', position: '0.0', updated_at: 0 }).execute();
    },
  },
  {
    version: 3,
    description: 'a link says whether its record was created here from the peer’s',
    async up(db) {
      // 1: the record was created here from this peer's record, so it was born there (`<peer>/<peer_id>`).
      // The link says so instead of a row in tablesync_origins: an initial sync of a million records then
      // writes a million links, not a million links and a million origins.
      await db.schema
        .alterTable(stateTables.links)
        .addColumn('born_there', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
    },
  },
  {
    version: 4,
    description: 'verify runs and the replies they wait for',
    async up(db, adapter) {
      // A run of `tablesync verify` that goes through the sync's transport, while the command waits: the
      // daemon keeps a peer's reply only for a run that is still here, so a late reply is not kept forever.
      await db.schema
        .createTable(stateTables.verifyRuns)
        .ifNotExists()
        .addColumn('run_id', 'varchar(64)', (c) => c.primaryKey().notNull())
        .addColumn('sync_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .execute();
      // Replies as the daemon applied them, one row per piece, read (and deleted) by the waiting command.
      await db.schema
        .createTable(stateTables.verifyReplies)
        .ifNotExists()
        .addColumn('run_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('kind', 'varchar(16)', (c) => c.notNull())
        .addColumn('table_number', 'integer', (c) => c.notNull())
        .addColumn('chunk', 'integer', (c) => c.notNull())
        .addColumn('piece', 'integer', (c) => c.notNull())
        .addColumn('pieces', 'integer', (c) => c.notNull())
        .addColumn('body', sql.raw(adapter.longTextType), (c) => c.notNull())
        .addColumn('received_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('tablesync_verify_replies_pk', ['run_id', 'kind', 'table_number', 'chunk', 'piece'])
        .execute();
    },
  },
  {
    version: 5,
    description: 'what a peer did about the safety backup an initial sync asked of it',
    async up(db) {
      // The peer's answer to an initial sync's start (src/engine/initial-start.ts), kept for the
      // `initial-sync` command that waits for it: where the peer's backup went, or why it failed.
      await db.schema
        .createTable(stateTables.peerBackups)
        .ifNotExists()
        .addColumn('sync_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('run_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('outcome', 'varchar(16)', (c) => c.notNull())
        .addColumn('file', 'text')
        .addColumn('rows', 'bigint')
        .addColumn('error', 'text')
        .addColumn('reported_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('tablesync_peer_backups_pk', ['sync_name', 'run_id'])
        .execute();
    },
  },
  {
    version: 6,
    description: 'record ids compared byte for byte: "abc" and "ABC", "a" and "a ", are two records (MySQL)',
    async up(db, adapter) {
      // MySQL's default collations fold case and ignore trailing spaces: a peer's ids that differ only so
      // collided in tablesync_links, and the second record was parked instead of created. The tables are
      // rebuilt once; the application's writes to the journal wait for that table's rebuild.
      await adapter.compareStateTextByBytes?.(db, Object.values(stateTables).filter((table) => table !== stateTables.applier));
    },
  },
];

/** The state schema version this build of tablesync writes. */
export const stateSchemaVersion = migrations.length;

export interface StateUpgrade {
  readonly from: number;
  readonly to: number;
}

/** Creates or upgrades tablesync's own tables; idempotent, and safe while the application writes. */
export async function ensureStateTables(database: Database): Promise<StateUpgrade> {
  const { kysely: db, adapter } = database;
  await db.schema
    .createTable(stateTables.meta)
    .ifNotExists()
    .addColumn('name', 'varchar(64)', (c) => c.primaryKey().notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .execute();
  await adapter.installApplierMarker(db);

  const from = await installedVersion(db);
  if (from > stateSchemaVersion) {
    throw new DatabaseError(
      `${database.target} holds tablesync state of version ${from}, newer than this tablesync understands (${stateSchemaVersion}); upgrade tablesync`,
    );
  }
  for (const migration of migrations.filter((m) => m.version > from)) {
    await migration.up(db, adapter);
    await setVersion(db, migration.version, from === 0 && migration.version === 1);
  }
  return { from, to: stateSchemaVersion };
}

export async function installedVersion(db: AnyKysely): Promise<number> {
  const row = (await db
    .selectFrom(stateTables.meta)
    .select('value')
    .where('name', '=', 'schema_version')
    .executeTakeFirst()) as { value: string } | undefined;
  return row === undefined ? 0 : Number(row.value);
}

async function setVersion(db: AnyKysely, version: number, first: boolean): Promise<void> {
  if (first) {
    await db.insertInto(stateTables.meta).values({ name: 'schema_version', value: String(version) }).execute();
  } else {
    await db.updateTable(stateTables.meta).set({ value: String(version) }).where('name', '=', 'schema_version').execute();
  }
}
