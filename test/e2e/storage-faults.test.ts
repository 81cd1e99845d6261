import { chmodSync, copyFileSync, existsSync, readFileSync, renameSync, rmSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { createCrmPair } from '../support/crm.js';
import { expectCleanEnd, Writers } from '../support/round-writers.js';
import { newCluster, type DialectPair, type LogLine } from '../support/sync-harness.js';

/**
 * Guarantee 4 against the storage under a folder sync: batch files that are
 * duplicated, emptied, left half-written by a sender that crashed, made
 * unreadable, or brought back after they were applied. faults.test.ts
 * covers a batch cut in half under its own name and a garbage file.
 */

const sqlite: DialectPair = { active: 'sqlite', passive: 'sqlite' };
/** Root reads a file whatever its mode: for root, a link to itself (ELOOP) stands in for a file it may not read. */
const root = process.getuid?.() === 0;

/** Writes a file the way a peer's transport does: complete, then renamed into place (over whatever has the name). */
function drop(folder: string, name: string, body: Buffer): void {
  writeFileSync(join(folder, `.${name}.writing`), body);
  renameSync(join(folder, `.${name}.writing`), join(folder, name));
}

describe.concurrent('storage faults under a folder sync [sqlite↔sqlite]', () => {
  it('loses nothing and doubles nothing through batch files duplicated, emptied, left half-written, made unreadable and brought back', { timeout: 180_000 }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const crm = await createCrmPair(cluster, sqlite);
    const { alpha, beta, sync } = crm;
    await cluster.startAll();
    const writers = new Writers(crm);
    await writers.round(0);
    await expectCleanEnd(cluster, crm, writers);
    const download = beta.downloadFolder(sync.name);

    // Beta down: alpha's batches of three rounds wait in beta's download folder, one per round.
    await beta.stop();
    for (let round = 1; round <= 3; round += 1) {
      const before = beta.waitingBatches(sync.name).length;
      await writers.round(round);
      await cluster.waitFor(`alpha's batch of round ${round} to wait for beta`, () => beta.waitingBatches(sync.name).length > before, { timeoutMs: 60_000 });
    }
    const [duplicated, emptied, unreadable] = beta.waitingBatches(sync.name).sort();
    if (duplicated === undefined || emptied === undefined || unreadable === undefined) throw new Error('three batches were to wait for beta');
    const kept = readFileSync(join(download, duplicated));

    // Duplicated: the same batch under a second name, which sorts before the first.
    const copy = duplicated.replace(/\.json$/, '-copy.json');
    copyFileSync(join(download, duplicated), join(download, copy));
    // Emptied: a file whose writer died between creating it and writing it.
    truncateSync(join(download, emptied), 0);
    // Left half-written: a sender killed in the middle of writing its temporary file, an hour ago.
    const temp = `.${emptied}.424242.7.deadbeef.tmp`;
    writeFileSync(join(download, temp), kept.subarray(0, Math.floor(kept.length / 2)));
    utimesSync(join(download, temp), new Date(Date.now() - 2 * 3_600_000), new Date(Date.now() - 2 * 3_600_000));
    // Unreadable: permissions someone got wrong.
    const unreadableBody = readFileSync(join(download, unreadable));
    if (root) {
      rmSync(join(download, unreadable));
      symlinkSync(unreadable, join(download, unreadable));
    } else chmodSync(join(download, unreadable), 0);

    await beta.start();
    const unreadableWarnings = (): LogLine[] => beta.logLines().filter((l) => l.level === 'warn' && String(l.msg).startsWith(`cannot read batch file ${join(download, unreadable)}`));
    await cluster.waitFor('beta to say it cannot read the file', () => unreadableWarnings().length > 0, { timeoutMs: 60_000 });
    expect(unreadableWarnings()[0]?.code).toBe(root ? 'ELOOP' : 'EACCES');
    // Batches apply in order, so nothing after it can; it is said once, not at every look, and the daemon waits for someone to fix it.
    await cluster.holdsFor('beta to say it only once', () => unreadableWarnings().length === 1, 2_000);
    expect(beta.running).toBe(true);
    if (root) drop(download, unreadable, unreadableBody);
    else chmodSync(join(download, unreadable), 0o644);
    await writers.round(4);
    await expectCleanEnd(cluster, crm, writers, [emptied]);

    const [refused, ...others] = await beta.refusedBatches();
    expect(others, 'only the emptied file refused').toEqual([]);
    expect(refused).toMatchObject({ name: emptied, size: 0, reason: 'the batch is not valid JSON (Unexpected end of JSON input); it may be cut short' });
    expect(alpha.logLines().some((l) => /^batch sent again/.test(l.msg)), 'alpha sent the emptied batch again').toBe(true);
    expect(existsSync(join(download, copy)), 'the copy was taken for a resend and dropped').toBe(false);
    // The half-written temporary file is no batch: never read; the sender clears it away once it is old.
    expect(beta.logLines().some((l) => JSON.stringify(l).includes(temp)), 'beta never looked at the temporary file').toBe(false);
    await alpha.kill();
    await alpha.start();
    await cluster.waitFor("alpha to clear away its old temporary file", () => !existsSync(join(download, temp)));

    // Brought back: a batch applied long ago, restored into the folder from a backup.
    drop(download, duplicated, kept);
    await cluster.waitFor('beta to drop the batch it applied before', () => !existsSync(join(download, duplicated)));
    await writers.round(5);
    await expectCleanEnd(cluster, crm, writers, [emptied]);
    expect((await beta.refusedBatches()).length).toBe(1);
    expect(alpha.running && beta.running).toBe(true);
    await cluster.stopAll();
  });
});
