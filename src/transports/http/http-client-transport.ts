import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { Agent, request } from 'undici';
import type { HttpTransportConfig } from '../../config/types.js';
import { TablesyncError, redactUrl } from '../../errors.js';
import { ArrivalListeners } from '../arrival-listeners.js';
import type { IncomingBatch, OutgoingBatch, Transport } from '../transport.js';
import { TransportClosedError } from '../transport-closed-error.js';
import { HttpAuth, signatureHeaders, type AuthRefusal, type HeaderBag } from './http-auth.js';
import { HttpAuthError } from './http-auth-error.js';
import { resolveHttpPolicy, type HttpPolicy } from './http-policy.js';
import { parseRetryAfter, retryDelayMs } from './http-retry.js';
import { httpPaths, isBatchName } from './http-routes.js';
import type { HttpTransportLogger } from './http-server-transport.js';
import { HttpTransportError } from './http-transport-error.js';

export interface HttpClientTransportOptions {
  /** Where listener exceptions are reported; default: nowhere. */
  readonly logger?: HttpTransportLogger;
  /** Overrides of `httpPolicy` (timeouts, retries, sizes). */
  readonly policy?: Partial<HttpPolicy>;
  /**
   * A PEM file of CA certificates to trust in addition to Node's bundled
   * list (the instance's `tls.ca`), for a passive side whose certificate a
   * private CA signed. Certificates are always verified.
   */
  readonly ca?: string;
  /** Random numbers in [0, 1) for the backoff's jitter; default Math.random. */
  readonly random?: () => number;
  /** The clock requests are signed with; default Date.now. */
  readonly now?: () => number;
}

type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

interface Answer {
  readonly status: number;
  readonly headers: HeaderBag;
  readonly body: Buffer;
}

/** Why one attempt failed, and whether another may succeed. */
interface Failure {
  readonly error: (attempts: number) => TablesyncError;
  readonly retryable: boolean;
  readonly retryAfterMs?: number;
}

interface PageEntry {
  readonly name: string;
  readonly version: string;
  readonly body: string;
}

const silentLogger: HttpTransportLogger = { warn: () => {} };

/** Room for JSON around the bodies of an answer. */
const answerOverheadBytes = 64 * 1024;

const certificateCodes = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * The active side of one http sync: every operation is a signed request to
 * the passive side's listener (the API is listed at the top of
 * http-listener.ts), retried as `HttpPolicy` says, and every answer must
 * carry the passive side's signature.
 *
 * - `send` PUTs the batch; `isWaiting` asks whether the passive side still
 *   holds it, not yet applied.
 * - `receive` GETs the batches the passive side left for us, a bounded page
 *   at a time (when more wait, the arrival listeners are called so that the
 *   engine comes back for them); `done` DELETEs one, `reject` POSTs the reason.
 * - `publishDescription` PUTs ours; `readPeerDescription` GETs theirs.
 * - `onArrival` has nothing to watch: the passive side cannot call us. It
 *   calls the listener once at start, and when a page said more were waiting.
 *
 * Failures throw an HttpTransportError (TS_ERR_HTTP) or, when the two sides
 * do not trust each other, an HttpAuthError (TS_ERR_HTTP_AUTH); both name the
 * peer's URL without any password.
 */
export class HttpClientTransport implements Transport {
  readonly reachesPeer = true;
  readonly maxBatchBytes: number;
  readonly #sync: string;
  readonly #password: string;
  /** Origin and path prefix, no credentials, no trailing slash: the API's paths are appended. */
  readonly #base: string;
  /** The same, to name the peer in messages. */
  readonly #peer: string;
  readonly #policy: HttpPolicy;
  readonly #auth: HttpAuth;
  readonly #caFile: string | undefined;
  readonly #random: () => number;
  readonly #logger: HttpTransportLogger;
  #agent: Promise<Agent> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Wakes the backoff waits in progress, so that close() does not wait for them. */
  readonly #sleepers = new Set<() => void>();
  readonly #arrivals: ArrivalListeners;

  constructor(sync: string, config: Pick<HttpTransportConfig, 'password'> & { readonly url: string }, options: HttpClientTransportOptions = {}) {
    this.#sync = sync;
    this.#password = config.password;
    let url: URL;
    try {
      url = new URL(config.url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
    } catch {
      throw new HttpTransportError(
        `the transport.url of sync ${sync}, ${redactUrl(config.url)}, is not an http:// or https:// address such as https://hq.example.com:8470.`,
        redactUrl(config.url),
        false,
      );
    }
    this.#base = `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
    this.#peer = this.#base;
    this.#policy = resolveHttpPolicy(options.policy);
    this.maxBatchBytes = this.#policy.maxBatchBytes;
    this.#auth = new HttpAuth({ clockWindowMs: this.#policy.clockWindowMs, now: options.now });
    this.#caFile = options.ca;
    this.#random = options.random ?? Math.random;
    this.#logger = options.logger ?? silentLogger;
    this.#arrivals = new ArrivalListeners('http', this.#logger);
  }

  async send(batch: OutgoingBatch): Promise<void> {
    this.#assertOpen('send a batch');
    this.#assertBatchName(batch.name);
    this.#assertFits(batch.body, `batch ${batch.name}`);
    await this.#call(`send batch ${batch.name}`, 'PUT', httpPaths.inboxItem(this.#sync, batch.name), batch.body, answerOverheadBytes);
  }

  async isWaiting(name: string): Promise<boolean> {
    this.#assertOpen('check a sent batch');
    this.#assertBatchName(name);
    const action = `ask whether batch ${name} still waits`;
    const answer = await this.#call(action, 'GET', httpPaths.inboxItem(this.#sync, name), undefined, answerOverheadBytes);
    const waiting = (parseJson(answer.body) as { waiting?: unknown } | undefined)?.waiting;
    if (typeof waiting !== 'boolean') throw this.#badAnswer(action, '{"waiting": true|false}');
    return waiting;
  }

  async receive(): Promise<IncomingBatch[]> {
    this.#assertOpen('receive batches');
    const action = 'fetch the batches waiting for us';
    const { receivePageBytes, receivePageBatches, maxBatchBytes } = this.#policy;
    const limit = Math.ceil((Math.max(receivePageBytes, maxBatchBytes) * 4) / 3) + receivePageBatches * 1024 + answerOverheadBytes;
    const answer = await this.#call(action, 'GET', httpPaths.outbox(this.#sync, { maxBytes: receivePageBytes, maxCount: receivePageBatches }), undefined, limit);
    const page = parsePage(answer.body);
    if (page === undefined) throw this.#badAnswer(action, 'a list of batches');
    if (page.more) this.#arrivals.signal();
    return page.batches
      .map((entry) => this.#incoming(entry))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Calls `listener` once now (nothing can be watched: the passive side cannot call us), and when the peer said more batches wait. */
  onArrival(listener: () => void): void {
    this.#assertOpen('watch for arrivals');
    this.#arrivals.add(listener);
    this.#arrivals.signal();
  }

  async publishDescription(body: Buffer): Promise<void> {
    this.#assertOpen('publish the description');
    this.#assertFits(body, 'the description');
    await this.#call('publish our description', 'PUT', httpPaths.activeDescription(this.#sync), body, answerOverheadBytes);
  }

  async probe(): Promise<string> {
    await this.readPeerDescription();
    return `${this.#base} answers and accepts our signature`;
  }

  async readPeerDescription(): Promise<Buffer | undefined> {
    this.#assertOpen("read the peer's description");
    const answer = await this.#call(
      "read the peer's description",
      'GET',
      httpPaths.passiveDescription(this.#sync),
      undefined,
      this.#policy.maxBatchBytes + answerOverheadBytes,
    );
    return answer.status === 204 ? undefined : answer.body;
  }

  /**
   * Lets the requests in flight finish, then closes the connections; backoff
   * waits are cut short and their operations throw TransportClosedError, as
   * does anything called afterwards (`done` and `reject` included: they need
   * the peer).
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#arrivals.close();
    for (const wake of this.#sleepers) wake();
    const agent = await this.#agent?.catch(() => undefined);
    await agent?.close();
  }

  #incoming(entry: { readonly name: string; readonly version: string; readonly body: Buffer }): IncomingBatch {
    const { name, version } = entry;
    return {
      name,
      body: entry.body,
      done: async () => {
        this.#assertOpen(`finish batch ${name}`);
        await this.#call(`tell the peer we applied batch ${name}`, 'DELETE', httpPaths.outboxItem(this.#sync, name, version), undefined, answerOverheadBytes);
      },
      reject: async (reason: string) => {
        this.#assertOpen(`reject batch ${name}`);
        const body = Buffer.from(JSON.stringify({ reason }));
        await this.#call(`tell the peer we refused batch ${name}`, 'POST', httpPaths.outboxReject(this.#sync, name, version), body, answerOverheadBytes);
      },
    };
  }

  /** One operation: attempts until one succeeds, one fails for good, or `attempts` are used up. */
  async #call(action: string, method: Method, path: string, body: Buffer | undefined, answerLimit: number): Promise<Answer> {
    for (let attempt = 1; ; attempt += 1) {
      this.#assertOpen(action);
      let failure: Failure;
      try {
        const answer = await this.#attempt(action, method, path, body, answerLimit);
        if (answer.status >= 200 && answer.status < 300) return answer;
        failure = this.#statusFailure(action, answer);
      } catch (err) {
        if (err instanceof TablesyncError) throw err;
        failure = this.#connectionFailure(err);
      }
      if (!failure.retryable || attempt >= this.#policy.attempts) throw failure.error(attempt);
      await this.#sleep(retryDelayMs(this.#policy, attempt, failure.retryAfterMs, this.#random));
    }
  }

  async #attempt(action: string, method: Method, path: string, body: Buffer | undefined, answerLimit: number): Promise<Answer> {
    const agent = await this.#dispatcher();
    const payload = body ?? Buffer.alloc(0);
    const signature = this.#auth.signRequest(this.#password, { method, path, sync: this.#sync, body: payload });
    const response = await request(`${this.#base}${path}`, {
      dispatcher: agent,
      method,
      headers: { ...signature, ...(body === undefined ? {} : { 'content-type': 'application/octet-stream' }) },
      body: body === undefined ? null : payload,
    });
    const received = await this.#readLimited(action, response.body, answerLimit);
    const answer: Answer = { status: response.statusCode, headers: response.headers, body: received };
    if (answer.status >= 200 && answer.status < 300) {
      const nonce = signature[signatureHeaders.nonce]!;
      if (!this.#auth.verifyResponse(this.#password, { status: answer.status, sync: this.#sync, nonce, body: received, headers: answer.headers })) {
        throw new HttpAuthError(
          `${this.#peer}: the answer to "${action}" carries no valid signature of the passive side, so it was not used: ` +
            "something between the two sides altered it, or the server there does not hold this sync's password.",
          this.#peer,
          'bad-response-signature',
          false,
        );
      }
    }
    return answer;
  }

  async #readLimited(action: string, body: AsyncIterable<Buffer> & { destroy(): unknown }, limit: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += chunk.length;
      if (size > limit) {
        body.destroy();
        throw new HttpTransportError(
          `${this.#peer}: the answer to "${action}" is larger than the ${limit} bytes expected, so it was not read. Do both sides run the same tablesync version?`,
          this.#peer,
          false,
        );
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  #statusFailure(action: string, answer: Answer): Failure {
    const { status } = answer;
    const said = peerReason(answer.body);
    if (status === 401) return this.#authFailure(said);
    if (status === 413) {
      return {
        retryable: false,
        error: () =>
          new HttpTransportError(
            `${this.#peer}: the peer refused to ${action}: the body is larger than it accepts${said.reason === undefined ? '' : ` (${said.reason})`}. Do both sides run the same tablesync version?`,
            this.#peer,
            false,
            { statusCode: status },
          ),
      };
    }
    const retryable = this.#policy.retryableStatuses.has(status);
    const detail = said.reason === undefined ? '' : `: ${said.reason}`;
    const fix = retryable
      ? ''
      : status === 404 || status === 405
        ? ". Is the sync's url the passive side's listen: address, and do both sides run the same tablesync version?"
        : '. Do both sides run the same tablesync version?';
    return {
      retryable,
      retryAfterMs: parseRetryAfter(answer.headers['retry-after']),
      error: (attempts) =>
        new HttpTransportError(`${this.#peer}: the peer answered ${status} to "${action}"${detail}${tried(attempts)}${fix}`, this.#peer, retryable, {
          statusCode: status,
        }),
    };
  }

  #authFailure(said: { readonly error?: string; readonly reason?: string }): Failure {
    const refusal: AuthRefusal = isRefusal(said.error) ? said.error : 'bad-signature';
    const retryable = refusal === 'replayed' || refusal === 'body-mismatch';
    const why: Record<AuthRefusal, string> = {
      'bad-signature': `the two sides' sync passwords differ, or the peer serves no passive http sync named ${this.#sync}. Give both sides the same transport.password and sync name`,
      'clock-skew': `${said.reason ?? 'the two clocks disagree'}`,
      replayed: 'it had seen the request before (a replay), which may mean someone repeats our requests',
      'body-mismatch': 'the body it read is not the one we signed: something between the two sides altered or cut it',
      'missing-signature': 'the signature headers did not reach it: does a proxy between the two sides remove x-tablesync-* headers?',
      'malformed-signature': 'it could not read the signature headers: do both sides run the same tablesync version?',
    };
    return {
      retryable,
      error: (attempts) => new HttpAuthError(`${this.#peer}: the peer refused our signature: ${why[refusal]}${tried(attempts)}.`, this.#peer, refusal, retryable),
    };
  }

  #connectionFailure(err: unknown): Failure {
    const code = errorCode(err);
    const retryable = code !== undefined && this.#policy.retryableErrorCodes.has(code);
    const [phrase, fix] = this.#explain(code, err);
    return {
      retryable,
      error: (attempts) =>
        new HttpTransportError(`cannot reach ${this.#peer}: ${phrase}${tried(attempts)}.${fix}`, this.#peer, retryable, { errno: code, cause: err }),
    };
  }

  /** A phrase for what went wrong, and a sentence on how to fix it ('' when waiting is the fix). */
  #explain(code: string | undefined, err: unknown): [string, string] {
    const seconds = (ms: number): string => `${ms / 1000} s`;
    switch (code) {
      case 'ECONNREFUSED':
        return ['connection refused', " Is the passive side's daemon running, and does this url match its listen: setting?"];
      case 'ECONNRESET':
        return ['the connection was reset', ''];
      case 'EPIPE':
        return ['the connection closed while we were sending', ''];
      case 'ETIMEDOUT':
      case 'UND_ERR_CONNECT_TIMEOUT':
        return [`no connection within ${seconds(this.#policy.connectTimeoutMs)}`, ' Is a firewall dropping the connection?'];
      case 'UND_ERR_HEADERS_TIMEOUT':
        return [`no answer within ${seconds(this.#policy.headersTimeoutMs)}`, ''];
      case 'UND_ERR_BODY_TIMEOUT':
        return [`the answer stalled for ${seconds(this.#policy.bodyTimeoutMs)}`, ''];
      case 'UND_ERR_SOCKET':
      case 'UND_ERR_CLOSED':
        return [
          'the connection closed before the answer was complete',
          this.#base.startsWith('http:') ? ' If the passive side has tls:, the url must start with https://.' : '',
        ];
      case 'ENOTFOUND':
        return ['no such host', " Check the host name in the sync's transport.url."];
      case 'EAI_AGAIN':
        return ['its host name could not be looked up (the name server did not answer)', ''];
      case 'EHOSTUNREACH':
      case 'EHOSTDOWN':
        return ['the host is unreachable', ''];
      case 'ENETUNREACH':
      case 'ENETDOWN':
        return ['the network is unreachable', ''];
      case 'ERR_TLS_CERT_ALTNAME_INVALID':
        return [
          `its TLS certificate is not made out to this host name (${code})`,
          " Use in transport.url the host name the certificate names, or make a certificate for this one.",
        ];
      case 'EPROTO':
        return ['the TLS handshake failed (EPROTO)', " Does the url's scheme match the passive side: https:// when it has tls:, http:// when not?"];
      case 'DEPTH_ZERO_SELF_SIGNED_CERT':
        return [`its TLS certificate is self-signed, and not trusted (${code})`, " To trust it, give that certificate itself as tls.ca in this instance's file."];
      default:
        if (code !== undefined && certificateCodes.has(code)) {
          return [
            `its TLS certificate is not trusted (${code})`,
            " If a private CA signed it, give that CA's certificate as tls.ca in this instance's file.",
          ];
        }
        if (code?.startsWith('ERR_SSL_')) {
          return [`the TLS handshake failed (${code})`, " Does the url's scheme match the passive side: https:// when it has tls:, http:// when not?"];
        }
        return [`${err instanceof Error ? err.message : String(err)}${code === undefined ? '' : ` (${code})`}`, ''];
    }
  }

  #dispatcher(): Promise<Agent> {
    this.#agent ??= this.#createAgent().catch((err: unknown) => {
      // Forgotten, so that the next call reads the file again (it may have been fixed).
      this.#agent = undefined;
      throw err;
    });
    return this.#agent;
  }

  async #createAgent(): Promise<Agent> {
    let ca: string[] | undefined;
    if (this.#caFile !== undefined) {
      try {
        ca = [...rootCertificates, await readFile(this.#caFile, 'utf8')];
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new HttpTransportError(
          `cannot read the CA certificate ${this.#caFile} (the instance's tls.ca setting): ${code ?? (err as Error).message}. Point it at a readable PEM file.`,
          this.#peer,
          false,
          { errno: code, cause: err },
        );
      }
    }
    return new Agent({
      connect: { timeout: this.#policy.connectTimeoutMs, ...(ca === undefined ? {} : { ca }) },
      headersTimeout: this.#policy.headersTimeoutMs,
      bodyTimeout: this.#policy.bodyTimeoutMs,
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#sleepers.add(wake);
    });
  }

  #badAnswer(action: string, expected: string): HttpTransportError {
    return new HttpTransportError(
      `${this.#peer}: the answer to "${action}" is not ${expected}. Do both sides run the same tablesync version?`,
      this.#peer,
      false,
    );
  }

  #assertBatchName(name: string): void {
    if (!isBatchName(name)) {
      throw new HttpTransportError(
        `batch name ${JSON.stringify(name)} cannot travel over http: it must start with a letter, digit, "-" or "_" and hold only letters, digits, ".", "-" and "_" (at most 255).`,
        this.#peer,
        false,
      );
    }
  }

  #assertFits(body: Buffer, what: string): void {
    if (body.length > this.maxBatchBytes) {
      throw new HttpTransportError(
        `${what} is ${body.length} bytes, and the http transport carries at most ${this.maxBatchBytes}: the engine should have split it.`,
        this.#peer,
        false,
      );
    }
  }

  #assertOpen(operation: string): void {
    if (this.#closed) throw new TransportClosedError(`http transport of active sync ${this.#sync} (${this.#peer})`, operation);
  }
}

function tried(attempts: number): string {
  return attempts > 1 ? ` (tried ${attempts} times)` : '';
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The `error` and `reason` of an error answer. They are not signed (a side
 * that refuses our signature cannot sign its refusal), so they are only
 * quoted, shortened and stripped of control characters, never acted upon.
 */
function peerReason(body: Buffer): { readonly error?: string; readonly reason?: string } {
  const parsed = parseJson(body) as { error?: unknown; reason?: unknown } | undefined;
  const clean = (value: unknown): string | undefined =>
    // eslint-disable-next-line no-control-regex
    typeof value === 'string' && value !== '' ? value.replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, 300) : undefined;
  return { error: clean(parsed?.error), reason: clean(parsed?.reason) };
}

function isRefusal(value: string | undefined): value is AuthRefusal {
  return (
    value === 'missing-signature' ||
    value === 'malformed-signature' ||
    value === 'clock-skew' ||
    value === 'bad-signature' ||
    value === 'replayed' ||
    value === 'body-mismatch'
  );
}

/** The outbox page of the API; undefined when the answer is not one. */
function parsePage(body: Buffer): { readonly batches: { name: string; version: string; body: Buffer }[]; readonly more: boolean } | undefined {
  const parsed = parseJson(body) as { batches?: unknown; more?: unknown } | undefined;
  if (!Array.isArray(parsed?.batches) || typeof parsed.more !== 'boolean') return undefined;
  const batches: { name: string; version: string; body: Buffer }[] = [];
  for (const entry of parsed.batches as unknown[]) {
    const { name, version, body: encoded } = (entry ?? {}) as Partial<Record<keyof PageEntry, unknown>>;
    if (typeof name !== 'string' || !isBatchName(name) || typeof version !== 'string' || typeof encoded !== 'string') return undefined;
    batches.push({ name, version, body: Buffer.from(encoded, 'base64') });
  }
  return { batches, more: parsed.more };
}

/** The error code of a failed request: undici's own, or the system's, possibly under `cause`. */
function errorCode(err: unknown): string | undefined {
  for (let current = err, depth = 0; current != null && depth < 5; current = (current as { cause?: unknown }).cause, depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}
