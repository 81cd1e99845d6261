import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cacheFinding } from '../../src/cli/check.js';
import { stateSchemaVersion } from '../../src/db/state-tables.js';
import { describeEachDialect, mysqlServerUrl, type AppConnection, type TestDatabase } from '../support/databases.js';
import { runCli, startCli } from '../support/cli.js';
import { instanceYaml } from '../support/instance.js';

const clientsTable = `
      - table: clients
        number: 1
        key: id
        fields:
          - { column: name, number: 2 }
          - { column: email, number: 3 }
`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tablesync-cli-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('tablesync command line', () => {
  it('lists its commands with --help and exits 0', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    for (const command of ['check', 'setup', 'run', 'demo']) expect(result.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
  });

  it('exits 2 with a short hint when used wrongly', async () => {
    const noCommand = await runCli([]);
    expect(noCommand.code).toBe(2);
    const missingConfig = await runCli(['check']);
    expect(missingConfig.code).toBe(2);
    expect(missingConfig.stderr).toContain("required option '-c, --config <file>' not specified");
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
  });

  it('refuses a bad file with every problem, its path and line, exit 2 and no stack trace', async () => {
    const file = writeConfig(
      'bad.yaml',
      `instance: east
database: { dialect: sqlite, file: ./east.sqlite }
syncs:
  - name: hq
    mode: sideways
    transport: { type: folder, upload: ./out, download: ./in }
    tables:
      - table: clients
        number: 1
        key: id
        fields:
          - { column: id, number: 2 }
`,
    );
    const result = await runCli(['setup', '-c', file]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      [
        `tablesync: ${file} has 2 problems:`,
        '  - syncs[0].mode: must be one of active, passive (found "sideways") (line 5)',
        "  - syncs[0].tables[0].fields[0].column: id is the table's key; keys are never synced, each side keeps its own record ids (line 12)",
        '',
      ].join('\n'),
    );
  });

  it('refuses two files that name the same database, since each would drop the other one\'s capture', async () => {
    const database = { config: { dialect: 'sqlite', file: join(dir, 'shared.sqlite') } } as TestDatabase;
    const first = writeConfig('first.yaml', instanceYaml(database, clientsTable, 'first'));
    const second = writeConfig('second.yaml', instanceYaml(database, clientsTable, 'second'));
    const result = await runCli(['check', '-c', first, '-c', second]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`tablesync: ${second} and ${first} use the same database; one instance file per database, listing all its syncs\n`);
  });

  it('says in one sentence that a missing file does not exist', async () => {
    const result = await runCli(['check', '-c', join(dir, 'nowhere.yaml')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('nowhere.yaml has 1 problem:\n  - the file does not exist\n');
  });

  it('says the database is unreachable in one sentence, exit 1', async () => {
    const port = await closedPort();
    const file = writeConfig(
      'east.yaml',
      instanceYaml(
        { config: { dialect: 'mysql', url: `mysql://root@127.0.0.1:${port}/crm` } } as TestDatabase,
        clientsTable,
      ),
    );
    const setup = await runCli(['setup', '-c', file]);
    expect(setup.code).toBe(1);
    expect(setup.stderr).toBe(
      `tablesync: cannot reach the mysql server at 127.0.0.1:${port}: connection refused; is it running, and is database.url right?\n`,
    );
    const check = await runCli(['check', '-c', file]);
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/error\s+database\s+cannot reach the mysql server/);
  });

  it('says a sqlite file is missing in one sentence, exit 1', async () => {
    const file = writeConfig('east.yaml', instanceYaml({ config: { dialect: 'sqlite', file: join(dir, 'none.sqlite') } } as TestDatabase, clientsTable));
    const result = await runCli(['setup', '-c', file]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`tablesync: the sqlite database file ${join(dir, 'none.sqlite')} does not exist or cannot be opened; check database.file\n`);
  });

  it('runs the demo: two SQLite instances converging, with a conflict and a delete', async () => {
    const result = await runCli(['demo']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const steps = result.stdout.split('\n== ');
    const last = steps.at(-1) ?? '';
    // After the last step: the same names and e-mails on both sides; the deleted client is marked deleted at the branch.
    expect(last).toMatch(/2 +Alan Mathison Turing +alan@example\.com +555-0999 +0/);
    expect(last).toMatch(/3 +Grace Hopper +grace@example\.com +555-0200 +0/);
    expect(last).toMatch(/2 +Ada Lovelace +ada@lovelace\.example +deleted/);
    expect(last).toMatch(/3 +Alan Mathison Turing +alan@example\.com +active/);
    expect(result.stdout).toContain('head-office saw a conflict: ours "Alan M. Turing", theirs "Alan Mathison Turing", decided by newest-wins: theirs');
    // The head office's phone change stays there: phone travels from the branch only.
    expect(result.stdout).not.toMatch(/3 +Alan Turing +alan@example\.com +555-0999 +active/);
  });
});

describe('check: the database cache', () => {
  it('warns when the synced tables and the state outgrow the buffer pool, saying what to raise and above what', () => {
    const mb = 1024 ** 2;
    expect(cacheFinding({ setting: 'innodb_buffer_pool_size', cacheBytes: 128 * mb, tablesBytes: 612.2 * mb })).toEqual([
      'warn',
      'database cache',
      "innodb_buffer_pool_size 128 MB, synced tables and tablesync's state 613 MB: they do not fit, so changes to records all over the tables will wait on the disk " +
        'and syncing may fall behind; raise innodb_buffer_pool_size above 613 MB (more as the tables grow)',
    ]);
    expect(cacheFinding({ setting: 'innodb_buffer_pool_size', cacheBytes: 1024 * mb, tablesBytes: 1024 * mb })[0]).toBe('ok');
  });
});

describeEachDialect('tablesync setup, check and run', (dialect) => {
  let testDb: TestDatabase;
  let app: AppConnection;
  let file: string;

  beforeEach(async () => {
    testDb = await dialect.create();
    app = await testDb.connect();
    await app.exec(`CREATE TABLE clients (id ${testDb.autoId}, name VARCHAR(80), email VARCHAR(120))`);
    file = writeConfig('east.yaml', instanceYaml(testDb, clientsTable));
  });

  afterEach(async () => {
    await app.close();
    await testDb.drop();
  });

  it('check reports capture missing, setup installs it once, check then reports it installed', async () => {
    const before = await runCli(['check', '-c', file]);
    expect(before.code).toBe(0);
    expect(before.stdout).toMatch(/ok\s+table clients\s+sync hq: 2 fields, key id/);
    expect(before.stdout).toMatch(/warn\s+capture\s+not installed yet: run tablesync setup/);

    const first = await runCli(['setup', '-c', file]);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`state tables: created (version ${stateSchemaVersion})`);
    expect(first.stdout).toContain('capture on clients: 3 triggers created, 0 dropped, 0 already in place');

    const second = await runCli(['setup', '-c', file]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(`state tables: up to date (version ${stateSchemaVersion})`);
    expect(second.stdout).toContain('capture on clients: 0 triggers created, 0 dropped, 3 already in place');

    const after = await runCli(['check', '-c', file]);
    expect(after.code).toBe(0);
    expect(after.stdout).toMatch(new RegExp(`ok\\s+capture\\s+installed: 3 triggers, state version ${stateSchemaVersion}`));
 
    // MySQL's buffer pool sizes the cache that decides whether a change waits on the disk; the others also use the system's.
    if (testDb.dialect === 'mysql') expect(after.stdout).toMatch(/ok\s+database cache\s+innodb_buffer_pool_size [\d,]+ MB, synced tables and tablesync's state \d+ MB: they fit/);
    else expect(after.stdout).not.toContain('database cache');
  });

  it('setup refuses a missing table or column with exit 2, naming each', async () => {
    const wrong = writeConfig(
      'wrong.yaml',
      instanceYaml(
        testDb,
        `
      - table: clients
        number: 1
        key: id
        fields:
          - { column: emial, number: 3 }
      - table: invoices
        number: 2
        key: id
        fields:
          - { column: total, number: 4 }
`,
      ),
    );
    const result = await runCli(['setup', '-c', wrong]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`tablesync: ${wrong} has 2 problems:`);
    expect(result.stderr).toContain('  - syncs[0].tables[0].fields[0].column: column emial does not exist in table clients (did you mean email?)\n');
    expect(result.stderr).toMatch(/ {2}- syncs\[0\]\.tables\[1\]\.table: table invoices does not exist in (mysql|sqlite|postgres) .* \(tables there: clients\)\n/);
    const check = await runCli(['check', '-c', wrong]);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain('2 errors found');
  });

  it('run installs capture, sends what the application writes, logs JSON lines and stops cleanly on SIGTERM', async () => {
    const daemon = startCli(['run', '-c', file]);
    await daemon.waitFor('"msg":"tablesync is running"');
    await app.exec("INSERT INTO clients (name, email) VALUES ('captured while running', 'c@example.com')");
    await daemon.waitFor('"msg":"batch sent"');
    const batch = JSON.parse(readFileSync(join(dir, 'out', 'hq.test-east.000000000001.json'), 'utf8')) as {
      events: { op: string; id: string; record: Record<string, unknown> }[];
    };
    expect(batch.events).toEqual([
      expect.objectContaining({ op: 'upsert', id: '1', record: { '2': 'captured while running', '3': 'c@example.com' } }),
    ]);

    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    const lines = daemon
      .output()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { msg: string; instance?: string; triggersCreated?: number });
    const messages = lines.map((l) => l.msg);
    expect(messages.slice(0, 2)).toEqual(['capture installed', 'tablesync is running']);
    expect(messages.slice(-3)).toEqual(['signal received, finishing the work in hand', 'stopping', 'stopped']);
    expect(lines[0]).toMatchObject({ instance: 'test-east', triggersCreated: 3 });
    expect(daemon.output()).not.toContain(mysqlServerUrl.replace(/^mysql:\/\//, '').split('@')[0] + ':');
  });
});

describe('tablesync setup with a wrong password', () => {
  it.runIf(mysqlServerUrl.startsWith('mysql://root@'))('says the server refused the user, in one sentence, exit 1', async () => {
    const url = new URL(mysqlServerUrl);
    const file = writeConfig(
      'east.yaml',
      instanceYaml({ config: { dialect: 'mysql', url: `mysql://root:not-the-password@${url.host}/mysql` } } as TestDatabase, clientsTable),
    );
    const probe = await runCli(['setup', '-c', file]);
    if (probe.stderr.includes('cannot reach')) return; // no MariaDB here: databases.ts reports that once
    expect(probe.code).toBe(1);
    expect(probe.stderr).toBe(
      `tablesync: the mysql server at ${url.host} refused user "root": wrong user name or password in database.url (or the variable that holds it)\n`,
    );
    expect(probe.stderr).not.toContain('not-the-password');
  });
});
