import { describe, it } from 'vitest';
import { createCrmPair } from '../support/crm.js';
import { orphanLinks } from '../support/orphan-links.js';
import { newCluster, type DialectPair, type SyncInstance } from '../support/sync-harness.js';

/**
 * The end check that expectCleanEnd and the crash loop share: it must name a
 * link whose local record does not exist and one whose peer record does not,
 * and stay quiet about links between records that both exist. Links are
 * written by hand here, as a bug in the engine would leave them; no daemon
 * runs.
 */

const sqlite: DialectPair = { active: 'sqlite', passive: 'sqlite' };

async function link(side: SyncInstance, sync: string, local: string, peer: string): Promise<void> {
  await side.exec('INSERT INTO tablesync_links (sync_name, table_number, local_id, peer_id, linked_at) VALUES (?, 1, ?, ?, 0)', [sync, local, peer]);
}

describe('orphanLinks [sqlite↔sqlite]', () => {
  it('names every link to a record that does not exist, on either side, and only those', async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta, sync } = await createCrmPair(cluster, sqlite);
    for (const side of [alpha, beta]) {
      side.writeConfig();
      const setup = await side.cli('setup');
      expect(setup.code, `${side.name}'s setup: ${setup.stderr}`).toBe(0);
    }
    await alpha.exec("INSERT INTO clients (id, name, email) VALUES (1, 'one', 'one@example.com'), (2, 'two', 'two@example.com')");
    await beta.exec("INSERT INTO customers (customer_id, company_name, email_address) VALUES (11, 'one', 'one@example.com'), (12, 'two', 'two@example.com')");
    await link(alpha, sync.name, '1', '11');
    await link(beta, sync.name, '11', '1');
    expect(await orphanLinks(sync), 'a link between two records that exist').toEqual([]);

    // Alpha links a client it does not have; beta links a customer of its own to a client alpha does not have.
    await link(alpha, sync.name, '7', '12');
    await link(beta, sync.name, '12', '8');
    expect(await orphanLinks(sync)).toEqual([
      "alpha links clients 7, which does not exist, to beta's 12",
      "beta links customers 12 to alpha's clients 8, which does not exist",
    ]);
  });
});
