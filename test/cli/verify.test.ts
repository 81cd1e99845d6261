import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect as globalExpect, it } from 'vitest';
import { comparable } from '../../src/engine/verify.js';
import { alphaClient, alphaId, betaCustomer, betaId, createCrmPair, syncName } from '../support/crm.js';
import { behindTheBack } from '../support/behind-the-back.js';
import { describeEachPair, newCluster } from '../support/sync-harness.js';

/**
 * `tablesync verify --peer-config` (both databases read from here) on two
 * real instances with their daemons (the CRM of crm.ts: fields 2 and 3
 * travel both ways), through the built command line:
 * both sides agree after a sync; changes made behind tablesync's back (with
 * the applier's marker set, so capture does not see them) and a lost link
 * are found; `--repair` queues them and the daemons' next exchanges make
 * both sides agree again. test/e2e/verify-transport.test.ts covers verify
 * through the daemons, without the peer's file.
 */

/** Two daemons move 2,500 records, then three more exchanges and six commands: more than the suite's 60 s on a loaded machine. */
const testTimeout = 180_000;

describeEachPair(
  'tablesync verify',
  (pair) => {
    it('finds changes made behind tablesync’s back and lost links; --repair and an exchange make both sides agree', async ({ expect, onTestFinished }) => {
      const cluster = newCluster({ onTestFinished });
      const { alpha, beta } = await createCrmPair(cluster, pair);
      await cluster.startAll();
      // 2,500 of alpha's clients: three chunks of 1,000 (ids 1 to 2,500, then beta's three).
      const clients = Array.from({ length: 2500 }, (_, i) => [`client ${i + 1}`, `client-${i + 1}@example.com`]);
      for (let start = 0; start < clients.length; start += 500) {
        const chunk = clients.slice(start, start + 500);
        await alpha.exec(`INSERT INTO clients (name, email) VALUES ${chunk.map(() => '(?, ?)').join(', ')}`, chunk.flat());
      }
      for (const name of ['b1', 'b2', 'b3']) await beta.exec('INSERT INTO customers (company_name, email_address) VALUES (?, ?)', [name, `${name}@example.com`]);
      await cluster.waitInStep();
      await cluster.waitSettled();

      const verify = (...args: string[]) => alpha.cli('verify', '--peer-config', beta.configFile, ...args);
      const clean = await verify();
      expect(clean.stderr).toBe('');
      expect(clean.code).toBe(0);
      expect(clean.stdout).toContain(`sync ${syncName}, table 1: clients here, customers on the peer; fields 2, 3 compared\n`);
      expect(clean.stdout).toContain('  2503 records here, 2503 on the peer; 0 of 3 chunks differ; 0 differences\n');
      expect(clean.stdout).toContain("  fetched 0 records of the peer's for the differing chunks, and 0 ids of its records for 0 of 3 groups that differ\n");
      expect(clean.stdout).toContain('no differences: both sides agree in 1 table\n');
      await cluster.stopAll();

      // Behind tablesync's back: a value on beta, a new record on each side; and a link that alpha lost.
      const changed = { alpha: await alphaId(alpha, 'client-10@example.com'), beta: await betaId(beta, 'client-10@example.com') };
      await behindTheBack(beta, "UPDATE customers SET company_name = 'Changed on beta' WHERE customer_id = ?", [changed.beta]);
      await behindTheBack(alpha, "INSERT INTO clients (name, email) VALUES ('Sneaky', 'sneaky@example.com')");
      await behindTheBack(beta, "INSERT INTO customers (company_name, email_address) VALUES ('Beta only', 'beta-only@example.com')");
      const lost = { alpha: await alphaId(alpha, 'client-2400@example.com'), beta: await betaId(beta, 'client-2400@example.com') };
      await alpha.exec('DELETE FROM tablesync_links WHERE sync_name = ? AND table_number = 1 AND local_id = ?', [syncName, lost.alpha]);
      const sneaky = await alphaId(alpha, 'sneaky@example.com');
      const betaOnly = await betaId(beta, 'beta-only@example.com');

      const found = await verify();
      expect(found.stderr).toBe('');
      expect(found.code).toBe(1);
      expect(found.stdout).toContain('  2504 records here, 2504 on the peer; 2 of 3 chunks differ; 4 differences\n');
      // Only the two differing chunks came back record by record: 1,000 records, and the 504 of the last chunk.
      expect(found.stdout).toContain("  fetched 1504 records of the peer's for the differing chunks, and ");
      expect(found.stdout).toContain(
        `  record ${changed.alpha} (the peer's ${changed.beta}): field 2 (name / company_name) is "client 10" here, "Changed on beta" on the peer\n`,
      );
      expect(found.stdout).toContain(`  record ${lost.alpha}: no link here, but the peer links its record ${lost.beta} to it\n`);
      expect(found.stdout).toContain(`  record ${sneaky}: no link on either side; the peer has never confirmed a record for it\n`);
      expect(found.stdout).toContain(`  the peer's record ${betaOnly}: no link on either side; this side has never confirmed a record for it\n`);
      expect(found.stdout).toContain('4 differences in 1 table\n');
      expect(found.stdout).toContain('tablesync verify --repair queues them to be sent again');

      const repaired = await verify('--repair');
      expect(repaired.code).toBe(1);
      expect(repaired.stdout).toContain('queued 3 records here and 1 on the peer to be sent again in full');

      await cluster.startAll();
      await cluster.waitSettled();
      await cluster.waitInStep();
      const after = await verify();
      expect(after.stdout).toContain('no differences: both sides agree in 1 table\n');
      expect(after.code).toBe(0);
      // This side's values won; the records only one side had now exist on both, linked.
      expect(await betaCustomer(beta, 'client-10@example.com')).toMatchObject({ company_name: 'client 10' });
      expect(await betaCustomer(beta, 'sneaky@example.com')).toMatchObject({ company_name: 'Sneaky' });
      expect(await alphaClient(alpha, 'beta-only@example.com')).toMatchObject({ name: 'Beta only' });
      expect((await alpha.links(syncName, 1)).get(lost.alpha)).toBe(lost.beta);
      await cluster.stopAll();

      // A file that is not this sync's peer, and no peer file at all, are refused before anything is compared.
      const notThePeer = beta.configFile.replace(/\.yaml$/, '-active.yaml');
      writeFileSync(notThePeer, readFileSync(beta.configFile, 'utf8').replace('mode: passive', 'mode: active'));
      const wrong = await alpha.cli('verify', '--peer-config', notThePeer);
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toBe(`tablesync: ${alpha.configFile} and ${notThePeer} are both active in sync "${syncName}": they are not the two sides of one sync\n`);
      // Without the peer's file, verify asks the peer's daemon through the sync; with both daemons stopped, it says so and gives up.
      const alone = await alpha.cli('verify', '--timeout', '2');
      expect(alone.stdout).toContain('tablesync run must be running here and on beta');
      expect(alone.stderr).toMatch(/^tablesync: instance beta has not answered verify for 2 s \(sync "head-office"\): its request \(batch \d+\) /);
      expect(alone.code).toBe(1);
    }, testTimeout);
  },
  [
    { active: 'sqlite', passive: 'sqlite' },
    { active: 'mysql', passive: 'sqlite' },
  ],
);

describe('values as verify compares them', () => {
  it('writes a number one way whatever held it, and keeps text as it is', () => {
    globalExpect(comparable('10.50', 'decimal')).toBe(comparable(10.5, 'float'));
    globalExpect(comparable('42', 'integer')).toBe(comparable(42, 'integer'));
    globalExpect(comparable('-0.0', 'decimal')).toBe('0');
    globalExpect(comparable('007.100', 'decimal')).toBe('7.1');
    globalExpect(comparable(true, 'boolean')).toBe(comparable(1, 'integer'));
    globalExpect(comparable('10.50', 'text')).not.toBe(comparable('10.5', 'text'));
    globalExpect(comparable(null, 'text')).not.toBe(comparable('', 'text'));
    globalExpect(comparable({ b64: 'AAE=' }, 'binary')).not.toBe(comparable('AAE=', 'text'));
  });
});
