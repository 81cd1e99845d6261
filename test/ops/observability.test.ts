import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { conflictsResolveCommand } from '../../src/cli/conflicts.js';
import { parseConfig } from '../../src/config/load-config.js';
import type { InstanceConfig } from '../../src/config/types.js';
import { Daemon } from '../../src/engine/daemon.js';
import { createLogger } from '../../src/log.js';
import { HttpAuth } from '../../src/transports/http/http-auth.js';
import { freePort } from '../support/servers.js';

/**
 * /metrics and /healthz of real daemons over loopback: an active side
 * (east) and a passive side (west) of one http sync, each in its own Daemon
 * with its own SQLite database and its own listener, so that either can be
 * stopped and started again while the other runs.
 */

const password = 'observability-sync-password';
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Side {
  readonly name: 'east' | 'west';
  readonly port: number;
  readonly db: BetterSqlite3.Database;
  readonly log: string[];
  /** The side's configuration, for running commands on it in this process. */
  readonly config: InstanceConfig;
  daemon: Daemon;
  /** A new daemon on the same file and database, as after a restart. */
  start(): Promise<void>;
  url(path: string): string;
}

interface Pair {
  readonly east: Side;
  readonly west: Side;
}

interface PairOptions {
  readonly peerTimeout?: string;
  /** The sync's `conflicts:` rule on both sides; default newest-wins. */
  readonly conflicts?: 'newest-wins' | 'manual';
  /** West's clients table, when a test needs west's database to refuse something east's accepts. */
  readonly westTable?: string;
}

const clientsTable = 'CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT, email TEXT)';

async function startPair(options: PairOptions = {}): Promise<Pair> {
  const dir = await mkdtemp(join(tmpdir(), 'tablesync-observability-'));
  const westPort = await freePort();
  const eastPort = await freePort();
  const sides: Side[] = [];
  cleanups.push(async () => {
    for (const side of sides) {
      await side.daemon.destroy();
      side.db.close();
    }
    await rm(dir, { recursive: true, force: true });
  });

  const make = (name: 'east' | 'west', port: number): Side => {
    const active = name === 'east';
    const transport = active ? `{ type: http, url: "http://127.0.0.1:${westPort}", password: "${password}" }` : `{ type: http, password: "${password}" }`;
    const text = [
      `instance: ${name}`,
      `database: { dialect: sqlite, file: ./${name}.sqlite }`,
      // The active side listens too: for /healthz and /metrics only.
      `listen: 127.0.0.1:${port}`,
      ...(options.peerTimeout === undefined ? [] : [`health: { peerTimeout: ${options.peerTimeout} }`]),
      'syncs:',
      '  - name: hq',
      `    mode: ${active ? 'active' : 'passive'}`,
      `    transport: ${transport}`,
      '    every: 200ms',
      ...(options.conflicts === undefined ? [] : [`    conflicts: ${options.conflicts}`]),
      '    tables:',
      '      - { table: clients, number: 1, key: id, fields: [{ column: name, number: 2 }, { column: email, number: 3 }] }',
    ].join('\n');
    const db = new BetterSqlite3(join(dir, `${name}.sqlite`));
    db.exec(name === 'west' ? (options.westTable ?? clientsTable) : clientsTable);
    const log: string[] = [];
    const out = new Writable({
      write(chunk: Buffer, _encoding, done) {
        log.push(...chunk.toString().split('\n').filter((line) => line !== ''));
        done();
      },
    });
    const config = parseConfig(text, join(dir, `${name}.yaml`), {}, dir);
    const newDaemon = (): Daemon => new Daemon([config], createLogger('info', out));
    const side: Side = {
      name,
      port,
      db,
      log,
      config,
      daemon: newDaemon(),
      async start() {
        side.daemon = newDaemon();
        await side.daemon.start();
      },
      url: (path) => `http://127.0.0.1:${port}${path}`,
    };
    sides.push(side);
    return side;
  };

  const west = make('west', westPort);
  const east = make('east', eastPort);
  await west.daemon.start();
  await east.daemon.start();
  return { east, west };
}

function names(db: BetterSqlite3.Database): string[] {
  return (db.prepare('SELECT name FROM clients ORDER BY name').all() as { name: string }[]).map((row) => row.name);
}

/** The value of one sample of the Prometheus text format, or undefined if there is none. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const wanted = Object.entries(labels).map(([label, value]) => `${label}="${value}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const present = (match[2] ?? '').split(',');
    if (wanted.every((label) => present.includes(label))) return Number(match[3]);
  }
  return undefined;
}

async function metrics(side: Side): Promise<string> {
  const response = await fetch(side.url('/metrics'));
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return response.text();
}

async function health(side: Side): Promise<{ status: number; body: { status: string; error?: string; reason?: string; syncs?: string[] } }> {
  const response = await fetch(side.url('/healthz'));
  return { status: response.status, body: (await response.json()) as { status: string; error?: string; reason?: string; syncs?: string[] } };
}

function logLines(side: Side): { msg: string; [key: string]: unknown }[] {
  return side.log.map((line) => JSON.parse(line) as { msg: string });
}

/** One series of sync hq on `side` now (labels beyond the instance and the sync in `extra`); undefined when it is not served. */
async function value(side: Side, name: string, extra: Record<string, string> = {}): Promise<number | undefined> {
  return sample(await metrics(side), name, { tablesync_instance: side.name, sync: 'hq', ...extra });
}

/**
 * A request to `side`'s listener as the active side makes them: signed by
 * http-auth.ts with the sync's password (or `password`), or with exactly
 * `headers` instead (none, a replayed set).
 */
async function signedRequest(
  side: Side,
  method: string,
  path: string,
  options: { body?: string; password?: string; sync?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string; sent: Record<string, string> }> {
  const body = Buffer.from(options.body ?? '');
  const sent = options.headers ?? new HttpAuth().signRequest(options.password ?? password, { method, path, sync: options.sync ?? 'hq', body });
  const response = await fetch(side.url(path), { method, headers: sent, body: method === 'GET' || method === 'HEAD' ? undefined : body });
  return { status: response.status, body: await response.text(), sent };
}

function count(db: BetterSqlite3.Database, statement: string): number {
  return (db.prepare(statement).get() as { n: number }).n;
}

describe('/metrics', () => {
  it('counts batches, changes, apply time, conflicts and contact per sync, with no secret in them', async () => {
    const { east, west } = await startPair();
    east.db.prepare("INSERT INTO clients (name, email) VALUES ('Ann', 'ann@example.com')").run();
    west.db.prepare("INSERT INTO clients (name, email) VALUES ('Bob', 'bob@example.com')").run();
    await expect.poll(() => names(west.db), { timeout: 20_000 }).toEqual(['Ann', 'Bob']);
    await expect.poll(() => names(east.db), { timeout: 20_000 }).toEqual(['Ann', 'Bob']);

    // A conflict for certain: the same field changed on both sides while the active side was stopped.
    await east.daemon.close();
    east.db.prepare("UPDATE clients SET email = 'ann@east.example.com' WHERE name = 'Ann'").run();
    west.db.prepare("UPDATE clients SET email = 'ann@west.example.com' WHERE name = 'Ann'").run();
    await east.start();
    const email = (db: BetterSqlite3.Database): string => (db.prepare("SELECT email FROM clients WHERE name = 'Ann'").get() as { email: string }).email;
    await expect.poll(() => email(east.db) === email(west.db) && email(east.db) !== 'ann@example.com', { timeout: 20_000 }).toBe(true);
    await expect.poll(() => names(east.db), { timeout: 20_000 }).toEqual(['Ann', 'Bob']);

    const labels = (side: Side): Record<string, string> => ({ tablesync_instance: side.name, sync: 'hq' });
    // The restarted east's counters started again at 0; west's ran all along.
    await expect
      .poll(async () => {
        const text = await metrics(west);
        return {
          batchesIn: (sample(text, 'tablesync_batches_in_total', labels(west)) ?? 0) >= 2,
          batchesOut: (sample(text, 'tablesync_batches_out_total', labels(west)) ?? 0) >= 1,
          changesIn: (sample(text, 'tablesync_changes_in_total', labels(west)) ?? 0) >= 2,
          changesOut: (sample(text, 'tablesync_changes_out_total', labels(west)) ?? 0) >= 1,
          applied: (sample(text, 'tablesync_apply_duration_seconds_count', labels(west)) ?? 0) >= 2,
          reachable: sample(text, 'tablesync_peer_reachable', labels(west)),
          contact: (sample(text, 'tablesync_peer_last_contact_timestamp_seconds', labels(west)) ?? 0) > Date.now() / 1000 - 60,
          lastIn: (sample(text, 'tablesync_last_batch_in_age_seconds', labels(west)) ?? Infinity) < 60,
          lag: sample(text, 'tablesync_lag_seconds', labels(west)) !== undefined,
          parked: sample(text, 'tablesync_parked_changes', labels(west)),
          refused: sample(text, 'tablesync_batches_refused_total', labels(west)) ?? 0,
        };
      }, { timeout: 20_000 })
      .toEqual({ batchesIn: true, batchesOut: true, changesIn: true, changesOut: true, applied: true, reachable: 1, contact: true, lastIn: true, lag: true, parked: 0, refused: 0 });

    const eastText = await metrics(east);
    expect(sample(eastText, 'tablesync_batches_in_total', labels(east))).toBeGreaterThanOrEqual(1);
    expect(sample(eastText, 'tablesync_peer_reachable', labels(east))).toBe(1);
    expect(eastText).toContain('# TYPE tablesync_apply_duration_seconds histogram');
    expect(eastText).toContain('process_resident_memory_bytes');
    // Each daemon has its registry: east's shows none of west's syncs.
    expect(eastText).not.toContain('tablesync_instance="west"');

    // The conflict is counted where it was found, and logged there with both values.
    const conflicts = (sample(eastText, 'tablesync_conflicts_total', labels(east)) ?? 0) + (sample(await metrics(west), 'tablesync_conflicts_total', labels(west)) ?? 0);
    expect(conflicts).toBeGreaterThanOrEqual(1);
    const conflictLines = [...logLines(east), ...logLines(west)].filter((line) => line.msg.startsWith('conflict'));
    expect(conflictLines.length).toBeGreaterThanOrEqual(1);
    expect(conflictLines[0]).toMatchObject({ ours: expect.stringMatching(/^ann@/), theirs: expect.stringMatching(/^ann@/) });

    // Every applied batch is one line with its figures.
    const applied = logLines(west).filter((line) => line.msg === 'batch applied');
    expect(applied.length).toBeGreaterThanOrEqual(2);
    for (const line of applied) {
      expect(line).toMatchObject({ instance: 'west', sync: 'hq', seq: expect.any(Number), events: expect.any(Number), created: expect.any(Number) });
      expect(line).toMatchObject({ updated: expect.any(Number), deleted: expect.any(Number), conflicts: expect.any(Number), parked: expect.any(Number), ms: expect.any(Number) });
    }

    for (const text of [eastText, await metrics(west)]) {
      expect(text).not.toContain(password);
      expect(text).not.toContain('.sqlite');
    }
    expect([...east.log, ...west.log].join('\n')).not.toContain(password);
  });

  it('answers 405 to anything but GET and HEAD', async () => {
    const { east } = await startPair();
    const response = await fetch(east.url('/metrics'), { method: 'POST' });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('GET, HEAD');
  });
});

describe('/metrics, each series driven away from 0', () => {
  it('counts a malformed batch that got past the http layer in tablesync_batches_refused_total, once', async () => {
    const { east, west } = await startPair();
    expect(await value(west, 'tablesync_batches_refused_total')).toBe(0);
    // Signed with the sync's password, so the listener hands it over: it is the engine that must refuse it.
    const put = await signedRequest(west, 'PUT', '/v1/syncs/hq/inbox/hq.east.000000000999.json', { body: 'this is not a batch' });
    expect(put.status, put.body).toBe(204);

    await expect.poll(() => value(west, 'tablesync_batches_refused_total'), { timeout: 20_000 }).toBe(1);
    expect(count(west.db, 'SELECT COUNT(*) AS n FROM tablesync_refused_batches'), 'kept aside in the database').toBe(1);
    expect(logLines(west).filter((line) => line.msg === 'batch refused; kept in tablesync_refused_batches')).toMatchObject([{ batch: 'hq.east.000000000999.json', reason: expect.stringMatching(/not valid JSON/) }]);
    // The good batches of the active side go on, and are not counted as refused.
    east.db.prepare("INSERT INTO clients (name, email) VALUES ('Ann', 'ann@example.com')").run();
    await expect.poll(() => names(west.db), { timeout: 20_000 }).toEqual(['Ann']);
    expect(await value(west, 'tablesync_batches_refused_total')).toBe(1);
    expect(await value(west, 'tablesync_batches_in_total')).toBeGreaterThanOrEqual(1);
  });

  it('counts the requests the http listener refuses, by reason, for the sync they named; none of them reaches the engine', async () => {
    const { east, west } = await startPair();
    // East listens for /healthz and /metrics only: it serves no sync whose refusals it could count.
    expect(await metrics(east)).not.toContain('tablesync_http_requests_refused_total{');
    // Only the test calls west from here on: the counts below are exactly its requests.
    await east.daemon.close();
    const refused = (reason: string, sync = 'hq') => sample(text, 'tablesync_http_requests_refused_total', { tablesync_instance: 'west', sync, reason });
    let text = await metrics(west);
    const reasons = ['missing-signature', 'malformed-signature', 'clock-skew', 'bad-signature', 'replayed', 'body-mismatch', 'too-large', 'throttled'];
    for (const reason of reasons) expect(refused(reason), `${reason} before any request`).toBe(0);

    const outbox = '/v1/syncs/hq/outbox';
    const inbox = '/v1/syncs/hq/inbox/hq.east.000000000001.json';
    // 413 from the declared length alone, before the body is read (and before the signature: it costs no failed authentication).
    const tooLarge = await new Promise<number>((resolve, reject) => {
      const request = httpRequest({ host: '127.0.0.1', port: west.port, method: 'PUT', path: inbox, headers: { 'content-length': String(9 * 1024 * 1024) } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
        request.destroy();
      });
      request.on('error', reject);
      request.flushHeaders();
    });
    expect(tooLarge).toBe(413);
    expect((await signedRequest(west, 'GET', outbox, { headers: {} })).status, 'unsigned').toBe(401);
    expect((await signedRequest(west, 'GET', outbox, { password: `${password}-wrong` })).status, 'a wrong password').toBe(401);
    const good = await signedRequest(west, 'GET', outbox);
    expect(good.status, good.body).toBe(200);
    const replay = await signedRequest(west, 'GET', outbox, { headers: good.sent });
    expect(JSON.parse(replay.body), 'the same request again').toMatchObject({ error: 'replayed' });
    // The right password for a sync west does not serve: the same 401 as a wrong password, counted under no sync.
    const payroll = await signedRequest(west, 'GET', '/v1/syncs/payroll/outbox', { sync: 'payroll' });
    expect(JSON.parse(payroll.body)).toMatchObject({ error: 'bad-signature' });
    // Signed for one body, sent with another: the fifth failure in a minute, after which the address waits.
    const signedFor = new HttpAuth().signRequest(password, { method: 'PUT', path: inbox, sync: 'hq', body: Buffer.from('{"signed":true}') });
    const altered = await fetch(west.url(inbox), { method: 'PUT', headers: signedFor, body: '{"altered":true}' });
    expect(((await altered.json()) as { error: string }).error).toBe('body-mismatch');
    expect((await signedRequest(west, 'GET', outbox)).status, 'throttled, however well signed').toBe(429);

    text = await metrics(west);
    expect(Object.fromEntries(reasons.map((reason) => [reason, refused(reason)]))).toEqual({
      'missing-signature': 1,
      'malformed-signature': 0,
      'clock-skew': 0,
      'bad-signature': 1,
      replayed: 1,
      'body-mismatch': 1,
      'too-large': 1,
      throttled: 1,
    });
    expect(refused('bad-signature', ''), "the request for a sync west does not serve, under sync=''").toBe(1);
    expect(text, 'no series is labelled with the name the caller made up').not.toContain('payroll');
    // The engine never saw any of them.
    expect(sample(text, 'tablesync_batches_refused_total', { tablesync_instance: 'west', sync: 'hq' })).toBe(0);
    expect(count(west.db, 'SELECT COUNT(*) AS n FROM tablesync_refused_batches')).toBe(0);
  });

  it('shows changes waiting and a growing lag while the peer is away, counts the resend of a batch a restart lost, and drops to 0 once the peer has it all', async () => {
    const { east, west } = await startPair();
    east.db.prepare("INSERT INTO clients (name, email) VALUES ('Ann', 'ann@example.com')").run();
    await expect.poll(() => names(west.db), { timeout: 20_000 }).toEqual(['Ann']);
    const state = async (side: Side) => {
      const text = await metrics(side);
      const labels = { tablesync_instance: side.name, sync: 'hq' };
      return {
        waiting: sample(text, 'tablesync_changes_waiting', labels),
        unacknowledged: sample(text, 'tablesync_unacknowledged_batches', labels),
        lag: sample(text, 'tablesync_lag_seconds', labels) ?? Number.NaN,
      };
    };
    await expect.poll(() => state(west), { timeout: 20_000 }).toEqual({ waiting: 0, unacknowledged: 0, lag: 0 });

    // The active side stops; west's changes wait for it, in a batch west keeps for it to fetch.
    await east.daemon.close();
    west.db.prepare("INSERT INTO clients (name, email) VALUES ('Bob', 'bob@example.com')").run();
    west.db.prepare("INSERT INTO clients (name, email) VALUES ('Cy', 'cy@example.com')").run();
    await expect.poll(async () => (await state(west)).unacknowledged, { timeout: 20_000 }).toBe(1);
    expect((await state(west)).waiting, 'both changes wait, in that batch').toBe(2);
    // The lag is the age of the oldest of them: it grows while nobody takes them.
    const first = (await state(west)).lag;
    expect(first).toBeGreaterThan(0);
    await expect.poll(async () => (await state(west)).lag, { timeout: 20_000 }).toBeGreaterThanOrEqual(first + 1);

    // West restarts: the batch it held in memory for east is gone, so once it has gone unacknowledged
    // for resendAfterMs (10 s) west sends it again. Its counters start again at 0.
    await west.daemon.close();
    await west.start();
    // Polled: the first fetch may go out on a kept-alive connection to the listener that just closed.
    await expect.poll(() => value(west, 'tablesync_batches_resent_total'), { timeout: 5_000 }).toBe(0);
    await expect.poll(() => value(west, 'tablesync_batches_resent_total'), { timeout: 30_000 }).toBe(1);
    expect((await state(west)).waiting, 'still waiting: east is not back').toBe(2);

    await east.start();
    await expect.poll(() => names(east.db), { timeout: 20_000 }).toEqual(['Ann', 'Bob', 'Cy']);
    await expect.poll(() => state(west), { timeout: 20_000 }).toEqual({ waiting: 0, unacknowledged: 0, lag: 0 });
    await expect.poll(() => state(east), { timeout: 20_000 }).toEqual({ waiting: 0, unacknowledged: 0, lag: 0 });
  });

  it('counts and shows a change that the peer database refused as parked', async () => {
    // SQLite does not enforce a declared length: this CHECK is how a SQLite column holds at most 40 characters.
    const { east, west } = await startPair({ westTable: 'CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT, email TEXT CHECK (length(email) <= 40))' });
    expect(await value(west, 'tablesync_parked_changes')).toBe(0);
    east.db.prepare("INSERT INTO clients (name, email) VALUES ('Ann', 'ann@example.com')").run();
    east.db.prepare('INSERT INTO clients (name, email) VALUES (?, ?)').run('Long', `${'x'.repeat(60)}@example.com`);

    // Ann arrives; the other is parked with the database's reason, and the rest goes on.
    await expect.poll(() => names(west.db), { timeout: 20_000 }).toEqual(['Ann']);
    await expect
      .poll(async () => ({ now: await value(west, 'tablesync_parked_changes'), total: await value(west, 'tablesync_changes_parked_total') }), { timeout: 20_000 })
      .toEqual({ now: 1, total: 1 });
    const parked = west.db.prepare('SELECT reason FROM tablesync_parked').all() as { reason: string }[];
    expect(parked).toEqual([{ reason: expect.stringMatching(/CHECK constraint failed/) }]);
    // Nothing parked on the side that sent it.
    expect(await value(east, 'tablesync_parked_changes')).toBe(0);
    expect(await value(east, 'tablesync_changes_parked_total')).toBe(0);
  });

  it('counts a conflict under manual, shows it open on both sides, and no longer once it is resolved', async () => {
    const { east, west } = await startPair({ conflicts: 'manual' });
    east.db.prepare("INSERT INTO clients (name, email) VALUES ('Ann', 'ann@example.com')").run();
    await expect.poll(() => names(west.db), { timeout: 20_000 }).toEqual(['Ann']);
    await expect.poll(() => value(west, 'tablesync_changes_waiting'), { timeout: 20_000 }).toBe(0);
    for (const side of [east, west]) {
      expect(await value(side, 'tablesync_open_conflicts'), side.name).toBe(0);
      expect(await value(side, 'tablesync_conflicts_total'), side.name).toBe(0);
    }

    // The same field changed on both sides while the active side was stopped.
    await east.daemon.close();
    east.db.prepare("UPDATE clients SET email = 'ann@east.example.com' WHERE name = 'Ann'").run();
    west.db.prepare("UPDATE clients SET email = 'ann@west.example.com' WHERE name = 'Ann'").run();
    await east.start();

    const conflicts = async (side: Side) => ({
      open: await value(side, 'tablesync_open_conflicts'),
      total: await value(side, 'tablesync_conflicts_total'),
      openInDatabase: count(side.db, 'SELECT COUNT(*) AS n FROM tablesync_conflicts WHERE resolved_at IS NULL'),
    });
    // Each side meets the other's change while its own is unsent, and keeps its own value.
    await expect.poll(() => conflicts(east), { timeout: 20_000 }).toEqual({ open: 1, total: 1, openInDatabase: 1 });
    await expect.poll(() => conflicts(west), { timeout: 20_000 }).toEqual({ open: 1, total: 1, openInDatabase: 1 });
    expect((east.db.prepare("SELECT email FROM clients WHERE name = 'Ann'").get() as { email: string }).email).toBe('ann@east.example.com');
    expect((west.db.prepare("SELECT email FROM clients WHERE name = 'Ann'").get() as { email: string }).email).toBe('ann@west.example.com');

    // Resolved on west, keeping east's value: west's conflict closes at once, east's once west's value reaches it.
    const [open] = west.db.prepare('SELECT id FROM tablesync_conflicts WHERE resolved_at IS NULL').all() as { id: number }[];
    const said: string[] = [];
    const out = new Writable({
      write(chunk: Buffer, _encoding, done) {
        said.push(chunk.toString());
        done();
      },
    });
    expect(await conflictsResolveCommand(west.config, out, open?.id ?? 0, 'theirs'), said.join('')).toBe(0);
    await expect.poll(() => conflicts(west), { timeout: 20_000 }).toEqual({ open: 0, total: 1, openInDatabase: 0 });
    await expect.poll(() => conflicts(east), { timeout: 20_000 }).toEqual({ open: 0, total: 1, openInDatabase: 0 });
    expect((west.db.prepare("SELECT email FROM clients WHERE name = 'Ann'").get() as { email: string }).email).toBe('ann@east.example.com');
  });
});

describe('/healthz', () => {
  it('turns 503 with a reason when the peer has not been reached for health.peerTimeout, and 200 once it is back', async () => {
    const { east, west } = await startPair({ peerTimeout: '1s' });
    await expect.poll(async () => (await health(east)).status, { timeout: 20_000 }).toBe(200);
    expect((await health(west)).status).toBe(200);

    // The passive side stops: the active side's exchanges fail.
    await west.daemon.close();
    await expect.poll(async () => (await health(east)).status, { timeout: 20_000 }).toBe(503);
    const down = await health(east);
    expect(down.body).toMatchObject({ status: 'unhealthy', error: 'peer-unreachable', syncs: ['hq'] });
    expect(down.body.reason).toMatch(/^sync hq last reached its peer \d+ s ago \(health.peerTimeout: 1 s\)/);
    expect(sample(await metrics(east), 'tablesync_peer_reachable', { tablesync_instance: 'east', sync: 'hq' })).toBe(0);

    await west.start();
    await expect.poll(async () => (await health(east)).status, { timeout: 30_000 }).toBe(200);
    expect((await health(west)).status).toBe(200);

    // The active side stops: the passive side hears from nobody.
    await east.daemon.close();
    await expect.poll(async () => (await health(west)).status, { timeout: 20_000 }).toBe(503);
    expect((await health(west)).body).toMatchObject({ error: 'peer-unreachable', syncs: ['hq'] });

    await east.start();
    await expect.poll(async () => (await health(west)).status, { timeout: 30_000 }).toBe(200);
  });
});
