import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { afterAll, afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { HttpAuth } from '../../src/transports/http/http-auth.js';
import { HttpAuthError } from '../../src/transports/http/http-auth-error.js';
import { HttpClientTransport, type HttpClientTransportOptions } from '../../src/transports/http/http-client-transport.js';
import { HttpListener } from '../../src/transports/http/http-listener.js';
import { httpPolicy, type HttpPolicy } from '../../src/transports/http/http-policy.js';
import { parseRetryAfter, retryDelayMs } from '../../src/transports/http/http-retry.js';
import { HttpServerTransport, type HttpTransportLogger } from '../../src/transports/http/http-server-transport.js';
import { HttpTransportError } from '../../src/transports/http/http-transport-error.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { describeTransportContract } from './transport-contract.js';

const password = 'correct-horse-battery-staple-42';
const syncName = 'hq';
const text = (s: string): Buffer => Buffer.from(s, 'utf8');

// ---------------------------------------------------------------------------
// Certificates: a private CA and a server certificate for 127.0.0.1, made once per file with openssl.

interface Certificates {
  readonly dir: string;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

let certificates: Promise<Certificates> | undefined;

async function makeCertificates(): Promise<Certificates> {
  const run = promisify(execFile);
  const dir = await mkdtemp(join(tmpdir(), 'tablesync-http-tls-'));
  const file = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '2', '-subj', '/CN=tablesync test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', ['req', ...ec, '-keyout', file('key.pem'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(file('server.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', ['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial',
    '-out', file('cert.pem'), '-days', '2', '-extfile', file('server.ext')]);
  return { dir, ca: file('ca.pem'), cert: file('cert.pem'), key: file('key.pem') };
}

function tlsFiles(): Promise<Certificates> {
  certificates ??= makeCertificates();
  return certificates;
}

afterAll(async () => {
  if (certificates !== undefined) await rm((await certificates).dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// Both sides, on loopback port 0, with everything they log collected.

function collectingLogger(): HttpTransportLogger & { readonly lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    warn: (obj, msg) => lines.push(JSON.stringify({ ...obj, err: String((obj as { err?: unknown }).err ?? '') }) + msg),
  };
}

interface Passive {
  readonly listener: HttpListener;
  readonly server: HttpServerTransport;
  readonly logs: string[];
  /** The listener's URL, such as http://127.0.0.1:40123. */
  readonly url: string;
}

const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startPassive(options: { tls?: Certificates; policy?: Partial<HttpPolicy>; now?: () => number } = {}): Promise<Passive> {
  const logger = collectingLogger();
  const tls = options.tls === undefined ? undefined : { cert: options.tls.cert, key: options.tls.key };
  const listener = new HttpListener({ host: '127.0.0.1', port: 0 }, tls, { logger, policy: options.policy, now: options.now });
  const server = new HttpServerTransport(syncName, { logger, policy: options.policy });
  listener.serve(syncName, password, server);
  await listener.start();
  cleanups.push(() => listener.close(), () => server.close());
  return { listener, server, logs: logger.lines, url: listener.url };
}

function activeFor(url: string, options: HttpClientTransportOptions & { password?: string; sync?: string } = {}): HttpClientTransport & { logs: string[] } {
  const logger = collectingLogger();
  const client = new HttpClientTransport(options.sync ?? syncName, { url, password: options.password ?? password }, { logger, ...options });
  cleanups.push(() => client.close());
  return Object.assign(client, { logs: logger.lines });
}

/** Short timings for the fault tests: a few tens of milliseconds of backoff, no jitter surprises unless asked. */
const quick: Partial<HttpPolicy> = { backoffBaseMs: 10, backoffCapMs: 100, retryAfterCapMs: 2_000, connectTimeoutMs: 2_000, headersTimeoutMs: 2_000, bodyTimeoutMs: 2_000 };

async function proxyTo(url: string): Promise<FaultProxy> {
  const { hostname, port } = new URL(url);
  const proxy = await FaultProxy.start({ host: hostname, port: Number(port) });
  cleanups.push(() => proxy.close());
  return proxy;
}

/** A signed request made by hand, for what the client never does (replays, stale clocks). */
async function signedFetch(
  url: string,
  method: string,
  path: string,
  options: { body?: Buffer; auth?: HttpAuth; password?: string; sync?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; body: string; sent: Record<string, string> }> {
  const body = options.body ?? Buffer.alloc(0);
  const sent = options.headers ?? (options.auth ?? new HttpAuth()).signRequest(options.password ?? password, { method, path, sync: options.sync ?? syncName, body });
  const response = await fetch(`${url}${path}`, { method, headers: sent, body: method === 'GET' || method === 'DELETE' ? undefined : body });
  return { status: response.status, headers: response.headers, body: await response.text(), sent };
}

// ---------------------------------------------------------------------------
// The shared contract, over http and over https: `ours` is the active side, `peer` the passive one.

describeTransportContract('http', async () => {
  const passive = await startPassive();
  const client = activeFor(passive.url);
  return {
    ours: client,
    peer: passive.server,
    dispose: async () => {
      await client.close();
      await passive.server.close();
      await passive.listener.close();
    },
  };
});

describeTransportContract('https', async () => {
  const tls = await tlsFiles();
  const passive = await startPassive({ tls });
  const client = activeFor(passive.url, { ca: tls.ca });
  return {
    ours: client,
    peer: passive.server,
    dispose: async () => {
      await client.close();
      await passive.server.close();
      await passive.listener.close();
    },
  };
});

// ---------------------------------------------------------------------------

describe('http transport: the passive side sends, the active side fetches', () => {
  const received = async (side: HttpClientTransport): Promise<string[]> => (await side.receive()).map((b) => `${b.name}=${b.body.toString('utf8')}`);

  it('offers what the passive side sent, sorted by name, and nothing back to the sender', async () => {
    const { server, url } = await startPassive();
    const client = activeFor(url);
    await server.send({ name: 'b-0002.json', body: text('two') });
    await server.send({ name: 'b-0001.json', body: text('one') });

    expect(await received(client)).toEqual(['b-0001.json=one', 'b-0002.json=two']);
    expect(await server.receive()).toEqual([]);
  });

  it('carries several megabytes byte for byte, and replaces a batch sent again under the same name', async () => {
    const { server, url } = await startPassive();
    const client = activeFor(url);
    const body = Buffer.alloc(6 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 1) body[i] = (i * 31 + 7) % 256;
    await server.send({ name: 'big.json', body: text('first') });
    await server.send({ name: 'big.json', body });

    const batches = await client.receive();
    expect(batches).toHaveLength(1);
    expect(batches[0]?.body.equals(body)).toBe(true);
  });

  it('says a batch is waiting until the active side is done with it; done() twice is harmless', async () => {
    const { server, url } = await startPassive();
    const client = activeFor(url);
    await server.send({ name: 'b-0001.json', body: text('one') });
    await server.send({ name: 'b-0002.json', body: text('two') });

    const [first] = await client.receive();
    expect(await server.isWaiting('b-0001.json')).toBe(true);
    await first?.done();
    await first?.done();

    expect(await server.isWaiting('b-0001.json')).toBe(false);
    expect(await received(client)).toEqual(['b-0002.json=two']);
  });

  it('keeps a batch that was sent again after it was fetched, instead of dropping it unread', async () => {
    const { server, url } = await startPassive();
    const client = activeFor(url);
    await server.send({ name: 'b-0001.json', body: text('first') });
    const [fetched] = await client.receive();

    await server.send({ name: 'b-0001.json', body: text('resent') });
    await fetched?.done();

    expect(await received(client)).toEqual(['b-0001.json=resent']);
  });

  it('drops a batch the active side rejects and logs the reason on the passive side; reject() twice is harmless', async () => {
    const { server, url, logs } = await startPassive();
    const client = activeFor(url);
    await server.send({ name: 'b-0001.json', body: text('not a batch') });

    const [bad] = await client.receive();
    await bad?.reject('unexpected token n at position 0');
    await bad?.reject('unexpected token n at position 0');

    expect(await server.isWaiting('b-0001.json')).toBe(false);
    expect(await client.receive()).toEqual([]);
    expect(logs.filter((line) => line.includes('unexpected token n at position 0'))).toHaveLength(1);
  });

  it('fetches a bounded page at a time and calls the arrival listener while more wait', async () => {
    const { server, url } = await startPassive();
    const client = activeFor(url, { policy: { receivePageBatches: 2 } });
    for (const n of [1, 2, 3]) await server.send({ name: `b-000${n}.json`, body: text(`${n}`) });
    let calls = 0;
    client.onArrival(() => {
      calls += 1;
    });
    await expect.poll(() => calls).toBe(1);

    const page = await client.receive();
    expect(page.map((b) => b.name)).toEqual(['b-0001.json', 'b-0002.json']);
    await expect.poll(() => calls).toBe(2);
    for (const batch of page) await batch.done();
    expect((await client.receive()).map((b) => b.name)).toEqual(['b-0003.json']);
  });

  it('refuses to keep a batch larger than maxBatchBytes, or under a name that cannot travel', async () => {
    const server = new HttpServerTransport(syncName, { policy: { maxBatchBytes: 10 } });
    await expect(server.send({ name: 'b-0001.json', body: Buffer.alloc(11) })).rejects.toMatchObject({ code: 'TS_ERR_HTTP', retryable: false });
    await expect(server.send({ name: '../x.json', body: text('x') })).rejects.toMatchObject({ code: 'TS_ERR_HTTP', retryable: false });
  });

  it('exchanges descriptions: the active side PUTs its own and GETs the passive one', async () => {
    const { server, url } = await startPassive();
    const client = activeFor(url);
    expect(await client.readPeerDescription()).toBeUndefined();
    expect(await server.readPeerDescription()).toBeUndefined();

    await server.publishDescription(text('{"passive":true}'));
    await client.publishDescription(text('{"active":true}'));

    expect((await client.readPeerDescription())?.toString()).toBe('{"passive":true}');
    expect((await server.readPeerDescription())?.toString()).toBe('{"active":true}');
  });

  it('says which side it is', async () => {
    const { server, url } = await startPassive();
    const client = activeFor(url);
    expect([client.reachesPeer, server.reachesPeer]).toEqual([true, false]);
    expect([client.maxBatchBytes, server.maxBatchBytes]).toEqual([8 * 1024 * 1024, 8 * 1024 * 1024]);
  });
});

// ---------------------------------------------------------------------------

describe('http transport: authentication', () => {
  it('refuses a request without a signature with 401 and a one-line JSON reason, and logs it', async () => {
    const { url, logs } = await startPassive();
    const response = await fetch(`${url}/v1/syncs/${syncName}/outbox`);
    const body = await response.text();

    expect(response.status).toBe(401);
    expect(body).not.toContain('\n');
    expect(JSON.parse(body)).toMatchObject({ error: 'missing-signature' });
    expect(logs.some((line) => line.includes('missing-signature') && line.includes('127.0.0.1'))).toBe(true);
  });

  it('refuses a wrong password, and the client says the passwords differ, naming the URL', async () => {
    const { url, logs } = await startPassive();
    const client = activeFor(url, { password: 'not-the-password' });

    const attempt = client.readPeerDescription();
    await expect(attempt).rejects.toBeInstanceOf(HttpAuthError);
    await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_HTTP_AUTH', refusal: 'bad-signature', retryable: false, target: url });
    await expect(attempt).rejects.toThrow(`${url}: the peer refused our signature: the two sides' sync passwords differ`);
    expect(logs.some((line) => line.includes('bad-signature'))).toBe(true);
  });

  it('answers an unknown sync exactly as it answers a wrong password', async () => {
    const { url } = await startPassive();
    const unknown = await signedFetch(url, 'GET', '/v1/syncs/nope/descriptions/passive', { sync: 'nope' });
    const wrong = await signedFetch(url, 'GET', `/v1/syncs/${syncName}/descriptions/passive`, { password: 'not-the-password' });

    expect(unknown.status).toBe(401);
    expect([unknown.status, unknown.body]).toEqual([wrong.status, wrong.body]);
    expect([...unknown.headers.keys()].filter((h) => h !== 'date').sort()).toEqual([...wrong.headers.keys()].filter((h) => h !== 'date').sort());
    await expect(activeFor(url, { sync: 'nope' }).readPeerDescription()).rejects.toMatchObject({ refusal: 'bad-signature' });
  });

  it('refuses a replayed request, even within the clock window', async () => {
    const { url, server } = await startPassive();
    await server.publishDescription(text('{}'));
    const path = `/v1/syncs/${syncName}/descriptions/passive`;
    const first = await signedFetch(url, 'GET', path);
    const replay = await signedFetch(url, 'GET', path, { headers: first.sent });

    expect(first.status).toBe(200);
    expect(replay.status).toBe(401);
    expect(JSON.parse(replay.body)).toMatchObject({ error: 'replayed' });
  });

  it('refuses a request signed more than 60 s away from its clock, and the client says to synchronise the clocks', async () => {
    const { url } = await startPassive();
    const stale = await signedFetch(url, 'GET', `/v1/syncs/${syncName}/outbox`, { auth: new HttpAuth({ now: () => Date.now() - 61_000 }) });
    expect(stale.status).toBe(401);
    expect(JSON.parse(stale.body)).toMatchObject({ error: 'clock-skew' });

    const ahead = activeFor(url, { now: () => Date.now() + 120_000 });
    const attempt = ahead.receive();
    await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_HTTP_AUTH', refusal: 'clock-skew', retryable: false });
    await expect(attempt).rejects.toThrow(/120 s ahead of this side's clock.*±60 s: synchronise both clocks/);
  });

  it('refuses a body that does not match its signed hash', async () => {
    const { url, server } = await startPassive();
    const path = `/v1/syncs/${syncName}/inbox/b-0001.json`;
    const sent = new HttpAuth().signRequest(password, { method: 'PUT', path, sync: syncName, body: text('signed') });
    const response = await fetch(`${url}${path}`, { method: 'PUT', headers: sent, body: text('altered') });

    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: 'body-mismatch' });
    expect(await server.receive()).toEqual([]);
  });

  it('throttles an address after 5 failures in a minute with 429 and Retry-After; the active side waits and gets through', async () => {
    const { url } = await startPassive();
    for (let i = 0; i < 5; i += 1) expect((await fetch(`${url}/v1/syncs/${syncName}/outbox`)).status).toBe(401);

    const throttled = await fetch(`${url}/v1/syncs/${syncName}/outbox`);
    expect(throttled.status).toBe(429);
    expect(throttled.headers.get('retry-after')).toBe('1');
    expect(await throttled.json()).toMatchObject({ error: 'throttled' });
    // Throttled even with the right signature, until the block ends.
    expect((await signedFetch(url, 'GET', `/v1/syncs/${syncName}/outbox`)).status).toBe(429);

    const client = activeFor(url, { policy: quick });
    expect(await client.receive()).toEqual([]);
  });

  it('refuses an answer whose signature does not match, and does not retry it', async () => {
    const { url, server } = await startPassive();
    await server.publishDescription(text('{"passive":true}'));
    const proxy = await proxyTo(url);
    proxy.inject({ kind: 'corrupt' });
    const client = activeFor(proxy.url, { policy: quick });

    const attempt = client.readPeerDescription();
    await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_HTTP_AUTH', refusal: 'bad-response-signature', retryable: false });
    await expect(attempt).rejects.toThrow('carries no valid signature of the passive side');
    expect(proxy.connections).toHaveLength(1);
  });

  it('refuses an answer without a signature, as from a server that is not tablesync', async () => {
    const impostor = await FaultProxy.start({ host: '127.0.0.1', port: 1 });
    cleanups.push(() => impostor.close());
    impostor.otherwise = { kind: 'respond', response: 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}' };
    const client = activeFor(impostor.url, { policy: quick });

    await expect(client.readPeerDescription()).rejects.toMatchObject({ code: 'TS_ERR_HTTP_AUTH', refusal: 'bad-response-signature' });
  });

  it('never puts the password in a request, an answer, a log line or an error message', async () => {
    const { url, server, logs } = await startPassive();
    const proxy = await proxyTo(url);
    const client = activeFor(proxy.url);
    const wrong = activeFor(proxy.url, { password: 'another-secret-entirely' });

    await client.send({ name: 'b-0001.json', body: text('one') });
    await server.send({ name: 'b-0002.json', body: text('two') });
    const [fetched] = await client.receive();
    await fetched?.reject('refused for the test');
    for (const batch of await server.receive()) await batch.reject('refused for the test');
    await client.publishDescription(text('{}'));
    const failure = await wrong.receive().then(
      () => new Error('the wrong password was accepted'),
      (err: unknown) => err as Error,
    );
    await fetch(`${proxy.url}/v1/syncs/${syncName}/outbox`);

    expect(failure).toBeInstanceOf(HttpAuthError);
    expect(proxy.traffic.length).toBeGreaterThan(0);
    for (const secret of [password, 'another-secret-entirely']) {
      expect(proxy.sawText(secret)).toBe(false);
      expect([...logs, ...client.logs, ...wrong.logs].filter((line) => line.includes(secret))).toEqual([]);
      expect(failure.message).not.toContain(secret);
    }
    expect(logs.length).toBeGreaterThan(0);
    // Nor the signature: a log line is no replay kit.
    expect(logs.filter((line) => /[0-9a-f]{64}/.test(line) && !line.includes('sha256'))).toEqual([]);
  });

  it('never shows the password of a URL with credentials', async () => {
    const port = await closedPort();
    const client = activeFor(`http://sync:url-secret@127.0.0.1:${port}`, { policy: { ...quick, attempts: 1 } });
    const error = await client.receive().then(
      () => expect.unreachable(),
      (err: unknown) => err as HttpTransportError,
    );
    expect(error.message).toBe(`cannot reach http://127.0.0.1:${port}: connection refused. Is the passive side's daemon running, and does this url match its listen: setting?`);
    expect(error.target).not.toContain('url-secret');
  });
});

// ---------------------------------------------------------------------------

describe('http transport: sizes', () => {
  it('answers 413 to a body declared too large without reading it, closes that connection, and keeps serving', async () => {
    const { url, server } = await startPassive({ policy: { maxBatchBytes: 1024 } });
    const { port } = new URL(url);
    const head = `PUT /v1/syncs/${syncName}/inbox/b-0001.json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`;

    const answer = await rawExchange(Number(port), head, [Buffer.alloc(4096, 'x')]);
    expect(answer.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer.text.toLowerCase()).toContain('connection: close');
    expect(answer.closedByServer).toBe(true);

    const client = activeFor(url, { policy: { maxBatchBytes: 1024 } });
    await client.send({ name: 'b-0002.json', body: text('fits') });
    expect((await server.receive()).map((b) => b.name)).toEqual(['b-0002.json']);
  });

  it('answers 413 as soon as a streamed body passes the limit, and keeps serving', async () => {
    const { url, server } = await startPassive({ policy: { maxBatchBytes: 1024 } });
    const { port } = new URL(url);
    const path = `/v1/syncs/${syncName}/inbox/b-0001.json`;
    const signed = new HttpAuth().signRequest(password, { method: 'PUT', path, sync: syncName, body: Buffer.alloc(3000, 'x') });
    const head = `PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n${Object.entries(signed).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
    const chunk = Buffer.concat([text('3e8\r\n'), Buffer.alloc(1000, 'x'), text('\r\n')]);

    const answer = await rawExchange(Number(port), head, [chunk, chunk, chunk, chunk]);
    expect(answer.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer.closedByServer).toBe(true);
    expect(await server.receive()).toEqual([]);

    await activeFor(url).send({ name: 'b-0002.json', body: text('fits') });
    expect((await server.receive()).map((b) => b.name)).toEqual(['b-0002.json']);
  });

  it('the active side refuses to send a batch over maxBatchBytes, and says why', async () => {
    const { url } = await startPassive();
    const client = activeFor(url, { policy: { maxBatchBytes: 100 } });
    const attempt = client.send({ name: 'b-0001.json', body: Buffer.alloc(101) });
    await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_HTTP', retryable: false });
    await expect(attempt).rejects.toThrow('batch b-0001.json is 101 bytes, and the http transport carries at most 100');
  });

  it('the active side says so when the passive side refuses a body as too large', async () => {
    const { url } = await startPassive({ policy: { maxBatchBytes: 100 } });
    const client = activeFor(url);
    await expect(client.send({ name: 'b-0001.json', body: Buffer.alloc(101) })).rejects.toMatchObject({ code: 'TS_ERR_HTTP', statusCode: 413, retryable: false });
  });
});

// ---------------------------------------------------------------------------

describe('http transport: a peer that drops, stalls, resets and cuts', () => {
  it('retries failed connections with exponential backoff, then succeeds', async () => {
    const { url, server } = await startPassive();
    const proxy = await proxyTo(url);
    proxy.inject({ kind: 'reset' }, { kind: 'drop' }, { kind: 'reset' });
    // The top of each backoff range, so that the waits can be checked: 40, 80, 160 ms.
    const client = activeFor(proxy.url, { policy: { ...quick, backoffBaseMs: 40, backoffCapMs: 1_000 }, random: () => 0.999 });

    await client.send({ name: 'b-0001.json', body: text('one') });

    expect(proxy.connections.map((c) => c.fault)).toEqual(['reset', 'drop', 'reset', 'pass']);
    const gaps = proxy.connections.slice(1).map((c, i) => c.at - proxy.connections[i]!.at);
    expect(gaps[0]).toBeGreaterThanOrEqual(38);
    expect(gaps[1]).toBeGreaterThanOrEqual(78);
    expect(gaps[2]).toBeGreaterThanOrEqual(158);
    expect((await server.receive()).map((b) => b.name)).toEqual(['b-0001.json']);
  });

  it('retries an answer that was cut in the middle of its body', async () => {
    const { url, server } = await startPassive();
    const description = Buffer.alloc(20_000, 'd');
    await server.publishDescription(description);
    const proxy = await proxyTo(url);
    proxy.inject({ kind: 'cut', afterBytes: 1_000 });
    const client = activeFor(proxy.url, { policy: quick });

    expect((await client.readPeerDescription())?.equals(description)).toBe(true);
    expect(proxy.connections.map((c) => c.fault)).toEqual(['cut', 'pass']);
  });

  it('gives up on a peer that answers too slowly, then succeeds once it is quick again', async () => {
    const { url } = await startPassive();
    const proxy = await proxyTo(url);
    proxy.inject({ kind: 'delay', ms: 1_000 });
    const client = activeFor(proxy.url, { policy: { ...quick, headersTimeoutMs: 150 } });

    expect(await client.receive()).toEqual([]);
    expect(proxy.connections.map((c) => c.fault)).toEqual(['delay', 'pass']);
  });

  it('honours Retry-After in seconds', async () => {
    const { url } = await startPassive();
    const proxy = await proxyTo(url);
    proxy.inject({ kind: 'respond', response: 'HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n' });
    const client = activeFor(proxy.url, { policy: quick, random: () => 0 });

    expect(await client.receive()).toEqual([]);
    const [first, second] = proxy.connections;
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(990);
  });

  it('caps a long Retry-After, given as an HTTP date, at retryAfterCapMs', async () => {
    const { url } = await startPassive();
    const proxy = await proxyTo(url);
    const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
    proxy.inject({ kind: 'respond', response: `HTTP/1.1 429 Too Many Requests\r\nretry-after: ${inAnHour}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n` });
    const client = activeFor(proxy.url, { policy: { ...quick, retryAfterCapMs: 200 }, random: () => 0 });

    expect(await client.receive()).toEqual([]);
    const [first, second] = proxy.connections;
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(195);
    expect(second!.at - first!.at).toBeLessThan(3_000);
  });

  it('gives up after its attempts with a retryable error naming the peer', async () => {
    const { url } = await startPassive();
    const proxy = await proxyTo(url);
    proxy.otherwise = { kind: 'reset' };
    const client = activeFor(proxy.url, { policy: { ...quick, attempts: 3 } });

    const attempt = client.readPeerDescription();
    await expect(attempt).rejects.toBeInstanceOf(HttpTransportError);
    await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_HTTP', retryable: true, errno: 'ECONNRESET', target: proxy.url });
    await expect(attempt).rejects.toThrow(`cannot reach ${proxy.url}: the connection was reset (tried 3 times).`);
    expect(proxy.connections).toHaveLength(3);
  });

  it('gives up at once on an answer that waiting cannot fix', async () => {
    const { url } = await startPassive();
    const proxy = await proxyTo(url);
    proxy.otherwise = { kind: 'respond', response: 'HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 35\r\nconnection: close\r\n\r\n{"error":"not-found","reason":"no"}' };
    const client = activeFor(proxy.url, { policy: quick });

    await expect(client.receive()).rejects.toMatchObject({ code: 'TS_ERR_HTTP', statusCode: 404, retryable: false });
    expect(proxy.connections).toHaveLength(1);
  });

  it('says the peer cannot be reached when nothing listens, and that retrying may help', async () => {
    const port = await closedPort();
    const client = activeFor(`http://127.0.0.1:${port}`, { policy: { ...quick, attempts: 2 } });
    const attempt = client.readPeerDescription();
    await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_HTTP', retryable: true, errno: 'ECONNREFUSED' });
    await expect(attempt).rejects.toThrow(`cannot reach http://127.0.0.1:${port}: connection refused (tried 2 times).`);
  });

  it('stops retrying when closed', async () => {
    const { url } = await startPassive();
    const proxy = await proxyTo(url);
    proxy.otherwise = { kind: 'reset' };
    const client = activeFor(proxy.url, { policy: { ...quick, backoffBaseMs: 60_000, backoffCapMs: 60_000 }, random: () => 0.999 });
    const attempt = client.receive();
    attempt.catch(() => {});
    await expect.poll(() => proxy.connections.length).toBe(1);
    await client.close();
    await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_TRANSPORT_CLOSED' });
  });

  it('waits as the policy says', () => {
    const policy = { backoffBaseMs: 100, backoffCapMs: 1_000, retryAfterCapMs: 5_000 };
    expect([1, 2, 3, 4, 5, 6].map((n) => retryDelayMs(policy, n, undefined, () => 0.999999))).toEqual([99, 199, 399, 799, 999, 999]);
    expect(retryDelayMs(policy, 1, undefined, () => 0)).toBe(0);
    expect(retryDelayMs(policy, 3, 2_000)).toBe(2_000);
    expect(retryDelayMs(policy, 3, 60_000)).toBe(5_000);
    const now = Date.parse('2025-01-02T03:04:05Z');
    expect(parseRetryAfter('7', now)).toBe(7_000);
    expect(parseRetryAfter('Thu, 02 Jan 2025 03:04:15 GMT', now)).toBe(10_000);
    expect(parseRetryAfter('Thu, 02 Jan 2025 03:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(httpPolicy.retryableStatuses).toEqual(new Set([429, 500, 502, 503, 504]));
  });
});

// ---------------------------------------------------------------------------

describe('http transport: TLS', () => {
  it('verifies the certificate by default', async () => {
    const tls = await tlsFiles();
    const { url } = await startPassive({ tls });
    const client = activeFor(url, { policy: quick });

    const attempt = client.readPeerDescription();
    await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_HTTP', retryable: false });
    await expect(attempt).rejects.toThrow(/its TLS certificate is not trusted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)\. If a private CA signed it, give that CA's certificate as tls\.ca/);
  });

  it('says so when the url says http:// and the passive side speaks https', async () => {
    const tls = await tlsFiles();
    const { url } = await startPassive({ tls });
    const client = activeFor(url.replace('https:', 'http:'), { policy: { ...quick, attempts: 1 } });
    await expect(client.receive()).rejects.toMatchObject({ code: 'TS_ERR_HTTP' });
  });

  it('says which tls.ca file it cannot read', async () => {
    const { url } = await startPassive();
    const client = activeFor(url, { ca: '/nonexistent/ca.pem' });
    await expect(client.receive()).rejects.toThrow("cannot read the CA certificate /nonexistent/ca.pem (the instance's tls.ca setting): ENOENT");
  });

  it('says which certificate file the listener cannot read', async () => {
    const listener = new HttpListener({ host: '127.0.0.1', port: 0 }, { cert: '/nonexistent/cert.pem', key: '/nonexistent/key.pem' });
    cleanups.push(() => listener.close());
    await expect(listener.start()).rejects.toThrow("cannot read the TLS certificate /nonexistent/cert.pem (the instance's tls.cert setting): ENOENT");
  });
});

// ---------------------------------------------------------------------------

describe('http listener', () => {
  it('answers /healthz without authentication, over http and https', async () => {
    const { url } = await startPassive();
    const response = await fetch(`${url}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });

    const tls = await tlsFiles();
    const secure = await startPassive({ tls });
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      https
        .get(`${secure.url}/healthz`, { ca: [readFileSync(tls.ca, 'utf8')] }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });
    expect(answer).toEqual({ status: 200, body: '{"status":"ok"}' });
  });

  it('answers 404 outside the API, without counting it as a failed authentication', async () => {
    const { url } = await startPassive();
    for (let i = 0; i < 8; i += 1) expect((await fetch(`${url}/wp-login.php`)).status).toBe(404);
    expect((await signedFetch(url, 'GET', `/v1/syncs/${syncName}/outbox`)).status).toBe(200);
  });

  it('lets a request in flight finish when closing, refuses new connections, and closes safely twice', async () => {
    const { url, server, listener } = await startPassive();
    const { port } = new URL(url);
    const path = `/v1/syncs/${syncName}/inbox/b-0001.json`;
    const body = text('in flight');
    const signed = new HttpAuth().signRequest(password, { method: 'PUT', path, sync: syncName, body });
    const socket = net.connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const answer = collect(socket);
    // With Expect: 100-continue, node answers "100 Continue" once the request is being handled: then it is in flight.
    const inFlight = new Promise((resolve) => socket.once('data', resolve));
    socket.write(
      `PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n` +
        `${Object.entries(signed).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`,
    );
    await inFlight;

    const closing = listener.close();
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    socket.write(body);

    expect((await answer).text).toContain('HTTP/1.1 204 ');
    await closing;
    await listener.close();
    expect((await server.receive()).map((b) => b.body.toString())).toEqual(['in flight']);
  });

  it('says when its address is taken', async () => {
    const { listener } = await startPassive();
    const second = new HttpListener({ host: '127.0.0.1', port: listener.address.port }, undefined);
    const attempt = second.start();
    await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_HTTP', errno: 'EADDRINUSE' });
    await expect(attempt).rejects.toThrow(`cannot listen on 127.0.0.1:${listener.address.port}: the address is in use`);
    await second.close();
  });

  it('answers 503 for a sync whose transport is closed, which the client retries', async () => {
    const { url, server } = await startPassive();
    await server.close();
    const client = activeFor(url, { policy: { ...quick, attempts: 2, retryAfterCapMs: 10 } });
    await expect(client.receive()).rejects.toMatchObject({ code: 'TS_ERR_HTTP', statusCode: 503, retryable: true });
  });

  it('takes a pino logger', () => {
    expectTypeOf<Logger>().toExtend<HttpTransportLogger>();
  });
});

// ---------------------------------------------------------------------------

/** A port on which nothing listens (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function collect(socket: net.Socket): Promise<{ text: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.once('close', () => resolve({ text: Buffer.concat(chunks).toString('latin1'), closedByServer: true }));
  });
}

/** Sends a request by hand, byte for byte, and reads what comes back until the server closes the connection. */
async function rawExchange(port: number, head: string, bodyParts: readonly Buffer[]): Promise<{ text: string; closedByServer: boolean }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  const answer = collect(socket);
  socket.write(head);
  for (const part of bodyParts) if (!socket.destroyed) socket.write(part);
  return answer;
}
