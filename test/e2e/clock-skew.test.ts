import { describe, it } from 'vitest';
import { alphaClient, betaCustomer, createCrmPair } from '../support/crm.js';
import { fakeTimeLibrary, shiftedClock, sqliteExecIn } from '../support/shifted-clock.js';
import { newCluster, type LogLine } from '../support/sync-harness.js';

/**
 * DESIGN section 5: a change's time is the application's, by its own side's
 * clock, and clocks that disagree are reported. Beta runs an hour ahead:
 * its daemon and its application are real processes under libfaketime (the
 * SQLite capture triggers stamp changes with the writing process's clock),
 * alpha and the test run on the real clock.
 */

const hour = 3_600_000;

if (fakeTimeLibrary === undefined) {
  process.stderr.write('\n[tablesync tests] libfaketime is not installed (apt-get install faketime): skipping the clock skew test.\n');
}

describe.runIf(fakeTimeLibrary !== undefined)('two instances whose clocks disagree by an hour [sqlite↔sqlite]', () => {
  it('converge under newest-wins, and the side whose clock is behind says once how far the other is ahead', { timeout: 120_000 }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta, sync } = await createCrmPair(cluster, { active: 'sqlite', passive: 'sqlite' }, { conflicts: 'newest-wins' });
    const ahead = shiftedClock('+1h');
    beta.env = ahead;
    const betaFile = beta.db.config.file ?? '';
    const onBeta = (statement: string, params: unknown[] = []): Promise<number> => sqliteExecIn(ahead, betaFile, statement, params);
    await cluster.startAll();

    // The shift is real: beta's application and its daemon both live an hour ahead.
    const betaNow = await onBeta("INSERT INTO customers (company_name, email_address) VALUES ('made on beta', 'beta@example.com')");
    expect(betaNow - Date.now()).toBeGreaterThan(hour - 60_000);
    const started = beta.logLines().find((l) => l.msg === 'tablesync is running');
    expect(Date.parse(String(started?.time)) - Date.now(), "the time on beta's log lines").toBeGreaterThan(hour - 60_000);
    await alpha.exec("INSERT INTO clients (name, email) VALUES ('made on alpha', 'alpha@example.com')");
    await cluster.waitInStep(1, { timeoutMs: 60_000 });
    await cluster.waitSettled({ timeoutMs: 60_000 });

    // A conflict: beta edits while its daemon is down, alpha edits the same field a little later in real time.
    await beta.stop();
    await onBeta("UPDATE customers SET company_name = 'renamed on beta, earlier' WHERE email_address = 'alpha@example.com'");
    await alpha.exec("UPDATE clients SET name = 'renamed on alpha, later' WHERE email = 'alpha@example.com'");
    await cluster.waitFor("alpha's change to wait for beta", () => beta.waitingBatches(sync.name).length > 0);
    await beta.start();
    await cluster.waitInStep(1, { timeoutMs: 60_000 });
    // Beta's edit carries a time an hour ahead, so it is the newer one on both sides: the same answer everywhere.
    expect(await alphaClient(alpha, 'alpha@example.com')).toMatchObject({ name: 'renamed on beta, earlier' });
    expect(await betaCustomer(beta, 'alpha@example.com')).toMatchObject({ company_name: 'renamed on beta, earlier' });
    expect((await alpha.conflicts()).map((c) => c.resolution), 'alpha saw the conflict').toEqual(['newest-wins: theirs']);
    expect((await beta.conflicts()).map((c) => c.resolution), 'beta saw the conflict').toEqual(['newest-wins: ours']);

    // More batches from beta: the warning is not repeated for each.
    for (let i = 0; i < 3; i += 1) {
      await onBeta('INSERT INTO customers (company_name, email_address) VALUES (?, ?)', [`more ${i}`, `more-${i}@example.com`]);
      await cluster.waitFor(`beta's record ${i} to reach alpha`, async () => (await alphaClient(alpha, `more-${i}@example.com`)) !== undefined);
    }
    await cluster.waitInStep(1, { timeoutMs: 60_000 });
    await cluster.waitSettled({ timeoutMs: 60_000 });
    expect(await sync.differences(1)).toEqual([]);

    const disagree = (lines: LogLine[]): LogLine[] => lines.filter((l) => l.level === 'warn' && /^clocks disagree/.test(l.msg));
    const [warning, ...repeated] = disagree(alpha.logLines());
    expect(warning?.msg).toMatch(/^clocks disagree: beta's clock is at least 3[56]\d\d s ahead of this side's \(batch head-office\.beta\.\d{12}\.json was sent at .+\)\. newest-wins favours the changes of the side whose clock is ahead: synchronise both clocks \(NTP\)$/);
    expect(Number(warning?.aheadMs)).toBeGreaterThan(hour - 60_000);
    expect(Number(warning?.aheadMs)).toBeLessThan(hour + 60_000);
    expect(repeated, 'the warning is said once, not per batch').toEqual([]);
    expect(alpha.logLines().filter((l) => l.msg === 'batch applied').length, 'batches alpha applied from beta').toBeGreaterThan(3);
    // Beta receives alpha's batches from an hour in its past: late, as far as it can tell, not proof of anything.
    expect(disagree(beta.logLines())).toEqual([]);
    await cluster.stopAll();
  });
});
