import { it } from 'vitest';
import { createCrmPair } from '../support/crm.js';
import { describeEachPair, newCluster, type SyncInstance } from '../support/sync-harness.js';

/** Records in the burst; at 1000 events per batch, several batches wait for beta at once. */
const burstSize = 1500;

/** When beta is killed, once each: while a batch's transaction is open, or right after one committed (before its file is done with). */
const killMoments = ['applying its first batch', 'applying the batch after one it committed', 'just done committing a batch'] as const;

/** Inserts `count` clients on alpha from `from` on, 100 rows per statement, 500 per transaction. */
async function insertBurst(alpha: SyncInstance, from: number, count: number): Promise<void> {
  for (let start = from; start < from + count; start += 500) {
    await alpha.exec(alpha.dialect === 'mysql' ? 'START TRANSACTION' : 'BEGIN');
    for (let chunk = start; chunk < Math.min(start + 500, from + count); chunk += 100) {
      const ids = Array.from({ length: Math.min(100, from + count - chunk) }, (_, i) => chunk + i);
      await alpha.exec(`INSERT INTO clients (name, email, phone) VALUES ${ids.map(() => '(?, ?, ?)').join(', ')}`, ids.flatMap((i) => [`burst ${i}`, `burst-${i}@example.com`, `+1 555 ${i}`]));
    }
    await alpha.exec('COMMIT');
  }
}

async function pairsOf(instance: SyncInstance, table: string, name: string, email: string): Promise<string[]> {
  const rows = await instance.query<Record<string, unknown>>(`SELECT ${name} AS name, ${email} AS email FROM ${table}`);
  return rows.map((row) => `${String(row.name)} <${String(row.email)}>`).sort();
}

/** Every pair at once, each moving 1,800 records or more through three kills: over 100 s on a loaded machine. */
const testTimeout = 180_000;

describeEachPair('a daemon killed with SIGKILL', (pair) => {
  it('loses no change and creates no duplicate when the receiving daemon is killed again and again while applying batches', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta, sync } = await createCrmPair(cluster, pair);
    await cluster.startAll();
    await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('made on beta', 'beta@example.com')");
    await alpha.exec("INSERT INTO clients (name, email) VALUES ('made on alpha', 'alpha@example.com')");
    await cluster.waitInStep();
    await cluster.waitSettled();

    // A burst while beta is down, so that several full batches wait for it.
    await beta.stop();
    await insertBurst(alpha, 0, burstSize);
    await cluster.waitFor('alpha to send the burst', () => beta.waitingBatches(sync.name).length >= 2, { timeoutMs: 30_000 });

    const applied = async (): Promise<number> => Number((await beta.cursor(sync.name, 'in')) ?? 0);
    const busyWithABatch = async (): Promise<boolean> => beta.waitingBatches(sync.name).length > 0 && (await beta.databaseBusy());
    let inserted = 2 + burstSize;
    for (const [round, moment] of killMoments.entries()) {
      // Each round needs two full batches waiting: an earlier round may have let beta apply most of them,
      // and a short last batch can be applied between two looks, so that "the batch after one" never shows.
      if (beta.waitingBatches(sync.name).length < 2) {
        await insertBurst(alpha, inserted, burstSize);
        inserted += burstSize;
        await cluster.waitFor(`alpha to send another burst (round ${round + 1})`, () => beta.waitingBatches(sync.name).length >= 2, { timeoutMs: 30_000 });
      }
      await beta.start();
      const from = await applied();
      await cluster.waitFor(
        `beta to be ${moment} (round ${round + 1})`,
        async () => {
          if (moment === 'applying its first batch') return busyWithABatch();
          if (moment === 'applying the batch after one it committed') return (await applied()) > from && (await busyWithABatch());
          return (await applied()) > from;
        },
        { intervalMs: 5, timeoutMs: 30_000 },
      );
      await beta.kill();
      // The application goes on meanwhile: updates of records beta may or may not have yet, and new ones.
      await alpha.exec('UPDATE clients SET name = ? WHERE id % 5 = ?', [`renamed in round ${round}`, round]);
      await insertBurst(alpha, inserted, 100);
      inserted += 100;
      if (round === 1) {
        // The sender dies too, once, in the middle of it all.
        await alpha.kill();
        await alpha.start();
      }
    }
    await beta.start();

    await cluster.waitInStep(1, { timeoutMs: 90_000 });
    await cluster.waitSettled({ timeoutMs: 30_000 });
    await cluster.waitInStep();

    expect((await alpha.query('SELECT id FROM clients')).length).toBe(inserted);
    expect((await beta.query('SELECT customer_id FROM customers')).length).toBe(inserted);
    expect(await pairsOf(beta, 'customers', 'company_name', 'email_address')).toEqual(await pairsOf(alpha, 'clients', 'name', 'email'));
    expect((await alpha.query("SELECT id FROM clients WHERE name LIKE 'renamed in round %'")).length).toBeGreaterThan(0);
    for (const side of [alpha, beta]) expect((await side.backlog()).parked, `${side.name} parked nothing`).toBe(0);
    // The upload-only phone travelled with every record too.
    expect((await beta.query('SELECT customer_id FROM customers WHERE phone_number IS NULL')).length).toBe(2);
  });
});
