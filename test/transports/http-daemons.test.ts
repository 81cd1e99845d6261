import { mkdtemp, rm } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load-config.js';
import { Daemon } from '../../src/engine/daemon.js';
import { createLogger } from '../../src/log.js';

const password = 'daemons-sync-password';
let cleanup: (() => Promise<void>) | undefined;

afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function configText(instance: string, mode: 'active' | 'passive', port: number): string {
  const transport = mode === 'active' ? `{ type: http, url: "http://127.0.0.1:${port}", password: "${password}" }` : `{ type: http, password: "${password}" }`;
  return [
    `instance: ${instance}`,
    `database: { dialect: sqlite, file: ./${instance}.sqlite }`,
    ...(mode === 'passive' ? [`listen: 127.0.0.1:${port}`] : []),
    'syncs:',
    '  - name: hq',
    `    mode: ${mode}`,
    `    transport: ${transport}`,
    '    every: 200ms',
    '    tables:',
    '      - { table: clients, number: 1, key: id, fields: [{ column: name, number: 2 }, { column: email, number: 3 }] }',
  ].join('\n');
}

it('two daemons, an active and a passive one, keep a table in step over http', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tablesync-http-daemons-'));
  const port = await freePort();
  const databases = ['east', 'west'].map((name) => {
    const db = new BetterSqlite3(join(dir, `${name}.sqlite`));
    db.exec('CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT, email TEXT)');
    return db;
  });
  const [east, west] = databases as [BetterSqlite3.Database, BetterSqlite3.Database];
  const logged: string[] = [];
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged.push(chunk.toString());
      done();
    },
  });
  const daemon = new Daemon(
    [parseConfig(configText('west', 'passive', port), join(dir, 'west.yaml'), {}, dir), parseConfig(configText('east', 'active', port), join(dir, 'east.yaml'), {}, dir)],
    createLogger('debug', out),
  );
  cleanup = async () => {
    await daemon.destroy();
    for (const db of databases) db.close();
    await rm(dir, { recursive: true, force: true });
  };
  await daemon.start();

  east.prepare("INSERT INTO clients (name, email) VALUES ('Ann', 'ann@example.com')").run();
  west.prepare("INSERT INTO clients (name, email) VALUES ('Bob', 'bob@example.com')").run();

  const names = (db: BetterSqlite3.Database): string[] => (db.prepare('SELECT name FROM clients ORDER BY name').all() as { name: string }[]).map((r) => r.name);
  await expect.poll(() => names(west), { timeout: 20_000 }).toEqual(['Ann', 'Bob']);
  await expect.poll(() => names(east), { timeout: 20_000 }).toEqual(['Ann', 'Bob']);
  expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);

  await daemon.close();
  expect(logged.join('')).not.toContain(password);
});
