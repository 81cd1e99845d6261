/**
 * The http API of tablesync. The passive side serves it (one HttpListener per
 * instance, on `listen:`, over https when `tls:` is set, shared by all the
 * instance's passive http syncs); the active side calls it
 * (HttpClientTransport). `{sync}` is the sync's name, `{name}` a batch name.
 *
 *   GET    /healthz
 *          200 {"status":"ok"}; with `monitoring`, 503 {"status":"unhealthy","error":…,"reason":…,"syncs":[…]}
 *          when it finds something wrong (a peer not reached for too long). Not authenticated: for
 *          monitoring and load balancers.
 *   GET    /metrics
 *          With `monitoring` only (404 otherwise): its metrics in Prometheus text format. Not authenticated.
 *   PUT    /v1/syncs/{sync}/inbox/{name}
 *          The active side sends a batch (the body), replacing one of the same name. 204.
 *   GET    /v1/syncs/{sync}/inbox/{name}
 *          Whether that batch still waits here, not yet applied: 200 {"waiting":true|false}.
 *   GET    /v1/syncs/{sync}/outbox?max-bytes={n}&max-count={n}
 *          The batches the passive side left for the active side, in name order, as many as
 *          fit both sides' limits (always one, if any wait):
 *          200 {"batches":[{"name":…,"version":…,"body":base64}],"more":true|false}.
 *   DELETE /v1/syncs/{sync}/outbox/{name}?version={version}
 *          The active side applied it: dropped, unless it was replaced since. 204.
 *   POST   /v1/syncs/{sync}/outbox/{name}/reject?version={version}
 *          The active side refused it; body {"reason":"…"}. Logged here and dropped. 204.
 *   PUT    /v1/syncs/{sync}/descriptions/active
 *          The active side's description (src/protocol/description.ts). 204.
 *   GET    /v1/syncs/{sync}/descriptions/passive
 *          The passive side's description: 200 with it, or 204 before it has published one.
 *
 * Every /v1 request carries the signature headers of http-auth.ts; every
 * answer to an authenticated request is signed back. Errors are one line of
 * JSON, {"error":"<code>","reason":"<sentence>"}:
 *
 *   401  the signature is missing, wrong, stale (clock window), replayed, or the body
 *        does not match it; an unknown sync gets the very same answer as a wrong password.
 *   413  the body is larger than `maxBatchBytes`; the connection is closed, the rest unread.
 *   429  too many failed authentications from this address; `Retry-After` says when to retry.
 *   404, 405  no such resource or method (after authentication); 404 for any path outside /v1/syncs/.
 *   503  the sync is shutting down or too many batches wait; `Retry-After` says when to retry.
 *
 * Every 401, 413 and 429 is reported to `monitoring.refused` with its
 * reason (the `error` code above) and the sync it named, when this listener
 * serves that sync: the daemon counts them in
 * tablesync_http_requests_refused_total. Such a request never reaches a
 * sync's engine, so tablesync_batches_refused_total does not see it.
 *
 * What is not protected: without `tls:`, batches and descriptions travel in
 * clear text, readable by anyone on the path (the password never travels).
 * /healthz and /metrics answer anyone who can reach the port: they name
 * instances and syncs and carry counts and times, never data or a secret.
 */
import { readFile } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ListenConfig, ServerTlsConfig } from '../../config/types.js';
import { HttpAuth, type AuthRefusal } from './http-auth.js';
import { HttpAuthThrottle } from './http-auth-throttle.js';
import { resolveHttpPolicy, type HttpPolicy } from './http-policy.js';
import { healthPath, metricsPath, parseTarget, targetPath, type ParsedTarget } from './http-routes.js';
import type { HttpAnswer, HttpServerTransport, HttpTransportLogger } from './http-server-transport.js';
import { HttpTransportError } from './http-transport-error.js';

export interface HttpListenerOptions {
  /** Where refused requests and server errors are reported (never a password or a signature); default: nowhere. */
  readonly logger?: HttpTransportLogger;
  /** Overrides of `httpPolicy`. */
  readonly policy?: Partial<HttpPolicy>;
  /** The clock that signed requests are checked against; default Date.now. */
  readonly now?: () => number;
  /** What /healthz reports and /metrics serves; without it /healthz says only that the listener is up, and /metrics is 404. */
  readonly monitoring?: ListenerMonitoring;
}

/** Why the listener refused a request before any sync saw it: the `error` code of its 401, 413 or 429. */
export type HttpRefusal = AuthRefusal | 'too-large' | 'throttled';

/** A Record, so that the compiler insists on every refusal http-auth.ts can give. */
const refusalSet: Readonly<Record<HttpRefusal, true>> = {
  'missing-signature': true,
  'malformed-signature': true,
  'clock-skew': true,
  'bad-signature': true,
  replayed: true,
  'body-mismatch': true,
  'too-large': true,
  throttled: true,
};

/** Every reason the listener refuses a request for: what a counter of them starts at 0 for. */
export const httpRefusals = Object.keys(refusalSet) as readonly HttpRefusal[];

/** What /healthz finds wrong: a stable code, one sentence, and the syncs concerned. */
export interface HealthProblem {
  readonly error: string;
  readonly reason: string;
  readonly syncs: readonly string[];
}

/**
 * What the listener serves besides the API, from the process that runs it (the
 * daemon). Both answer anyone who reaches the port, unauthenticated: no secret
 * in them.
 */
export interface ListenerMonitoring {
  /** Undefined when all is well (/healthz answers 200); otherwise what is wrong (503). */
  health(): HealthProblem | undefined;
  /** The body of /metrics and its content type (the Prometheus text format). */
  metrics(): Promise<{ readonly contentType: string; readonly body: string }>;
  /**
   * A request refused at the http layer. `sync` is the sync it named when
   * this listener serves it; undefined otherwise, so that a caller cannot
   * make up names for the counts to be kept under.
   */
  refused?(sync: string | undefined, reason: HttpRefusal): void;
}

type ListenerState = 'new' | 'starting' | 'listening' | 'closing' | 'closed';

interface ServedSync {
  readonly password: string;
  readonly transport: HttpServerTransport;
}

const silentLogger: HttpTransportLogger = { warn: () => {} };

/**
 * One HTTP(S) server for an instance: authenticates each request, routes it
 * by sync name to that sync's HttpServerTransport, and signs the answer.
 * `start()` once; `close()` stops accepting, lets the requests in flight
 * finish (up to `closeTimeoutMs`), then closes; both are safe to call twice.
 */
export class HttpListener {
  readonly #listen: ListenConfig;
  readonly #tls: ServerTlsConfig | undefined;
  readonly #policy: HttpPolicy;
  readonly #logger: HttpTransportLogger;
  readonly #auth: HttpAuth;
  readonly #throttle: HttpAuthThrottle;
  readonly #syncs = new Map<string, ServedSync>();
  readonly #monitoring: ListenerMonitoring | undefined;
  #server: http.Server | undefined;
  #state: ListenerState = 'new';
  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(listen: ListenConfig, tls: ServerTlsConfig | undefined, options: HttpListenerOptions = {}) {
    this.#listen = listen;
    this.#tls = tls;
    this.#policy = resolveHttpPolicy(options.policy);
    this.#logger = options.logger ?? silentLogger;
    this.#monitoring = options.monitoring;
    const now = options.now ?? Date.now;
    this.#auth = new HttpAuth({ clockWindowMs: this.#policy.clockWindowMs, now });
    this.#throttle = new HttpAuthThrottle(this.#policy, now);
  }

  /** Where it listens, once started: the port is the real one when `listen:` said 0. */
  get address(): { readonly host: string; readonly port: number } {
    const address = this.#server?.address() as AddressInfo | null | undefined;
    if (address == null) throw new Error('the http listener is not listening: call start() first');
    return { host: address.address, port: address.port };
  }

  /** `http://host:port` or `https://host:port`, once started. */
  get url(): string {
    const { host, port } = this.address;
    return `${this.#tls === undefined ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  /** Serves `sync` with `password` through `transport`. A name can be served once. */
  serve(sync: string, password: string, transport: HttpServerTransport): void {
    if (this.#syncs.has(sync)) throw new Error(`the http listener already serves a sync named ${sync}`);
    this.#syncs.set(sync, { password, transport });
  }

  /** Reads the certificate files (with `tls:`) and starts listening; throws an HttpTransportError saying why it cannot. */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #start(): Promise<void> {
    if (this.#state !== 'new') throw new Error(`the http listener cannot start: it is ${this.#state}`);
    this.#state = 'starting';
    const serverOptions: http.ServerOptions = {
      headersTimeout: this.#policy.serverHeadersTimeoutMs,
      requestTimeout: this.#policy.serverRequestTimeoutMs,
      keepAliveTimeout: this.#policy.keepAliveTimeoutMs,
    };
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      this.#handle(req, res).catch((err: unknown) => this.#failed(req, res, err));
    };
    let server: http.Server;
    if (this.#tls === undefined) {
      server = http.createServer(serverOptions, onRequest);
    } else {
      // One after the other, so that the message names the same file every time.
      const cert = await this.#readTlsFile('cert', this.#tls.cert);
      const key = await this.#readTlsFile('key', this.#tls.key);
      server = https.createServer({ ...serverOptions, cert, key }, onRequest);
    }
    const { host, port } = this.#listen;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.#state = 'closed';
      throw listenError(err, host, port);
    }
    server.on('error', (err) => this.#logger.warn({ err }, `the http listener on ${host}:${port} failed`));
    this.#server = server;
    this.#state = 'listening';
  }

  async #readTlsFile(setting: 'cert' | 'key', path: string): Promise<Buffer> {
    try {
      return await readFile(path);
    } catch (err) {
      this.#state = 'closed';
      const code = (err as NodeJS.ErrnoException).code;
      throw new HttpTransportError(
        `cannot read the TLS ${setting === 'cert' ? 'certificate' : 'private key'} ${path} (the instance's tls.${setting} setting): ${code ?? (err as Error).message}. Point it at a readable PEM file.`,
        `${this.#listen.host}:${this.#listen.port}`,
        false,
        { errno: code, cause: err },
      );
    }
  }

  async #close(): Promise<void> {
    await this.#starting?.catch(() => {});
    const server = this.#server;
    this.#state = 'closing';
    if (server !== undefined) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), this.#policy.closeTimeoutMs);
      timer.unref();
      await closed;
      clearTimeout(timer);
    }
    this.#state = 'closed';
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    const method = req.method ?? 'GET';
    const path = targetPath(target).split('?')[0];
    if (path === healthPath) {
      if (method === 'GET' || method === 'HEAD') return this.#reply(req, res, this.#health(), true);
      return this.#reply(req, res, json(405, { error: 'method-not-allowed', reason: '/healthz takes GET' }, { allow: 'GET, HEAD' }), false);
    }
    if (path === metricsPath && this.#monitoring !== undefined) {
      if (method !== 'GET' && method !== 'HEAD') {
        return this.#reply(req, res, json(405, { error: 'method-not-allowed', reason: '/metrics takes GET' }, { allow: 'GET, HEAD' }), false);
      }
      const { contentType, body } = await this.#monitoring.metrics();
      return this.#reply(req, res, { status: 200, body: Buffer.from(body), headers: { 'content-type': contentType } }, true);
    }
    const parsed = parseTarget(target);
    if (parsed === undefined) {
      return this.#reply(req, res, json(404, { error: 'not-found', reason: 'no such path; the tablesync API is under /v1/syncs/{sync}/' }), false);
    }
    const address = req.socket.remoteAddress ?? 'unknown';
    const blockedMs = this.#throttle.blockedFor(address);
    if (blockedMs > 0) {
      const seconds = Math.ceil(blockedMs / 1000);
      const reason = `too many failed authentications from this address; try again in ${seconds} s`;
      this.#countRefusal(parsed.sync, 'throttled');
      return this.#reply(req, res, json(429, { error: 'throttled', reason }, { 'retry-after': String(seconds) }), false);
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.#policy.maxBatchBytes) return this.#reply(req, res, this.#tooLarge(req, address, parsed), false);

    const served = this.#syncs.get(parsed.sync);
    const verdict = this.#auth.verifyRequest(served?.password, { method, path: parsed.signedPath, sync: parsed.sync, headers: req.headers });
    if (!verdict.ok) return this.#refuseAuth(req, res, address, parsed, verdict.refusal, verdict.reason);

    const read = await readBody(req, this.#policy.maxBatchBytes);
    if (read.kind === 'aborted') return;
    if (read.kind === 'too-large') return this.#reply(req, res, this.#tooLarge(req, address, parsed), false);
    if (!this.#auth.bodyMatches(verdict, read.body)) {
      return this.#refuseAuth(req, res, address, parsed, 'body-mismatch', 'the body does not match the SHA-256 in its signature: it was altered or cut on the way');
    }
    // Defined: the signature matched, so the sync is served here.
    const { password, transport } = served!;
    const answer = transport.answer({ method, route: parsed.route, query: parsed.query, body: read.body });
    const signature = this.#auth.signResponse(password, { status: answer.status, sync: parsed.sync, nonce: verdict.nonce, body: answer.body });
    this.#reply(req, res, { ...answer, headers: { ...answer.headers, ...signature } }, true);
  }

  #health(): HttpAnswer {
    const problem = this.#monitoring?.health();
    if (problem === undefined) return json(200, { status: 'ok' });
    return json(503, { status: 'unhealthy', error: problem.error, reason: problem.reason, syncs: problem.syncs });
  }

  /** 413, counted and logged: a peer that sends too much is misconfigured (its limit is larger) or not a peer. */
  #tooLarge(req: IncomingMessage, address: string, parsed: ParsedTarget): HttpAnswer {
    const reason = `the body is larger than the ${this.#policy.maxBatchBytes} bytes this side accepts; the sender must split it`;
    this.#countRefusal(parsed.sync, 'too-large');
    this.#logger.warn({ remote: address, method: req.method, path: parsed.signedPath.split('?')[0], sync: parsed.sync, refusal: 'too-large' }, `refused an http request for sync ${parsed.sync}: ${reason}`);
    return json(413, { error: 'too-large', reason });
  }

  #countRefusal(sync: string, reason: HttpRefusal): void {
    this.#monitoring?.refused?.(this.#syncs.has(sync) ? sync : undefined, reason);
  }

  /** 401, counted against the caller's address, and logged without the signature or anything secret. */
  #refuseAuth(req: IncomingMessage, res: ServerResponse, address: string, parsed: ParsedTarget, refusal: AuthRefusal, reason: string): void {
    this.#throttle.recordFailure(address);
    this.#countRefusal(parsed.sync, refusal);
    this.#logger.warn(
      { remote: address, method: req.method, path: parsed.signedPath.split('?')[0], sync: parsed.sync, refusal },
      `refused an http request for sync ${parsed.sync}: ${reason}`,
    );
    this.#reply(req, res, json(401, { error: refusal, reason }, { 'www-authenticate': 'Tablesync-HMAC-SHA256' }), false);
  }

  /**
   * Sends an answer. One sent before the request's body was read in full
   * closes the connection: the rest of the body is not read.
   */
  #reply(req: IncomingMessage, res: ServerResponse, answer: HttpAnswer, bodyRead: boolean): void {
    const headers: Record<string, string> = { 'cache-control': 'no-store', ...answer.headers };
    if (this.#state !== 'listening' || (!bodyRead && hasBody(req))) headers.connection = 'close';
    if (answer.status === 204 || answer.status === 304) {
      res.writeHead(answer.status, headers);
      res.end();
      return;
    }
    headers['content-length'] = String(answer.body.length);
    res.writeHead(answer.status, headers);
    res.end(req.method === 'HEAD' ? undefined : answer.body);
  }

  #failed(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    this.#logger.warn({ err, method: req.method, path: targetPath(req.url ?? '/').split('?')[0] }, 'the http listener failed to answer a request');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    this.#reply(req, res, json(500, { error: 'internal', reason: 'this side failed to answer; see its log' }), false);
  }
}

function json(status: number, value: unknown, headers: Readonly<Record<string, string>> = {}): HttpAnswer {
  return { status, body: Buffer.from(JSON.stringify(value)), headers: { 'content-type': 'application/json', ...headers } };
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

type BodyRead = { readonly kind: 'body'; readonly body: Buffer } | { readonly kind: 'too-large' } | { readonly kind: 'aborted' };

/** Reads a request's body, stopping (and discarding what follows) as soon as it passes `limit` bytes. */
function readBody(req: IncomingMessage, limit: number): Promise<BodyRead> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (read: BodyRead): void => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      resolve(read);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      chunks.length = 0;
      settle({ kind: 'too-large' });
    };
    req.on('data', onData);
    req.once('end', () => settle({ kind: 'body', body: Buffer.concat(chunks) }));
    req.once('error', () => settle({ kind: 'aborted' }));
    req.once('close', () => settle({ kind: 'aborted' }));
  });
}

function listenError(err: unknown, host: string, port: number): HttpTransportError {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `${host}:${port}`;
  const why =
    code === 'EADDRINUSE'
      ? 'the address is in use: another program, or another tablesync, listens there. Stop it, or change listen:'
      : code === 'EACCES'
        ? 'permission denied: ports below 1024 need privileges. Choose a port above 1023 in listen:'
        : code === 'EADDRNOTAVAIL'
          ? 'this machine has no such address. Use one of its addresses, or 0.0.0.0 for all, in listen:'
          : `${(err as Error).message}`;
  return new HttpTransportError(`cannot listen on ${where}: ${why}`, where, code === 'EADDRINUSE', { errno: code, cause: err });
}
