import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { loadConfigFile } from '../config/load-config.js';
import { stateTables } from '../db/state-names.js';
import { createEngineContext } from '../engine/context.js';
import { Instance } from '../engine/instance.js';
import { Mutex } from '../engine/mutex.js';
import { SyncSession } from '../engine/sync-session.js';
import { createLogger } from '../log.js';
import { createTransport } from '../transports/create-transport.js';
import { formatTable } from './table.js';

/**
 * `tablesync demo`: two SQLite instances of a small CRM in a temporary
 * folder (head office and a branch, with different column names), syncing
 * through two folders. The application makes changes on both sides,
 * including a delete and a conflict, and each step prints what both hold.
 *
 * The engine runs in this process, exchange by exchange, so that every step
 * is shown in order; `tablesync run` does the same on a schedule.
 */
export async function demoCommand(out: NodeJS.WritableStream, keep: boolean): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'tablesync-demo-'));
  const say = (text: string): void => void out.write(`${text}\n`);
  const sides = [createSide(dir, hq), createSide(dir, branch)] as const;
  const opened: { instance: Instance; session: SyncSession }[] = [];
  try {
    say(`tablesync demo in ${dir}\n`);
    say('Two instances of a small CRM, each with its own SQLite database and its own column names:');
    say(formatTable([['instance', 'table', 'columns'], ...sides.map((s) => [s.spec.instance, s.spec.table, s.spec.columns.join(', ')])]));
    say('');
    say('Field numbers map one side to the other: 2 = name, 3 = e-mail, 4 = phone.');
    say('The phone travels from the branch to the head office only (upload at the branch, download at the head office).');
    say('Deletes travel through each side\'s own status column; conflicts go to the newest change.\n');

    for (const side of sides) {
      const config = loadConfigFile(side.configFile);
      const instance = await Instance.open(config);
      await instance.installCapture();
      const logger = createLogger('silent');
      const context = createEngineContext(config, instance.database, instance.schema, logger);
      const [mapping] = context.mappings;
      if (mapping === undefined) throw new Error('the demo configuration has one sync');
      const session = new SyncSession(context, mapping, createTransport(mapping.sync.transport, { logger }), new Mutex(), logger);
      opened.push({ instance, session });
    }
    const [hqSide, branchSide] = sides;
    const sync = async (): Promise<void> => {
      // The branch is the active side: it starts, the head office answers, and so on until nothing moves.
      for (let round = 0; round < 6; round++) for (const { session } of [...opened].reverse()) await session.exchange();
    };

    await step(say, 'The head office adds two clients, the branch one customer', sides, sync, () => {
      hqSide.app.prepare("INSERT INTO clients (name, email, phone) VALUES ('Ada Lovelace', 'ada@example.com', '555-0101')").run();
      hqSide.app.prepare("INSERT INTO clients (name, email) VALUES ('Alan Turing', 'alan@example.com')").run();
      branchSide.app.prepare("INSERT INTO customers (full_name, mail, telephone) VALUES ('Grace Hopper', 'grace@example.com', '555-0199')").run();
    });
    await step(say, 'The head office corrects an e-mail; the branch changes a phone; the head office changes a phone too', sides, sync, () => {
      hqSide.app.prepare("UPDATE clients SET email = 'ada@lovelace.example' WHERE name = 'Ada Lovelace'").run();
      branchSide.app.prepare("UPDATE customers SET telephone = '555-0200' WHERE full_name = 'Grace Hopper'").run();
      hqSide.app.prepare("UPDATE clients SET phone = '555-0999' WHERE name = 'Alan Turing'").run();
    });
    say('   (The head office\'s phone change stayed at the head office: phone only travels from the branch.)\n');

    await step(say, 'Both sides rename the same client before they exchange: a conflict; the later change wins on both', sides, sync, () => {
      hqSide.app.prepare("UPDATE clients SET name = 'Alan M. Turing' WHERE name = 'Alan Turing'").run();
      const later = Date.now() + 5;
      while (Date.now() < later) {
        // The branch's edit must be the newer one, even on a fast machine.
      }
      branchSide.app.prepare("UPDATE customers SET full_name = 'Alan Mathison Turing' WHERE full_name = 'Alan Turing'").run();
    });
    for (const { instance } of opened) {
      const conflicts = (await instance.database.kysely.selectFrom(stateTables.conflicts).selectAll().execute()) as {
        ours: string;
        theirs: string;
        resolution: string;
      }[];
      for (const c of conflicts) say(`   ${instance.name} saw a conflict: ours ${c.ours}, theirs ${c.theirs}, decided by ${c.resolution}`);
    }
    say('');

    await step(say, 'The head office deletes a client', sides, sync, () => {
      hqSide.app.prepare("DELETE FROM clients WHERE name = 'Ada Lovelace'").run();
    });
    say('The branch marked the client deleted in its own way (state = deleted) instead of losing the row.');
    say('Both sides now hold the same names and e-mails; phones went one way only. That is tablesync.');
    return 0;
  } finally {
    for (const { session, instance } of opened) {
      await session.transport.close();
      await instance.close();
    }
    for (const side of sides) side.app.close();
    if (keep) say(`\nThe demo's files are kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

interface SideSpec {
  instance: string;
  table: string;
  key: string;
  columns: string[];
  ddl: string;
  yaml: string;
}

interface Side {
  spec: SideSpec;
  app: BetterSqlite3.Database;
  configFile: string;
}

const hq: SideSpec = {
  instance: 'head-office',
  table: 'clients',
  key: 'id',
  columns: ['id', 'name', 'email', 'phone', 'status'],
  ddl: "CREATE TABLE clients (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL DEFAULT '', email TEXT, phone TEXT, status INTEGER NOT NULL DEFAULT 0)",
  yaml: `instance: head-office
database: { dialect: sqlite, file: ./head-office.sqlite }
syncs:
  - name: branch
    mode: passive
    transport: { type: folder, upload: ./to-branch, download: ./to-head-office }
    tables:
      - table: clients
        number: 1
        key: id
        status: { column: status, deleted: 2 }
        fields:
          - { column: name, number: 2 }
          - { column: email, number: 3 }
          - { column: phone, number: 4, direction: download }
`,
};

const branch: SideSpec = {
  instance: 'branch',
  table: 'customers',
  key: 'customer_id',
  columns: ['customer_id', 'full_name', 'mail', 'telephone', 'state'],
  ddl: "CREATE TABLE customers (customer_id INTEGER PRIMARY KEY AUTOINCREMENT, full_name TEXT, mail TEXT, telephone TEXT, state TEXT NOT NULL DEFAULT 'active')",
  yaml: `instance: branch
database: { dialect: sqlite, file: ./branch.sqlite }
syncs:
  - name: branch
    mode: active
    transport: { type: folder, upload: ./to-head-office, download: ./to-branch }
    every: 1s
    tables:
      - table: customers
        number: 1
        key: customer_id
        status: { column: state, deleted: deleted }
        fields:
          - { column: full_name, number: 2 }
          - { column: mail, number: 3 }
          - { column: telephone, number: 4, direction: upload }
`,
};

function createSide(dir: string, spec: SideSpec): Side {
  const app = new BetterSqlite3(join(dir, `${spec.instance}.sqlite`));
  app.exec(spec.ddl);
  const configFile = join(dir, `${spec.instance}.yaml`);
  writeFileSync(configFile, spec.yaml);
  return { spec, app, configFile };
}

async function step(say: (text: string) => void, title: string, sides: readonly Side[], sync: () => Promise<void>, change: () => void): Promise<void> {
  say(`== ${title}`);
  change();
  await sync();
  for (const { spec, app } of sides) {
    const rows = app.prepare(`SELECT ${spec.columns.join(', ')} FROM ${spec.table} ORDER BY ${spec.key}`).all() as Record<string, unknown>[];
    say(`-- ${spec.instance}.${spec.table}`);
    say(formatTable([spec.columns, ...rows.map((row) => spec.columns.map((c) => String(row[c] ?? '')))], '   '));
  }
  say('');
}
