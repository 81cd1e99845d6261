import { it } from 'vitest';
import { alphaClient, betaCustomer, createCrmPair } from '../support/crm.js';
import { clockTick, describeEachPair, newCluster } from '../support/sync-harness.js';

/**
 * Seen from alpha: phone (4) is `upload`, credit limit (5) is `download`,
 * notes (6) is `off` (beta syncs it `both`: alpha's side alone pauses it).
 * Each negative check rides in the same change as a `both` field, so that
 * once the `both` field has arrived, the other one would have too.
 */
describeEachPair('field directions', (pair) => {
  it('sends an upload field one way only, takes a download field one way only, and never moves an off field', async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta } = await createCrmPair(cluster, pair);
    await cluster.startAll();

    // A new record from alpha: its phone travels, its credit limit and notes do not.
    await alpha.exec("INSERT INTO clients (name, email, phone, credit_limit, notes) VALUES ('Acme', 'acme@example.com', '+1 555 0100', 5000, 'alpha only')");
    // A new record from beta: its credit travels, its phone does not, its remarks stop at alpha's `off`.
    await beta.exec(
      "INSERT INTO customers (company_name, email_address, phone_number, credit, remarks) VALUES ('Initech', 'initech@example.com', '+44 20 0000', 700, 'beta only')",
    );
    await cluster.waitInStep();

    expect(await betaCustomer(beta, 'acme@example.com')).toMatchObject({ company_name: 'Acme', phone_number: '+1 555 0100', credit: null, remarks: null });
    expect(await alphaClient(alpha, 'initech@example.com')).toMatchObject({ name: 'Initech', phone: null, credit_limit: '700', notes: null });

    // Updates on alpha: the phone travels A→B; the credit limit and notes are not sent.
    await alpha.exec("UPDATE clients SET name = 'Acme 2', phone = '+1 555 0199', credit_limit = 9999, notes = 'still alpha only' WHERE email = 'acme@example.com'");
    await cluster.waitFor('alpha’s new name to reach beta', async () => (await betaCustomer(beta, 'acme@example.com'))?.company_name === 'Acme 2');
    expect(await betaCustomer(beta, 'acme@example.com')).toMatchObject({ phone_number: '+1 555 0199', credit: null, remarks: null });

    // Updates on beta: the credit travels B→A; the phone and remarks are not applied on alpha.
    await beta.exec(
      "UPDATE customers SET company_name = 'Acme 3', phone_number = '+1 000 0000', credit = 1234, remarks = 'beta says so' WHERE email_address = 'acme@example.com'",
    );
    await cluster.waitFor('beta’s new name to reach alpha', async () => (await alphaClient(alpha, 'acme@example.com'))?.name === 'Acme 3');
    expect(await alphaClient(alpha, 'acme@example.com')).toMatchObject({ phone: '+1 555 0199', credit_limit: '1234', notes: 'still alpha only' });

    // The same on the record that beta created.
    await beta.exec("UPDATE customers SET company_name = 'Initech 2', phone_number = '+44 20 1111', credit = 800, remarks = 'beta again' WHERE email_address = 'initech@example.com'");
    await alpha.exec("UPDATE clients SET phone = '+44 99 9999', notes = 'alpha note' WHERE email = 'initech@example.com'");
    await cluster.waitFor('beta’s new name to reach alpha', async () => (await alphaClient(alpha, 'initech@example.com'))?.name === 'Initech 2');
    await cluster.waitSettled();
    expect(await alphaClient(alpha, 'initech@example.com')).toMatchObject({ phone: '+44 99 9999', credit_limit: '800', notes: 'alpha note' });
    expect(await betaCustomer(beta, 'initech@example.com')).toMatchObject({ phone_number: '+44 99 9999', credit: '800', remarks: 'beta again' });
    await cluster.waitInStep();
  });

  it('takes the peer’s value for a download field even when this side edited it later', async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta } = await createCrmPair(cluster, pair);
    await cluster.startAll();
    await alpha.exec("INSERT INTO clients (name, email, phone) VALUES ('Acme', 'acme@example.com', '+1 555 0100')");
    await beta.exec("INSERT INTO customers (company_name, email_address, credit) VALUES ('Initech', 'initech@example.com', 100)");
    await cluster.waitInStep();
    await cluster.waitSettled();
    await cluster.stopAll();

    // The sending side edits first, the receiving side (whose direction is download) edits later.
    await alpha.exec("UPDATE clients SET name = 'Acme 2', phone = '+1 555 0111' WHERE email = 'acme@example.com'");
    await beta.exec("UPDATE customers SET company_name = 'Initech 2', credit = 200 WHERE email_address = 'initech@example.com'");
    await clockTick();
    await beta.exec("UPDATE customers SET phone_number = '+1 000 0000' WHERE email_address = 'acme@example.com'");
    await alpha.exec("UPDATE clients SET credit_limit = 999 WHERE email = 'initech@example.com'");
    await cluster.startAll();

    await cluster.waitInStep();
    await cluster.waitSettled();
    const acme = await betaCustomer(beta, 'acme@example.com');
    const initech = await alphaClient(alpha, 'initech@example.com');
    expect({ 'beta: acme phone': acme?.phone_number, 'alpha: initech credit': initech?.credit_limit }).toEqual({
      'beta: acme phone': '+1 555 0111',
      'alpha: initech credit': '200',
    });
    // Not a conflict: a download field has only one source.
    expect([...(await alpha.conflicts()), ...(await beta.conflicts())]).toEqual([]);
  });
});
