import { it } from 'vitest';
import { behindTheBack } from '../support/behind-the-back.js';
import { alphaClient, alphaId, betaCustomer, betaId, createCrmPair, syncName } from '../support/crm.js';
import { describeEachPair, newCluster, type DialectPair, type SyncInstance, type TransportKind } from '../support/sync-harness.js';

/**
 * `tablesync verify` without the peer's file: the questions travel in the
 * sync's own batches, over http and over folders, between two real
 * daemons, and the peer's daemon answers from its own database. A change
 * made behind tablesync's back on the peer (capture skipped) is found, and
 * only the chunk that holds it comes back record by record; `--repair`
 * sends it again through the engine, and a record only the peer has is
 * queued by the peer on request. With the peer's daemon stopped, verify
 * says what it waits for and gives up.
 */

/** The daemons share this machine's two cores with whatever else runs; each verify is a few exchanges. */
const testTimeout = 240_000;

const configurations: readonly { transport: TransportKind; pairs: readonly DialectPair[] }[] = [
  // The peer on PostgreSQL: the change behind its back goes through its transaction-local applier setting.
  { transport: 'http', pairs: [{ active: 'sqlite', passive: 'postgres' }] },
  { transport: 'folder', pairs: [{ active: 'mysql', passive: 'sqlite' }] },
];

/** The lines of verify's output that name one difference each. */
function differenceLines(stdout: string): string[] {
  return stdout.split('\n').filter((line) => /^ {2}(record |the peer's record )/.test(line));
}

async function rowCount(instance: SyncInstance, table: string): Promise<number> {
  const [row] = await instance.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${table}`);
  return Number(row?.n ?? 0);
}

for (const { transport, pairs } of configurations) {
  describeEachPair(
    `tablesync verify through the daemons over ${transport}`,
    (pair) => {
      it('finds one field changed behind tablesync’s back, fetching only its chunk; --repair fixes it; a peer that does not answer is reported', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
        const cluster = newCluster({ onTestFinished });
        const { alpha, beta } = await createCrmPair(cluster, pair, { transport });
        await cluster.startAll();
        for (const side of [alpha, beta]) expect(side.end(syncName).transport().type).toBe(transport);
        // 25 clients of alpha's (ids 1 to 25) and 2 customers of beta's: with chunks of 10, alpha's 27 records make 3 chunks.
        const clients = Array.from({ length: 25 }, (_, i) => [`client ${i + 1}`, `client-${i + 1}@example.com`]);
        await alpha.exec(`INSERT INTO clients (name, email) VALUES ${clients.map(() => '(?, ?)').join(', ')}`, clients.flat());
        for (const name of ['b1', 'b2']) await beta.exec('INSERT INTO customers (company_name, email_address) VALUES (?, ?)', [name, `${name}@example.com`]);
        await cluster.waitInStep();
        await cluster.waitSettled();

        const verify = (...args: string[]) => alpha.cli('verify', '--chunk-rows', '10', ...args);
        const clean = await verify();
        expect(clean.stderr).toBe('');
        expect(clean.stdout).toContain(`against its peer beta through sync ${syncName} (${transport}): `);
        expect(clean.stdout).toContain('tablesync run must be running here and on beta');
        expect(clean.stdout).toContain(`sync ${syncName}, table 1: clients here; fields 2, 3 compared\n`);
        expect(clean.stdout).toContain('  27 records here, 27 on the peer; 0 of 3 chunks differ; 0 differences\n');
        expect(clean.stdout).toContain("  fetched 0 records of the peer's for the differing chunks, and 0 ids of its records for 0 of 3 groups that differ\n");
        expect(clean.stdout).toContain('no differences: both sides agree in 1 table\n');
        expect(clean.code).toBe(0);

        // Behind tablesync's back on the peer: one field of client 15, in alpha's second chunk (ids 11 to 20).
        const changed = { alpha: await alphaId(alpha, 'client-15@example.com'), beta: await betaId(beta, 'client-15@example.com') };
        expect(changed.alpha).toBe('15');
        await behindTheBack(beta, "UPDATE customers SET company_name = 'Changed on beta' WHERE customer_id = ?", [changed.beta]);
        // Capture did not see it: nothing is on its way, so only verify can find it.
        await cluster.holdsFor('beta to keep the change to itself', async () => (await beta.backlog()).journal === 0 && (await alphaClient(alpha, 'client-15@example.com'))?.name === 'client 15', 1000);

        const found = await verify();
        expect(found.stderr).toBe('');
        expect(found.stdout).toContain('  27 records here, 27 on the peer; 1 of 3 chunks differ; 1 difference\n');
        // Only the differing chunk's 10 records came back; the other two chunks cost their ids and a digest each.
        expect(found.stdout).toContain("  fetched 10 records of the peer's for the differing chunks, and 0 ids of its records for 0 of 3 groups that differ\n");
        expect(differenceLines(found.stdout)).toEqual([`  record 15 (the peer's ${changed.beta}): field 2 (name) is "client 15" here, "Changed on beta" on the peer`]);
        expect(found.stdout).toContain('1 difference in 1 table\n');
        expect(found.code).toBe(1);

        const repaired = await verify('--repair');
        expect(repaired.stdout).toContain('queued 1 record here and 0 on the peer to be sent again in full');
        expect(repaired.code).toBe(1);
        await cluster.waitFor('alpha’s value to reach beta again', async () => (await betaCustomer(beta, 'client-15@example.com'))?.company_name === 'client 15');
        await cluster.waitSettled();
        const after = await verify();
        expect(after.stdout).toContain('  27 records here, 27 on the peer; 0 of 3 chunks differ; 0 differences\n');
        expect(after.stdout).toContain('no differences: both sides agree in 1 table\n');
        expect(after.code).toBe(0);

        // A record only the peer has: found among its groups of records, and queued by the peer on request.
        await behindTheBack(beta, "INSERT INTO customers (company_name, email_address) VALUES ('Beta only', 'beta-only@example.com')");
        const betaOnly = await betaId(beta, 'beta-only@example.com');
        const lonely = await verify();
        expect(lonely.stdout).toContain('  27 records here, 28 on the peer; 0 of 3 chunks differ; 1 difference\n');
        expect(lonely.stdout).toMatch(/ {2}fetched 0 records of the peer's for the differing chunks, and [1-9][0-9]* ids? of its records for 1 of 3 groups that differ\n/);
        expect(differenceLines(lonely.stdout)).toEqual([`  the peer's record ${betaOnly}: no link on either side; this side has never confirmed a record for it`]);
        expect(lonely.code).toBe(1);
        const fetched = await verify('--repair');
        expect(fetched.stdout).toContain('queued 0 records here and 1 on the peer to be sent again in full');
        await cluster.waitFor('beta’s record to reach alpha', async () => (await alphaClient(alpha, 'beta-only@example.com'))?.name === 'Beta only');
        await cluster.waitSettled();
        const whole = await verify();
        expect(whole.stdout).toContain('  28 records here, 28 on the peer; 0 of 3 chunks differ; 0 differences\n');
        expect(whole.code).toBe(0);
        // The other side asks too: its questions go the other way (over http, they wait on the passive side until the active one calls).
        const fromBeta = await beta.cli('verify', '--chunk-rows', '10');
        expect(fromBeta.stdout).toContain(`against its peer alpha through sync ${syncName} (${transport}): `);
        expect(fromBeta.stdout).toContain(`sync ${syncName}, table 1: customers here; fields 2, 3 compared\n`);
        expect(fromBeta.stdout).toContain('  28 records here, 28 on the peer; 0 of 3 chunks differ; 0 differences\n');
        expect(fromBeta.code).toBe(0);

        // The peer's daemon stopped: verify says what it waits for, and gives up.
        await beta.stop();
        const unanswered = await verify('--timeout', '3');
        expect(unanswered.stdout).toContain('tablesync run must be running here and on beta');
        expect(unanswered.stderr).toMatch(
          /^tablesync: instance beta has not answered verify for 3 s \(sync "head-office"\): its request \(batch \d+\) (has not left this side yet|was sent but the peer has not acknowledged it)/,
        );
        expect(unanswered.code).toBe(1);
        // Once it is back, it answers the requests still on their way; alpha drops the replies nobody waits for.
        await beta.start();
        await cluster.waitSettled();
        await cluster.waitFor('beta’s late replies to be dropped', async () => (await rowCount(alpha, 'tablesync_verify_replies')) + (await rowCount(alpha, 'tablesync_verify_runs')) === 0);
        expect(alpha.logLines().some((line) => line.msg === 'verify reply for a run that no longer waits: dropped')).toBe(true);
      });
    },
    pairs,
  );
}
