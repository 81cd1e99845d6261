import { it, type ExpectStatic } from 'vitest';
import { defaultInitialSyncPolicy } from '../../src/engine/initial-sync.js';
import type { CliResult, RunningCli } from '../support/cli.js';
import { alphaClients, betaCustomers, syncName } from '../support/crm.js';
import type { TestDatabase } from '../support/databases.js';
import {
  clockTick,
  describeEachPair,
  dialectPairs,
  newCluster,
  type ClusterTestContext,
  type DialectPair,
  type SyncCluster,
  type SyncInstance,
  type SyncLink,
  type TableSpec,
} from '../support/sync-harness.js';

/**
 * `tablesync initial-sync`: rows that existed before tablesync was set up
 * (inserted before the first daemon start, so no trigger saw them) are
 * queued by the command as 'initial' batches, sent by the running daemon
 * and applied in bulk on the other side: linked (by link, birthplace or
 * `match:`) or created, with no per-field bookkeeping.
 *
 * The shop: the CRM's clients (table 1, see crm.ts: alpha's name, email and
 * phone travel to beta; credit limit and notes do not) and a products table
 * (10) with three `both` fields.
 *
 * | no. | alpha: products | beta: articles |
 * |-----|-----------------|----------------|
 * | 11  | sku             | code           |
 * | 12  | title           | label          |
 * | 13  | price           | price          |
 *
 * The command reads 5,000 rows per chunk and stops queuing while the peer
 * has 4 batches unacknowledged. The tests that need the command in the
 * middle of its work hold the receiving daemon down with 3 ordinary batches
 * waiting, so that the command stops, deterministically, right after its
 * first chunk: in the middle of the clients when there are a little more
 * than 5,000 of them (the crash test), or after the clients and before the
 * products when there are fewer (the test of the applications' changes).
 * There is no option for a smaller chunk.
 */
const chunkRows = 5_000;
/** More than one chunk: the first 5,000 go in the first chunk, the rest later. */
const bigTable = chunkRows + 400;
/** Several daemons and commands per test: on a loaded machine, more than the suite's 60 s. */
const testTimeout = 120_000;
/** The crash test moves its 5,000 clients twice (beta is killed while it applies them). */
const crashTestTimeout = 180_000;

function shopSchemaAlpha(db: TestDatabase): string[] {
  return [
    `CREATE TABLE clients (id ${db.autoId}, name VARCHAR(80), email VARCHAR(120), phone VARCHAR(40), credit_limit INT, notes VARCHAR(200), ` +
      'manager_id INT, record_status INT NOT NULL DEFAULT 1)',
    `CREATE TABLE products (id ${db.autoId}, sku VARCHAR(40), title VARCHAR(80), price INT)`,
  ];
}

function shopSchemaBeta(db: TestDatabase): string[] {
  return [
    `CREATE TABLE customers (customer_id ${db.autoId}, company_name VARCHAR(80), email_address VARCHAR(120), phone_number VARCHAR(40), credit INT, ` +
      "remarks VARCHAR(200), account_manager INT, state VARCHAR(10) NOT NULL DEFAULT 'active')",
    'CREATE UNIQUE INDEX customers_email ON customers (email_address)',
    `CREATE TABLE articles (article_id ${db.autoId}, code VARCHAR(40), label VARCHAR(80), price INT)`,
  ];
}

const alphaProducts: TableSpec = {
  table: 'products',
  number: 10,
  key: 'id',
  fields: [
    { column: 'sku', number: 11, direction: 'both' },
    { column: 'title', number: 12, direction: 'both' },
    { column: 'price', number: 13, direction: 'both' },
  ],
};

const betaArticles: TableSpec = {
  table: 'articles',
  number: 10,
  key: 'article_id',
  fields: [
    { column: 'code', number: 11, direction: 'both' },
    { column: 'label', number: 12, direction: 'both' },
    { column: 'price', number: 13, direction: 'both' },
  ],
};

interface Shop {
  readonly alpha: SyncInstance;
  readonly beta: SyncInstance;
  readonly sync: SyncLink;
}

/** alpha (active) and beta (passive) with the shop's tables and one folder sync; not started. `match`: clients are matched by email (field 3). */
async function createShop(cluster: SyncCluster, pair: DialectPair, options: { match?: boolean } = {}): Promise<Shop> {
  const [alpha, beta] = await Promise.all([
    cluster.addInstance('alpha', { dialect: pair.active, schema: shopSchemaAlpha }),
    cluster.addInstance('beta', { dialect: pair.passive, schema: shopSchemaBeta }),
  ]);
  const match = options.match === true ? { match: [3] } : {};
  const sync = cluster.connect(
    alpha,
    beta,
    { name: syncName },
    { active: [{ ...alphaClients(false), ...match }, alphaProducts], passive: [{ ...betaCustomers(false), ...match }, betaArticles] },
  );
  return { alpha, beta, sync };
}

// ---------------------------------------------------------------- rows

interface Client {
  readonly name: string | null;
  readonly email: string;
  readonly phone: string | null;
  readonly credit: number | null;
  readonly notes: string | null;
}

/** The i-th seeded client: every seventh has no phone. */
function client(i: number, tag = 'client'): Client {
  return { name: `${tag} ${i}`, email: `${tag}-${i}@example.com`, phone: i % 7 === 0 ? null : `+1 555 ${String(i).padStart(6, '0')}`, credit: i, notes: 'alpha only' };
}

async function inTransaction(instance: SyncInstance, work: () => Promise<void>): Promise<void> {
  await instance.exec(instance.dialect === 'mysql' ? 'START TRANSACTION' : 'BEGIN');
  try {
    await work();
    await instance.exec('COMMIT');
  } catch (err) {
    await instance.exec('ROLLBACK');
    throw err;
  }
}

/** Inserts clients on alpha, 500 per statement, in one transaction. */
async function insertClients(alpha: SyncInstance, clients: readonly Client[]): Promise<void> {
  await inTransaction(alpha, async () => {
    for (let start = 0; start < clients.length; start += 500) {
      const chunk = clients.slice(start, start + 500);
      await alpha.exec(
        `INSERT INTO clients (name, email, phone, credit_limit, notes) VALUES ${chunk.map(() => '(?, ?, ?, ?, ?)').join(', ')}`,
        chunk.flatMap((c) => [c.name, c.email, c.phone, c.credit, c.notes]),
      );
    }
  });
}

async function insertProducts(alpha: SyncInstance, count: number): Promise<void> {
  const rows = Array.from({ length: count }, (_, i) => [`SKU-${i}`, `product ${i}`, 100 + i]);
  await alpha.exec(`INSERT INTO products (sku, title, price) VALUES ${rows.map(() => '(?, ?, ?)').join(', ')}`, rows.flat());
}

const text = (value: unknown): string | null => (value === null || value === undefined ? null : String(value));

/** Every client's fields that travel alpha → beta (name, email, phone), as text, sorted by email. */
async function alphaSent(alpha: SyncInstance, where = ''): Promise<(string | null)[][]> {
  const rows = await alpha.query<Record<string, unknown>>(`SELECT name, email, phone FROM clients ${where}`);
  return rows.map((r) => [text(r.email), text(r.name), text(r.phone)]).sort(byFirst);
}

/** The same fields on beta. */
async function betaReceived(beta: SyncInstance, where = ''): Promise<(string | null)[][]> {
  const rows = await beta.query<Record<string, unknown>>(`SELECT company_name, email_address, phone_number FROM customers ${where}`);
  return rows.map((r) => [text(r.email_address), text(r.company_name), text(r.phone_number)]).sort(byFirst);
}

function byFirst(a: readonly (string | null | undefined)[], b: readonly (string | null | undefined)[]): number {
  const x = a[0] ?? '';
  const y = b[0] ?? '';
  return x < y ? -1 : x > y ? 1 : 0;
}

async function count(instance: SyncInstance, table: string, where = '', params: unknown[] = []): Promise<number> {
  const [row] = await instance.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${table} ${where}`, params);
  return Number(row?.n ?? 0);
}

/** Rows of tablesync_field_versions: per-field state, which initial sync must not write. */
async function fieldVersions(instance: SyncInstance): Promise<number> {
  return count(instance, 'tablesync_field_versions');
}

/**
 * The records that have per-field versions, by email: only records an application changed (or created)
 * through ordinary capture; initial sync writes none.
 */
async function versioned(instance: SyncInstance): Promise<string[]> {
  const [table, key, email] = instance.name === 'alpha' ? ['clients', 'id', 'email'] : ['customers', 'customer_id', 'email_address'];
  const rows = await instance.query<{ record_id: unknown }>('SELECT DISTINCT record_id FROM tablesync_field_versions WHERE table_name = ?', [table]);
  const ids = new Set(rows.map((r) => String(r.record_id)));
  const records = await instance.query<Record<string, unknown>>(`SELECT ${key} AS k, ${email} AS e FROM ${table}`);
  return records
    .filter((r) => ids.has(String(r.k)))
    .map((r) => String(r.e))
    .sort();
}

async function one(instance: SyncInstance, statement: string, params: unknown[]): Promise<Record<string, string | null>> {
  const rows = await instance.query<Record<string, unknown>>(statement, params);
  if (rows.length !== 1) throw new Error(`${instance.name}: expected one row from ${statement} (${JSON.stringify(params)}), found ${rows.length}`);
  return Object.fromEntries(Object.entries(rows[0] ?? {}).map(([k, v]) => [k, text(v)]));
}

const alphaRow = (alpha: SyncInstance, email: string) => one(alpha, 'SELECT id, name, email, phone, credit_limit, notes FROM clients WHERE email = ?', [email]);
const betaRow = (beta: SyncInstance, email: string) =>
  one(beta, 'SELECT customer_id, company_name, email_address, phone_number, credit, remarks FROM customers WHERE email_address = ?', [email]);

/** Drops an instance's capture triggers (its daemon stopped), as README tells to remove tablesync; the next start installs them again. */
async function dropCapture(instance: SyncInstance): Promise<void> {
  if (instance.dialect === 'postgres') {
    // Each trigger calls a function of its own name: dropping the functions drops the triggers with them.
    const functions = await instance.query<{ name: string }>(
      "SELECT proname AS name FROM pg_proc WHERE pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) AND proname LIKE 'tsync\\_%'",
    );
    if (functions.length === 0) throw new Error(`${instance.name} has no capture triggers to drop`);
    for (const { name } of functions) await instance.exec(`DROP FUNCTION ${name}() CASCADE`);
    return;
  }
  const names =
    instance.dialect === 'sqlite'
      ? (await instance.query<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'tsync\\_%' ESCAPE '\\'")).map((r) => r.name)
      : // Not SHOW TRIGGERS LIKE …: its pattern matches table names, not trigger names.
        (
          await instance.query<{ name: string }>("SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE 'tsync\\_%'")
        ).map((r) => r.name);
  if (names.length === 0) throw new Error(`${instance.name} has no capture triggers to drop`);
  for (const name of names) await instance.exec(`DROP TRIGGER ${name}`);
}

/** SQL that joins two strings, in the instance's dialect. */
function concat(instance: SyncInstance, a: string, b: string): string {
  return instance.dialect === 'mysql' ? `CONCAT(${a}, ${b})` : `${a} || ${b}`;
}

/**
 * What SyncLink.differences finds in table `number`, once nothing is in flight (after waitSettled): every
 * live record linked both ways to a live record, every `both` field equal. The count, then the first few.
 */
async function outOfStep(link: SyncLink, number: number): Promise<string[]> {
  const problems = await link.differences(number);
  return problems.length === 0 ? [] : [`${problems.length} differences, the first ones:`, ...problems.slice(0, 8)];
}

/**
 * The links of table `number` on each side, once nothing is in flight. beta writes its links as it applies
 * initial batches; alpha, the sender, must learn beta's ids too, as it does for an ordinary new record.
 */
async function linkCounts(link: SyncLink, number: number): Promise<{ 'links on alpha (the sender)': number; 'links on beta': number }> {
  return { 'links on alpha (the sender)': (await link.active.links(link.name, number)).size, 'links on beta': (await link.passive.links(link.name, number)).size };
}

const linkedOnBoth = (n: number) => ({ 'links on alpha (the sender)': n, 'links on beta': n });

// ---------------------------------------------------------------- the command

/** The last line of the command's output, which must be `done: N rows in …`; returns N. */
function doneRows(result: Pick<CliResult, 'stdout'>): number {
  const last = result.stdout.trimEnd().split('\n').at(-1) ?? '';
  const found = /^done: ([\d,]+) rows in \d+(\.\d+)? s \([\d,]+ rows\/s\)$/.exec(last);
  if (found?.[1] === undefined) throw new Error(`the last line is not "done: N rows in …": ${JSON.stringify(last)}\n${result.stdout}`);
  return Number(found[1].replace(/,/g, ''));
}

/** The rows queued before and in all, from the first progress line of a part (`head-office: clients: 83% 20,000/24,003 rows, …`). */
function firstProgress(stdout: string, table: string): { queued: number; total: number } {
  const found = new RegExp(`^${syncName}: ${table}: \\d+% ([\\d,]+)/([\\d,]+) rows`, 'm').exec(stdout);
  if (found?.[1] === undefined || found[2] === undefined) throw new Error(`no progress line for ${table} in:\n${stdout}`);
  return { queued: Number(found[1].replace(/,/g, '')), total: Number(found[2].replace(/,/g, '')) };
}

/** Starts `tablesync initial-sync` in the background, killed when the test finishes if it is still running. */
function startInitialSync(instance: SyncInstance, context: ClusterTestContext, ...args: string[]): RunningCli {
  return instance.startCli(context, 'initial-sync', ...args);
}

/** Waits for a command started in the background to exit; its `stdout` holds both its streams. */
async function finished(command: RunningCli, timeoutMs = 90_000): Promise<CliResult> {
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    command.exited,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`initial-sync did not finish in ${timeoutMs} ms; output so far:\n${command.output()}`)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  return { code, stdout: command.output(), stderr: '' };
}

/** Runs the command to its end; fails with its output when it does not exit 0. */
async function initialSync(instance: SyncInstance, expect: ExpectStatic, ...args: string[]): Promise<CliResult> {
  const result = await instance.cli('initial-sync', ...args);
  expect(result.code, `initial-sync ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`).toBe(0);
  return result;
}

/**
 * Fills the command's window but for one batch: beta's daemon is stopped, so
 * that nothing is acknowledged any more, and alpha builds ordinary batches
 * (one new client each) until one fewer than the window wait unacknowledged.
 * The command then queues one chunk (the last batch the window holds) and
 * waits for room until beta starts again. Returns the clients made.
 */
async function holdTheWindow(cluster: SyncCluster, shop: Shop): Promise<Client[]> {
  const { alpha, beta, sync } = shop;
  await beta.stop();
  const made: Client[] = [];
  while ((await count(alpha, 'tablesync_batches_out')) < defaultInitialSyncPolicy.window - 1) {
    const built = await alpha.batchesBuilt(sync.name);
    const row = client(made.length, 'waiting');
    await insertClients(alpha, [row]);
    made.push(row);
    await cluster.waitFor(`alpha to build a batch for ${row.email}`, async () => (await alpha.batchesBuilt(sync.name)) > built);
  }
  return made;
}

// ---------------------------------------------------------------- crashes

describeEachPair(
  'initial sync killed in the middle',
  (pair) => {
    it(
      'resumes after a SIGKILL of the command and of the receiving daemon: every row once on the peer, no gap, no duplicate',
      async ({ expect, onTestFinished }) => {
        const cluster = newCluster({ onTestFinished });
        const shop = await createShop(cluster, pair);
        const { alpha, beta, sync } = shop;
        await insertClients(alpha, Array.from({ length: bigTable }, (_, i) => client(i)));
        await cluster.startAll();
        const waiting = await holdTheWindow(cluster, shop);
        const total = bigTable + waiting.length;
        const ordinary = await alpha.batchesBuilt(sync.name);

        // The command, killed once it has queued its first chunk.
        const first = startInitialSync(alpha, { onTestFinished }, '--table', '1');
        await first.waitFor(`${syncName}: clients: `, 60_000);
        first.child.kill('SIGKILL');
        await first.exited;
        expect(firstProgress(first.output(), 'clients')).toEqual({ queued: chunkRows, total });
        expect(first.output()).not.toContain('done:');
        expect(JSON.parse((await alpha.cursor(sync.name, 'initial:1')) ?? '{}')).toMatchObject({ queued: chunkRows, done: false });

        // The same command again, and the receiving daemon killed while it applies the first chunk.
        await beta.start();
        const second = startInitialSync(alpha, { onTestFinished }, '--table', '1');
        const applied = async (): Promise<number> => Number((await beta.cursor(sync.name, 'in')) ?? 0);
        await cluster.waitFor(
          'beta to be applying the first initial batch',
          async () => (await applied()) >= ordinary && beta.waitingBatches(sync.name).length > 0 && (await beta.databaseBusy()),
          { intervalMs: 5, timeoutMs: 60_000 },
        );
        await beta.kill();
        await beta.start();

        const result = await finished(second);
        expect(result.code, result.stdout).toBe(0);
        const resumed = firstProgress(result.stdout, 'clients');
        expect(resumed.queued).toBeGreaterThan(chunkRows);
        expect(resumed.total).toBe(total);
        expect(doneRows(result)).toBe(total - chunkRows);
        expect(result.stdout, 'the start went with the first chunk: no second backup is asked of beta').toContain('resumed the initial sync begun earlier');

        await cluster.waitSettled({ timeoutMs: 60_000 });
        expect(await count(beta, 'customers')).toBe(total);
        expect(await betaReceived(beta)).toEqual(await alphaSent(alpha));
        // Per-field versions only for the ordinary changes (the clients made to hold the window).
        const changed = waiting.map((c) => c.email).sort();
        expect({ alpha: await versioned(alpha), beta: await versioned(beta) }).toEqual({ alpha: changed, beta: changed });
        expect((await beta.backlog()).parked).toBe(0);
        expect.soft(await linkCounts(sync, 1)).toEqual(linkedOnBoth(total));
        expect(await outOfStep(sync, 1)).toEqual([]);
      },
      crashTestTimeout,
    );
  },
  dialectPairs.filter((p) => p.active === p.passive),
);

// ---------------------------------------------------------------- the application goes on

describeEachPair(
  'initial sync while the applications work',
  (pair) => {
    it('keeps the changes both applications make meanwhile: nothing goes backwards, every new row arrives once', async ({ expect, onTestFinished }) => {
      const cluster = newCluster({ onTestFinished });
      const shop = await createShop(cluster, pair);
      const { alpha, beta, sync } = shop;
      await insertClients(alpha, Array.from({ length: 300 }, (_, i) => client(i)));
      await insertProducts(alpha, 50);
      await cluster.startAll();
      const waiting = await holdTheWindow(cluster, shop);

      // The command queues the clients (its first chunk) and waits for room: the products are not queued yet.
      const command = startInitialSync(alpha, { onTestFinished });
      await command.waitFor(`${syncName}: clients: `, 60_000);
      const sent = (i: number): string => `client-${i}@example.com`;

      // alpha's application: records already queued and not yet queued, and new ones.
      await alpha.exec("UPDATE clients SET name = 'alpha, queued' WHERE email = ?", [sent(1)]);
      await alpha.exec("UPDATE clients SET name = 'alpha first' WHERE email = ?", [sent(3)]);
      await alpha.exec("UPDATE products SET title = 'alpha, not yet queued', price = 1 WHERE sku = 'SKU-1'");
      await alpha.exec("UPDATE products SET sku = 'SKU-2-moved' WHERE sku = 'SKU-2'");
      const during = Array.from({ length: 5 }, (_, i) => client(i, 'during'));
      await insertClients(alpha, during);
      await alpha.exec("INSERT INTO products (sku, title, price) VALUES ('NEW-1', 'new during', 7), ('NEW-2', 'new during', 8)");

      await beta.start();
      // beta's application edits records it has received, once it has them.
      await cluster.waitFor('beta to receive the queued clients', async () => (await count(beta, 'customers', 'WHERE email_address = ?', [sent(299)])) === 1, { timeoutMs: 60_000 });
      await beta.exec("UPDATE customers SET company_name = 'beta, received' WHERE email_address = ?", [sent(2)]);
      await clockTick();
      await beta.exec("UPDATE customers SET company_name = 'beta last' WHERE email_address = ?", [sent(3)]);
      await beta.exec("UPDATE customers SET company_name = 'beta first' WHERE email_address = ?", [sent(4)]);
      await clockTick();
      await alpha.exec("UPDATE clients SET name = 'alpha last' WHERE email = ?", [sent(4)]);
      const later = Array.from({ length: 5 }, (_, i) => client(i, 'later'));
      await insertClients(alpha, later);

      const result = await finished(command);
      expect(result.code, result.stdout).toBe(0);
      // Rows inserted meanwhile may or may not be read by the command too: at least all the others were.
      expect(doneRows(result)).toBeGreaterThanOrEqual(300 + waiting.length + during.length + 52);
      await cluster.waitSettled({ timeoutMs: 60_000 });

      const clients = 300 + waiting.length + during.length + later.length;
      expect({ alpha: await count(alpha, 'clients'), beta: await count(beta, 'customers') }).toEqual({ alpha: clients, beta: clients });
      expect({ alpha: await count(alpha, 'products'), beta: await count(beta, 'articles') }).toEqual({ alpha: 52, beta: 52 });
      expect(await betaReceived(beta)).toEqual(await alphaSent(alpha));
      expect((await beta.rows('articles', 'article_id')).map((r) => [r.code, r.label, r.price]).sort(byFirst)).toEqual(
        (await alpha.rows('products', 'id')).map((r) => [r.sku, r.title, r.price]).sort(byFirst),
      );
      const names = async (email: string): Promise<[string | null, string | null]> => [(await alphaRow(alpha, email)).name ?? null, (await betaRow(beta, email)).company_name ?? null];
      expect({
        'queued, then changed on alpha': await names(sent(1)),
        'received, then changed on beta': await names(sent(2)),
        'alpha first, beta last': await names(sent(3)),
        'beta first, alpha last': await names(sent(4)),
        untouched: await names(sent(5)),
      }).toEqual({
        'queued, then changed on alpha': ['alpha, queued', 'alpha, queued'],
        'received, then changed on beta': ['beta, received', 'beta, received'],
        'alpha first, beta last': ['beta last', 'beta last'],
        'beta first, alpha last': ['alpha last', 'alpha last'],
        untouched: ['client 5', 'client 5'],
      });
      expect(await beta.query<Record<string, unknown>>("SELECT code, label, price FROM articles WHERE code IN ('SKU-1', 'SKU-2', 'SKU-2-moved') ORDER BY code")).toEqual([
        { code: 'SKU-1', label: 'alpha, not yet queued', price: 1 },
        { code: 'SKU-2-moved', label: 'product 2', price: 102 },
      ]);
      for (const c of [...waiting, ...during, ...later]) expect(await betaRow(beta, c.email)).toMatchObject({ company_name: c.name });
      // Per-field versions only for what the applications changed: none for the rows they left alone.
      const changed = [...[...waiting, ...during, ...later].map((c) => c.email), sent(1), sent(2), sent(3), sent(4)].sort();
      expect({ alpha: await versioned(alpha), beta: await versioned(beta) }).toEqual({ alpha: changed, beta: changed });
      expect({ alpha: (await alpha.backlog()).parked, beta: (await beta.backlog()).parked }).toEqual({ alpha: 0, beta: 0 });
      expect.soft(await linkCounts(sync, 1)).toEqual(linkedOnBoth(clients));
      expect.soft(await linkCounts(sync, 10)).toEqual(linkedOnBoth(52));
      expect(await outOfStep(sync, 1)).toEqual([]);
      expect(await outOfStep(sync, 10)).toEqual([]);
    }, testTimeout);
  },
  dialectPairs.filter((p) => p.active === p.passive),
);

// ---------------------------------------------------------------- whole tables

describeEachPair(
  'initial sync of whole tables',
  (pair) => {
    it('sends every row that existed before setup, creates each once on the peer, links it and keeps no per-field versions', async ({ expect, onTestFinished }) => {
      const cluster = newCluster({ onTestFinished });
      const shop = await createShop(cluster, pair);
      const { alpha, beta, sync } = shop;
      // Before the first setup: no trigger sees these.
      const odd: Client[] = [
        { name: "O'Brien & Söhne \"GmbH\"", email: 'obrien@example.com', phone: '', credit: 0, notes: null },
        { name: '😀 Ünïcödé 中文', email: 'unicode@example.com', phone: null, credit: -5, notes: 'x' },
        { name: null, email: 'no-name@example.com', phone: '+0', credit: null, notes: null },
        { name: 'n'.repeat(80), email: 'long@example.com', phone: '\\ back\\slash', credit: 2147483647, notes: 'y' },
      ];
      const clients = [...odd, ...Array.from({ length: 296 }, (_, i) => client(i))];
      await insertClients(alpha, clients);
      // And one client alpha had deleted (its status column says so) before tablesync came.
      await alpha.exec("INSERT INTO clients (name, email, phone, record_status) VALUES ('deleted before setup', 'deleted@example.com', '+1 999', 2)");
      await insertProducts(alpha, 25);
      await cluster.startAll();
      expect(await alpha.backlog()).toEqual({ journal: 0, outbox: 0, batchesOut: 0, parked: 0 });

      const result = await initialSync(alpha, expect);
      // Every row: the deleted client may travel (to be created deleted) or not.
      expect([clients.length + 25, clients.length + 1 + 25]).toContain(doneRows(result));
      expect(result.stdout).toContain(`${syncName}: clients: 100% 301/301 rows`);
      expect(result.stdout).toContain(`${syncName}: products: 100% 25/25 rows`);

      // Exactly one record on beta for each, with alpha's values for every field that travels alpha → beta.
      // (The deleted client is left out here, and checked on its own below.)
      const live = { alpha: 'WHERE record_status <> 2', beta: "WHERE email_address <> 'deleted@example.com'" };
      expect(await count(beta, 'customers', live.beta)).toBe(clients.length);
      expect(await count(beta, 'articles')).toBe(25);
      expect(await betaReceived(beta, live.beta)).toEqual(await alphaSent(alpha, live.alpha));
      expect((await beta.rows('articles', 'article_id')).map((r) => [r.code, r.label, r.price]).sort(byFirst)).toEqual(
        (await alpha.rows('products', 'id')).map((r) => [r.sku, r.title, r.price]).sort(byFirst),
      );
      // What alpha does not send (credit limit: download; notes: off) did not travel.
      expect(await count(beta, 'customers', 'WHERE credit IS NOT NULL OR remarks IS NOT NULL')).toBe(0);
      // The deleted client does not come back to life on beta: no record, or one in beta's own deleted status.
      const deleted = await beta.query<Record<string, unknown>>("SELECT state FROM customers WHERE email_address = 'deleted@example.com'");
      expect.soft(deleted.filter((r) => r.state !== 'deleted'), 'beta holds alpha’s deleted client as a live record').toEqual([]);
      await cluster.waitSettled();
      // The command queues its batches for alpha's daemon to send: their first send is logged as a send, with its events, not as a resend.
      const sentEvents = alpha.logLines().filter((l) => l.msg === 'batch sent').reduce((sum, l) => sum + Number(l.events), 0);
      expect(sentEvents, "events in alpha's 'batch sent' lines").toBeGreaterThanOrEqual(doneRows(result));
      expect({ alpha: await fieldVersions(alpha), beta: await fieldVersions(beta) }).toEqual({ alpha: 0, beta: 0 });
      const created = await count(beta, 'customers');
      expect(created - deleted.length).toBe(clients.length);
      expect.soft(await linkCounts(sync, 1)).toEqual(linkedOnBoth(created));
      expect.soft(await linkCounts(sync, 10)).toEqual(linkedOnBoth(25));

      // The links carry ordinary changes both ways from now on, without new records.
      await beta.exec("UPDATE customers SET company_name = 'renamed on beta' WHERE email_address = 'unicode@example.com'");
      await alpha.exec("UPDATE clients SET name = 'renamed on alpha', phone = '+1 000' WHERE email = 'client-5@example.com'");
      await cluster.waitFor('both renames to cross', async () => (await alphaRow(alpha, 'unicode@example.com')).name === 'renamed on beta' && (await betaRow(beta, 'client-5@example.com')).company_name === 'renamed on alpha');
      await cluster.waitSettled();
      expect(await betaRow(beta, 'client-5@example.com')).toMatchObject({ phone_number: '+1 000' });
      expect({ alpha: await count(alpha, 'clients'), beta: await count(beta, 'customers') }).toEqual({ alpha: clients.length + 1, beta: created });
      expect(await betaReceived(beta, live.beta)).toEqual(await alphaSent(alpha, live.alpha));
      expect(await outOfStep(sync, 1)).toEqual([]);
      expect(await outOfStep(sync, 10)).toEqual([]);
    }, testTimeout);
  },
  dialectPairs,
);

// ---------------------------------------------------------------- again, one table, one field, match

describeEachPair(
  'initial sync again, of one table, of one field, and by match',
  (pair) => {
    it('says there is nothing left to send once it finished, and sends everything again with --restart without duplicates', async ({ expect, onTestFinished }) => {
      const cluster = newCluster({ onTestFinished });
      const { alpha, beta, sync } = await createShop(cluster, pair);
      await insertClients(alpha, Array.from({ length: 60 }, (_, i) => client(i)));
      await insertProducts(alpha, 5);
      await cluster.startAll();

      expect(doneRows(await initialSync(alpha, expect))).toBe(65);
      await cluster.waitSettled();
      expect(await betaReceived(beta)).toEqual(await alphaSent(alpha));

      const again = await initialSync(alpha, expect);
      expect(again.stdout).toContain('nothing left to send');
      expect(again.stdout, 'nothing begins anew, so no backup is asked of beta').not.toContain('the receiving side backs itself up');
      expect(again.stdout).not.toContain('done:');

      // Ordinary changes since: alpha's has reached beta; beta's has not reached alpha when the command
      // reads alpha's rows again (alpha's daemon is down), so the initial batch carries the older name.
      await alpha.exec("UPDATE clients SET name = 'edited on alpha' WHERE email = 'client-4@example.com'");
      await cluster.waitFor('alpha’s edit to reach beta', async () => (await betaRow(beta, 'client-4@example.com')).company_name === 'edited on alpha');
      await cluster.waitSettled();
      await alpha.stop();
      await beta.exec("UPDATE customers SET company_name = 'edited on beta' WHERE email_address = 'client-3@example.com'");
      const restart = startInitialSync(alpha, { onTestFinished }, '--restart');
      await restart.waitFor('waiting for the peer to acknowledge', 30_000);
      expect(firstProgress(restart.output(), 'clients')).toEqual({ queued: 60, total: 60 });
      await alpha.start();
      const restarted = await finished(restart);
      expect(restarted.code, restarted.stdout).toBe(0);
      expect(doneRows(restarted)).toBe(65);
      // beta holds rows now: it backed itself up before it applied the rows sent again.
      expect(restarted.stdout).toMatch(new RegExp(`^instance beta \\(sync ${syncName}\\) backed up its synced tables and tablesync's state before applying anything \\(\\d+ rows\\): \\S+/beta-before-initial-sync-`, 'm'));
      await cluster.waitSettled();
      // Nothing created twice; beta's newer name survived the older one sent again, and reached alpha.
      expect({ customers: await count(beta, 'customers'), articles: await count(beta, 'articles') }).toEqual({ customers: 60, articles: 5 });
      expect(await betaReceived(beta)).toEqual(await alphaSent(alpha));
      expect([(await alphaRow(alpha, 'client-3@example.com')).name, (await betaRow(beta, 'client-3@example.com')).company_name]).toEqual(['edited on beta', 'edited on beta']);
      expect([(await alphaRow(alpha, 'client-4@example.com')).name, (await betaRow(beta, 'client-4@example.com')).company_name]).toEqual(['edited on alpha', 'edited on alpha']);
      expect({ alpha: await versioned(alpha), beta: await versioned(beta) }).toEqual({ alpha: ['client-3@example.com', 'client-4@example.com'], beta: ['client-3@example.com', 'client-4@example.com'] });
      expect.soft(await linkCounts(sync, 1)).toEqual(linkedOnBoth(60));
      expect.soft(await linkCounts(sync, 10)).toEqual(linkedOnBoth(5));
      expect(await outOfStep(sync, 1)).toEqual([]);
      expect(await outOfStep(sync, 10)).toEqual([]);
    }, testTimeout);

    it('sends only the table asked for, then one field only to linked records, and creates with that field only with --create', async ({ expect, onTestFinished }) => {
      const cluster = newCluster({ onTestFinished });
      const shop = await createShop(cluster, pair);
      const { alpha, beta, sync } = shop;
      const linked = Array.from({ length: 20 }, (_, i) => client(i));
      await insertClients(alpha, linked);
      await insertProducts(alpha, 15);
      await cluster.startAll();

      // One table.
      const products = await initialSync(alpha, expect, '--sync', syncName, '--table', '10');
      expect(doneRows(products)).toBe(15);
      expect(products.stdout).not.toContain('clients');
      await cluster.waitSettled();
      expect({ customers: await count(beta, 'customers'), articles: await count(beta, 'articles') }).toEqual({ customers: 0, articles: 15 });
      expect((await beta.rows('articles', 'article_id')).map((r) => [r.code, r.label, r.price]).sort(byFirst)).toEqual(
        (await alpha.rows('products', 'id')).map((r) => [r.sku, r.title, r.price]).sort(byFirst),
      );

      expect(doneRows(await initialSync(alpha, expect, '--sync', syncName, '--table', '1'))).toBe(20);
      await cluster.waitSettled();
      expect(await betaReceived(beta)).toEqual(await alphaSent(alpha));

      // Changes made while tablesync does not watch (capture triggers dropped, daemons down): new phones
      // and names for the linked clients, and clients beta has never heard of.
      await cluster.stopAll();
      await dropCapture(alpha);
      const unlinked = Array.from({ length: 10 }, (_, i) => client(i, 'unlinked'));
      await insertClients(alpha, unlinked);
      await alpha.exec(`UPDATE clients SET name = ${concat(alpha, "'new name '", 'id')}, phone = ${concat(alpha, "'new phone '", 'id')}`);
      await cluster.startAll();
      expect(await alpha.backlog()).toMatchObject({ journal: 0, outbox: 0 });

      // One field (phone, 4): only that field, only on records beta has linked.
      const phones = await initialSync(alpha, expect, '--field', '4');
      expect(doneRows(phones)).toBe(30);
      await cluster.waitSettled();
      expect(await count(beta, 'customers')).toBe(20);
      for (const c of linked.slice(0, 3)) {
        const id = (await alphaRow(alpha, c.email)).id;
        expect(await betaRow(beta, c.email)).toMatchObject({ company_name: c.name, phone_number: `new phone ${id}` });
      }
      expect(await count(beta, 'customers', "WHERE phone_number LIKE 'new phone %'")).toBe(20);
      expect(await count(beta, 'customers', "WHERE company_name LIKE 'new name %'")).toBe(0);

      // A field that never travels from alpha is refused, as bad usage.
      const refused = await alpha.cli('initial-sync', '--field', '5');
      expect({ code: refused.code, stderr: refused.stderr.trim() }).toEqual({ code: 2, stderr: expect.stringContaining('field 5 (clients.credit_limit) is download here') });

      // One field (name, 2) with --create: beta creates the records it lacks, with that field only.
      const names = await initialSync(alpha, expect, '--sync', syncName, '--field', '2', '--create');
      expect(doneRows(names)).toBe(30);
      await cluster.waitSettled();
      expect(await count(beta, 'customers')).toBe(30);
      expect(await count(beta, 'customers', "WHERE company_name LIKE 'new name %'")).toBe(30);
      for (const c of unlinked.slice(0, 3)) {
        const id = (await alphaRow(alpha, c.email)).id;
        expect(await beta.query<Record<string, unknown>>('SELECT email_address, phone_number, credit FROM customers WHERE company_name = ?', [`new name ${id}`])).toEqual([
          { email_address: null, phone_number: null, credit: null },
        ]);
      }
      expect({ alpha: await fieldVersions(alpha), beta: await fieldVersions(beta) }).toEqual({ alpha: 0, beta: 0 });
      expect(await count(beta, 'articles')).toBe(15);
      expect.soft(await linkCounts(sync, 1)).toEqual(linkedOnBoth(30));
      expect.soft(await linkCounts(sync, 10)).toEqual(linkedOnBoth(15));
    }, testTimeout);

    it('links records both sides already have by the match fields instead of creating them again', async ({ expect, onTestFinished }) => {
      const cluster = newCluster({ onTestFinished });
      const { alpha, beta, sync } = await createShop(cluster, pair, { match: true });
      const shared = Array.from({ length: 10 }, (_, i) => client(i, 'shared'));
      const alphaOnly = Array.from({ length: 5 }, (_, i) => client(i, 'alpha-only'));
      await insertClients(alpha, [...alphaOnly.slice(0, 2), ...shared, ...alphaOnly.slice(2)]);
      // Beta has the shared clients already, under other names and ids, with fields of its own.
      await inTransaction(beta, async () => {
        await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('beta only 1', 'beta-only-1@example.com'), ('beta only 2', 'beta-only-2@example.com')");
        for (const [i, c] of shared.entries()) {
          await beta.exec('INSERT INTO customers (company_name, email_address, phone_number, credit, remarks) VALUES (?, ?, ?, ?, ?)', [`beta's name ${i}`, c.email, `beta phone ${i}`, 1000 + i, `beta remark ${i}`]);
        }
      });
      const idsBefore = new Map((await beta.query<{ customer_id: unknown; email_address: unknown }>('SELECT customer_id, email_address FROM customers')).map((r) => [text(r.email_address), text(r.customer_id)]));
      await cluster.startAll();

      expect(doneRows(await initialSync(alpha, expect, '--table', '1'))).toBe(15);
      await cluster.waitSettled();
      expect(await count(beta, 'customers')).toBe(2 + 10 + 5);
      for (const [i, c] of shared.entries()) {
        // The same record as before, now with alpha's values for what alpha sends; beta's own fields stay.
        expect(await betaRow(beta, c.email)).toEqual({
          customer_id: idsBefore.get(c.email),
          company_name: c.name,
          email_address: c.email,
          phone_number: c.phone,
          credit: String(1000 + i),
          remarks: `beta remark ${i}`,
        });
      }
      for (const c of alphaOnly) expect(await betaRow(beta, c.email)).toMatchObject({ company_name: c.name, phone_number: c.phone, credit: null, remarks: null });
      for (const n of [1, 2]) expect(await betaRow(beta, `beta-only-${n}@example.com`)).toMatchObject({ company_name: `beta only ${n}` });
      const links = await beta.links(sync.name, 1);
      for (const c of shared) expect(links.get(idsBefore.get(c.email) ?? '?'), c.email).toBe((await alphaRow(alpha, c.email)).id);
      expect.soft(await linkCounts(sync, 1)).toEqual(linkedOnBoth(15));
      expect({ alpha: await fieldVersions(alpha), beta: await fieldVersions(beta) }).toEqual({ alpha: 0, beta: 0 });

      // And back: beta's initial sync finds the linked ones linked, creates its own two on alpha, and sends its credit.
      expect(doneRows(await initialSync(beta, expect, '--table', '1'))).toBe(17);
      await cluster.waitSettled();
      expect(await count(alpha, 'clients')).toBe(17);
      expect(await count(beta, 'customers')).toBe(17);
      expect(await alphaRow(alpha, 'shared-3@example.com')).toMatchObject({ name: 'shared 3', credit_limit: '1003', notes: 'alpha only' });
      expect(await alphaRow(alpha, 'beta-only-2@example.com')).toMatchObject({ name: 'beta only 2', credit_limit: null, notes: null });
      expect({ alpha: await fieldVersions(alpha), beta: await fieldVersions(beta) }).toEqual({ alpha: 0, beta: 0 });
      expect(await outOfStep(sync, 1)).toEqual([]);
    }, testTimeout);
  },
  dialectPairs.filter((p) => p.active === p.passive),
);
