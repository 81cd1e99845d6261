import { it } from 'vitest';
import type { DialectName } from '../../src/config/types.js';
import { describeWithDialects } from '../support/databases.js';
import { newCluster, type SyncCluster, type SyncInstance, type TableSpec } from '../support/sync-harness.js';

/**
 * Three instances in a ring: alpha–beta, beta–gamma, gamma–alpha, each sync
 * with its own folders. A change made on one instance reaches the two
 * others directly, and each of them passes it on to the third as well
 * ("a change applied from one sync is passed on to the instance's other
 * syncs"): it must still land exactly once everywhere, and then stop.
 */
const shapes = {
  alpha: { table: 'clients', key: 'id', name: 'name', email: 'email' },
  beta: { table: 'customers', key: 'customer_id', name: 'company_name', email: 'email_address' },
  gamma: { table: 'accounts', key: 'account_no', name: 'title', email: 'mail' },
} as const;
type Member = keyof typeof shapes;

function tableOf(member: Member): TableSpec {
  const shape = shapes[member];
  return {
    table: shape.table,
    number: 1,
    key: shape.key,
    fields: [
      { column: shape.name, number: 2, direction: 'both' },
      { column: shape.email, number: 3, direction: 'both' },
    ],
  };
}

async function ring(cluster: SyncCluster, dialects: Record<Member, DialectName>): Promise<Record<Member, SyncInstance>> {
  const members = {} as Record<Member, SyncInstance>;
  for (const member of Object.keys(shapes) as Member[]) {
    const shape = shapes[member];
    members[member] = await cluster.addInstance(member, {
      dialect: dialects[member],
      schema: (db) => [`CREATE TABLE ${shape.table} (${shape.key} ${db.autoId}, ${shape.name} VARCHAR(80), ${shape.email} VARCHAR(120))`],
    });
  }
  const { alpha, beta, gamma } = members;
  cluster.connect(alpha, beta, { name: 'alpha-beta' }, { active: [tableOf('alpha')], passive: [tableOf('beta')] });
  cluster.connect(beta, gamma, { name: 'beta-gamma' }, { active: [tableOf('beta')], passive: [tableOf('gamma')] });
  cluster.connect(gamma, alpha, { name: 'gamma-alpha' }, { active: [tableOf('gamma')], passive: [tableOf('alpha')] });
  return members;
}

async function rowsOf(instance: SyncInstance, member: Member): Promise<{ name: string | null; email: string | null }[]> {
  const shape = shapes[member];
  const rows = await instance.rows(shape.table, shape.key);
  return rows.map((row) => ({ name: row[shape.name] ?? null, email: row[shape.email] ?? null }));
}

/** Every instance's `out` cursor of every sync: how many batches each has built. */
async function batchCounts(cluster: SyncCluster): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const instance of cluster.instances) {
    for (const end of instance.syncs) counts[`${instance.name}/${end.options.name}`] = await instance.batchesBuilt(end.options.name);
  }
  return counts;
}

/** Waits until nothing moves, then checks that for a while nothing starts moving again and the rows stay as they are. */
async function expectQuiet(cluster: SyncCluster, members: Record<Member, SyncInstance>, expected: { name: string; email: string }[]): Promise<void> {
  await cluster.waitSettled();
  await cluster.waitInStep();
  const built = await batchCounts(cluster);
  await cluster.holdsFor(
    'no more batches, no backlog, and the same single record everywhere',
    async () => {
      const problems: string[] = [];
      const now = await batchCounts(cluster);
      for (const [where, count] of Object.entries(now)) if (count !== built[where]) problems.push(`${where} built batch ${count} after ${built[where]}`);
      for (const member of Object.keys(members) as Member[]) {
        const backlog = await members[member].backlog();
        if (backlog.journal + backlog.outbox + backlog.batchesOut > 0) problems.push(`${member}: ${JSON.stringify(backlog)}`);
        const rows = await rowsOf(members[member], member);
        if (JSON.stringify(rows) !== JSON.stringify(expected)) problems.push(`${member} holds ${JSON.stringify(rows)}`);
      }
      return problems;
    },
    1500,
  );
}

const rings: { label: string; dialects: Record<Member, DialectName> }[] = [
  { label: 'sqlite, sqlite, sqlite', dialects: { alpha: 'sqlite', beta: 'sqlite', gamma: 'sqlite' } },
  { label: 'mysql, sqlite, mysql', dialects: { alpha: 'mysql', beta: 'sqlite', gamma: 'mysql' } },
  { label: 'postgres, mysql, sqlite', dialects: { alpha: 'postgres', beta: 'mysql', gamma: 'sqlite' } },
];

for (const { label, dialects } of rings) {
  describeWithDialects(
    `a ring of three instances [${label}]`,
    Object.values(dialects),
    () => {
      it('carries a new record and then an update from one instance to the two others exactly once, then goes quiet', async ({ expect, onTestFinished }) => {
        const cluster = newCluster({ onTestFinished });
        const members = await ring(cluster, dialects);
        const { alpha, beta, gamma } = members;
        await cluster.startAll();

        await alpha.exec("INSERT INTO clients (name, email) VALUES ('Acme', 'acme@example.com')");
        await cluster.waitFor('the new record to reach beta and gamma', async () => (await rowsOf(beta, 'beta')).length > 0 && (await rowsOf(gamma, 'gamma')).length > 0);
        await expectQuiet(cluster, members, [{ name: 'Acme', email: 'acme@example.com' }]);

        await alpha.exec("UPDATE clients SET name = 'Acme Corporation' WHERE email = 'acme@example.com'");
        await cluster.waitFor(
          'the new name to reach beta and gamma',
          async () => (await rowsOf(beta, 'beta'))[0]?.name === 'Acme Corporation' && (await rowsOf(gamma, 'gamma'))[0]?.name === 'Acme Corporation',
        );
        await expectQuiet(cluster, members, [{ name: 'Acme Corporation', email: 'acme@example.com' }]);
        for (const member of Object.keys(members) as Member[]) expect(await rowsOf(members[member], member)).toEqual([{ name: 'Acme Corporation', email: 'acme@example.com' }]);
      });
    },
    { concurrent: true },
  );
}
