import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { loadConfigFile } from '../config/load-config.js';
import { Instance } from '../engine/instance.js';
import { formatTable } from './table.js';

/**
 * `tablesync demo`: two SQLite instances of a small CRM in a temporary
 * folder (head office and a branch, with different column names), capture
 * installed on both, the application making changes on both sides, and what
 * each side holds printed step by step.
 */
export async function demoCommand(out: NodeJS.WritableStream, keep: boolean): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'tablesync-demo-'));
  const say = (text: string): void => void out.write(`${text}\n`);
  const sides = [createSide(dir, hq), createSide(dir, branch)];
  try {
    say(`tablesync demo in ${dir}\n`);
    say('Two instances of a small CRM, each with its own SQLite database and its own column names:');
    say(formatTable([['instance', 'table', 'columns'], ...sides.map((s) => [s.spec.instance, s.spec.table, s.spec.columns.join(', ')])]));
    say('');
    say('Field numbers map one side to the other: 2 = name, 3 = email, 4 = phone (upload-only at the branch).\n');

    const instances: Instance[] = [];
    for (const side of sides) {
      const instance = await Instance.open(loadConfigFile(side.configFile));
      instances.push(instance);
      const report = await instance.installCapture();
      say(`${side.spec.instance}: capture installed on ${side.spec.table} (${report.created.length} triggers) and tablesync's state tables created`);
    }
    say('');

    const [hqSide, branchSide] = sides as [Side, Side];
    step(say, 'The head office adds two clients, the branch one customer', sides, () => {
      hqSide.app.prepare("INSERT INTO clients (name, email, phone) VALUES ('Ada Lovelace', 'ada@example.com', '555-0101')").run();
      hqSide.app.prepare("INSERT INTO clients (name, email) VALUES ('Alan Turing', 'alan@example.com')").run();
      branchSide.app.prepare("INSERT INTO customers (full_name, mail, telephone) VALUES ('Grace Hopper', 'grace@example.com', '555-0199')").run();
    });
    step(say, 'The head office corrects an e-mail address; the branch changes a phone number and an unsynced note', sides, () => {
      hqSide.app.prepare("UPDATE clients SET email = 'ada@lovelace.example' WHERE id = 1").run();
      branchSide.app.prepare("UPDATE customers SET telephone = '555-0200', note = 'called back' WHERE customer_id = 1").run();
    });
    step(say, 'The head office deletes a client; the branch sets the same value again (not a change)', sides, () => {
      hqSide.app.prepare('DELETE FROM clients WHERE id = 2').run();
      branchSide.app.prepare("UPDATE customers SET mail = 'grace@example.com' WHERE customer_id = 1").run();
    });

    say('Each journal holds exactly the changes the application made, column by column, ready to be sent to the peer.');
    say('This version captures changes; exchanging them between the instances is the next milestone of tablesync.');
    for (const instance of instances) await instance.close();
    return 0;
  } finally {
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
  columns: ['customer_id', 'full_name', 'mail', 'telephone', 'state', 'note'],
  ddl: "CREATE TABLE customers (customer_id INTEGER PRIMARY KEY AUTOINCREMENT, full_name TEXT, mail TEXT, telephone TEXT, state TEXT NOT NULL DEFAULT 'active', note TEXT)",
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

function step(say: (text: string) => void, title: string, sides: readonly Side[], change: () => void): void {
  say(`== ${title}`);
  change();
  for (const { spec, app } of sides) {
    const rows = app.prepare(`SELECT ${spec.columns.join(', ')} FROM ${spec.table} ORDER BY ${spec.key}`).all() as Record<string, unknown>[];
    say(`-- ${spec.instance}.${spec.table}`);
    say(formatTable([spec.columns, ...rows.map((row) => spec.columns.map((c) => String(row[c] ?? '')))], '   '));
    const journal = app.prepare('SELECT op, record_id, columns FROM tablesync_journal ORDER BY seq').all() as {
      op: string;
      record_id: string;
      columns: string;
    }[];
    const ops: Record<string, string> = { I: 'insert', U: 'update', D: 'delete' };
    say(`   journal: ${journal.map((j) => `${ops[j.op] ?? j.op} #${j.record_id}${j.columns === '' ? '' : ` (${j.columns})`}`).join('; ') || 'empty'}`);
  }
  say('');
}
