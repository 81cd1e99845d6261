import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, expect, it } from 'vitest';
import { startCli, type RunningCli } from '../support/cli.js';
import { freePort } from '../support/servers.js';

/**
 * SIGHUP to the real `tablesync run` (dist/), as `systemctl reload` sends it:
 * a valid file restarts the syncs with it, a file with problems (or one that
 * does not match the database) is refused with every problem logged while
 * the daemon runs on as it was.
 */

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function configText(port: number, options: { mode?: string; direction?: string; column?: string } = {}): string {
  return [
    'instance: east',
    'database: { dialect: sqlite, file: ./east.sqlite }',
    `listen: 127.0.0.1:${port}`,
    'syncs:',
    '  - name: hq',
    `    mode: ${options.mode ?? 'active'}`,
    '    transport: { type: folder, upload: ./out, download: ./in }',
    '    every: 200ms',
    '    tables:',
    '      - table: clients',
    '        number: 1',
    '        key: id',
    '        fields:',
    `          - { column: ${options.column ?? 'name'}, number: 2, ${options.direction ?? 'direction'}: both }`,
    '',
  ].join('\n');
}

async function healthStatus(port: number): Promise<number | string> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
  } catch (err) {
    return ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? 'failed';
  }
}

/** Log lines printed since `from` characters of output, parsed. */
function linesSince(daemon: RunningCli, from: number): { level: string; msg: string }[] {
  return daemon
    .output()
    .slice(from)
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: string; msg: string });
}

it('SIGHUP reloads a valid file, and keeps running as before when the file has problems', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tablesync-reload-'));
  await Promise.all([mkdir(join(dir, 'out')), mkdir(join(dir, 'in'))]);
  const db = new BetterSqlite3(join(dir, 'east.sqlite'));
  db.exec('CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT)');
  const file = join(dir, 'east.yaml');
  const [firstPort, secondPort] = [await freePort(), await freePort()];
  await writeFile(file, configText(firstPort));

  const daemon = startCli(['run', '-c', file], { cwd: dir });
  cleanups.push(async () => {
    if (daemon.child.exitCode === null) {
      daemon.child.kill('SIGKILL');
      await daemon.exited;
    }
    db.close();
    await rm(dir, { recursive: true, force: true });
  });
  await daemon.waitFor('tablesync is running');
  expect(await healthStatus(firstPort)).toBe(200);
  const batches = async (): Promise<number> => (await readdir(join(dir, 'out'))).filter((name) => name.endsWith('.json')).length;

  // Two mistakes in the file: both are logged, nothing changes.
  let mark = daemon.output().length;
  await writeFile(file, configText(secondPort, { mode: 'activ', direction: 'drection' }));
  daemon.child.kill('SIGHUP');
  await daemon.waitFor('2 problems, listed above; still running with the previous configuration');
  const refused = linesSince(daemon, mark).filter((line) => line.level === 'error').map((line) => line.msg);
  expect(refused).toEqual([
    expect.stringMatching(/^configuration not reloaded: .*east\.yaml: syncs\[0\]\.mode: must be one of active, passive \(found "activ"\) \(line 6\)$/),
    expect.stringMatching(/^configuration not reloaded: .*east\.yaml: syncs\[0\]\.tables\[0\]\.fields\[0\]\.drection: is not a known setting \(did you mean direction\?\) \(line 14\)$/),
    'configuration not reloaded: 2 problems, listed above; still running with the previous configuration',
  ]);
  expect(await healthStatus(firstPort)).toBe(200);
  db.prepare("INSERT INTO clients (name) VALUES ('before')").run();
  await expect.poll(batches, { timeout: 10_000 }).toBe(1);

  // A valid file that the database does not match: refused too, before anything stops.
  mark = daemon.output().length;
  await writeFile(file, configText(secondPort, { column: 'no_such_column' }));
  daemon.child.kill('SIGHUP');
  await expect.poll(() => linesSince(daemon, mark).filter((line) => line.level === 'error').length, { timeout: 10_000 }).toBe(2);
  expect(linesSince(daemon, mark).filter((line) => line.level === 'error').map((line) => line.msg)).toEqual([
    expect.stringMatching(/^configuration not reloaded: .*east\.yaml: syncs\[0\]\.tables\[0\]\.fields\[0\]\.column: column no_such_column does not exist in table clients/),
    'configuration not reloaded: 1 problem, listed above; still running with the previous configuration',
  ]);
  expect(await healthStatus(firstPort)).toBe(200);
  expect(await healthStatus(secondPort)).toBe('ECONNREFUSED');

  // A good file: the syncs restart with it, here on another port.
  mark = daemon.output().length;
  await writeFile(file, configText(secondPort));
  daemon.child.kill('SIGHUP');
  await daemon.waitFor('configuration reloaded');
  expect(await healthStatus(secondPort)).toBe(200);
  expect(await healthStatus(firstPort)).toBe('ECONNREFUSED');
  db.prepare("INSERT INTO clients (name) VALUES ('after')").run();
  await expect.poll(batches, { timeout: 10_000 }).toBe(2);

  daemon.child.kill('SIGTERM');
  expect(await daemon.exited).toBe(0);
  expect(daemon.output()).toContain('"msg":"stopped"');
});
