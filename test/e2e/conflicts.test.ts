import { it } from 'vitest';
import type { ConflictRule } from '../../src/config/types.js';
import { alphaClient, alphaId, betaCustomer, betaId, createCrmPair, type CrmPair } from '../support/crm.js';
import { clockTick, describeEachPair, newCluster, type SyncCluster, type SyncInstance } from '../support/sync-harness.js';

/**
 * Every conflict here is certain: both daemons are stopped, both sides
 * change the same field of the same record, then both start again.
 * Record one is changed first on alpha, then on beta; record two first on
 * beta, then on alpha; so that `newest-wins` picks a different side for
 * each, and a rule that picks a side picks it whatever the order.
 */
async function conflictOnTwoRecords(cluster: SyncCluster, crm: CrmPair): Promise<void> {
  const { alpha, beta } = crm;
  await cluster.startAll();
  await alpha.exec("INSERT INTO clients (name, email) VALUES ('one', 'one@example.com')");
  await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('two', 'two@example.com')");
  await alpha.exec("INSERT INTO clients (name, email) VALUES ('calm', 'calm@example.com')");
  await cluster.waitInStep();
  await cluster.waitSettled();
  await cluster.stopAll();

  await alpha.exec("UPDATE clients SET name = 'one by alpha' WHERE email = 'one@example.com'");
  await clockTick();
  await beta.exec("UPDATE customers SET company_name = 'one by beta' WHERE email_address = 'one@example.com'");
  await clockTick();
  await beta.exec("UPDATE customers SET company_name = 'two by beta' WHERE email_address = 'two@example.com'");
  await clockTick();
  await alpha.exec("UPDATE clients SET name = 'two by alpha' WHERE email = 'two@example.com'");
  // A change without a conflict travels as usual beside them.
  await beta.exec("UPDATE customers SET company_name = 'calm by beta' WHERE email_address = 'calm@example.com'");
  await startOneAfterTheOther(cluster, crm);
}

/**
 * Beta first, and alpha only once beta's changes wait for it: alpha then
 * always meets beta's changes while its own are still unsent, whatever the
 * machine's speed, so every run takes the same path.
 */
async function startOneAfterTheOther(cluster: SyncCluster, crm: CrmPair): Promise<void> {
  const { alpha, beta, sync } = crm;
  const built = await beta.batchesBuilt(sync.name);
  await beta.start();
  await cluster.waitFor('beta to send its changes', async () => (await beta.batchesBuilt(sync.name)) > built && (await beta.allBuiltSent(sync.name)));
  await alpha.start();
}

async function names(instance: SyncInstance): Promise<string[]> {
  const table = instance.syncs[0]?.tables[0];
  if (table === undefined) throw new Error('no table');
  const rows = await instance.rows(table.table, table.key);
  return rows.map((row) => row[table.fields[0]?.column ?? ''] ?? '').sort();
}

/** The conflicts written to the daemon's log, each with both values. */
function loggedConflicts(instance: SyncInstance): { ours: unknown; theirs: unknown }[] {
  return instance
    .logLines()
    .filter((line) => line.level === 'warn' && /conflict/i.test(line.msg))
    .map((line) => ({ ours: line.ours, theirs: line.theirs }));
}

describeEachPair('conflicts', (pair) => {
  const decided: { rule: ConflictRule; one: string; two: string }[] = [
    { rule: 'newest-wins', one: 'one by beta', two: 'two by alpha' },
    { rule: 'active-wins', one: 'one by alpha', two: 'two by alpha' },
    { rule: 'passive-wins', one: 'one by beta', two: 'two by beta' },
  ];

  for (const { rule, one, two } of decided) {
    it(`${rule}: both sides keep the same winner, and the conflict is logged with both values`, async ({ expect, onTestFinished }) => {
      const cluster = newCluster({ onTestFinished });
      const crm = await createCrmPair(cluster, pair, { conflicts: rule });
      const { alpha, beta } = crm;
      await conflictOnTwoRecords(cluster, crm);

      await cluster.waitInStep();
      await cluster.waitSettled();
      await cluster.waitInStep();
      expect(await names(alpha)).toEqual(['calm by beta', one, two].sort());
      expect(await names(beta)).toEqual(['calm by beta', one, two].sort());
      expect(await alphaClient(alpha, 'one@example.com')).toMatchObject({ name: one });
      expect(await betaCustomer(beta, 'two@example.com')).toMatchObject({ company_name: two });

      for (const side of [alpha, beta]) {
        expect((await side.backlog()).parked, `${side.name} parked no change`).toBe(0);
        expect(await side.openConflicts(), `${side.name} has no conflict left open`).toEqual([]);
      }
      // Each conflict is seen: logged with both values by the side that met it (the side whose
      // unsent change lost may never meet it, and need not), and recorded as resolved there.
      const seen = [
        ...loggedConflicts(alpha).map(({ ours, theirs }) => ({ alpha: ours, beta: theirs })),
        ...loggedConflicts(beta).map(({ ours, theirs }) => ({ alpha: theirs, beta: ours })),
      ];
      expect(seen, 'the conflicts logged by alpha and beta').toEqual(
        expect.arrayContaining([
          { alpha: 'one by alpha', beta: 'one by beta' },
          { alpha: 'two by alpha', beta: 'two by beta' },
        ]),
      );
      const recorded = [...(await alpha.conflicts()), ...(await beta.conflicts())].map((c) => String(JSON.parse(c.ours ?? 'null')));
      expect(recorded, 'conflicts recorded on either side').toEqual(expect.arrayContaining([expect.stringMatching(/^one by /), expect.stringMatching(/^two by /)]));
    });
  }

  // Ten commands and two restarts of both daemons: about 50 s on a loaded machine, so it has twice the usual time.
  it('manual: each side keeps its own value until `conflicts resolve` is run on one side, then both converge', async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const crm = await createCrmPair(cluster, pair, { conflicts: 'manual' });
    const { alpha, beta } = crm;
    await cluster.startAll();
    for (const name of ['one', 'two', 'three']) await alpha.exec('INSERT INTO clients (name, email) VALUES (?, ?)', [name, `${name}@example.com`]);
    await cluster.waitInStep();
    await cluster.waitSettled();
    await cluster.stopAll();
    for (const name of ['one', 'two', 'three']) {
      await alpha.exec('UPDATE clients SET name = ? WHERE email = ?', [`${name} by alpha`, `${name}@example.com`]);
      await beta.exec('UPDATE customers SET company_name = ? WHERE email_address = ?', [`${name} by beta`, `${name}@example.com`]);
    }
    await startOneAfterTheOther(cluster, crm);

    await cluster.waitFor('both sides to see the three conflicts', async () => (await alpha.openConflicts()).length === 3 && (await beta.openConflicts()).length === 3);
    await cluster.waitSettled();
    expect(await alpha.query('SELECT name FROM clients ORDER BY email')).toEqual([{ name: 'one by alpha' }, { name: 'three by alpha' }, { name: 'two by alpha' }]);
    expect(await beta.query('SELECT company_name FROM customers ORDER BY email_address')).toEqual([
      { company_name: 'one by beta' },
      { company_name: 'three by beta' },
      { company_name: 'two by beta' },
    ]);

    // What a user sees: `conflicts list` on each side shows the three, with both values.
    for (const side of [alpha, beta]) {
      const list = await side.cli('conflicts', 'list');
      expect(list.stderr, `${side.name}: conflicts list`).toBe('');
      expect(list.code).toBe(0);
      for (const name of ['one', 'two', 'three']) {
        expect(list.stdout).toContain(`${name} by alpha`);
        expect(list.stdout).toContain(`${name} by beta`);
      }
      for (const conflict of await side.openConflicts()) expect(list.stdout).toMatch(new RegExp(`\\b${conflict.id}\\b`));
    }

    const conflictOn = async (side: SyncInstance, localId: string): Promise<number> => {
      const found = (await side.openConflicts()).find((c) => String(c.local_id) === localId);
      if (found === undefined) throw new Error(`${side.name} has no open conflict on record ${localId}`);
      return found.id;
    };
    const resolve = async (side: SyncInstance, id: number, keep: 'ours' | 'theirs'): Promise<void> => {
      const result = await side.cli('conflicts', 'resolve', String(id), '--keep', keep);
      expect(result.stderr, `${side.name}: conflicts resolve ${id} --keep ${keep}`).toBe('');
      expect(result.code).toBe(0);
    };
    // One: beta takes alpha's value. Two: alpha takes beta's. Three: beta insists on its own.
    await resolve(beta, await conflictOn(beta, await betaId(beta, 'one@example.com')), 'theirs');
    await resolve(alpha, await conflictOn(alpha, await alphaId(alpha, 'two@example.com')), 'theirs');
    await resolve(beta, await conflictOn(beta, await betaId(beta, 'three@example.com')), 'ours');

    await cluster.waitInStep();
    await cluster.waitSettled();
    await cluster.waitFor('the conflicts to be closed on both sides', async () => (await alpha.openConflicts()).length + (await beta.openConflicts()).length === 0);
    expect(await alpha.query('SELECT name FROM clients ORDER BY email')).toEqual([{ name: 'one by alpha' }, { name: 'three by beta' }, { name: 'two by beta' }]);
    expect(await beta.query('SELECT company_name FROM customers ORDER BY email_address')).toEqual([
      { company_name: 'one by alpha' },
      { company_name: 'three by beta' },
      { company_name: 'two by beta' },
    ]);
    for (const side of [alpha, beta]) {
      const list = await side.cli('conflicts', 'list');
      expect(list.code, `${side.name}: conflicts list`).toBe(0);
      for (const name of ['one', 'two', 'three']) {
        expect(list.stdout, `${side.name}: conflicts list shows nothing open`).not.toContain(`${name} by alpha`);
        expect(list.stdout, `${side.name}: conflicts list shows nothing open`).not.toContain(`${name} by beta`);
      }
    }
  }, 120_000);
});
