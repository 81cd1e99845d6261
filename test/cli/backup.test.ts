import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DialectName } from '../../src/config/types.js';
import { runCli, startCli } from '../support/cli.js';
import { describeWithDialects, dialectCase, type AppConnection, type DialectCase, type TestDatabase } from '../support/databases.js';
import { instanceYaml } from '../support/instance.js';

/**
 * `tablesync backup` and `tablesync restore`, through the built command
 * line, on real databases: round trips between dialects (state tables
 * included), with and without a password, and every way a restore must
 * refuse (wrong password, damaged or cut file, another instance's backup)
 * while leaving the database exactly as it was. Then the safety backup
 * that `initial-sync` takes first.
 */

const clientsTable = `
      - table: clients
        number: 1
        key: id
        status: { column: record_status, deleted: 2 }
        addedAt: added_at
        fields:
          - { column: name, number: 2 }
          - { column: email, number: 3, direction: upload }
          - { column: price, number: 4 }
          - { column: photo, number: 5 }
`;

/** The same application table on every dialect; `notes` is not synced, so a backup does not hold it. */
function createClients(db: TestDatabase): string {
  // PostgreSQL has neither BLOB nor DATETIME.
  const [bytes, time] = db.dialect === 'postgres' ? ['BYTEA', 'TIMESTAMP'] : ['BLOB', 'DATETIME'];
  return (
    `CREATE TABLE clients (id ${db.autoId}, name VARCHAR(80), email VARCHAR(120), price DECIMAL(10,2), photo ${bytes}, ` +
    `added_at ${time}, record_status INT NOT NULL DEFAULT 1, notes VARCHAR(200))`
  );
}

let dir: string;
const cleanups: (() => Promise<void>)[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tablesync-backup-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

interface Side {
  readonly db: TestDatabase;
  readonly app: AppConnection;
  readonly file: string;
}

/** A fresh database of `dialect` with the clients table and a configuration file for it (not set up). */
async function side(dialect: DialectCase, name: string, instance = 'east'): Promise<Side> {
  const db = await dialect.create();
  const app = await db.connect();
  cleanups.push(async () => {
    await app.close();
    await db.drop();
  });
  await app.exec(createClients(db));
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, instanceYaml(db, clientsTable, instance));
  return { db, app, file };
}

/** Rows of every kind of value, a deleted one among them, inserted through capture (so the journal has rows too). */
async function seed(source: Side, count = 25): Promise<void> {
  await source.app.exec(source.db.dialect === 'mysql' ? 'START TRANSACTION' : 'BEGIN');
  for (let i = 1; i <= count; i++) {
    await source.app.exec('INSERT INTO clients (name, email, price, photo, added_at, record_status, notes) VALUES (?, ?, ?, ?, ?, ?, ?)', [
      i % 5 === 0 ? null : `client ${i} "é" \n ✓`,
      `c${i}@example.com`,
      i % 4 === 0 ? null : (i * 1.25).toFixed(2),
      i % 3 === 0 ? null : Buffer.from([0, i, 255, 10]),
      `2025-03-0${(i % 9) + 1} 10:00:${String(i % 60).padStart(2, '0')}`,
      i === 7 ? 2 : 1,
      'not synced',
    ]);
  }
  // State that the engine would have written: a link, an origin, an outbox entry, a parked change.
  await source.app.exec("INSERT INTO tablesync_links (sync_name, table_number, local_id, peer_id, linked_at) VALUES ('hq', 1, '1', '901', 1740823226652)");
  await source.app.exec("INSERT INTO tablesync_origins (table_name, record_id, origin) VALUES ('clients', '2', 'west/17')");
  await source.app.exec(
    "INSERT INTO tablesync_outbox (sync_name, table_number, record_id, fields, deleted, changed_at) VALUES ('hq', 1, '3', '{\"2\":{\"version\":\"5.east\",\"parent\":\"0\"}}', 0, 1740823226653)",
  );
  await source.app.exec(
    "INSERT INTO tablesync_parked (sync_name, batch_seq, table_number, peer_record_id, event, reason, parked_at, attempts) VALUES ('hq', 4, 1, '55', '{\"op\":\"upsert\"}', 'too long', 1740823226654, 2)",
  );
  await source.app.exec('COMMIT');
}

const text = (value: unknown): string | null => {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return `hex:${Buffer.from(value).toString('hex')}`;
  return String(value);
};

/** What a restore must reproduce: the synced columns of clients and every state table, as text so that dialects compare. */
async function snapshot(target: Side): Promise<Record<string, (string | null)[][]>> {
  const rows = async (statement: string): Promise<(string | null)[][]> => (await target.app.query(statement)).map((row) => Object.values(row).map(text));
  const clients = (await target.app.query('SELECT id, name, email, price, photo, added_at, record_status FROM clients ORDER BY id')).map((row) => {
    const values = Object.values(row).map(text);
    // DECIMAL(10,2): MariaDB says "2.50", SQLite 2.5.
    values[3] = values[3] === null ? null : Number(values[3]).toFixed(2);
    return values;
  });
  return {
    clients,
    journal: await rows('SELECT seq, table_name, record_id, op, columns, changed_at FROM tablesync_journal ORDER BY seq'),
    links: await rows('SELECT sync_name, table_number, local_id, peer_id, linked_at FROM tablesync_links ORDER BY local_id'),
    cursors: await rows('SELECT sync_name, name, position, updated_at FROM tablesync_cursors ORDER BY sync_name, name'),
    origins: await rows('SELECT table_name, record_id, origin FROM tablesync_origins ORDER BY record_id'),
    outbox: await rows('SELECT sync_name, table_number, record_id, fields, deleted, changed_at FROM tablesync_outbox ORDER BY record_id'),
    parked: await rows('SELECT id, sync_name, batch_seq, table_number, peer_record_id, event, reason, parked_at, attempts FROM tablesync_parked ORDER BY id'),
  };
}

/**
 * After a restore, the database numbers new rows above the restored keys
 * (PostgreSQL's sequences do not follow rows written with keys of their
 * own): the application's insert into clients, the capture trigger's into
 * tablesync_journal, and tablesync's own inserts into its state tables
 * with serial keys, one the backup held rows of (parked) and one it held
 * none of (conflicts).
 */
async function expectNumberingGoesOn(target: Side, restoredClients: number): Promise<void> {
  await target.app.exec("INSERT INTO clients (name, email) VALUES ('added after the restore', 'new@example.com')");
  const added = await target.app.query<{ id: number | string }>("SELECT id FROM clients WHERE name = 'added after the restore'");
  expect(added).toHaveLength(1);
  const id = Number(added[0]?.id);
  expect(id).toBeGreaterThan(restoredClients);
  expect(await target.app.query('SELECT op FROM tablesync_journal WHERE record_id = ?', [String(id)])).toEqual([{ op: 'I' }]);

  await target.app.exec(
    "INSERT INTO tablesync_parked (sync_name, batch_seq, table_number, peer_record_id, event, reason, parked_at, attempts) VALUES ('hq', 5, 1, '56', '{}', 'too long', 1740823226655, 1)",
  );
  const parked = await target.app.query<{ id: number | string }>('SELECT id FROM tablesync_parked ORDER BY id');
  expect(parked.map((r) => Number(r.id))).toEqual([1, 2]);
  await target.app.exec(
    "INSERT INTO tablesync_conflicts (sync_name, table_number, local_id, field_number, ours, theirs, our_version, their_version, detected_at) VALUES ('hq', 1, '1', 2, 'a', 'b', '1.east', '1.west', 1740823226656)",
  );
  const conflicts = await target.app.query<{ id: number | string }>('SELECT id FROM tablesync_conflicts');
  expect(conflicts.map((r) => Number(r.id))).toEqual([1]);
}

/** Everything in the database, for "untouched": the clients with every column, and which tables exist. */
async function everything(target: Side): Promise<unknown> {
  const tables =
    target.db.dialect === 'mysql'
      ? (await target.app.query<{ name: string }>('SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME')).map((r) => r.name)
      : (await target.app.query<{ name: string }>("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') ORDER BY name")).map((r) => r.name);
  const clients = (await target.app.query('SELECT * FROM clients ORDER BY id')).map((row) => Object.values(row).map(text));
  return { tables, clients };
}

/** Encrypting and decrypting derive a key with scrypt (a second or more each): on a loaded machine, more than the suite's 60 s. */
const slowTest = 120_000;

const backup = (source: Side, file: string, env: NodeJS.ProcessEnv = {}, ...args: string[]) => runCli(['backup', '-c', source.file, '-o', file, ...args], { env });
const restore = (target: Side, file: string, env: NodeJS.ProcessEnv = {}, ...args: string[]) => runCli(['restore', '-c', target.file, '-i', file, ...args], { env });

const roundTrips: readonly { from: DialectName; to: DialectName }[] = [
  { from: 'sqlite', to: 'sqlite' },
  { from: 'mysql', to: 'sqlite' },
  { from: 'sqlite', to: 'mysql' },
  { from: 'sqlite', to: 'postgres' },
  { from: 'postgres', to: 'mysql' },
];

for (const { from, to } of roundTrips) {
  describeWithDialects(`backup and restore, ${from} → ${to}`, [from, to], () => {
    for (const encrypted of [false, true]) {
      it(`restores the synced tables and tablesync's state${encrypted ? ', encrypted with a password' : ''}`, async () => {
        const source = await side(dialectCase(from), 'source');
        expect((await runCli(['setup', '-c', source.file])).code).toBe(0);
        await seed(source);
        const target = await side(dialectCase(to), 'target');
        const env = encrypted ? { BACKUP_PASSWORD: 'correct horse battery staple' } : {};
        const args = encrypted ? ['--password-env', 'BACKUP_PASSWORD'] : [];

        const file = join(dir, 'east.tsbackup');
        const made = await backup(source, file, env, ...args);
        expect(made.stderr).toBe('');
        expect(made.code).toBe(0);
        expect(made.stdout).toContain(`written to ${file}: `);
        expect(made.stdout).toContain(encrypted ? 'encrypted with the password in BACKUP_PASSWORD' : 'not encrypted');
        expect(made.stdout).toMatch(/clients\s+25 rows/);
        expect(statSync(file).mode & 0o777).toBe(0o600);
        const start = readFileSync(file).subarray(0, 22);
        if (encrypted) expect(start.toString()).toBe('age-encryption.org/v1\n');
        else expect([start[0], start[1]]).toEqual([0x1f, 0x8b]);

        const restored = await restore(target, file, env, ...args);
        expect(restored.stderr).toBe('');
        expect(restored.code).toBe(0);
        expect(restored.stdout).toContain(`restored ${file} (instance east, from ${from}, made `);
        expect(await snapshot(target)).toEqual(await snapshot(source));
        // Capture is in place, and the restore itself was not journaled as the application's writes.
        const journaled = async (): Promise<number> =>
          Number((await target.app.query<{ n: number | string }>("SELECT COUNT(*) AS n FROM tablesync_journal WHERE record_id = '1'"))[0]?.n);
        const restoredRows = await journaled();
        await target.app.exec("UPDATE clients SET name = 'after the restore' WHERE id = 1");
        expect(await journaled()).toBe(restoredRows + 1);
        await expectNumberingGoesOn(target, 25);
      }, slowTest);
    }

    it('restores over rows already there: updates by key, keeps the columns it does not hold, removes rows it does not have', async () => {
      const source = await side(dialectCase(from), 'source');
      expect((await runCli(['setup', '-c', source.file])).code).toBe(0);
      await seed(source, 5);
      const target = await side(dialectCase(to), 'target');
      await target.app.exec("INSERT INTO clients (id, name, notes) VALUES (1, 'changed since', 'kept'), (2, 'x', 'kept too'), (40, 'not in the backup', '')");
      const file = join(dir, 'east.tsbackup');
      expect((await backup(source, file)).code).toBe(0);
      const restored = await restore(target, file);
      expect(restored.code).toBe(0);
      expect(restored.stdout).toContain('(1 not in the backup removed)');
      expect((await snapshot(target)).clients).toEqual((await snapshot(source)).clients);
      const notes = await target.app.query<{ id: number; notes: string | null }>('SELECT id, notes FROM clients ORDER BY id');
      expect(notes.map((r) => [Number(r.id), r.notes])).toEqual([
        [1, 'kept'],
        [2, 'kept too'],
        [3, null],
        [4, null],
        [5, null],
      ]);
      await expectNumberingGoesOn(target, 5);
    });
  });
}

describeWithDialects('restore refuses, and leaves the database as it was', ['sqlite'], () => {
  /** A source with rows, its backup (encrypted or not), and a target that already holds rows of its own. */
  async function prepared(encrypted: boolean): Promise<{ file: string; target: Side; before: unknown }> {
    const source = await side(dialectCase('sqlite'), 'source');
    expect((await runCli(['setup', '-c', source.file])).code).toBe(0);
    // Enough rows that "the middle" of the file is well inside the rows.
    await seed(source, 2000);
    const file = join(dir, encrypted ? 'east.age' : 'east.gz');
    const made = await backup(source, file, { PW: 'right' }, ...(encrypted ? ['--password-env', 'PW'] : []));
    expect(made.code).toBe(0);
    const target = await side(dialectCase('sqlite'), 'target');
    await target.app.exec("INSERT INTO clients (id, name, notes) VALUES (1, 'mine', 'mine'), (99, 'also mine', '')");
    return { file, target, before: await everything(target) };
  }

  it('a wrong password, a missing one, and a password variable that is not set', async () => {
    const { file, target, before } = await prepared(true);
    const wrong = await restore(target, file, { PW: 'wrong' }, '--password-env', 'PW');
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toBe(`tablesync: the password in PW does not open ${file}: it was encrypted with another one\n`);
    const missing = await restore(target, file);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(`tablesync: ${file} is encrypted; give its password in an environment variable named by --password-env VAR\n`);
    const unset = await restore(target, file, {}, '--password-env', 'NO_SUCH_VARIABLE_HERE');
    expect(unset.code).toBe(2);
    expect(unset.stderr).toBe('tablesync: --password-env names the environment variable NO_SUCH_VARIABLE_HERE, which is not set; set it to the password\n');
    expect(await everything(target)).toEqual(before);
  }, slowTest);

  for (const encrypted of [false, true]) {
    const env = encrypted ? { PW: 'right' } : {};
    const args = encrypted ? ['--password-env', 'PW'] : [];
    const layer = encrypted ? 'encrypted' : 'compressed';

    it(`a ${layer} file with a byte flipped in the middle`, async () => {
      const { file, target, before } = await prepared(encrypted);
      const bytes = readFileSync(file);
      const middle = Math.floor(bytes.length / 2);
      bytes[middle] = (bytes[middle] ?? 0) ^ 0x04;
      writeFileSync(file, bytes);
      const result = await restore(target, file, env, ...args);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`^tablesync: ${file.replace(/[.]/g, '\\.')} is damaged( or cut short)?: .+\\n$`));
      expect(await everything(target)).toEqual(before);
    }, slowTest);

    it(`a ${layer} file cut short`, async () => {
      const { file, target, before } = await prepared(encrypted);
      const bytes = readFileSync(file);
      writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length * 0.7)));
      const result = await restore(target, file, env, ...args);
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(`tablesync: ${file} is damaged or cut short: its ${layer} data does not check out (${encrypted ? 'invalid tag' : 'unexpected end of file'})\n`);
      expect(await everything(target)).toEqual(before);
    }, slowTest);
  }

  it('a file that checks out but whose lines were altered (the checksum catches it), and a backup of another instance', async () => {
    const { file, target, before } = await prepared(false);
    // Re-compressed by hand: every layer is sound, the contents are not what was written.
    const { gunzipSync, gzipSync } = await import('node:zlib');
    const altered = gunzipSync(readFileSync(file)).toString().replace('"client 1 ', '"CLIENT 1 ');
    const tampered = join(dir, 'tampered.gz');
    writeFileSync(tampered, gzipSync(altered));
    const result = await restore(target, tampered);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`tablesync: ${tampered} is damaged: its checksum (SHA-256) does not match its contents\n`);

    const other = join(dir, 'other.yaml');
    writeFileSync(other, readFileSync(target.file, 'utf8').replace('instance: east', 'instance: west'));
    const wrongInstance = await runCli(['restore', '-c', other, '-i', file]);
    expect(wrongInstance.code).toBe(2);
    expect(wrongInstance.stderr).toContain(`is a backup of instance "east", and ${other} is instance "west"`);
    expect(await everything(target)).toEqual(before);
  });

  it('backup refuses to overwrite a file; restore needs -i and an existing file', async () => {
    const source = await side(dialectCase('sqlite'), 'source');
    const file = join(dir, 'there.gz');
    writeFileSync(file, 'something precious');
    const result = await backup(source, file);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`tablesync: ${file} already exists; give another file name, or remove it first\n`);
    expect(readFileSync(file, 'utf8')).toBe('something precious');
    const noInput = await runCli(['restore', '-c', source.file]);
    expect(noInput.code).toBe(2);
    expect(noInput.stderr).toBe('tablesync: tablesync restore needs -i FILE: the backup to restore\n');
    const absent = await restore(source, join(dir, 'absent.gz'));
    expect(absent.code).toBe(2);
    expect(absent.stderr).toBe(`tablesync: ${join(dir, 'absent.gz')} does not exist; give the backup file with -i FILE\n`);
  });
});

describe('the safety backup before initial-sync', () => {
  /** Runs initial-sync until it has queued its rows, then stops it (there is no daemon to send them): what it printed. */
  async function initialSync(source: Side, ...args: string[]): Promise<string> {
    const running = startCli(['initial-sync', '-c', source.file, ...args]);
    // It ends by itself when there is nothing to queue; otherwise it waits for a daemon that is not there.
    await running.waitFor('queued ', 30_000).then(
      () => running.child.kill('SIGINT'),
      () => running.child.kill('SIGKILL'),
    );
    await running.exited;
    return running.output();
  }

  it('is taken into backups/ beside the configuration file when the synced tables hold rows, and restores', async () => {
    const source = await side(dialectCase('sqlite'), 'source');
    expect((await runCli(['setup', '-c', source.file])).code).toBe(0);
    await seed(source, 3);
    const before = await snapshot(source);
    const output = await initialSync(source);
    const match = /safety backup of the synced tables and tablesync's state \(\d+ rows\): (\S+)\n/.exec(output);
    expect(match, output).not.toBeNull();
    const file = match?.[1] ?? '';
    expect(file.startsWith(join(dir, 'backups', 'east-before-initial-sync-'))).toBe(true);
    expect(output).toContain(`to go back to it: tablesync restore -c ${source.file} -i ${file}`);
    // The receiving side backs itself up, and says where (test/e2e/initial-backup.test.ts); no peer has been heard from yet.
    expect(output).toContain('the receiving side backs itself up before it applies any of these rows: the peer of sync hq; ');

    // The backup holds the state as it was before the initial sync queued its batch.
    const target = await side(dialectCase('sqlite'), 'target');
    expect((await restore(target, file)).code).toBe(0);
    expect(await snapshot(target)).toEqual(before);
  });

  it('goes to --backup-dir; is skipped with --no-backup, and when the synced tables are empty', async () => {
    const source = await side(dialectCase('sqlite'), 'source');
    expect((await runCli(['setup', '-c', source.file])).code).toBe(0);
    const empty = await initialSync(source);
    expect(empty).not.toContain('safety backup');
    expect(existsSync(join(dir, 'backups'))).toBe(false);

    await seed(source, 3);
    const skipped = await initialSync(source, '--restart', '--no-backup');
    expect(skipped).not.toContain('safety backup of');
    expect(skipped, 'nor is the peer asked for one').toContain('--no-backup: the receiving side takes no safety backup either: the peer of sync hq');
    expect(existsSync(join(dir, 'backups'))).toBe(false);

    const elsewhere = join(dir, 'safe', 'place');
    const taken = await initialSync(source, '--restart', '--backup-dir', elsewhere);
    expect(taken).toContain(`: ${elsewhere}/east-before-initial-sync-`);
    expect(readdirSync(elsewhere)).toHaveLength(1);
  });

  it('stops before sending anything when the default folder cannot be made, and says where else to put it', async () => {
    const source = await side(dialectCase('sqlite'), 'source');
    expect((await runCli(['setup', '-c', source.file])).code).toBe(0);
    await seed(source, 3);
    // As /etc/tablesync is for the daemon's user: something there that is not a folder it may write.
    writeFileSync(join(dir, 'backups'), 'in the way');
    const result = await runCli(['initial-sync', '-c', source.file]);
    expect(result.code, result.stdout).toBe(1);
    expect(result.stderr.startsWith(`tablesync: cannot create the folder for the safety backup, ${join(dir, 'backups')}: `), result.stderr).toBe(true);
    expect(
      result.stderr.endsWith(
        '; give a folder this user can write with --backup-dir or with backups.dir in the configuration file ' +
          '(under systemd or in the container: /var/lib/tablesync/backups), or skip it with --no-backup\n',
      ),
      result.stderr,
    ).toBe(true);
    expect(result.stdout).not.toContain('queued');
    const [queued] = await source.app.query<{ n: number }>('SELECT COUNT(*) AS n FROM tablesync_batches_out');
    expect(queued?.n, 'nothing queued for the peer').toBe(0);
  });
});
