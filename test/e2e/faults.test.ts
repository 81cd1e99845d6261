import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { alphaClient, betaCustomer, createCrmPair } from '../support/crm.js';
import { expectCleanEnd, Writers } from '../support/round-writers.js';
import { FaultProxy, type Fault } from '../support/fault-proxy.js';
import { newCluster, waitFor, type DialectPair, type LogLine, type SyncInstance } from '../support/sync-harness.js';

/**
 * Guarantee 4 (nothing lost) with real daemons and real faults: connections
 * that fail in every way between the two daemons of an http sync, an FTP
 * server restarted under their feet, and files in a download folder that
 * are not what they claim to be.
 */

/** Generous: the daemons share this machine's two cores with every other test running at the time. */
const testTimeout = 240_000;

const sqlite: DialectPair = { active: 'sqlite', passive: 'sqlite' };

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Log lines of `side` from `from` on whose message matches. */
function logged(side: SyncInstance, from: number, pattern: RegExp): number {
  return side.logLines().slice(from).filter((line) => pattern.test(line.msg)).length;
}

describe.concurrent('faults between two daemons [sqlite↔sqlite]', () => {
  it('over http, loses nothing and doubles nothing through connections dropped, reset, delayed, cut mid-body and requests delivered twice', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const crm = await createCrmPair(cluster, sqlite, { transport: 'http' });
    const { alpha, beta, sync } = crm;
    // The passive side first, to know its port; then the active side, calling through the proxy.
    await beta.start();
    const proxy = await FaultProxy.start({ host: '127.0.0.1', port: beta.listenPort ?? 0 });
    onTestFinished(() => proxy.close());
    sync.activeUrl = proxy.url;
    await alpha.start();
    const writers = new Writers(crm);
    await writers.round(0);
    await expectCleanEnd(cluster, crm, writers);

    // Every connection from now on fails in one of these ways. Keep-alive would let one good
    // connection carry everything, so every fault ends its connection sooner or later: `delay` and
    // `cut` cut the answers after some bytes, `cut-body` in the middle of the first real body of an
    // answer (a page of beta's batches) or of a request (a batch of alpha's), and `duplicate` once both
    // copies of its request have been answered: alpha's batch delivered twice, alpha told of the second
    // copy's fate and sending it again; alpha's acknowledgement of a batch of beta's delivered twice.
    // Two duplicates a cycle: each second copy is a failed authentication from alpha's address, and
    // five within a minute would get alpha throttled (429), which is not what this test is about.
    const cycle: Fault[] = [
      { kind: 'duplicate', method: 'PUT', answer: 'copy' },
      { kind: 'drop' },
      { kind: 'cut-body', minBodyBytes: 200 },
      { kind: 'reset' },
      { kind: 'delay', ms: 500, afterBytes: 6_000 },
      { kind: 'cut', afterBytes: 4_000 },
      { kind: 'cut-body', minBodyBytes: 200 },
      { kind: 'drop' },
      { kind: 'delay', ms: 300, afterBytes: 3_000 },
      { kind: 'reset' },
      { kind: 'cut', afterBytes: 1_500 },
      { kind: 'cut-body', minBodyBytes: 200, in: 'request' },
      { kind: 'duplicate', method: 'DELETE' },
    ];
    const cycles = 2;
    for (let i = 0; i < cycles; i += 1) proxy.inject(...cycle);
    const faulty = proxy.connections.length;
    // The connection open now would carry everything: cut it, so that the next ones meet the faults.
    proxy.cutAll();
    // Changes on both sides until every fault has been met and the connection after them opened (so
    // that the last faulty one has ended too): no fixed pause, the faults' own pace.
    for (let round = 1; proxy.connections.length <= faulty + cycle.length * cycles; round += 1) {
      if (round > 80) throw new Error(`the faults were not all met after 80 rounds: ${JSON.stringify(proxy.connections.slice(faulty))}`);
      const seen = proxy.connections.length;
      await writers.round(round);
      // The next round once this one's changes met a new connection, or got through anyway.
      await waitFor(`round ${round} to meet another connection or arrive`, async () => proxy.connections.length > seen || (await writers.arrived(round)), {
        timeoutMs: 60_000,
        intervalMs: 20,
        explain: async () => `connections: ${JSON.stringify(proxy.connections.slice(faulty))}\n${await cluster.describe()}`,
      });
    }
    await expectCleanEnd(cluster, crm, writers);

    const kinds = proxy.connections.slice(faulty).map((c) => c.fault);
    for (const kind of ['drop', 'reset', 'delay', 'cut', 'cut-body', 'duplicate'] as const) expect(kinds.filter((k) => k === kind).length, `${kind} connections`).toBeGreaterThanOrEqual(cycles * 2);
    expect(proxy.connections.filter((c) => c.cutMidBody === 'answer').length, 'answers cut in the middle of their body').toBeGreaterThanOrEqual(cycles * 2);
    expect(proxy.connections.filter((c) => c.cutMidBody === 'request').length, 'batches cut in the middle on their way').toBeGreaterThanOrEqual(1);
    // Every request delivered twice: beta answered the first copy, and refused the second as a replay
    // (it never reached the sync); a batch's, whose refusal alpha was told of, alpha sent again under
    // a fresh signature, so that beta had it at least three times.
    const duplicated = proxy.connections.slice(faulty).flatMap((c) => (c.duplicated === undefined ? [] : [c.duplicated]));
    const puts = duplicated.filter((d) => d.request.startsWith('PUT /v1/syncs/'));
    expect(puts.length, 'batches delivered twice').toBeGreaterThanOrEqual(cycles);
    expect(duplicated.filter((d) => d.request.startsWith('DELETE /v1/syncs/')).length, 'acknowledgements delivered twice').toBeGreaterThanOrEqual(cycles);
    for (const d of duplicated) expect({ statuses: d.statuses, copyError: d.copyError }, `beta's answers to both copies of ${d.request}`).toEqual({ statuses: [204, 401], copyError: 'replayed' });
    for (const put of puts) expect(proxy.timesSeen(put.request), `how often ${put.request} reached the proxy`).toBeGreaterThanOrEqual(3);
    // However often a batch arrived, each side applied it once.
    for (const side of [alpha, beta]) {
      const applied = side.logLines().filter((l) => l.msg === 'batch applied').map((l) => String(l.batch));
      expect(applied.filter((name, i) => applied.indexOf(name) !== i), `batches ${side.name} applied more than once`).toEqual([]);
    }
    for (const put of puts) {
      const name = decodeURIComponent(put.request.split(' ')[1]?.split('/').pop() ?? '');
      expect(beta.logLines().filter((l) => l.msg === 'batch applied' && l.batch === name).length, `times beta applied ${name}, delivered twice`).toBe(1);
    }
    // The daemons kept running throughout, and each side applied the other's batches.
    expect(alpha.running && beta.running).toBe(true);
    expect(logged(alpha, 0, /^batch applied$/)).toBeGreaterThan(0);
    expect(logged(beta, 0, /^batch applied$/)).toBeGreaterThan(0);
    await cluster.stopAll();
  });

  it('over ftp, loses nothing and doubles nothing when the FTP server stops and starts again in the middle of an upload, several times', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const crm = await createCrmPair(cluster, sqlite, { transport: 'ftp' });
    const { alpha, beta, sync } = crm;
    await cluster.startAll();
    const writers = new Writers(crm);
    await writers.round(0);
    await expectCleanEnd(cluster, crm, writers);
    const server = cluster.ftpServer;
    // The server's folders on disk. A daemon uploads a batch (or an acknowledgement) as a temporary
    // dotfile, `.<name>.<ms>.<random>.tmp`, and renames it into place once it is whole: while that
    // file is there, a transfer is under way and the batch is not delivered yet.
    const folders = [alpha.downloadFolder(sync.name), beta.downloadFolder(sync.name)];
    const temporary = /^\.(.+)\.\d{13,}\.[0-9a-f]{8}\.tmp$/;
    const temporaries = (): { folder: string; name: string }[] => folders.flatMap((folder) => readdirSync(folder).filter((n) => temporary.test(n)).map((name) => ({ folder, name })));
    // An upload that a stop cut off leaves its temporary file behind (a daemon clears away only its
    // own, once they are an hour old): those are not uploads under way.
    let leftovers = new Set<string>();
    const uploading = (): { folder: string; name: string } | undefined => temporaries().find((t) => !leftovers.has(t.name));

    const restarts = 4;
    let round = 0;
    let stops = 0;
    const interrupted: string[] = [];
    while (interrupted.length < restarts) {
      if (stops >= restarts * 10) throw new Error(`only ${interrupted.length} of ${stops} stops of the FTP server fell in the middle of an upload: ${interrupted.join(', ')}`);
      // New changes on both sides, until an upload of theirs is caught under way; a round that gets
      // through between two looks is followed by another. The server runs in this process and moves
      // on only while this loop waits, so what is seen is mostly still so when it stops: whether it
      // was is checked after the stop.
      let caught: { folder: string; name: string } | undefined;
      leftovers = new Set(temporaries().map((t) => t.name));
      while (caught === undefined) {
        round += 1;
        await writers.round(round);
        const until = Date.now() + 30_000;
        for (;;) {
          caught = uploading();
          if (caught !== undefined || (await writers.arrived(round))) break;
          if (Date.now() > until) throw new Error(`round ${round} neither arrived nor met an upload under way within 30 s\n${await cluster.describe()}`);
          await pause(1);
        }
      }
      const from = { alpha: alpha.logLines().length, beta: beta.logLines().length };
      await server.stop();
      stops += 1;
      // Mid-transfer only if the upload had not been renamed into place when the server went.
      const delivered = join(caught.folder, temporary.exec(caught.name)?.[1] ?? '');
      if (!existsSync(join(caught.folder, caught.name)) || existsSync(delivered)) {
        await server.start();
        continue;
      }
      interrupted.push(caught.name);
      round += 1;
      await writers.round(round);
      // Both daemons ran into the stopped server before it comes back.
      await cluster.waitFor(
        'both daemons to find the FTP server gone',
        () => logged(alpha, from.alpha, /FTP server|exchange failed|cannot look for arrivals/) > 0 && logged(beta, from.beta, /FTP server|exchange failed|cannot look for arrivals/) > 0,
        { timeoutMs: 60_000 },
      );
      await server.start();
    }
    await expectCleanEnd(cluster, crm, writers);
    expect(interrupted, 'uploads cut off by a stop of the server').toHaveLength(restarts);
    expect(server.starts).toBe(stops + 1);
    process.stdout.write(`[ftp restarts] ${stops} stops of the FTP server, ${interrupted.length} in the middle of an upload: ${interrupted.join(', ')}\n`);
    expect(alpha.running && beta.running).toBe(true);
    await cluster.stopAll();
  });

  /*
   * The peer unreachable when a daemon starts is a fault like any other (both machines rebooted,
   * the HQ server or the FTP server still down): the daemon is expected to start, say so, and sync
   * once the peer is back, as it does when the peer goes away later.
   */
  it('over http, an active daemon started while its passive peer is down keeps running, and syncs once the peer is up', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const crm = await createCrmPair(cluster, sqlite, { transport: 'http' });
    const { alpha, beta } = crm;
    // Beta's daemon is not running: nothing listens where alpha calls.
    const started = await alpha.start().then(
      () => 'running',
      (err: Error) => err.message,
    );
    expect(started, 'alpha starts although its passive peer cannot be reached yet').toBe('running');
    await beta.start();
    const writers = new Writers(crm);
    await writers.round(0);
    await expectCleanEnd(cluster, crm, writers);
  });

  it('over ftp, daemons started while the FTP server is down keep running, and sync once it is up', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const crm = await createCrmPair(cluster, sqlite, { transport: 'ftp' });
    const { alpha, beta } = crm;
    const server = await cluster.startFtpServer();
    await server.stop();
    const started = await Promise.all(
      [alpha, beta].map((side) =>
        side.start().then(
          () => `${side.name} running`,
          (err: Error) => `${side.name}: ${err.message}`,
        ),
      ),
    );
    expect(started, 'both daemons start although the FTP server cannot be reached yet').toEqual(['alpha running', 'beta running']);
    await server.start();
    const writers = new Writers(crm);
    await writers.round(0);
    await expectCleanEnd(cluster, crm, writers);
  });

  it('refuses a truncated batch and a garbage file in a folder download folder, keeps them aside, and converges once the sender sends again', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const crm = await createCrmPair(cluster, sqlite);
    const { alpha, beta, sync } = crm;
    await cluster.startAll();
    const writers = new Writers(crm);
    await writers.round(0);
    await expectCleanEnd(cluster, crm, writers);

    // A real batch of alpha's, waiting for beta, cut to half its bytes under its own name; and garbage beside it.
    await beta.stop();
    await writers.round(1);
    const download = beta.downloadFolder(sync.name);
    await cluster.waitFor("alpha's batch to wait for beta", () => beta.waitingBatches(sync.name).length > 0, { timeoutMs: 60_000 });
    const [real] = beta.waitingBatches(sync.name).sort();
    if (real === undefined) throw new Error('no batch');
    const whole = readFileSync(join(download, real));
    const half = whole.subarray(0, Math.floor(whole.length / 2));
    writeFileSync(join(download, `.${real}.truncating`), half);
    renameSync(join(download, `.${real}.truncating`), join(download, real));
    const garbage = 'aaa-garbage.json';
    const junk = randomBytes(700);
    writeFileSync(join(download, garbage), junk);

    await beta.start();
    await cluster.waitFor('beta to refuse both files', async () => (await beta.refusedBatches()).length >= 2, { timeoutMs: 60_000 });
    const refused = await beta.refusedBatches();
    expect(refused.map((r) => r.name).sort()).toEqual([garbage, real].sort());
    for (const row of refused) expect(row.reason, `why ${row.name} was refused`).toMatch(/^the batch is not valid JSON \(.*\); it may be cut short$/s);
    expect(refused.find((r) => r.name === real)?.size).toBe(half.length);
    // Kept aside in rejected/, each with its reason beside it; and said in the log. The daemon moves a
    // file there after it has recorded the refusal in its database, so the move may still be under way.
    const rejectedDir = join(download, 'rejected');
    await cluster.waitFor('beta to move both files into rejected/', () => existsSync(rejectedDir) && readdirSync(rejectedDir).length >= 4, { timeoutMs: 30_000 });
    const rejected = readdirSync(rejectedDir).sort();
    for (const name of [real, garbage]) {
      const kept = rejected.filter((file) => file.startsWith(`${name}.`));
      expect(kept, `rejected/ keeps ${name} and its reason`).toHaveLength(2);
      const file = kept.find((f) => !f.endsWith('.reason.txt')) ?? '';
      expect(readFileSync(join(download, 'rejected', file)).equals(name === real ? half : junk), `rejected/${file} holds the bytes as they arrived`).toBe(true);
      expect(readFileSync(join(download, 'rejected', `${file}.reason.txt`), 'utf8')).toMatch(/not valid JSON/);
    }
    const warned = (): LogLine[] => beta.logLines().filter((l) => l.msg === 'batch refused; kept in tablesync_refused_batches');
    await cluster.waitFor('beta to log both refusals', () => warned().length >= 2);
    const warnings = warned();
    expect(warnings.map((l) => l.batch).sort()).toEqual([garbage, real].sort());
    expect(beta.waitingBatches(sync.name)).not.toContain(garbage);

    // The daemon goes on: changes flow both ways, and alpha sends the batch beta never had whole again.
    await writers.round(2);
    await expectCleanEnd(cluster, crm, writers, [garbage, real]);
    expect(await beta.refusedBatches(), 'nothing else refused').toHaveLength(2);
    expect(beta.running).toBe(true);
    expect(logged(alpha, 0, /^batch sent again/)).toBeGreaterThan(0);
    // What was in the truncated batch arrived all the same.
    for (const email of ['alpha-1-0@example.com', 'alpha-1-1@example.com']) expect(await betaCustomer(beta, email)).toMatchObject({ company_name: writers.expected.get(email) });
    expect(await alphaClient(alpha, 'beta-2-1@example.com')).toMatchObject({ name: writers.expected.get('beta-2-1@example.com') });
    await cluster.stopAll();
  });
});
