import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'vitest';
import { startCli, type RunningCli } from '../support/cli.js';
import type { AppConnection } from '../support/databases.js';
import { alphaClients, betaCustomers, syncName } from '../support/crm.js';
import { orphanLinks } from '../support/orphan-links.js';
import { describeEachPair, newCluster, type SyncCluster, type SyncInstance } from '../support/sync-harness.js';

/**
 * Guarantee 4 under a crash loop: two daemons on MariaDB (real `tablesync
 * run` processes), the applications on both sides writing all along
 * (inserts, updates, soft deletes), and one daemon or the other killed with
 * SIGKILL at random moments and started again, over and over; the first
 * kill hits the receiving daemon while it applies an initial sync's batch.
 * Then the writers stop, everything settles, and both databases must hold
 * every change, no record twice, no link to a record that does not exist,
 * and the same value in every `both` field.
 *
 * Size and randomness from the environment:
 * - TABLESYNC_FAULT_KILLS: how many kills (default 5; `npm run test:faults` runs 50);
 * - TABLESYNC_FAULT_SEED: the seed of the random moments, printed by every run, to replay one.
 */

const kills = Math.max(1, Number(process.env.TABLESYNC_FAULT_KILLS ?? 5));
const seed = Number(process.env.TABLESYNC_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** Rows alpha holds before tablesync is set up, sent by `tablesync initial-sync`. */
const seeded = kills > 10 ? 20_000 : 3_000;

/** mulberry32: a small seeded generator, so that a run can be replayed. */
function random(from: number): () => number {
  let state = from >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One side's table as the application sees it. */
interface Shape {
  readonly table: string;
  readonly name: string;
  readonly email: string;
  readonly status: string;
  readonly live: string | number;
  readonly deleted: string | number;
}

const shapes: Record<'alpha' | 'beta', Shape> = {
  alpha: { table: 'clients', name: 'name', email: 'email', status: 'record_status', live: 1, deleted: 2 },
  beta: { table: 'customers', name: 'company_name', email: 'email_address', status: 'state', live: 'active', deleted: 'deleted' },
};

interface Expected {
  name: string;
  deleted: boolean;
}

/**
 * The application of one side, on its own connection: new records, renames
 * and soft deletes of the records this side made (so that the last value of
 * every field is known), never pausing for the daemon.
 */
class Writer {
  /** email → what its maker last wrote. */
  readonly made = new Map<string, Expected>();
  changes = 0;
  /** Writes that MariaDB ended with a deadlock (or a lock wait timeout) and that were tried again, as applications on InnoDB must. */
  retried = 0;
  #stopping = false;
  #running: Promise<void> | undefined;

  constructor(
    readonly side: 'alpha' | 'beta',
    private readonly app: AppConnection,
    private readonly next: () => number,
  ) {}

  start(): void {
    this.#running = this.#loop();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running;
  }

  /** One autocommit statement; one that lost a deadlock was rolled back whole, so running it again is right. */
  async #write(statement: string, params: unknown[]): Promise<void> {
    for (;;) {
      try {
        await this.app.exec(statement, params);
        return;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'ER_LOCK_DEADLOCK' && code !== 'ER_LOCK_WAIT_TIMEOUT') throw err;
        this.retried += 1;
      }
    }
  }

  async #loop(): Promise<void> {
    const { table, name, email, status, deleted } = shapes[this.side];
    let serial = 0;
    while (!this.#stopping) {
      const live = [...this.made].filter(([, e]) => !e.deleted).map(([address]) => address);
      const roll = this.next();
      if (roll < 0.45 || live.length === 0) {
        serial += 1;
        const address = `${this.side}-${serial}@example.com`;
        const value = `${this.side} ${serial}`;
        await this.#write(`INSERT INTO ${table} (${name}, ${email}) VALUES (?, ?)`, [value, address]);
        this.made.set(address, { name: value, deleted: false });
      } else {
        const address = live[Math.floor(this.next() * live.length)] ?? '';
        const expected = this.made.get(address) ?? { name: '', deleted: false };
        if (roll < 0.9) {
          const value = `${this.side} edit ${this.changes}`;
          await this.#write(`UPDATE ${table} SET ${name} = ? WHERE ${email} = ?`, [value, address]);
          expected.name = value;
        } else {
          await this.#write(`UPDATE ${table} SET ${status} = ? WHERE ${email} = ?`, [deleted, address]);
          expected.deleted = true;
        }
      }
      this.changes += 1;
      await pause(5 + this.next() * 30);
    }
  }
}

/** Problems with one side's copy of every record: missing, doubled, with another value or status than its maker's last. */
async function missingOrWrong(instance: SyncInstance, shape: Shape, expected: ReadonlyMap<string, Expected>): Promise<string[]> {
  const rows = await instance.query<Record<string, unknown>>(`SELECT ${shape.name} AS name, ${shape.email} AS email, ${shape.status} AS status FROM ${shape.table}`);
  const byEmail = new Map<string, Record<string, unknown>[]>();
  for (const row of rows) byEmail.set(String(row.email), [...(byEmail.get(String(row.email)) ?? []), row]);
  const problems: string[] = [];
  for (const [address, found] of byEmail) if (found.length > 1) problems.push(`${instance.name} has ${found.length} records for ${address}`);
  for (const [address, want] of expected) {
    const [row] = byEmail.get(address) ?? [];
    if (row === undefined) problems.push(`${instance.name} lacks ${address}`);
    else if (String(row.name) !== want.name) problems.push(`${instance.name}'s ${address} is named ${JSON.stringify(row.name)}, not ${JSON.stringify(want.name)}`);
    else if ((String(row.status) === String(shape.deleted)) !== want.deleted) problems.push(`${instance.name}'s ${address} is ${want.deleted ? 'not deleted' : 'deleted'}`);
  }
  if (rows.length !== expected.size) problems.push(`${instance.name} has ${rows.length} records, not ${expected.size}`);
  return problems;
}

async function initialSyncRunning(command: RunningCli): Promise<boolean> {
  return command.child.exitCode === null && command.child.signalCode === null;
}

describeEachPair(
  'a crash loop',
  (pair) => {
    it(`loses nothing, doubles nothing and converges through ${kills} SIGKILLs of either daemon under a steady stream of changes on both sides`, { timeout: 90_000 + kills * 6_000 }, async ({ expect, onTestFinished }) => {
      const next = random(seed);
      process.stdout.write(`[crash loop] ${kills} kills, seed ${seed} (TABLESYNC_FAULT_SEED=${seed} replays the random moments)\n`);
      const cluster: SyncCluster = newCluster({ onTestFinished });
      const alpha = await cluster.addInstance('alpha', {
        dialect: pair.active,
        schema: (db) => [
          `CREATE TABLE clients (id ${db.autoId}, name VARCHAR(80), email VARCHAR(120), phone VARCHAR(40), credit_limit INT, notes VARCHAR(200), manager_id INT, record_status INT NOT NULL DEFAULT 1)`,
        ],
      });
      const beta = await cluster.addInstance('beta', {
        dialect: pair.passive,
        schema: (db) => [
          `CREATE TABLE customers (customer_id ${db.autoId}, company_name VARCHAR(80), email_address VARCHAR(120), phone_number VARCHAR(40), credit INT, remarks VARCHAR(200), account_manager INT, state VARCHAR(10) NOT NULL DEFAULT 'active')`,
          'CREATE UNIQUE INDEX customers_email ON customers (email_address)',
        ],
      });
      const [alphaTable, betaTable] = [alphaClients(false), betaCustomers(false)];
      const sync = cluster.connect(alpha, beta, { name: syncName }, { active: [alphaTable], passive: [betaTable] });

      // Rows from before tablesync: no trigger saw them, `tablesync initial-sync` sends them.
      for (let start = 0; start < seeded; start += 500) {
        const ids = Array.from({ length: Math.min(500, seeded - start) }, (_, i) => start + i);
        await alpha.exec(`INSERT INTO clients (name, email) VALUES ${ids.map(() => '(?, ?)').join(', ')}`, ids.flatMap((i) => [`seed ${i}`, `seed-${i}@example.com`]));
      }
      await cluster.startAll();
      const writers = { alpha: new Writer('alpha', await alpha.db.connect(), next), beta: new Writer('beta', await beta.db.connect(), next) };
      for (let i = 0; i < seeded; i += 1) writers.alpha.made.set(`seed-${i}@example.com`, { name: `seed ${i}`, deleted: false });
      onTestFinished(async () => {
        await Promise.allSettled(Object.values(writers).map((w) => w.stop()));
      });
      for (const writer of Object.values(writers)) writer.start();
      await cluster.waitFor('the first changes to reach the other side', async () => (await beta.cursor(sync.name, 'in')) !== undefined && (await alpha.cursor(sync.name, 'in')) !== undefined);

      const initial = startCli(['initial-sync', '-c', alpha.configFile, '--no-backup']);
      // Registered after the cluster's disposal, so it runs first: a database is not dropped under an open transaction.
      onTestFinished(async () => {
        if (await initialSyncRunning(initial)) {
          initial.child.kill('SIGKILL');
          await initial.exited;
        }
      });

      // The first kill: beta at work on the initial sync's batch (or, should that be over between two looks, just after).
      const download = beta.downloadFolder(sync.name);
      let initialBatch: string | undefined;
      await cluster.waitFor(
        'beta to be applying the initial sync',
        async () => {
          initialBatch ??= beta.waitingBatches(sync.name).find((name) => readFileSync(join(download, name), 'utf8').includes('"op":"initial"'));
          if (initialBatch !== undefined) return !existsSync(join(download, initialBatch)) || (await beta.databaseBusy());
          return initial.output().includes('waiting for the peer to acknowledge');
        },
        { intervalMs: 2, timeoutMs: 60_000 },
      );
      const killed = { alpha: 0, beta: 0, duringInitialSync: 0 };
      for (let k = 0; k < kills; k += 1) {
        const victim = k === 0 ? beta : next() < 0.5 ? alpha : beta;
        if (k > 0) {
          // Any moment: often in the middle of an exchange, sometimes right after the daemon came up.
          await pause(next() < 0.15 ? next() * 100 : 150 + next() * 1500);
        }
        if (await initialSyncRunning(initial)) killed.duringInitialSync += 1;
        await victim.kill();
        killed[victim.name as 'alpha' | 'beta'] += 1;
        await pause(next() * 300);
        await victim.start();
      }

      await Promise.all(Object.values(writers).map((w) => w.stop()));
      const code = await Promise.race([initial.exited, pause(120_000).then(() => 'still running')]);
      expect(code, `initial-sync exits 0 once everything is acknowledged; its output:\n${initial.output()}`).toBe(0);
      await cluster.waitInStep(1, { timeoutMs: 120_000 });
      await cluster.waitSettled({ timeoutMs: 60_000 });

      const problems = [
        ...(await sync.differences(1)),
        ...(await missingOrWrong(alpha, shapes.alpha, new Map([...writers.alpha.made, ...writers.beta.made]))),
        ...(await missingOrWrong(beta, shapes.beta, new Map([...writers.alpha.made, ...writers.beta.made]))),
        ...(await orphanLinks(sync)),
      ];
      for (const side of [alpha, beta]) {
        if ((await side.backlog()).parked > 0) problems.push(`${side.name} parked changes: ${JSON.stringify(await side.query('SELECT reason FROM tablesync_parked'))}`);
        const refused = await side.refusedBatches();
        if (refused.length > 0) problems.push(`${side.name} refused its peer's batches: ${JSON.stringify(refused.map((r) => [r.name, r.reason]))}`);
      }
      const changes = seeded + writers.alpha.changes + writers.beta.changes;
      const records = writers.alpha.made.size + writers.beta.made.size;
      process.stdout.write(
        `[crash loop] kills survived: ${kills} (alpha ${killed.alpha}, beta ${killed.beta}; ${killed.duringInitialSync} during the initial sync), ` +
          `changes checked: ${changes} (${seeded} initial rows, ${writers.alpha.changes + writers.beta.changes} application writes, ${records} records on each side), ` +
          `differences found: ${problems.length}; application writes tried again after a deadlock: ${writers.alpha.retried + writers.beta.retried}\n`,
      );
      expect(problems, `after ${kills} kills (seed ${seed})`).toEqual([]);
      expect(killed.duringInitialSync, 'kills while the initial sync was under way').toBeGreaterThanOrEqual(1);
      await cluster.stopAll();
    });
  },
  [{ active: 'mysql', passive: 'mysql' }],
);
