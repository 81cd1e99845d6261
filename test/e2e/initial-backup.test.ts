import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'vitest';
import { createCrmPair, syncName } from '../support/crm.js';
import { describeEachPair, newCluster, type SyncInstance } from '../support/sync-harness.js';

/**
 * The receiving side's safety backup before an initial sync: `initial-sync`
 * on alpha sends its rows to beta, whose daemon backs up its synced tables
 * (when they hold rows) before it applies the first of them, and answers
 * where the backup went; the command prints that answer. A beta that cannot
 * back up applies nothing until it can.
 */

/** Several daemons and commands per test: on a loaded machine, more than the suite's 60 s. */
const testTimeout = 120_000;

async function seed(instance: SyncInstance, emails: readonly string[]): Promise<void> {
  for (const email of emails) {
    if (instance.name === 'alpha') await instance.exec('INSERT INTO clients (name, email) VALUES (?, ?)', [`client ${email}`, email]);
    else await instance.exec('INSERT INTO customers (company_name, email_address) VALUES (?, ?)', [`customer ${email}`, email]);
  }
}

const customers = (beta: SyncInstance) => beta.rows('customers', 'customer_id');

/** The path the command printed for beta's backup, from `… (N rows): FILE, on its machine`. */
function peerBackupFile(output: string): string {
  const found = /^instance beta \(sync head-office\) backed up its synced tables and tablesync's state before applying anything \(\d+ rows?\): (\S+), on its machine$/m.exec(output);
  if (found?.[1] === undefined) throw new Error(`initial-sync printed no backup of beta:\n${output}`);
  return found[1];
}

describeEachPair(
  'the receiving side backs up before an initial sync',
  (pair) => {
    it('takes a backup before the first rows when it holds data; the sender prints where; it restores the receiver as it was', { timeout: testTimeout }, async (context) => {
      const { expect } = context;
      const cluster = newCluster(context);
      const { alpha, beta } = await createCrmPair(cluster, pair);
      alpha.backupsDir = join(cluster.root, 'alpha-backups');
      beta.backupsDir = join(cluster.root, 'beta-backups');
      await seed(alpha, ['a1@example.com', 'a2@example.com', 'a3@example.com']);
      await seed(beta, ['b1@example.com', 'b2@example.com']);
      const before = await customers(beta);
      await Promise.all([alpha.start(), beta.start()]);

      const result = await alpha.cli('initial-sync');
      expect(result.code, result.stdout + result.stderr).toBe(0);
      expect(result.stdout).toContain('the receiving side backs itself up before it applies any of these rows: ');
      const file = peerBackupFile(result.stdout);
      expect(file.startsWith(join(beta.backupsDir, 'beta-before-initial-sync-')), file).toBe(true);
      expect(statSync(file).mode & 0o777, 'readable by its owner only').toBe(0o600);
      // alpha's own backup went to alpha's folder, beta's only to beta's.
      expect(readdirSync(alpha.backupsDir)).toEqual([expect.stringMatching(/^alpha-before-initial-sync-.*\.tsbackup$/)]);
      expect(readdirSync(beta.backupsDir)).toHaveLength(1);
      expect(beta.logLines().some((line) => line.msg.startsWith(`safety backup before the initial sync from alpha: ${file}`))).toBe(true);
      expect(await customers(beta)).toHaveLength(5);

      // The backup holds beta as it was before the initial sync's rows.
      await Promise.all([alpha.stop(), beta.stop()]);
      const restored = await beta.cli('restore', '-i', file);
      expect(restored.code, restored.stdout + restored.stderr).toBe(0);
      expect(await customers(beta)).toEqual(before);
    });

    it('takes none when its synced tables are empty, nor with --no-backup', { timeout: testTimeout }, async (context) => {
      const { expect } = context;
      const cluster = newCluster(context);
      const { alpha, beta } = await createCrmPair(cluster, pair);
      beta.backupsDir = join(cluster.root, 'beta-backups');
      await seed(alpha, ['a1@example.com', 'a2@example.com']);
      await Promise.all([alpha.start(), beta.start()]);

      const empty = await alpha.cli('initial-sync');
      expect(empty.code, empty.stdout + empty.stderr).toBe(0);
      expect(empty.stdout).toContain(`instance beta (sync ${syncName}) holds no rows in its synced tables: it needed no safety backup`);
      expect(existsSync(beta.backupsDir)).toBe(false);

      // Now beta holds alpha's two rows, but the sender says to go without.
      const skipped = await alpha.cli('initial-sync', '--restart', '--no-backup');
      expect(skipped.code, skipped.stdout + skipped.stderr).toBe(0);
      expect(skipped.stdout).toContain(`--no-backup: the receiving side takes no safety backup either: instance beta (sync ${syncName})`);
      expect(skipped.stdout).not.toContain('safety backup of the synced tables');
      expect(existsSync(beta.backupsDir)).toBe(false);
      expect(await customers(beta)).toHaveLength(2);
    });

    it('applies nothing while it cannot back up, says why through the sender, and goes on once it can', { timeout: testTimeout }, async (context) => {
      const { expect } = context;
      const cluster = newCluster(context);
      const { alpha, beta } = await createCrmPair(cluster, pair);
      // Where beta's backups should go, a file: the folder cannot be made.
      beta.backupsDir = join(cluster.root, 'beta-backups');
      writeFileSync(beta.backupsDir, 'in the way');
      await seed(alpha, ['a1@example.com', 'a2@example.com', 'a3@example.com']);
      await seed(beta, ['b1@example.com']);
      const before = await customers(beta);
      await Promise.all([alpha.start(), beta.start()]);

      const command = alpha.startCli(context, 'initial-sync');
      await command.waitFor('could not take its safety backup, so it applies none of these rows yet: ', 60_000);
      expect(command.output()).toContain(`cannot take the safety backup before the initial sync from alpha: cannot create the folder for the safety backup, ${beta.backupsDir}: `);
      expect(command.output()).toContain(`set backups.dir in ${beta.configFile} to a folder this daemon's user can write`);
      expect(await customers(beta), 'beta applied none of the rows').toEqual(before);
      expect(beta.logLines().some((line) => line.level === 'error' && line.msg.startsWith('cannot take the safety backup before the initial sync from alpha'))).toBe(true);

      // Fixed, and beta's daemon started again (a reload does the same): the backup is taken and the rows follow.
      rmSync(beta.backupsDir);
      await beta.stop();
      await beta.start();
      const code = await command.exited;
      expect(code, command.output()).toBe(0);
      const file = peerBackupFile(command.output());
      expect(existsSync(file)).toBe(true);
      expect(await customers(beta)).toHaveLength(4);
    });
  },
  [
    { active: 'sqlite', passive: 'sqlite' },
    { active: 'postgres', passive: 'mysql' },
  ],
);
