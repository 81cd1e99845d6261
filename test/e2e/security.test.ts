import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, it, type ExpectStatic } from 'vitest';
import { HttpAuth } from '../../src/transports/http/http-auth.js';
import { startCli } from '../support/cli.js';
import { alphaClient, betaCustomer, createCrmPair, syncName } from '../support/crm.js';
import { newCluster, type DialectPair, type LogLine, type SyncCluster, type SyncInstance } from '../support/sync-harness.js';

/**
 * Guarantee 7 at the daemon level: what a peer, or whoever can write into
 * its folder or reach its listener, sends a running daemon. Batches that no
 * well-behaved peer sends are refused with a reason (kept in
 * tablesync_refused_batches, said in the log) and touch nothing; text that
 * looks like SQL or a path is data like any other. The transports' own
 * authentication is tested in test/transports.
 */

/** Generous: the daemons share this machine's two cores with every other test running at the time. */
const testTimeout = 120_000;

const sqlite: DialectPair = { active: 'sqlite', passive: 'sqlite' };

const sqlInjection = "'; DROP TABLE customers; --";
const pathTraversal = '../../etc/passwd';

/** A version as peers write them: `<ms, 16 digits>.<counter, 6 digits>.<instance>`. */
let counter = 0;
function version(instance = 'alpha'): string {
  counter += 1;
  return `${String(Date.now()).padStart(16, '0')}.${String(counter).padStart(6, '0')}.${instance}`;
}

type Json = Record<string, unknown>;

/** A batch of protocol 1 from alpha to beta in the CRM sync, with `overrides` laid over it. */
function batch(seq: number, events: Json[], overrides: Json = {}): Json {
  return { protocol: 1, sync: syncName, from: 'alpha', seq, ack: 0, sentAt: Date.now(), events, ...overrides };
}

/** An upsert of alpha's record `id` setting `values` (by field number), as a new record beta may create. */
function upsert(id: string, values: Record<string, unknown>, extra: Json = {}): Json {
  return {
    op: 'upsert',
    table: 1,
    id,
    fields: Object.fromEntries(Object.entries(values).map(([number, value]) => [number, { value, version: version(), parent: '' }])),
    record: values,
    origin: `alpha/${id}`,
    ...extra,
  };
}

/** Batches that must be refused, each with what its reason must say. */
function hostileBatches(seq: number): { name: string; body: Json; reason: RegExp }[] {
  return [
    { name: 'hostile-table.json', body: batch(seq, [upsert('100', { 2: 'x' }, { table: 9 })]), reason: /^event 0 names table 9, which sync "head-office" does not sync here$/ },
    {
      name: 'hostile-field.json',
      body: batch(seq, [upsert('101', { 2: 'fine', 99: 'x' })]),
      reason: /^event 0 names field 99, which table 1 \(customers\) does not sync here$/,
    },
    // Field 7 exists in alpha's CRM (a user reference), but beta's file does not sync it.
    { name: 'hostile-field-not-synced.json', body: batch(seq, [upsert('102', { 2: 'fine', 7: 'admin' })]), reason: /^event 0 names field 7, which table 1 \(customers\) does not sync here$/ },
    { name: 'hostile-type-text.json', body: batch(seq, [upsert('103', { 2: true })]), reason: /^event 0: field 2: customers\.company_name \(.*\) cannot hold boolean true$/ },
    {
      name: 'hostile-type-integer.json',
      body: batch(seq, [upsert('104', { 2: 'fine', 5: `a lot${sqlInjection}` })]),
      reason: /^event 0: field 5: customers\.credit \(.*\) cannot hold the text "a lot'; DROP TABLE customers; --"$/,
    },
    {
      name: 'hostile-bytes.json',
      body: batch(seq, [upsert('105', { 2: 'fine', 3: { b64: Buffer.from(pathTraversal).toString('base64') } })]),
      reason: /^event 0: field 3: customers\.email_address \(.*\) cannot hold bytes$/,
    },
    {
      name: 'hostile-field-key.json',
      body: batch(seq, [upsert('106', { 2: 'fine', [`2; DROP TABLE customers`]: 'x' })]),
      reason: /^\/events\/0\/fields .*(property name|must match pattern)/,
    },
    { name: 'hostile-from.json', body: batch(seq, [upsert('107', { 2: 'fine' })], { from: pathTraversal }), reason: /^\/from must be a name of .* \(found "\.\.\/\.\.\/etc\/passwd"\)$/ },
    { name: 'hostile-sync.json', body: batch(seq, [upsert('108', { 2: 'fine' })], { sync: `${syncName}${sqlInjection}` }), reason: /^\/sync must be a name of .* \(found "head-office'; DROP TABLE customers; --"\)$/ },
    { name: 'hostile-other-sync.json', body: batch(seq, [upsert('109', { 2: 'fine' })], { sync: 'payroll' }), reason: /^the batch is for sync "payroll", not "head-office"$/ },
    { name: 'hostile-impostor.json', body: batch(seq, [upsert('110', { 2: 'fine' })], { from: 'mallory' }), reason: /^the batch says it comes from "mallory", but the peer of sync "head-office" is "alpha"$/ },
  ];
}

/** Writes a file the way a peer's transport does: complete, then renamed into place. */
function drop(folder: string, name: string, body: string | Buffer): void {
  writeFileSync(join(folder, `.${name}.writing`), body);
  renameSync(join(folder, `.${name}.writing`), join(folder, name));
}

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)));
}

async function tableNames(instance: SyncInstance): Promise<string[]> {
  const rows = await instance.query<{ name: string }>(
    instance.dialect === 'sqlite' ? "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name" : 'SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY table_name',
  );
  return rows.map((r) => r.name);
}

/** What beta's database holds of the sync: its customers and its links. */
async function betaState(beta: SyncInstance): Promise<string> {
  return JSON.stringify([await beta.rows('customers', 'customer_id'), [...(await beta.links(syncName, 1))]]);
}

/** A request signed as http-auth.ts signs them (with `password`, or unsigned), sent as is: the path is not normalised. */
async function signedRequest(
  url: string,
  method: string,
  path: string,
  options: { body?: Buffer; password?: string | undefined; sync?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders; sent: Record<string, string> }> {
  const body = options.body ?? Buffer.alloc(0);
  const signature = options.password === undefined ? {} : new HttpAuth().signRequest(options.password, { method, path, sync: options.sync ?? syncName, body });
  const sent = { ...options.headers, ...signature, 'content-length': String(body.length) };
  const { hostname, port } = new URL(url);
  return new Promise((resolvePromise, reject) => {
    const request = http.request({ host: hostname, port: Number(port), method, path, headers: sent }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolvePromise({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: response.headers, sent }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(body);
  });
}

async function expectRefusedAndKept(cluster: SyncCluster, beta: SyncInstance, before: number, hostile: { name: string; reason: RegExp }[], expect: ExpectStatic): Promise<void> {
  await cluster.waitFor(`beta to refuse the ${hostile.length} hostile batches`, async () => (await beta.refusedBatches()).length >= before + hostile.length, { timeoutMs: 60_000 });
  const refused = (await beta.refusedBatches()).slice(before);
  expect(refused.map((r) => r.name).sort(), 'the batches refused').toEqual(hostile.map((h) => h.name).sort());
  // The row is written before the line is logged: wait for the daemon's output to catch up.
  const warned = (): LogLine[] => beta.logLines().filter((line) => line.level === 'warn' && line.msg === 'batch refused; kept in tablesync_refused_batches');
  await cluster.waitFor('beta to log every refusal', () => hostile.every(({ name }) => warned().some((line) => line.batch === name)));
  const logged = warned();
  for (const { name, reason } of hostile) {
    const row = refused.find((r) => r.name === name);
    expect(row?.reason, `why ${name} was refused`).toMatch(reason);
    expect(String(logged.find((line) => line.batch === name)?.reason), `the log says why ${name} was refused`).toMatch(reason);
  }
}

describe.concurrent('hostile batches reaching a running daemon [sqlite↔sqlite]', () => {
  it('through its folder download folder: refuses what it does not sync or cannot hold, takes SQL and paths in values and ids as plain data', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta, sync } = await createCrmPair(cluster, sqlite);
    // The test plays alpha: its daemon never runs, and the batches in beta's download folder are the test's.
    await beta.start();
    const download = beta.downloadFolder(sync.name);
    const upload = beta.uploadFolder(sync.name);
    const passwd = statSync('/etc/passwd');

    // Values and record ids that look like SQL and paths: a well-formed batch, applied as data.
    const applied = batch(1, [
      upsert(pathTraversal, { 2: sqlInjection, 3: pathTraversal, 4: '$(rm -rf /)', 6: 'C:\\Windows\\System32' }),
      upsert(sqlInjection, { 2: "Robert'); DROP TABLE customers;--", 3: 'bobby@example.com', 4: '`reboot`' }),
    ]);
    drop(download, `${syncName}.alpha.000000000001.json`, JSON.stringify(applied));
    await cluster.waitFor('beta to apply the batch', async () => (await beta.cursor(sync.name, 'in')) === '1', { timeoutMs: 60_000 });
    expect(await betaCustomer(beta, pathTraversal)).toMatchObject({ company_name: sqlInjection, phone_number: '$(rm -rf /)', remarks: 'C:\\Windows\\System32', state: 'active' });
    expect(await betaCustomer(beta, 'bobby@example.com')).toMatchObject({ company_name: "Robert'); DROP TABLE customers;--", phone_number: '`reboot`' });
    expect([...(await beta.links(sync.name, 1)).values()].sort(), 'alpha\'s ids, kept verbatim as links').toEqual([sqlInjection, pathTraversal].sort());

    // Batches no well-behaved peer sends, each under a valid batch name and the next sequence number.
    const state = await betaState(beta);
    const hostile = hostileBatches(2);
    for (const { name, body } of hostile) drop(download, name, JSON.stringify(body));
    // Files whose names smuggle a path or SQL are not batch names: never read, never moved.
    const oddNames = ['..%2F..%2Fetc%2Fpasswd.json', `x${sqlInjection}.json`];
    for (const name of oddNames) drop(download, name, JSON.stringify(batch(2, [upsert('200', { 2: 'smuggled' })])));
    await expectRefusedAndKept(cluster, beta, 0, hostile, expect);

    expect(await betaState(beta), 'nothing of the refused batches reached the database').toBe(state);
    expect(await beta.cursor(sync.name, 'in')).toBe('1');
    const rejected = readdirSync(join(download, 'rejected'));
    for (const { name, body } of hostile) {
      const kept = rejected.filter((file) => file.startsWith(`${name}.`) && !file.endsWith('.reason.txt'));
      expect(kept, `rejected/ keeps ${name}`).toHaveLength(1);
      expect(JSON.parse(readFileSync(join(download, 'rejected', kept[0] ?? ''), 'utf8'))).toEqual(body);
      expect(existsSync(join(download, 'rejected', `${kept[0]}.reason.txt`)), `the reason beside ${name}`).toBe(true);
    }
    for (const name of oddNames) expect(existsSync(join(download, name)), `${name} left where it was`).toBe(true);

    // The daemon still serves: the next real batch applies, and beta's own changes go out.
    drop(download, `${syncName}.alpha.000000000002.json`, JSON.stringify(batch(2, [{ op: 'upsert', table: 1, id: pathTraversal, fields: { 2: { value: 'still serving', version: version(), parent: '' } } }])));
    await cluster.waitFor('beta to apply the next batch', async () => (await beta.cursor(sync.name, 'in')) === '2', { timeoutMs: 60_000 });
    expect(await betaCustomer(beta, pathTraversal)).toMatchObject({ company_name: 'still serving' });
    await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('made on beta', 'beta@example.com')");
    await cluster.waitFor("beta's change to go out", () =>
      readdirSync(upload).some((name) => /^head-office\.beta\.\d{12}\.json$/.test(name) && readFileSync(join(upload, name), 'utf8').includes('beta@example.com')),
    );
    expect(beta.running).toBe(true);

    // No table dropped, no file written outside the folders.
    expect(await tableNames(beta)).toEqual(expect.arrayContaining(['customers', 'staff', 'tablesync_links', 'tablesync_refused_batches']));
    expect(await tableNames(alpha)).toEqual(expect.arrayContaining(['clients', 'users']));
    const outside = filesUnder(cluster.root).filter((file) => !file.startsWith(join('exchange', sync.name) + '/') && !file.endsWith('.yaml'));
    expect(outside, 'files outside the sync folders').toEqual([]);
    expect(existsSync(resolve(download, pathTraversal))).toBe(false);
    expect(filesUnder(cluster.root).filter((file) => file.includes('passwd') && !file.includes('%2F'))).toEqual([]);
    expect(statSync('/etc/passwd').mtimeMs).toBe(passwd.mtimeMs);
    expect((await beta.refusedBatches()).length).toBe(hostile.length);
  });

  it('over http: refuses authenticated but malformed batches, never lets an unauthenticated one reach the engine, and carries SQL and paths in values as data', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta, sync } = await createCrmPair(cluster, sqlite, { transport: 'http' });
    await cluster.startAll();
    const url = sync.listenerUrl;

    // Text that looks like SQL or paths, written by each application, arrives verbatim on the other side.
    await alpha.exec('INSERT INTO clients (name, email, phone) VALUES (?, ?, ?)', [sqlInjection, pathTraversal, '$(rm -rf /)']);
    await beta.exec('INSERT INTO customers (company_name, email_address, credit) VALUES (?, ?, ?)', ["Robert'); DROP TABLE clients;--", '..\\..\\windows\\win.ini', 7]);
    await cluster.waitInStep(1, { timeoutMs: 60_000 });
    expect(await betaCustomer(beta, pathTraversal)).toMatchObject({ company_name: sqlInjection, phone_number: '$(rm -rf /)' });
    expect(await alphaClient(alpha, '..\\..\\windows\\win.ini')).toMatchObject({ name: "Robert'); DROP TABLE clients;--", credit_limit: '7' });
    await cluster.waitSettled({ timeoutMs: 60_000 });

    // Authenticated (the right password, a fresh signature) but malformed: refused by the engine.
    const state = await betaState(beta);
    const hostile = hostileBatches(999).filter((h) => ['hostile-table.json', 'hostile-field.json', 'hostile-type-text.json', 'hostile-field-key.json', 'hostile-impostor.json'].includes(h.name));
    for (const { name, body } of hostile) {
      const answer = await signedRequest(url, 'PUT', `/v1/syncs/${syncName}/inbox/${name}`, { body: Buffer.from(JSON.stringify(body)), password: sync.password });
      expect(answer.status, `PUT ${name}: ${answer.body}`).toBe(204);
    }
    await expectRefusedAndKept(cluster, beta, 0, hostile, expect);
    expect(await betaState(beta), 'nothing of the refused batches reached the database').toBe(state);

    // A well-formed batch with a wrong password, or with no signature: 401, and it never reaches the engine.
    const tempting = Buffer.from(JSON.stringify(batch(2, [upsert('300', { 2: 'sneaked in', 3: 'sneaky@example.com' })])));
    const wrong = await signedRequest(url, 'PUT', `/v1/syncs/${syncName}/inbox/sneaky.json`, { body: tempting, password: `${sync.password}-not` });
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.body)).toMatchObject({ error: 'bad-signature' });
    const unsigned = await signedRequest(url, 'PUT', `/v1/syncs/${syncName}/inbox/sneaky.json`, { body: tempting, password: undefined });
    expect(unsigned.status).toBe(401);
    expect(JSON.parse(unsigned.body)).toMatchObject({ error: 'missing-signature' });
    const waiting = await signedRequest(url, 'GET', `/v1/syncs/${syncName}/inbox/sneaky.json`, { password: sync.password });
    expect(JSON.parse(waiting.body), 'the refused request left nothing in the inbox').toEqual({ waiting: false });
    // A path in the batch's name: not a batch name, so no such resource, even signed.
    for (const path of [`/v1/syncs/${syncName}/inbox/..%2F..%2Fetc%2Fpasswd`, `/v1/syncs/${syncName}/inbox/x%3B%20DROP%20TABLE%20customers.json`]) {
      const answer = await signedRequest(url, 'PUT', path, { body: tempting, password: sync.password });
      expect(answer.status, `PUT ${path}: ${answer.body}`).toBe(404);
    }
    await cluster.waitFor('beta to log the refused requests', () => beta.logLines().filter((l) => /^refused an http request for sync head-office/.test(l.msg)).length >= 2);
    expect(beta.logLines().filter((l) => /^refused an http request/.test(l.msg)).map((l) => l.refusal).sort()).toEqual(['bad-signature', 'missing-signature']);

    // The daemons still serve each other; nothing of the refused requests arrived anywhere.
    await alpha.exec("UPDATE clients SET name = 'after the attack' WHERE email = ?", [pathTraversal]);
    await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('still here', 'still@example.com')");
    await cluster.waitInStep(1, { timeoutMs: 60_000 });
    await cluster.waitSettled({ timeoutMs: 60_000 });
    expect(await betaCustomer(beta, pathTraversal)).toMatchObject({ company_name: 'after the attack' });
    expect(await alphaClient(alpha, 'still@example.com')).toMatchObject({ name: 'still here' });
    expect(await betaCustomer(beta, 'sneaky@example.com')).toBeUndefined();
    expect(beta.logLines().some((l) => l.batch === 'sneaky.json')).toBe(false);
    expect((await beta.refusedBatches()).length).toBe(hostile.length);
    expect(await alpha.refusedBatches()).toEqual([]);
    expect(await tableNames(beta)).toEqual(expect.arrayContaining(['customers', 'staff']));
    expect(await tableNames(alpha)).toEqual(expect.arrayContaining(['clients', 'users']));
    expect(alpha.running && beta.running).toBe(true);
    await cluster.stopAll();
  });
});

/** Every row of every tablesync_* table, as one text: where a secret must not be. */
async function stateDump(instance: SyncInstance): Promise<string> {
  const tables = (await tableNames(instance)).filter((name) => name.startsWith('tablesync_'));
  const dump: Record<string, unknown[]> = {};
  for (const table of tables) dump[table] = await instance.query(`SELECT * FROM ${table}`);
  return JSON.stringify(dump);
}

/**
 * Secrets: the password of an http sync is the key of its HMAC signatures,
 * so "no password" in what follows covers the key as well.
 */
describe.concurrent('secrets and TLS [sqlite↔sqlite]', () => {
  it("over http: neither daemon logs or echoes a password, a signature or the caller's headers, and no state table holds a password", { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta, sync } = await createCrmPair(cluster, sqlite, { transport: 'http' });
    await beta.start();
    // Alpha's file, which holds the password itself, readable by everyone: the daemon warns, without saying the password.
    alpha.writeConfig();
    chmodSync(alpha.configFile, 0o644);
    await alpha.start();
    await alpha.exec("INSERT INTO clients (name, email) VALUES ('made on alpha', 'alpha@example.com')");
    await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('made on beta', 'beta@example.com')");
    await cluster.waitInStep(1, { timeoutMs: 60_000 });
    await cluster.waitSettled({ timeoutMs: 60_000 });

    const url = sync.listenerUrl;
    const wrong = `${sync.password}-wrong`;
    const marker = 'probe-7f3a9c51';
    const basic = Buffer.from(`admin:${marker}`).toString('base64');
    const headers = { 'x-probe': marker, authorization: `Basic ${basic}`, cookie: `session=${marker}` };
    const outbox = `/v1/syncs/${syncName}/outbox`;
    const probes = [
      { what: 'a wrong password', status: 401, answer: await signedRequest(url, 'GET', outbox, { password: wrong, headers }) },
      { what: 'no signature', status: 401, answer: await signedRequest(url, 'GET', outbox, { password: undefined, headers }) },
      { what: 'the right password, a sync not served', status: 401, answer: await signedRequest(url, 'GET', '/v1/syncs/payroll/outbox', { password: sync.password, sync: 'payroll', headers }) },
      { what: 'the right password, no such resource', status: 404, answer: await signedRequest(url, 'GET', `/v1/syncs/${syncName}/nothing-here`, { password: sync.password, headers }) },
      { what: 'a path outside the API', status: 404, answer: await signedRequest(url, 'GET', `/admin?token=${marker}`, { headers }) },
    ];
    const signatures = probes.map((p) => p.answer.sent['x-tablesync-signature']).filter((s) => s !== undefined);
    expect(signatures).toHaveLength(3);
    const secrets = [sync.password, wrong, marker, basic, ...signatures];
    for (const { what, status, answer } of probes) {
      expect(answer.status, `${what}: ${answer.body}`).toBe(status);
      const echoed = `${JSON.stringify(answer.headers)}\n${answer.body}`;
      for (const secret of secrets) expect(echoed, `the answer to ${what} holds ${secret}`).not.toContain(secret);
    }

    await cluster.waitFor('beta to log the refused requests', () => beta.logLines().filter((l) => /^refused an http request/.test(l.msg)).length >= 3);
    const warning = alpha.logLines().find((l) => l.level === 'warn' && l.path === 'syncs[0].transport.password');
    expect(warning?.msg, 'alpha warns that its file holds a password everyone can read').toBe(
      `is a password written in ${alpha.configFile}, which its group and all other users can read (mode 0644): chmod 600 ${alpha.configFile}, or take the password from \${NAME} or \${file:/path/to/secret}`,
    );

    // Alpha's daemon itself with a wrong password, from a file: it fails to exchange, and says why without either password.
    await alpha.stop();
    const wrongFile = join(cluster.root, 'wrong.pass');
    writeFileSync(wrongFile, `${wrong}\n`, { mode: 0o600 });
    const wrongConfig = join(cluster.root, 'alpha-wrong.yaml');
    writeFileSync(wrongConfig, readFileSync(alpha.configFile, 'utf8').replace(sync.password, `\${file:${wrongFile}}`), { mode: 0o600 });
    const refusedBefore = beta.logLines().filter((l) => /^refused an http request/.test(l.msg)).length;
    const impostor = startCli(['run', '-c', wrongConfig]);
    onTestFinished(async () => {
      impostor.child.kill('SIGKILL');
      await impostor.exited;
    });
    await impostor.waitFor('the peer refused our signature', 60_000);
    await cluster.waitFor('beta to log the refusal', () => beta.logLines().filter((l) => /^refused an http request/.test(l.msg)).length > refusedBefore);
    impostor.child.kill('SIGTERM');
    await impostor.exited;
    await alpha.start();
    await cluster.stopAll();
    for (const secret of secrets) expect(impostor.output().includes(secret), `the log of alpha with a wrong password holds ${secret}`).toBe(false);
    for (const side of [alpha, beta]) {
      const output = side.output();
      for (const secret of secrets) expect(output.includes(secret), `${side.name}'s log holds ${secret}`).toBe(false);
      expect(output.includes(sync.password.slice(4)), `${side.name}'s log holds part of the password`).toBe(false);
      const state = await stateDump(side);
      expect(state.length, `${side.name}'s state tables were read`).toBeGreaterThan(100);
      for (const secret of [sync.password, wrong, marker]) expect(state.includes(secret), `${side.name}'s state tables hold ${secret}`).toBe(false);
    }
  });

  it('over ftp: the FTP password stays out of the logs and the state tables', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta } = await createCrmPair(cluster, sqlite, { transport: 'ftp' });
    await cluster.startAll();
    await alpha.exec("INSERT INTO clients (name, email) VALUES ('made on alpha', 'alpha@example.com')");
    await beta.exec("INSERT INTO customers (company_name, email_address) VALUES ('made on beta', 'beta@example.com')");
    await cluster.waitInStep(1, { timeoutMs: 60_000 });
    await cluster.waitSettled({ timeoutMs: 60_000 });
    const { password } = cluster.ftpServer;
    // A restart of the server makes both daemons log in again, and say what happened.
    await cluster.ftpServer.stop();
    await alpha.exec("UPDATE clients SET name = 'while the server was down'");
    await cluster.waitFor('alpha to find the FTP server gone', () => alpha.logLines().some((l) => l.level === 'warn' || l.level === 'error'));
    await cluster.ftpServer.start();
    await cluster.waitInStep(1, { timeoutMs: 60_000 });
    await cluster.stopAll();
    for (const side of [alpha, beta]) {
      expect(side.output().includes(password), `${side.name}'s log holds the FTP password`).toBe(false);
      expect((await stateDump(side)).includes(password), `${side.name}'s state tables hold the FTP password`).toBe(false);
    }
  });

  it('over https: the active side refuses a self-signed certificate it was not told to trust, saying so, and syncs once given it as tls.ca', { timeout: testTimeout }, async ({ expect, onTestFinished }) => {
    const cluster = newCluster({ onTestFinished });
    const { alpha, beta, sync } = await createCrmPair(cluster, sqlite, { transport: 'http' });
    const dir = join(cluster.root, 'self-signed');
    mkdirSync(dir);
    const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
      '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ]);
    beta.tls = { cert, key };
    await beta.start();
    sync.activeUrl = `https://127.0.0.1:${beta.listenPort}`;
    await alpha.start();
    await alpha.exec("INSERT INTO clients (name, email) VALUES ('over tls', 'tls@example.com')");

    const refusal = (): LogLine | undefined => alpha.logLines().find((l) => l.level === 'error' && /DEPTH_ZERO_SELF_SIGNED_CERT/.test(JSON.stringify(l.err)));
    await cluster.waitFor('alpha to refuse the self-signed certificate', () => refusal() !== undefined, { timeoutMs: 60_000 });
    // pino adds the cause's message (Node's own) after ours.
    expect(String((refusal()?.err as { message?: string } | undefined)?.message)).toMatch(
      /^cannot reach https:\/\/127\.0\.0\.1:\d+: its TLS certificate is self-signed, and not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)[^.]*\. To trust it, give that certificate itself as tls\.ca in this instance's file\.(: self-signed certificate)?$/,
    );
    expect(await betaCustomer(beta, 'tls@example.com'), 'nothing reached beta').toBeUndefined();
    expect(alpha.running, 'alpha keeps running, and keeps trying').toBe(true);

    await alpha.stop();
    alpha.tls = { ca: cert };
    await alpha.start();
    await cluster.waitFor('the record to reach beta over https', async () => (await betaCustomer(beta, 'tls@example.com')) !== undefined, { timeoutMs: 60_000 });
    await cluster.waitInStep(1, { timeoutMs: 60_000 });
    await cluster.stopAll();
  });
});
