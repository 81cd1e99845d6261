import { it } from 'vitest';
import { alphaClient, alphaId, betaCustomer, betaId, createCrmPair, syncName, type CrmPair } from '../support/crm.js';
import { clockTick, describeEachPair, newCluster, type DialectPair, type SyncCluster, type SyncInstance, type TransportKind } from '../support/sync-harness.js';

/**
 * The core of the engine suite (changes on both sides, a conflict, a burst)
 * over every transport the daemons can be connected by, with real daemons:
 * http and https (the passive daemon listens on a free loopback port; https
 * with a certificate of a private CA that the active side trusts through
 * `tls: { ca }`), ftp (both daemons clients of an FTP server run by the
 * test) and a mixed pair (the active side reads and writes the FTP
 * server's folders on disk, the passive side goes through the server).
 */

/** Generous: the daemons share this machine's two cores with every other test running at the time. */
const testTimeout = 240_000;

const sqlite: DialectPair = { active: 'sqlite', passive: 'sqlite' };
const mysqlToSqlite: DialectPair = { active: 'mysql', passive: 'sqlite' };
/** PostgreSQL on each end of the http transport: the pair that no other suite runs (postgres↔sqlite), and a passive PostgreSQL that answers the calls. */
const postgresToSqlite: DialectPair = { active: 'postgres', passive: 'sqlite' };
const sqliteToPostgres: DialectPair = { active: 'sqlite', passive: 'postgres' };

const configurations: readonly { transport: TransportKind; pairs: readonly DialectPair[] }[] = [
  { transport: 'http', pairs: [sqlite, mysqlToSqlite, postgresToSqlite, sqliteToPostgres] },
  { transport: 'https', pairs: [sqlite] },
  { transport: 'ftp', pairs: [sqlite] },
  { transport: 'folder/ftp', pairs: [sqlite] },
];

/** That the daemons really were connected as the test says: their files, and the FTP server's logins. */
function expectConnectedBy(cluster: SyncCluster, crm: CrmPair, transport: TransportKind): void {
  const types = [crm.alpha, crm.beta].map((side) => (side.end(syncName).transport().type as string) ?? '');
  const expected: Record<TransportKind, string[]> = {
    folder: ['folder', 'folder'],
    http: ['http', 'http'],
    https: ['http', 'http'],
    ftp: ['ftp', 'ftp'],
    'folder/ftp': ['folder', 'ftp'],
    'ftp/folder': ['ftp', 'folder'],
  };
  if (types.join() !== expected[transport].join()) throw new Error(`the daemons travel by ${types.join(' and ')}, not ${transport}`);
  if (transport === 'https' && !String(crm.alpha.end(syncName).transport().url).startsWith('https://127.0.0.1:')) throw new Error('alpha does not call https');
  if (transport.includes('ftp') && cluster.ftpServer.logins === 0) throw new Error('nobody logged in to the FTP server');
}

async function namesAndEmails(instance: SyncInstance): Promise<string[]> {
  const [table, name, email] = instance.name === 'alpha' ? ['clients', 'name', 'email'] : ['customers', 'company_name', 'email_address'];
  const rows = await instance.query<Record<string, unknown>>(`SELECT ${name} AS name, ${email} AS email FROM ${table}`);
  return rows.map((row) => `${String(row.name)} <${String(row.email)}>`).sort();
}

/** Beta first, and alpha only once beta's changes left: alpha then always meets them while its own are unsent (see conflicts.test.ts). */
async function startOneAfterTheOther(cluster: SyncCluster, crm: CrmPair): Promise<void> {
  const { alpha, beta, sync } = crm;
  const built = await beta.batchesBuilt(sync.name);
  await beta.start();
  await cluster.waitFor('beta to send its changes', async () => (await beta.batchesBuilt(sync.name)) > built && (await beta.allBuiltSent(sync.name)), { timeoutMs: 60_000 });
  await alpha.start();
}

/** SQL appending `suffix` to `column`'s text, in the instance's dialect. */
function appended(instance: SyncInstance, column: string, suffix: string): string {
  return instance.dialect === 'mysql' ? `CONCAT(${column}, '${suffix}')` : `${column} || '${suffix}'`;
}

/** Inserts `count` rows in one transaction, 50 per statement. */
async function insertMany(instance: SyncInstance, prefix: string, count: number): Promise<void> {
  const [table, name, email] = instance.name === 'alpha' ? ['clients', 'name', 'email'] : ['customers', 'company_name', 'email_address'];
  await instance.exec(instance.dialect === 'mysql' ? 'START TRANSACTION' : 'BEGIN');
  for (let from = 0; from < count; from += 50) {
    const ids = Array.from({ length: Math.min(50, count - from) }, (_, i) => from + i);
    await instance.exec(`INSERT INTO ${table} (${name}, ${email}) VALUES ${ids.map(() => '(?, ?)').join(', ')}`, ids.flatMap((i) => [`${prefix} ${i}`, `${prefix}-${i}@example.com`]));
  }
  await instance.exec('COMMIT');
}

for (const { transport, pairs } of configurations) {
  describeEachPair(
    `over ${transport}`,
    (pair) => {
      it('creates, updates and deletes on both sides, and both converge', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
        const cluster = newCluster({ onTestFinished });
        const crm = await createCrmPair(cluster, pair, { transport });
        const { alpha, beta } = crm;
        await cluster.startAll();

        await alpha.exec("INSERT INTO clients (name, email, phone) VALUES ('Acme', 'acme@example.com', '+1 555 0100')");
        await alpha.exec("INSERT INTO clients (name, email) VALUES ('Globex', 'globex@example.com')");
        await beta.exec("INSERT INTO customers (company_name, email_address, credit) VALUES ('Initech', 'initech@example.com', 5000)");
        await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('Umbrella', 'umbrella@example.com')");
        await cluster.waitInStep(1, { timeoutMs: 60_000 });
        expectConnectedBy(cluster, crm, transport);
        expect(await namesAndEmails(beta)).toEqual(['Acme <acme@example.com>', 'Globex <globex@example.com>', 'Initech <initech@example.com>', 'Umbrella <umbrella@example.com>']);
        expect(await namesAndEmails(alpha)).toEqual(await namesAndEmails(beta));
        // One-way fields went their way only.
        expect(await betaCustomer(beta, 'acme@example.com')).toMatchObject({ phone_number: '+1 555 0100' });
        expect(await alphaClient(alpha, 'initech@example.com')).toMatchObject({ credit_limit: '5000' });

        // Updates on either side, of records made on either side.
        await alpha.exec("UPDATE clients SET name = 'Acme Corporation' WHERE email = 'acme@example.com'");
        await alpha.exec("UPDATE clients SET name = 'Initech Ltd' WHERE email = 'initech@example.com'");
        await beta.exec("UPDATE customers SET email_address = 'hello@globex.example' WHERE email_address = 'globex@example.com'");
        await beta.exec("UPDATE customers SET company_name = 'Umbrella plc' WHERE email_address = 'umbrella@example.com'");
        await cluster.waitInStep(1, { timeoutMs: 60_000 });
        expect(await betaCustomer(beta, 'acme@example.com')).toMatchObject({ company_name: 'Acme Corporation' });
        expect(await betaCustomer(beta, 'initech@example.com')).toMatchObject({ company_name: 'Initech Ltd' });
        expect(await alphaClient(alpha, 'hello@globex.example')).toMatchObject({ name: 'Globex' });
        expect(await alphaClient(alpha, 'umbrella@example.com')).toMatchObject({ name: 'Umbrella plc' });

        // Deletes: a soft one and a hard one on each side.
        const hardOnBeta = await alphaId(alpha, 'umbrella@example.com');
        const hardOnAlpha = await betaId(beta, 'hello@globex.example');
        await alpha.exec("UPDATE clients SET record_status = 2 WHERE email = 'acme@example.com'");
        await alpha.exec("DELETE FROM clients WHERE email = 'hello@globex.example'");
        await beta.exec("UPDATE customers SET state = 'deleted' WHERE email_address = 'initech@example.com'");
        await beta.exec("DELETE FROM customers WHERE email_address = 'umbrella@example.com'");
        await cluster.waitInStep(1, { timeoutMs: 60_000 });
        await cluster.waitSettled({ timeoutMs: 60_000 });

        expect(await betaCustomer(beta, 'acme@example.com')).toMatchObject({ state: 'deleted' });
        expect(await beta.query('SELECT state FROM customers WHERE customer_id = ?', [hardOnAlpha])).toEqual([{ state: 'deleted' }]);
        expect(await alphaClient(alpha, 'initech@example.com')).toMatchObject({ record_status: '2' });
        expect((await alpha.query('SELECT record_status FROM clients WHERE id = ?', [hardOnBeta])).map((r) => String(r.record_status))).toEqual(['2']);
        // Nothing was created twice.
        expect((await alpha.query('SELECT id FROM clients')).length).toBe(3);
        expect((await beta.query('SELECT customer_id FROM customers')).length).toBe(3);
        for (const side of [alpha, beta]) {
          expect((await side.backlog()).parked, `${side.name} parked nothing`).toBe(0);
          expect(await side.refusedBatches(), `${side.name} refused no batch`).toEqual([]);
        }
      });

      it('resolves a conflict under newest-wins the same way on both sides', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
        const cluster = newCluster({ onTestFinished });
        const crm = await createCrmPair(cluster, pair, { transport, conflicts: 'newest-wins' });
        const { alpha, beta } = crm;
        await cluster.startAll();
        await alpha.exec("INSERT INTO clients (name, email) VALUES ('one', 'one@example.com')");
        await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('two', 'two@example.com')");
        await cluster.waitInStep(1, { timeoutMs: 60_000 });
        await cluster.waitSettled({ timeoutMs: 60_000 });
        await cluster.stopAll();

        // Record one: beta's edit is the newer; record two: alpha's.
        await alpha.exec("UPDATE clients SET name = 'one by alpha' WHERE email = 'one@example.com'");
        await clockTick();
        await beta.exec("UPDATE customers SET company_name = 'one by beta' WHERE email_address = 'one@example.com'");
        await clockTick();
        await beta.exec("UPDATE customers SET company_name = 'two by beta' WHERE email_address = 'two@example.com'");
        await clockTick();
        await alpha.exec("UPDATE clients SET name = 'two by alpha' WHERE email = 'two@example.com'");
        await startOneAfterTheOther(cluster, crm);

        await cluster.waitInStep(1, { timeoutMs: 60_000 });
        await cluster.waitSettled({ timeoutMs: 60_000 });
        await cluster.waitInStep();
        expectConnectedBy(cluster, crm, transport);
        for (const side of [alpha, beta]) {
          expect(await namesAndEmails(side), `${side.name} holds the newer edit of each record`).toEqual(['one by beta <one@example.com>', 'two by alpha <two@example.com>']);
          expect(await side.openConflicts(), `${side.name} has no conflict left open`).toEqual([]);
          expect((await side.backlog()).parked).toBe(0);
        }
        // Seen and logged with both values by the side that met each conflict.
        const logged = [alpha, beta].flatMap((side) =>
          side
            .logLines()
            .filter((line) => line.level === 'warn' && /conflict/i.test(line.msg))
            .map((line) => [line.ours, line.theirs].map(String).sort().join(' / ')),
        );
        expect(logged).toEqual(expect.arrayContaining(['one by alpha / one by beta', 'two by alpha / two by beta']));
      });

      it('carries a burst of several hundred changes made on both sides whole: nothing lost, nothing twice', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
        const cluster = newCluster({ onTestFinished });
        const crm = await createCrmPair(cluster, pair, { transport });
        const { alpha, beta } = crm;
        await cluster.startAll();

        await Promise.all([insertMany(alpha, 'from alpha', 300), insertMany(beta, 'from beta', 200)]);
        // While the inserts travel, each side edits and deletes some of its own (each side's ids are contiguous: one transaction).
        await alpha.exec(`UPDATE clients SET name = ${appended(alpha, 'name', ' (edited on alpha)')} WHERE email LIKE 'from alpha-%' AND id % 3 = 0`);
        await beta.exec(`UPDATE customers SET company_name = ${appended(beta, 'company_name', ' (edited on beta)')} WHERE email_address LIKE 'from beta-%' AND customer_id % 4 = 0`);
        await alpha.exec("UPDATE clients SET record_status = 2 WHERE email LIKE 'from alpha-%' AND id % 15 = 1");
        await beta.exec("UPDATE customers SET state = 'deleted' WHERE email_address LIKE 'from beta-%' AND customer_id % 20 = 1");
        await cluster.waitInStep(1, { timeoutMs: 150_000 });
        await cluster.waitSettled({ timeoutMs: 60_000 });
        await cluster.waitInStep();

        const alphaRows = await namesAndEmails(alpha);
        const betaRows = await namesAndEmails(beta);
        expectConnectedBy(cluster, crm, transport);
        expect(alphaRows).toHaveLength(500);
        expect(betaRows).toEqual(alphaRows);
        expect(new Set(alphaRows.map((r) => r.replace(/^.*</, ''))).size, 'every email once').toBe(500);
        expect(alphaRows.filter((r) => r.includes('(edited on alpha)')).length).toBe(100);
        expect(alphaRows.filter((r) => r.includes('(edited on beta)')).length).toBe(50);
        expect((await alpha.query('SELECT id FROM clients WHERE record_status = 2')).length).toBe(30);
        expect((await beta.query("SELECT customer_id FROM customers WHERE state = 'deleted'")).length).toBe(30);
        for (const side of [alpha, beta]) {
          expect((await side.links(syncName, 1)).size, `${side.name} links every record`).toBe(500);
          expect((await side.backlog()).parked).toBe(0);
          expect(await side.refusedBatches()).toEqual([]);
        }
      });
    },
    pairs,
  );
}

describeEachPair(
  'latency over http',
  () => {
    it('carries a change to the other side within about one `every` period (200ms)', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
      const cluster = newCluster({ onTestFinished });
      const { alpha, beta } = await createCrmPair(cluster, sqlite, { transport: 'http', every: '200ms' });
      await cluster.startAll();
      await alpha.exec("INSERT INTO clients (name, email) VALUES ('warm-up', 'timed@example.com')");
      await cluster.waitInStep(1, { timeoutMs: 60_000 });
      await cluster.waitSettled({ timeoutMs: 60_000 });

      const timings: Record<string, number[]> = { 'alpha → beta': [], 'beta → alpha': [] };
      for (let round = 0; round < 5; round += 1) {
        for (const [direction, from, to] of [
          ['alpha → beta', alpha, beta],
          ['beta → alpha', beta, alpha],
        ] as const) {
          const value = `${direction} ${round}`;
          if (from === alpha) await alpha.exec('UPDATE clients SET name = ? WHERE email = ?', [value, 'timed@example.com']);
          else await beta.exec('UPDATE customers SET company_name = ? WHERE email_address = ?', [value, 'timed@example.com']);
          const committed = Date.now();
          await cluster.waitFor(
            `${value} to reach ${to.name}`,
            async () => ((to === alpha ? await alphaClient(alpha, 'timed@example.com') : await betaCustomer(beta, 'timed@example.com'))?.[to === alpha ? 'name' : 'company_name'] ?? '') === value,
            { intervalMs: 10, timeoutMs: 60_000 },
          );
          timings[direction]?.push(Date.now() - committed);
          await cluster.waitSettled({ timeoutMs: 60_000 });
        }
      }
      // The active side sends at its next exchange and the passive side applies on arrival: one period
      // and the work; the other way, the passive side builds at its next exchange and the active side
      // fetches at its own: up to two periods. The median of five, under two seconds, leaves room for
      // a loaded machine (one sample may meet a busy moment) while still catching a transport that
      // waits for its own poll instead of the sync's `every`.
      const shown = JSON.stringify(timings);
      for (const samples of Object.values(timings)) {
        const median = [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)] ?? Infinity;
        expect(median, `milliseconds from commit to arrival: ${shown}`).toBeLessThan(2_000);
      }
    });
  },
  [sqlite],
);
