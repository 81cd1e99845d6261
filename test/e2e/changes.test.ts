import { it } from 'vitest';
import { adapterFor } from '../../src/db/dialects.js';
import { readAheadMinimum } from '../../src/engine/read-ahead.js';
import { alphaClient, alphaId, betaCustomer, betaId, createCrmPair } from '../support/crm.js';
import type { DialectName } from '../../src/config/types.js';
import { describeEachPair, newCluster, waitFor, type LogLine, type SyncInstance } from '../support/sync-harness.js';

describeEachPair('inserts, updates and deletes made on both sides', (pair) => {
  it('creates each new record once on the other side and carries updates made on either side', async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta } = await createCrmPair(cluster, pair);
    await cluster.startAll();

    await alpha.exec("INSERT INTO clients (name, email) VALUES ('Acme', 'acme@example.com')");
    await alpha.exec("INSERT INTO clients (name, email) VALUES ('Globex', 'globex@example.com')");
    await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('Initech', 'initech@example.com')");
    await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('Umbrella', 'umbrella@example.com')");
    await cluster.waitInStep();

    expect(await beta.query('SELECT company_name, email_address FROM customers ORDER BY email_address')).toEqual([
      { company_name: 'Acme', email_address: 'acme@example.com' },
      { company_name: 'Globex', email_address: 'globex@example.com' },
      { company_name: 'Initech', email_address: 'initech@example.com' },
      { company_name: 'Umbrella', email_address: 'umbrella@example.com' },
    ]);
    expect(await alpha.query('SELECT name, email FROM clients ORDER BY email')).toEqual([
      { name: 'Acme', email: 'acme@example.com' },
      { name: 'Globex', email: 'globex@example.com' },
      { name: 'Initech', email: 'initech@example.com' },
      { name: 'Umbrella', email: 'umbrella@example.com' },
    ]);

    // Each side edits records of its own and records that came from the other side.
    await alpha.exec("UPDATE clients SET name = 'Acme Corporation' WHERE email = 'acme@example.com'");
    await alpha.exec("UPDATE clients SET name = 'Initech Ltd' WHERE email = 'initech@example.com'");
    await beta.exec("UPDATE customers SET email_address = 'hello@globex.example' WHERE email_address = 'globex@example.com'");
    await beta.exec("UPDATE customers SET company_name = 'Umbrella plc', email_address = 'info@umbrella.example' WHERE email_address = 'umbrella@example.com'");
    await cluster.waitInStep();

    expect(await alphaClient(alpha, 'hello@globex.example')).toMatchObject({ name: 'Globex' });
    expect(await alphaClient(alpha, 'info@umbrella.example')).toMatchObject({ name: 'Umbrella plc' });
    expect(await betaCustomer(beta, 'acme@example.com')).toMatchObject({ company_name: 'Acme Corporation' });
    expect(await betaCustomer(beta, 'initech@example.com')).toMatchObject({ company_name: 'Initech Ltd' });
    expect((await alpha.query('SELECT id FROM clients')).length).toBe(4);
    expect((await beta.query('SELECT customer_id FROM customers')).length).toBe(4);

    // Edits on both sides at once, to different fields of one record, all arrive.
    await alpha.exec("UPDATE clients SET name = 'Acme Group' WHERE email = 'acme@example.com'");
    await beta.exec("UPDATE customers SET email_address = 'group@acme.example' WHERE email_address = 'acme@example.com'");
    await cluster.waitInStep();
    expect(await alphaClient(alpha, 'group@acme.example')).toMatchObject({ name: 'Acme Group' });
    expect(await betaCustomer(beta, 'group@acme.example')).toMatchObject({ company_name: 'Acme Group' });

    await cluster.waitSettled();
    await cluster.waitInStep();
  });

  it('applies a burst of changes to linked records in one batch, read ahead where the database gains from it', async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta } = await createCrmPair(cluster, pair);
    // Under the default (auto), whether it reads ahead depends on the server's cache; this test's tables fit it.
    alpha.readAhead = 'always';
    beta.readAhead = 'always';
    await cluster.startAll();
    const count = readAheadMinimum * 2;
    const values = Array.from({ length: count }, (_, i) => `('Client ${i}', 'client${i}@example.com')`).join(', ');
    await alpha.exec(`INSERT INTO clients (name, email) VALUES ${values}`);
    await cluster.waitInStep();

    // One statement each, so that each side's changes travel in one batch. Made while that side's daemon is
    // stopped, so that its first exchange finds them all, before its read-ahead as well as in its transaction.
    await alpha.stop();
    await alpha.exec("UPDATE clients SET email = REPLACE(email, '@example.com', '@example.org')");
    await alpha.start();
    await cluster.waitInStep();
    await beta.stop();
    await beta.exec("UPDATE customers SET company_name = REPLACE(company_name, 'Client', 'Customer')");
    await beta.start();
    await cluster.waitInStep();

    const changed = async (instance: SyncInstance, table: string, name: string, email: string): Promise<number> =>
      Number((await instance.query(`SELECT COUNT(*) AS n FROM ${table} WHERE ${name} LIKE 'Customer %' AND ${email} LIKE '%@example.org'`))[0]?.n);
    expect(await changed(alpha, 'clients', 'name', 'email')).toBe(count);
    expect(await changed(beta, 'customers', 'company_name', 'email_address')).toBe(count);
    // Each burst's batch, sent and applied (the last of its size: alpha's inserts went as one too), and how many
    // of its records each side read ahead of the transaction that built or applied it.
    const readAhead = (instance: SyncInstance, line: (l: LogLine) => boolean): unknown =>
      instance
        .logLines()
        .filter(line)
        .map((l) => l.readAhead ?? 0)
        .at(-1);
    const sent = (l: LogLine): boolean => l.msg === 'batch sent' && l.events === count;
    const applied = (l: LogLine): boolean => l.msg === 'batch applied' && l.updated === count;
    const expected = (dialect: DialectName): number => (adapterFor(dialect).readAheadConnections > 0 ? count : 0);
    // A batch's line is logged just after its commit, which waitInStep may have seen first.
    const lines: [SyncInstance, (l: LogLine) => boolean][] = [
      [alpha, sent],
      [beta, applied],
      [beta, sent],
      [alpha, applied],
    ];
    await waitFor('both bursts logged as sent and as applied', () => lines.every(([instance, line]) => readAhead(instance, line) !== undefined));
    expect(readAhead(alpha, sent)).toBe(expected(pair.active));
    expect(readAhead(beta, applied)).toBe(expected(pair.passive));
    expect(readAhead(beta, sent)).toBe(expected(pair.passive));
    expect(readAhead(alpha, applied)).toBe(expected(pair.active));
  });

  it('turns a soft or hard delete on either side into the other side’s own deleted status', async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta } = await createCrmPair(cluster, pair);
    await cluster.startAll();

    for (const name of ['soft-a', 'hard-a', 'kept-a']) await alpha.exec('INSERT INTO clients (name, email) VALUES (?, ?)', [name, `${name}@example.com`]);
    for (const name of ['soft-b', 'hard-b', 'kept-b']) await beta.exec('INSERT INTO customers (company_name, email_address) VALUES (?, ?)', [name, `${name}@example.com`]);
    await cluster.waitInStep();
    const hardOnAlpha = await betaId(beta, 'hard-a@example.com');
    const hardOnBeta = await alphaId(alpha, 'hard-b@example.com');

    // Soft deletes: each side's own status column and value.
    await alpha.exec("UPDATE clients SET record_status = 2 WHERE email = 'soft-a@example.com'");
    await beta.exec("UPDATE customers SET state = 'deleted' WHERE email_address = 'soft-b@example.com'");
    // Hard deletes.
    await alpha.exec("DELETE FROM clients WHERE email = 'hard-a@example.com'");
    await beta.exec("DELETE FROM customers WHERE email_address = 'hard-b@example.com'");
    await cluster.waitInStep();
    await cluster.waitSettled();

    expect(await betaCustomer(beta, 'soft-a@example.com')).toMatchObject({ state: 'deleted' });
    expect(await alphaClient(alpha, 'soft-b@example.com')).toMatchObject({ record_status: '2' });
    expect(await beta.query('SELECT state FROM customers WHERE customer_id = ?', [hardOnAlpha])).toEqual([{ state: 'deleted' }]);
    expect(await alpha.query('SELECT record_status FROM clients WHERE id = ?', [hardOnBeta])).toEqual([{ record_status: 2 }]);
    // What was not deleted stays live, and nothing was created again.
    expect(await alphaClient(alpha, 'kept-b@example.com')).toMatchObject({ record_status: '1' });
    expect(await betaCustomer(beta, 'kept-a@example.com')).toMatchObject({ state: 'active' });
    expect(await alpha.query('SELECT email, record_status FROM clients ORDER BY email')).toEqual([
      { email: 'hard-b@example.com', record_status: 2 },
      { email: 'kept-a@example.com', record_status: 1 },
      { email: 'kept-b@example.com', record_status: 1 },
      { email: 'soft-a@example.com', record_status: 2 },
      { email: 'soft-b@example.com', record_status: 2 },
    ]);
    expect(await beta.query('SELECT email_address, state FROM customers ORDER BY email_address')).toEqual([
      { email_address: 'hard-a@example.com', state: 'deleted' },
      { email_address: 'kept-a@example.com', state: 'active' },
      { email_address: 'kept-b@example.com', state: 'active' },
      { email_address: 'soft-a@example.com', state: 'deleted' },
      { email_address: 'soft-b@example.com', state: 'deleted' },
    ]);
  });
});
