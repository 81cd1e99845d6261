import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load-config.js';
import { stateTables } from '../../src/db/state-names.js';
import { BatchApplier } from '../../src/engine/applier.js';
import { buildBatch } from '../../src/engine/batch-builder.js';
import { createEngineContext, mappingFor, type EngineContext } from '../../src/engine/context.js';
import { writeCursor } from '../../src/engine/cursors.js';
import { Instance } from '../../src/engine/instance.js';
import { absorbJournal, journalPassSize } from '../../src/engine/journal-reader.js';
import { formatVersion, VersionClock } from '../../src/engine/versions.js';
import { createLogger } from '../../src/log.js';
import type { BatchEvent } from '../../src/protocol/batch.js';
import { decodeBatch, maxBatchBytes } from '../../src/protocol/decode.js';
import type { SyncStatus } from '../../src/cli/status.js';
import { runCli } from '../support/cli.js';
import { describeEachDialect, type AppConnection, type TestDatabase } from '../support/databases.js';
import { instanceYaml } from '../support/instance.js';

const clientsTable = `
      - table: clients
        number: 1
        key: id
        fields:
          - { column: name, number: 2 }
          - { column: email, number: 3 }
`;

/** The peer's instance name in every batch these tests apply. */
const peerName = 'test-hq';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tablesync-commands-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('commands that take one instance', () => {
  it('refuse more than one -c FILE, in one sentence, exit 2', async () => {
    for (const args of [
      ['conflicts', '-c', 'a.yaml', '-c', 'b.yaml', 'list'],
      ['errors', '-c', 'a.yaml', '-c', 'b.yaml', 'retry'],
      ['link', '-c', 'a.yaml', '-c', 'b.yaml', '--sync', 'hq', '--table', '1', '--id', '1'],
      ['push-record', '-c', 'a.yaml', '-c', 'b.yaml', '--sync', 'hq', '--table', '1', '--id', '1'],
    ]) {
      const result = await runCli(args, { cwd: dir });
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(
        `tablesync: tablesync ${args[0]} works on one instance at a time and takes exactly one -c FILE (it was given 2); run it once per instance\n`,
      );
    }
  });

  it('refuse a table number or an id that is not a positive whole number, exit 2', async () => {
    const link = (table: string): Promise<{ code: number | null; stderr: string }> =>
      runCli(['link', '-c', 'east.yaml', '--sync', 'hq', '--table', table, '--id', '1'], { cwd: dir });
    for (const table of ['0', '-1', 'two', '1.5', '99999999999']) {
      const result = await link(table);
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(`tablesync: --table must be a whole number from 1 to 2147483647 (found ${JSON.stringify(table)})\n`);
    }
    const resolve = await runCli(['conflicts', '-c', 'east.yaml', 'resolve', 'first', '--keep', 'ours'], { cwd: dir });
    expect(resolve.code).toBe(2);
    expect(resolve.stderr).toBe('tablesync: the conflict id must be a whole number from 1 to 2147483647 (found "first")\n');
    const retry = await runCli(['errors', '-c', 'east.yaml', 'retry', '0'], { cwd: dir });
    expect(retry.code).toBe(2);
    expect(retry.stderr).toBe('tablesync: the parked change id must be a whole number from 1 to 2147483647 (found "0")\n');
  });
});

describeEachDialect('tablesync status, conflicts, errors, link and push-record', (dialect) => {
  let testDb: TestDatabase;
  let app: AppConnection;
  let file: string;

  beforeEach(async () => {
    testDb = await dialect.create();
    app = await testDb.connect();
    await app.exec(`CREATE TABLE clients (id ${testDb.autoId}, name VARCHAR(80), email VARCHAR(120) UNIQUE)`);
    // `manual`, so that a conflict stays open until a person resolves it.
    file = writeConfig('east.yaml', instanceYaml(testDb, clientsTable).replace('    mode: active\n', '    mode: active\n    conflicts: manual\n'));
  });

  afterEach(async () => {
    await app.close();
    await testDb.drop();
  });

  async function setup(): Promise<void> {
    const result = await runCli(['setup', '-c', file]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  }

  /** Runs `work` against the instance in this process, with the engine's own functions. */
  async function withEngine<T>(work: (context: EngineContext) => Promise<T>): Promise<T> {
    const config = loadConfigFile(file);
    const instance = await Instance.open(config);
    try {
      return await work(createEngineContext(config, instance.database, instance.schema, createLogger('silent')));
    } finally {
      await instance.close();
    }
  }

  /**
   * Applies a batch from the peer as the daemon does when one arrives: decoded
   * and checked, applied by the engine's BatchApplier, then the time of its
   * arrival noted (as SyncSession does after applying).
   */
  async function applyPeerBatch(seq: number, events: BatchEvent[], ack = 0): Promise<void> {
    const batch = decodeBatch(JSON.stringify({ protocol: 1, sync: 'hq', from: peerName, seq, ack, sentAt: Date.now(), events }));
    await withEngine(async (context) => {
      const outcome = await new BatchApplier(context, mappingFor(context, 'hq')).apply(batch);
      expect(outcome.kind).toBe('applied');
      await context.database.transaction((db) => writeCursor(db, 'hq', 'last-in-at', Date.now()));
    });
  }

  /** Builds and "sends" our next batch as SyncSession does, without a transport: it then waits for the peer's acknowledgement. */
  async function sendBatch(): Promise<number> {
    return withEngine(async (context) => {
      const built = await context.database.transaction(async (db) => {
        const clock = await VersionClock.load(db, context.config.instance, context.database.adapter.lockingReads);
        while ((await absorbJournal(context, db, clock)) === journalPassSize);
        await clock.save(db);
        return buildBatch(context, db, mappingFor(context, 'hq'), maxBatchBytes);
      });
      if (built === undefined) throw new Error('nothing to send');
      await context.database.transaction(async (db) => {
        await db.updateTable(stateTables.batchesOut).set({ sent_at: Date.now() }).where('seq', '=', built.batch.seq).execute();
        await writeCursor(db, 'hq', 'last-out-at', Date.now());
      });
      return built.batch.events.length;
    });
  }

  /** A version of the peer's, as its capture would give a change made now. */
  const peerVersion = (counter = 0): string => formatVersion(Date.now(), counter, peerName);

  async function statusJson(): Promise<SyncStatus> {
    const result = await runCli(['status', '-c', file, '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const document = JSON.parse(result.stdout) as { syncs: SyncStatus[] }[];
    expect(document).toHaveLength(1);
    const sync = document[0]?.syncs[0];
    if (sync === undefined) throw new Error('status printed no sync');
    return sync;
  }

  it('status before setup says so; on a fresh instance it shows nothing waiting, as text and as JSON', async () => {
    const before = await runCli(['status', '-c', file]);
    expect(before.code).toBe(0);
    expect(before.stdout).toContain("tablesync's state tables are missing or of an older version, so nothing more is known: run tablesync setup");
    const beforeJson = JSON.parse((await runCli(['status', '-c', file, '--json'])).stdout) as { setUp: boolean; syncs: SyncStatus[] }[];
    expect(beforeJson[0]?.setUp).toBe(false);
    expect(beforeJson[0]?.syncs[0]?.waiting).toBeNull();

    await setup();
    const text = await runCli(['status', '-c', file]);
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    const lines = text.stdout.split('\n');
    expect(lines[0]).toMatch(/^instance test-east \(.*east\.yaml\): (sqlite|mysql|postgres) /);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^ {2}sync {20}hq$/),
      expect.stringMatching(/^ {2}role {20}active$/),
      expect.stringMatching(/^ {2}transport {15}folder$/),
      expect.stringMatching(/^ {2}peer {20}not heard from yet$/),
      `  peer reachable          no: the upload folder ${join(dir, 'out')} does not exist (tablesync run creates it at the first exchange)`,
      '  changes waiting         0 (0 captured, 0 queued, 0 in unacknowledged batches)',
      '  unacknowledged batches  0',
      '  last batch in           never',
      '  last batch out          never',
      '  lag                     none: nothing waiting',
      '  open conflicts          0',
      '  parked changes          0',
      '  refused batches         0',
      '',
    ]);
    if (testDb.config.url !== undefined) expect(text.stdout).not.toContain(testDb.config.url);

    const json = JSON.parse((await runCli(['status', '-c', file, '--json'])).stdout) as unknown;
    expect(json).toEqual([
      {
        instance: 'test-east',
        file,
        database: expect.stringMatching(/^(sqlite|mysql|postgres) /),
        setUp: true,
        syncs: [
          {
            name: 'hq',
            role: 'active',
            transport: 'folder',
            peer: null,
            peerReachable: {
              checked: true,
              reachable: false,
              detail: `the upload folder ${join(dir, 'out')} does not exist (tablesync run creates it at the first exchange)`,
            },
            waiting: { total: 0, captured: 0, queued: 0, inUnacknowledgedBatches: 0 },
            unacknowledgedBatches: 0,
            lastBatchIn: null,
            lastBatchOut: null,
            lag: null,
            openConflicts: 0,
            parkedChanges: 0,
            refusedBatches: 0,
          },
        ],
      },
    ]);
  });

  it('status counts captured, queued and unacknowledged changes, and the lag of the oldest', async () => {
    await setup();
    mkdirSync(join(dir, 'out'));
    mkdirSync(join(dir, 'in'));
    await app.exec("INSERT INTO clients (name, email) VALUES ('Ada', 'ada@example.com'), ('Bea', 'bea@example.com')");

    const captured = await statusJson();
    expect(captured.peerReachable).toEqual({ checked: true, reachable: true, detail: 'both folders exist and are usable' });
    expect(captured.waiting).toEqual({ total: 2, captured: 2, queued: 0, inUnacknowledgedBatches: 0 });
    expect(captured.lag?.seconds).toBeGreaterThanOrEqual(0);
    expect(captured.lag?.seconds).toBeLessThan(120);
    expect(Number.isNaN(Date.parse(captured.lag?.oldestAt ?? ''))).toBe(false);

    expect(await sendBatch()).toBe(2);
    await app.exec("INSERT INTO clients (name, email) VALUES ('Cy', 'cy@example.com')");
    const sent = await statusJson();
    expect(sent.waiting).toEqual({ total: 3, captured: 1, queued: 0, inUnacknowledgedBatches: 2 });
    expect(sent.unacknowledgedBatches).toBe(1);
    expect(sent.lastBatchOut?.secondsAgo).toBeLessThan(120);
    expect(sent.lastBatchIn).toBeNull();

    // The peer's first batch: it acknowledges ours and makes itself known; applying it reads the journal into the outbox.
    await applyPeerBatch(1, [], 1);
    const text = await runCli(['status', '-c', file]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/\n {2}peer {20}test-hq\n/);
    expect(text.stdout).toContain('  peer reachable          yes: both folders exist and are usable\n');
    expect(text.stdout).toContain('  changes waiting         1 (0 captured, 1 queued, 0 in unacknowledged batches)\n');
    expect(text.stdout).toContain('  unacknowledged batches  0\n');
    expect(text.stdout).toMatch(/\n {2}last batch in {11}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(\d+ s ago\)\n/);
    expect(text.stdout).toMatch(/\n {2}last batch out {10}\d{4}-\d\d-\d\dT[\d:.]+Z \(\d+ s ago\)\n/);
    expect(text.stdout).toMatch(/\n {2}lag {21}\d+ s \(oldest waiting change: \d{4}-[\d-]+T[\d:.]+Z\)\n/);
  });

  it('conflicts list shows the open ones; resolve keeps theirs or ours, and refuses an unknown id or a missing --keep', async () => {
    await app.exec("INSERT INTO clients (name, email) VALUES ('Ours', 'ours@example.com')");
    await setup();
    await app.exec("UPDATE clients SET name = 'Our name', email = 'our@example.com' WHERE id = 1");
    // The peer changed both fields of the same record (linked to our record 1) since the two sides last agreed.
    await applyPeerBatch(1, [
      {
        op: 'upsert',
        table: 1,
        id: 'p1',
        peerId: '1',
        fields: {
          '2': { value: 'Their name', version: peerVersion(0), parent: '' },
          '3': { value: 'their@example.com', version: peerVersion(1), parent: '' },
        },
      },
    ]);
    expect(await app.query('SELECT name, email FROM clients')).toEqual([{ name: 'Our name', email: 'our@example.com' }]);

    const list = await runCli(['conflicts', '-c', file, 'list']);
    expect(list.stderr).toBe('');
    expect(list.code).toBe(0);
    const lines = list.stdout.split('\n');
    expect(lines[0]).toMatch(/^ {2}id +sync +table +local id +field +ours +theirs +detected +resolution$/);
    expect(lines[1]).toMatch(/^ {2}1 +hq +1 clients +1 +2 name +"Our name" +"Their name" +\d{4}-\d\d-\d\dT[\d:.]+Z +open$/);
    expect(lines[2]).toMatch(/^ {2}2 +hq +1 clients +1 +3 email +"our@example\.com" +"their@example\.com" +\S+ +open$/);
    expect(lines.slice(3)).toEqual(['2 open conflicts: resolve each with tablesync conflicts -c FILE resolve ID --keep ours|theirs', '']);

    const unknown = await runCli(['conflicts', '-c', file, 'resolve', '99', '--keep', 'ours']);
    expect(unknown.code).toBe(2);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toBe('tablesync: there is no conflict 99; tablesync conflicts list shows the open ones\n');
    const noKeep = await runCli(['conflicts', '-c', file, 'resolve', '1']);
    expect(noKeep.code).toBe(2);
    expect(noKeep.stderr).toBe("tablesync: conflicts resolve needs --keep ours (keep this side's value) or --keep theirs (take the peer's value)\n");
    const badKeep = await runCli(['conflicts', '-c', file, 'resolve', '1', '--keep', 'mine']);
    expect(badKeep.code).toBe(2);
    expect(badKeep.stderr).toBe('tablesync: --keep must be ours or theirs (found "mine")\n');

    const theirs = await runCli(['conflicts', 'resolve', '1', '--keep', 'theirs', '-c', file]);
    expect(theirs.stderr).toBe('');
    expect(theirs.code).toBe(0);
    expect(theirs.stdout).toBe('conflict 1 resolved: kept theirs ("Their name") in clients.name of record 1; the peer of sync hq hears of it at the next exchange\n');
    const ours = await runCli(['conflicts', '-c', file, 'resolve', '2', '--keep', 'ours']);
    expect(ours.code).toBe(0);
    expect(ours.stdout).toBe('conflict 2 resolved: kept ours ("our@example.com") in clients.email of record 1; the peer of sync hq hears of it at the next exchange\n');

    expect(await app.query('SELECT name, email FROM clients')).toEqual([{ name: 'Their name', email: 'our@example.com' }]);
    const conflicts = await app.query<{ id: number | string; resolved_at: unknown; resolution: string }>(
      `SELECT id, resolved_at, resolution FROM ${stateTables.conflicts} ORDER BY id`,
    );
    expect(conflicts.map((c) => [Number(c.id), c.resolved_at !== null, c.resolution])).toEqual([
      [1, true, 'manual: kept theirs'],
      [2, true, 'manual: kept ours'],
    ]);
    // Both decisions wait in the outbox for the peer: record 1, fields 2 and 3.
    const outbox = await app.query<{ record_id: string; fields: string }>(`SELECT record_id, fields FROM ${stateTables.outbox} WHERE sync_name = 'hq'`);
    expect(outbox.map((row) => [row.record_id, Object.keys(JSON.parse(row.fields) as object).sort()])).toEqual([['1', ['2', '3']]]);

    const again = await runCli(['conflicts', '-c', file, 'resolve', '1', '--keep', 'ours']);
    expect(again.code).toBe(2);
    expect(again.stderr).toBe('tablesync: conflict 1 is already resolved (manual: kept theirs)\n');
    expect((await runCli(['conflicts', '-c', file, 'list'])).stdout).toBe('no open conflicts\n');
    const all = await runCli(['conflicts', '-c', file, 'list', '--all']);
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/\n {2}1 +hq +1 clients +1 +2 name .* manual: kept theirs\n/);
    expect(all.stdout).toMatch(/\n {2}2 +hq +1 clients +1 +3 email .* manual: kept ours\n/);
    expect((await statusJson()).openConflicts).toBe(0);
  });

  it('errors list shows parked changes; retry applies what now fits (exit 0) and reports what still does not (exit 1)', async () => {
    await app.exec("INSERT INTO clients (name, email) VALUES ('Blocker', 'taken@example.com'), ('Keeper', 'kept@example.com')");
    await setup();
    // Two new records from the peer whose emails this side already has: the unique index refuses both, so both are parked.
    await applyPeerBatch(1, [
      { op: 'upsert', table: 1, id: 'p7', fields: {}, record: { '2': 'Newcomer', '3': 'taken@example.com' } },
      { op: 'upsert', table: 1, id: 'p8', fields: {}, record: { '2': 'Twin', '3': 'kept@example.com' } },
    ]);
    expect((await statusJson()).parkedChanges).toBe(2);

    const list = await runCli(['errors', '-c', file, 'list']);
    expect(list.stderr).toBe('');
    expect(list.code).toBe(0);
    const lines = list.stdout.split('\n');
    expect(lines[0]).toMatch(/^ {2}id +sync +table +peer record +attempts +parked at +reason$/);
    expect(lines[1]).toMatch(/^ {2}1 +hq +1 clients +p7 +1 +\d{4}-\d\d-\d\dT[\d:.]+Z +.*(UNIQUE|Duplicate entry|duplicate key).*$/);
    expect(lines[2]).toMatch(/^ {2}2 +hq +1 clients +p8 +1 +\S+ +.*(UNIQUE|Duplicate entry|duplicate key).*$/);
    expect(lines.slice(3)).toEqual(['2 parked changes: fix the cause, then tablesync errors -c FILE retry [ID]', '']);

    await app.exec("DELETE FROM clients WHERE email = 'taken@example.com'");
    const retry = await runCli(['errors', '-c', file, 'retry']);
    expect(retry.code).toBe(1);
    const out = retry.stdout.split('\n');
    expect(out[0]).toBe('change 1 (sync hq, table 1 clients, peer record p7): applied');
    expect(out[1]).toMatch(/^change 2 \(sync hq, table 1 clients, peer record p8\): still parked: .*(UNIQUE|Duplicate entry|duplicate key)/);
    expect(out.slice(2)).toEqual(['1 applied, 1 still parked', '']);
    expect(await app.query("SELECT name FROM clients WHERE email = 'taken@example.com'")).toEqual([{ name: 'Newcomer' }]);

    const unknown = await runCli(['errors', '-c', file, 'retry', '99']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe('tablesync: there is no parked change 99; tablesync errors list shows them\n');

    const stillOne = await runCli(['errors', '-c', file, 'retry', '2']);
    expect(stillOne.stderr).toBe('');
    expect(stillOne.code).toBe(1);
    expect(stillOne.stdout).toMatch(/^change 2 \(sync hq, table 1 clients, peer record p8\): still parked: .*\n0 applied, 1 still parked\n$/);
    expect((await runCli(['errors', '-c', file, 'list'])).stdout).toMatch(/\n {2}2 +hq +1 clients +p8 +3 /);

    await app.exec("DELETE FROM clients WHERE email = 'kept@example.com'");
    const applied = await runCli(['errors', '-c', file, 'retry', '2']);
    expect(applied.code).toBe(0);
    expect(applied.stdout).toBe('change 2 (sync hq, table 1 clients, peer record p8): applied\n1 applied, 0 still parked\n');
    expect((await runCli(['errors', '-c', file, 'list'])).stdout).toBe('no parked changes\n');
    expect((await runCli(['errors', '-c', file, 'retry'])).stdout).toBe('no parked changes\n');
  });

  it("link prints the peer's record id, or says there is none yet (exit 1)", async () => {
    await app.exec("INSERT INTO clients (name, email) VALUES ('Ada', 'ada@example.com'), ('Bea', 'bea@example.com')");
    await setup();
    // The peer confirms that its record p1 is our record 1: the applier links the two.
    await applyPeerBatch(1, [{ op: 'upsert', table: 1, id: 'p1', peerId: '1', fields: {} }]);

    const linked = await runCli(['link', '-c', file, '--sync', 'hq', '--table', '1', '--id', '1']);
    expect(linked.stderr).toBe('');
    expect(linked.code).toBe(0);
    expect(linked.stdout).toBe("record 1 of clients is linked to the peer's record p1 in sync hq\n");

    const none = await runCli(['link', '-c', file, '--sync', 'hq', '--table', '1', '--id', '2']);
    expect(none.code).toBe(1);
    expect(none.stdout).toBe('record 2 of clients has no link in sync hq yet: the peer has not confirmed a record of its own for it\n');

    const noSync = await runCli(['link', '-c', file, '--sync', 'branch', '--table', '1', '--id', '1']);
    expect(noSync.code).toBe(2);
    expect(noSync.stderr).toBe(`tablesync: ${file} has no sync named "branch" (its syncs: hq)\n`);
    const noTable = await runCli(['link', '-c', file, '--sync', 'hq', '--table', '7', '--id', '1']);
    expect(noTable.code).toBe(2);
    expect(noTable.stderr).toBe('tablesync: sync "hq" has no table number 7 (it has 1)\n');
  });

  it('push-record queues the whole record for the sync, and refuses a record that does not exist (exit 2)', async () => {
    // Written before setup, so not captured: only push-record can send it.
    await app.exec("INSERT INTO clients (name, email) VALUES ('Ada', 'ada@example.com')");
    await setup();
    expect(await app.query(`SELECT record_id FROM ${stateTables.outbox}`)).toEqual([]);

    const pushed = await runCli(['push-record', '-c', file, '--sync', 'hq', '--table', '1', '--id', '1']);
    expect(pushed.stderr).toBe('');
    expect(pushed.code).toBe(0);
    expect(pushed.stdout).toBe('record 1 of clients is queued for sync hq: it goes out in full at the next exchange\n');
    const outbox = await app.query<{ sync_name: string; table_number: number | string; record_id: string; fields: string }>(
      `SELECT sync_name, table_number, record_id, fields FROM ${stateTables.outbox}`,
    );
    expect(outbox.map((row) => [row.sync_name, Number(row.table_number), row.record_id, Object.keys(JSON.parse(row.fields) as object).sort()])).toEqual([
      ['hq', 1, '1', ['2', '3']],
    ]);
    expect((await statusJson()).waiting).toEqual({ total: 1, captured: 0, queued: 1, inUnacknowledgedBatches: 0 });

    const missing = await runCli(['push-record', '-c', file, '--sync', 'hq', '--table', '1', '--id', '42']);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toBe('tablesync: table clients has no record with id 42\n');
  });
});
