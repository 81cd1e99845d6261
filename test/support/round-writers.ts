import type { CrmPair } from './crm.js';
import { orphanLinks } from './orphan-links.js';
import type { SyncCluster } from './sync-harness.js';

/**
 * What the application does on each side while the faults of
 * faults.test.ts and storage-faults.test.ts happen, round by round: new
 * records, and edits of its own records (each side edits only the records it
 * made, so that the final value of every field is known).
 */
export class Writers {
  readonly #made = { alpha: [] as string[], beta: [] as string[] };
  /** email → the last name its maker gave it. */
  readonly expected = new Map<string, string>();

  constructor(private readonly crm: CrmPair) {}

  async round(round: number): Promise<void> {
    for (const side of ['alpha', 'beta'] as const) {
      for (let i = 0; i < 2; i += 1) {
        const email = `${side}-${round}-${i}@example.com`;
        const name = `${side} ${round}.${i}`;
        if (side === 'alpha') await this.crm.alpha.exec('INSERT INTO clients (name, email) VALUES (?, ?)', [name, email]);
        else await this.crm.beta.exec('INSERT INTO customers (company_name, email_address) VALUES (?, ?)', [name, email]);
        this.#made[side].push(email);
        this.expected.set(email, name);
      }
      // An edit of an earlier record of this side's.
      const made = this.#made[side];
      const email = made[(round * 7) % made.length];
      if (email === undefined) continue;
      const name = `${side} edit in round ${round}`;
      if (side === 'alpha') await this.crm.alpha.exec('UPDATE clients SET name = ? WHERE email = ?', [name, email]);
      else await this.crm.beta.exec('UPDATE customers SET company_name = ? WHERE email_address = ?', [name, email]);
      this.expected.set(email, name);
    }
  }

  /** Whether the records made in `round` reached the other side. */
  async arrived(round: number): Promise<boolean> {
    const onBeta = await this.crm.beta.query('SELECT customer_id FROM customers WHERE email_address LIKE ?', [`alpha-${round}-%`]);
    const onAlpha = await this.crm.alpha.query('SELECT id FROM clients WHERE email LIKE ?', [`beta-${round}-%`]);
    return onBeta.length === 2 && onAlpha.length === 2;
  }

  /** Every record on both sides exactly once, holding its maker's last value; problems, or none. */
  async check(): Promise<string[]> {
    const problems: string[] = [];
    for (const [side, table, name, email] of [
      [this.crm.alpha, 'clients', 'name', 'email'],
      [this.crm.beta, 'customers', 'company_name', 'email_address'],
    ] as const) {
      const rows = await side.query<Record<string, unknown>>(`SELECT ${name} AS name, ${email} AS email FROM ${table}`);
      const seen = new Map<string, number>();
      for (const row of rows) seen.set(String(row.email), (seen.get(String(row.email)) ?? 0) + 1);
      for (const [address, count] of seen) if (count > 1) problems.push(`${side.name} has ${count} records for ${address}`);
      for (const [address, value] of this.expected) {
        const row = rows.find((r) => String(r.email) === address);
        if (row === undefined) problems.push(`${side.name} lost ${address}`);
        else if (String(row.name) !== value) problems.push(`${side.name}'s ${address} is ${JSON.stringify(row.name)}, not ${JSON.stringify(value)}`);
      }
      if (rows.length !== this.expected.size) problems.push(`${side.name} has ${rows.length} records, not ${this.expected.size}`);
    }
    return problems;
  }
}

/** Both sides converge on the writers' records, no link names a record that does not exist; nothing parked, nothing refused but the batches named in `refused`. */
export async function expectCleanEnd(cluster: SyncCluster, crm: CrmPair, writers: Writers, refused: readonly string[] = []): Promise<void> {
  await cluster.waitFor('every record on both sides, once, with its last value', () => writers.check(), { timeoutMs: 150_000 });
  await cluster.waitInStep(1, { timeoutMs: 60_000 });
  await cluster.waitSettled({ timeoutMs: 60_000 });
  const problems = await writers.check();
  if (problems.length > 0) throw new Error(`after settling: ${problems.join('; ')}\n${await cluster.describe()}`);
  const orphans = await orphanLinks(crm.sync);
  if (orphans.length > 0) throw new Error(`after settling, links to records that do not exist: ${orphans.join('; ')}\n${await cluster.describe()}`);
  for (const side of [crm.alpha, crm.beta]) {
    const unexpected = (await side.refusedBatches()).filter((r) => !refused.includes(r.name));
    if (unexpected.length > 0) throw new Error(`${side.name} refused batches of its real peer: ${JSON.stringify(unexpected.map((r) => [r.name, r.reason]))}`);
    if ((await side.backlog()).parked > 0) throw new Error(`${side.name} parked changes`);
  }
}
