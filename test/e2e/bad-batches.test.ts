import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'vitest';
import { parse } from 'yaml';
import { betaCustomer, createCrmPair, syncName } from '../support/crm.js';
import { describeEachPair, newCluster, type SyncInstance } from '../support/sync-harness.js';

/**
 * Guarantee 7 against a corpus: every file of test/fixtures/bad-batches/
 * (see its manifest.yaml) dropped into the download folder of a running
 * daemon, on a real database. Each must be refused with a reason that names
 * what was wrong, kept aside (tablesync_refused_batches, rejected/, the
 * log), leave every application table exactly as it was, and leave the
 * daemon running and applying the next good batch. security.test.ts covers
 * the same for text that looks like SQL or paths in well-formed batches,
 * odd file names, and the http listener.
 */

const corpus = fileURLToPath(new URL('../fixtures/bad-batches/', import.meta.url));

interface Case {
  readonly file: string;
  readonly what: string;
  readonly reason?: string;
  readonly outcome?: 'refused' | 'skipped' | 'waits';
  readonly expand?: { readonly placeholder: string; readonly text?: number; readonly nested?: number };
}

const cases = (parse(readFileSync(join(corpus, 'manifest.yaml'), 'utf8')) as { cases: Case[] }).cases;
const refusedCases = cases.filter((c) => (c.outcome ?? 'refused') === 'refused');

/** The bytes of a case's file, with its placeholder (if any) expanded. */
function bodyOf(found: Case): Buffer {
  const bytes = readFileSync(join(corpus, found.file));
  const { expand } = found;
  if (expand === undefined) return bytes;
  const text = bytes.toString('utf8');
  if (!text.includes(expand.placeholder)) throw new Error(`${found.file} does not hold its placeholder ${expand.placeholder}`);
  const replacement = expand.text !== undefined ? JSON.stringify('x'.repeat(expand.text)) : '['.repeat(expand.nested ?? 0) + ']'.repeat(expand.nested ?? 0);
  return Buffer.from(text.replace(expand.placeholder, replacement));
}

/** Writes a file the way a peer's transport does: complete, then renamed into place. */
function drop(folder: string, name: string, body: string | Buffer): void {
  writeFileSync(join(folder, `.${name}.writing`), body);
  renameSync(join(folder, `.${name}.writing`), join(folder, name));
}

/** A good batch of alpha's, as its daemon would write it. */
function goodBatch(seq: number, id: string, name: string, email: string): string {
  const values = { 2: name, 3: email };
  const version = (i: number): string => `${String(Date.now()).padStart(16, '0')}.${String(i).padStart(6, '0')}.alpha`;
  const fields = Object.fromEntries(Object.entries(values).map(([number, value], i) => [number, { value, version: version(i), parent: '' }]));
  return JSON.stringify({ protocol: 1, sync: syncName, from: 'alpha', seq, ack: 0, sentAt: Date.now(), events: [{ op: 'upsert', table: 1, id, fields, record: values, origin: `alpha/${id}` }] });
}

/** Every row of every application table (all but tablesync's own), in a stable order. */
async function applicationDump(instance: SyncInstance): Promise<Record<string, string[]>> {
  const catalog: Record<SyncInstance['dialect'], string> = {
    sqlite: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'tablesync\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    mysql: "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name NOT LIKE 'tablesync\\_%' ORDER BY table_name",
    // The schema the daemon's connection works in; views are left out, as on the other two.
    postgres:
      "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' " +
      "AND table_name NOT LIKE 'tablesync\\_%' ESCAPE '\\' ORDER BY table_name",
  };
  const tables = await instance.query<{ name: string }>(catalog[instance.dialect]);
  if (tables.length === 0) throw new Error(`${instance.name} (${instance.dialect}) lists no application table: the catalog query is wrong`);
  const dump: Record<string, string[]> = {};
  for (const { name } of tables) dump[name] = (await instance.query(`SELECT * FROM ${name}`)).map((row) => JSON.stringify(row)).sort();
  return dump;
}

describeEachPair(
  'the bad-batch corpus reaching a running daemon',
  (pair) => {
    it(`refuses each of ${refusedCases.length} bad batches with a reason naming what was wrong, keeps it aside, changes nothing, and applies the next good batch`, { timeout: 180_000 }, async ({ expect, onTestFinished }) => {
      expect(refusedCases.length, 'refused cases in the corpus').toBeGreaterThanOrEqual(30);
      for (const c of cases) expect(existsSync(join(corpus, c.file)), `${c.file} exists`).toBe(true);

      const cluster = newCluster({ onTestFinished });
      const { beta, sync } = await createCrmPair(cluster, pair);
      // The test plays alpha: its daemon never runs, and what lands in beta's download folder is the test's.
      await beta.start();
      const download = beta.downloadFolder(sync.name);
      drop(download, `${syncName}.alpha.000000000001.json`, goodBatch(1, '1', 'Acme', 'acme@example.com'));
      await cluster.waitFor('beta to apply batch 1', async () => (await beta.cursor(sync.name, 'in')) === '1', { timeoutMs: 60_000 });
      const before = await applicationDump(beta);
      expect(before.customers, 'batch 1 created one customer').toHaveLength(1);

      const refused = refusedCases;
      const bodies = new Map(cases.map((c) => [c.file, bodyOf(c)]));
      for (const c of cases) drop(download, c.file, bodies.get(c.file) ?? '');

      await cluster.waitFor(`beta to refuse the ${refused.length} bad batches`, async () => (await beta.refusedBatches()).length >= refused.length, { timeoutMs: 120_000 });
      const skipped = cases.filter((c) => c.outcome === 'skipped');
      await cluster.waitFor('beta to drop the batches it took for resends', () => skipped.every((c) => !existsSync(join(download, c.file))));
      const warned = (): Map<unknown, string> =>
        new Map(beta.logLines().filter((line) => line.level === 'warn' && line.msg === 'batch refused; kept in tablesync_refused_batches').map((line) => [line.batch, String(line.reason)]));
      await cluster.waitFor('beta to log every refusal', () => refused.every((c) => warned().has(c.file)));

      // Refused: each with its reason, kept whole (up to 1 MiB) in the database, beside its reason in rejected/, and in the log.
      const rows = await beta.refusedBatches();
      expect(rows.map((r) => r.name).sort(), 'the batches refused, and only those').toEqual(refused.map((c) => c.file).sort());
      const rejected = readdirSync(join(download, 'rejected'));
      const logged = warned();
      for (const c of refused) {
        const row = rows.find((r) => r.name === c.file);
        const body = bodies.get(c.file) ?? Buffer.alloc(0);
        expect(row?.reason, `why ${c.file} (${c.what}) was refused`).toMatch(new RegExp(c.reason ?? '^$'));
        expect(logged.get(c.file), `the log says why ${c.file} was refused`).toBe(row?.reason);
        expect(row?.size, `the size kept for ${c.file}`).toBe(body.length);
        expect(row?.body, `the body kept for ${c.file}`).toBe(body.subarray(0, 1024 * 1024).toString('utf8'));
        const kept = rejected.filter((file) => file.startsWith(`${c.file}.`) && !file.endsWith('.reason.txt'));
        expect(kept, `rejected/ keeps ${c.file}`).toHaveLength(1);
        expect(readFileSync(join(download, 'rejected', kept[0] ?? '')).equals(body), `rejected/ keeps ${c.file} byte for byte`).toBe(true);
        expect(readFileSync(join(download, 'rejected', `${kept[0]}.reason.txt`), 'utf8')).toBe(`${row?.reason}\n`);
      }
      // Not refused: a resend of batch 1 is dropped; a batch far ahead waits for its turn.
      for (const c of cases.filter((x) => x.outcome === 'waits')) expect(existsSync(join(download, c.file)), `${c.file} waits in the folder`).toBe(true);

      expect(await applicationDump(beta), 'every application table exactly as before').toEqual(before);
      expect(await beta.cursor(sync.name, 'in')).toBe('1');
      expect(await beta.cursor(sync.name, 'peer')).toBe('alpha');
      expect(beta.running, 'the daemon still runs').toBe(true);

      // The next good batch applies as if nothing had happened.
      drop(download, `${syncName}.alpha.000000000002.json`, goodBatch(2, '2', 'Globex', 'globex@example.com'));
      await cluster.waitFor('beta to apply batch 2', async () => (await beta.cursor(sync.name, 'in')) === '2', { timeoutMs: 60_000 });
      expect(await betaCustomer(beta, 'globex@example.com')).toMatchObject({ company_name: 'Globex', state: 'active' });
      const after = await applicationDump(beta);
      expect(after.customers?.filter((row) => !row.includes('globex@example.com')), 'batch 2 added its customer and changed nothing else').toEqual(before.customers);
      expect({ ...after, customers: undefined }).toEqual({ ...before, customers: undefined });
      expect(beta.logLines().filter((line) => line.level === 'error' || line.level === 'fatal'), 'no error logged').toEqual([]);
      expect((await beta.refusedBatches()).length, 'nothing else refused').toBe(refused.length);
      expect(beta.running).toBe(true);
      await cluster.stopAll();
    });
  },
  [
    { active: 'sqlite', passive: 'sqlite' },
    { active: 'mysql', passive: 'mysql' },
    // Only beta's daemon runs: a PostgreSQL receiver, with the sqlite alpha costing nothing.
    { active: 'sqlite', passive: 'postgres' },
  ],
);
