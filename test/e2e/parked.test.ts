import { it } from 'vitest';
import { alphaClient, betaCustomer, createCrmPair, syncName } from '../support/crm.js';
import { describeEachPair, newCluster, type SyncInstance } from '../support/sync-harness.js';

interface StatusJson {
  instance: string;
  syncs: { name: string; parkedChanges: number | null }[];
}

/** The parked changes that `tablesync status --json` reports for the sync. */
async function parkedInStatus(instance: SyncInstance): Promise<number | null | undefined> {
  const result = await instance.cli('status', '--json');
  if (result.code !== 0 || result.stderr !== '') throw new Error(`status --json exited ${result.code}: ${result.stderr}`);
  const [status] = JSON.parse(result.stdout) as StatusJson[];
  return status?.syncs.find((s) => s.name === syncName)?.parkedChanges;
}

/** Beta's email column has a unique index; alpha's has none, so alpha can send what beta must refuse. */
describeEachPair('a change the peer refuses', (pair) => {
  it('is parked and shown by `errors list` and `status`, the rest of its batch applies, and `errors retry` applies it once fixed', async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta } = await createCrmPair(cluster, pair);
    await cluster.startAll();
    await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('Blocker', 'taken@example.com')");
    for (const name of ['keep', 'rename', 'remove']) await alpha.exec('INSERT INTO clients (name, email) VALUES (?, ?)', [name, `${name}@example.com`]);
    await cluster.waitInStep();
    await cluster.waitSettled();

    // One batch from alpha: a record beta cannot take (its email is taken there), and other changes.
    await alpha.stop();
    await alpha.exec("INSERT INTO clients (name, email) VALUES ('Fresh one', 'fresh1@example.com')");
    await alpha.exec("INSERT INTO clients (name, email) VALUES ('Clash', 'taken@example.com')");
    await alpha.exec("INSERT INTO clients (name, email) VALUES ('Fresh two', 'fresh2@example.com')");
    await alpha.exec("UPDATE clients SET name = 'renamed' WHERE email = 'rename@example.com'");
    await alpha.exec("UPDATE clients SET record_status = 2 WHERE email = 'remove@example.com'");
    await alpha.start();

    await cluster.waitFor('beta to park one change', async () => (await beta.backlog()).parked === 1);
    await cluster.waitSettled();
    // Everything else in that batch arrived.
    expect(await betaCustomer(beta, 'fresh1@example.com')).toMatchObject({ company_name: 'Fresh one', state: 'active' });
    expect(await betaCustomer(beta, 'fresh2@example.com')).toMatchObject({ company_name: 'Fresh two', state: 'active' });
    expect(await betaCustomer(beta, 'rename@example.com')).toMatchObject({ company_name: 'renamed' });
    expect(await betaCustomer(beta, 'remove@example.com')).toMatchObject({ state: 'deleted' });
    expect(await betaCustomer(beta, 'taken@example.com')).toMatchObject({ company_name: 'Blocker' });
    expect((await beta.query("SELECT customer_id FROM customers WHERE company_name = 'Clash'")).length).toBe(0);

    // What the user sees.
    const list = await beta.cli('errors', 'list');
    expect(list.stderr, 'errors list').toBe('');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/customers/);
    expect(list.stdout).toMatch(/unique|duplicate/i);
    expect(await parkedInStatus(beta)).toBe(1);

    // Later batches still apply while the change waits.
    await alpha.exec("UPDATE clients SET name = 'Fresh one, later' WHERE email = 'fresh1@example.com'");
    await cluster.waitFor('a later change to reach beta', async () => (await betaCustomer(beta, 'fresh1@example.com'))?.company_name === 'Fresh one, later');

    // Someone frees the email on beta, then retries.
    await beta.exec("UPDATE customers SET email_address = 'blocker@example.com' WHERE email_address = 'taken@example.com'");
    const retry = await beta.cli('errors', 'retry');
    expect(retry.stderr, 'errors retry').toBe('');
    expect(retry.code, retry.stdout).toBe(0);

    await cluster.waitInStep();
    await cluster.waitSettled();
    await cluster.waitInStep();
    expect(await betaCustomer(beta, 'taken@example.com')).toMatchObject({ company_name: 'Clash', state: 'active' });
    expect(await alphaClient(alpha, 'blocker@example.com')).toMatchObject({ name: 'Blocker' });
    expect(await alphaClient(alpha, 'taken@example.com')).toMatchObject({ name: 'Clash' });
    expect((await beta.query('SELECT customer_id FROM customers')).length).toBe(7);
    expect((await alpha.query('SELECT id FROM clients')).length).toBe(7);
    expect(await parkedInStatus(beta)).toBe(0);
  });
});
