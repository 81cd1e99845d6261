import { it } from 'vitest';
import type { UserMatch } from '../../src/config/types.js';
import { alphaClient, betaCustomer, createCrmPair } from '../support/crm.js';
import { describeEachPair, newCluster, type SyncInstance } from '../support/sync-harness.js';

/**
 * Each side has its own users table, with its own ids for the same people.
 * The rows are chosen so that each rule finds a different beta user for
 * alpha's Alice: by login `alice` → 7, by full name `Alice Archer` → 9, by
 * id 1 → 1 (whoever that is on beta). Zoe matches nobody on beta by any rule.
 */
const alphaUsers: [number, string, string][] = [
  [1, 'alice', 'Alice Archer'],
  [2, 'bob', 'Bob Baker'],
  [3, 'zoe', 'Zoe Zed'],
];
const betaStaff: [number, string, string][] = [
  [1, 'mallory', 'Mallory Mint'],
  [2, 'carl', 'Carl Cole'],
  [7, 'alice', 'A. Archer'],
  [9, 'a.archer', 'Alice Archer'],
  [12, 'robert', 'Bob Baker'],
  [14, 'bob', 'Robert Baker'],
];

interface Expectation {
  rule: UserMatch;
  /** Beta's user for alpha's Alice (1), and for alpha's Bob (2); and the other way round. */
  alice: number;
  bob: number;
  /** How Zoe travels under the rule, as the warning names her. */
  zoe: string;
}

const rules: Expectation[] = [
  { rule: 'login', alice: 7, bob: 14, zoe: 'zoe' },
  { rule: 'fullName', alice: 9, bob: 12, zoe: 'Zoe Zed' },
  { rule: 'id', alice: 1, bob: 2, zoe: '3' },
];

function warnedAbout(instance: SyncInstance, user: string): boolean {
  return instance.logLines().some((line) => line.level === 'warn' && /user/i.test(line.msg) && Object.values(line).some((v) => v === user));
}

describeEachPair('user references', (pair) => {
  for (const { rule, alice, bob, zoe } of rules) {
    it(`matched by ${rule}: each side gets its own id for the same user, and no match leaves the field unset with a warning`, async ({ expect, onTestFinished }) => {
      const cluster = newCluster({ onTestFinished });
      const { alpha, beta } = await createCrmPair(cluster, pair, { users: rule });
      for (const user of alphaUsers) await alpha.exec('INSERT INTO users (id, login, full_name) VALUES (?, ?, ?)', user);
      for (const user of betaStaff) await beta.exec('INSERT INTO staff (staff_id, username, display_name) VALUES (?, ?, ?)', user);
      await cluster.startAll();

      await alpha.exec("INSERT INTO clients (name, email, manager_id) VALUES ('Acme', 'acme@example.com', 1)");
      await alpha.exec("INSERT INTO clients (name, email, manager_id) VALUES ('Zed Corp', 'zed@example.com', 3)");
      await beta.exec("INSERT INTO customers (company_name, email_address, account_manager) VALUES ('Initech', 'initech@example.com', ?)", [bob]);
      await cluster.waitInStep();
      await cluster.waitSettled();

      expect(await betaCustomer(beta, 'acme@example.com')).toMatchObject({ account_manager: String(alice) });
      expect(await alphaClient(alpha, 'initech@example.com')).toMatchObject({ manager_id: '2' });
      // Zoe has no counterpart on beta: the field stays unset there, and beta says why.
      expect(await betaCustomer(beta, 'zed@example.com')).toMatchObject({ company_name: 'Zed Corp', account_manager: null });
      expect(warnedAbout(beta, zoe), `beta logs a warning naming ${JSON.stringify(zoe)}`).toBe(true);

      // A changed reference travels too, and is turned into the other side's id.
      await alpha.exec("UPDATE clients SET manager_id = 2 WHERE email = 'acme@example.com'");
      await cluster.waitFor(`alpha's Bob to become beta's user ${bob}`, async () => (await betaCustomer(beta, 'acme@example.com'))?.account_manager === String(bob));
      await beta.exec("UPDATE customers SET account_manager = ? WHERE email_address = 'initech@example.com'", [alice]);
      await cluster.waitFor("beta's Alice to become alpha's user 1", async () => (await alphaClient(alpha, 'initech@example.com'))?.manager_id === '1');
      await cluster.waitSettled();
      expect(await alphaClient(alpha, 'acme@example.com')).toMatchObject({ manager_id: '2' });
      expect(await betaCustomer(beta, 'initech@example.com')).toMatchObject({ account_manager: String(alice) });
    });
  }
});
