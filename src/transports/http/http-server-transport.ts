import { createHash } from 'node:crypto';
import { ArrivalListeners } from '../arrival-listeners.js';
import type { IncomingBatch, OutgoingBatch, Transport } from '../transport.js';
import { TransportClosedError } from '../transport-closed-error.js';
import { resolveHttpPolicy, type HttpPolicy } from './http-policy.js';
import { isBatchName, type HttpRoute } from './http-routes.js';
import { HttpTransportError } from './http-transport-error.js';

/** The slice of a logger the http transport uses; a pino Logger fits. */
export interface HttpTransportLogger {
  warn(obj: object, msg: string): void;
}

export interface HttpServerTransportOptions {
  /** Where refused batches and listener exceptions are reported; default: nowhere. */
  readonly logger?: HttpTransportLogger;
  /** Overrides of `httpPolicy` (sizes and bounds). */
  readonly policy?: Partial<HttpPolicy>;
}

/** An authenticated request for this sync, as the listener hands it over. */
export interface HttpCall {
  readonly method: string;
  readonly route: HttpRoute;
  readonly query: URLSearchParams;
  readonly body: Buffer;
}

/** What to answer; the listener signs and sends it. */
export interface HttpAnswer {
  readonly status: number;
  readonly body: Buffer;
  readonly headers?: Readonly<Record<string, string>>;
}

interface Waiting {
  readonly body: Buffer;
  /** The SHA-256 of the body: `done` and `reject` from the active side name it, so a batch replaced since is not dropped unread. */
  readonly version: string;
}

const silentLogger: HttpTransportLogger = { warn: () => {} };

/** The longest rejection reason kept from the active side; the rest is cut. */
const maxReasonLength = 2000;

/**
 * The passive side of one http sync. It never contacts the peer: the active
 * side calls the instance's HttpListener, which authenticates each request and
 * hands it to `answer`. Everything is kept in memory, which is enough because
 * the engine keeps every batch it sent until the peer acknowledges it and
 * sends it again when `isWaiting` says it is gone: a restart loses nothing.
 *
 * - `send` keeps a batch for the active side to fetch (`GET outbox`), until it
 *   says it is done with it (`DELETE`) or refused it (`POST .../reject`, logged).
 * - `receive` offers what the active side sent (`PUT inbox/{name}`); `done`
 *   drops it, `reject` logs the reason and drops it (nothing is kept aside).
 * - `isWaiting` is true while a batch we sent has not been dropped by the
 *   active side (fetched or not).
 * - `onArrival` fires when the active side sends a batch, and once at start.
 * - `publishDescription` keeps ours for the active side to GET;
 *   `readPeerDescription` is what the active side last PUT, or undefined.
 *
 * Made by createTransport without a listener (for `tablesync check`), it
 * simply never hears from the peer: `reachesPeer` is false.
 */
export class HttpServerTransport implements Transport {
  readonly reachesPeer = false;
  readonly maxBatchBytes: number;
  readonly #policy: HttpPolicy;
  readonly #logger: HttpTransportLogger;
  /** What the active side sent, waiting for our engine. */
  readonly #inbox = new Map<string, Waiting>();
  /** What our engine sent, waiting for the active side. */
  readonly #outbox = new Map<string, Waiting>();
  #ourDescription: Buffer | undefined;
  #peerDescription: Buffer | undefined;
  readonly #arrivals: ArrivalListeners;
  #closed = false;
  #peerCalledAt: number | undefined;

  constructor(
    readonly sync: string,
    options: HttpServerTransportOptions = {},
  ) {
    this.#policy = resolveHttpPolicy(options.policy);
    this.maxBatchBytes = this.#policy.maxBatchBytes;
    this.#logger = options.logger ?? silentLogger;
    this.#arrivals = new ArrivalListeners('http', this.#logger);
  }

  /** When the active side last made a request that passed authentication, while this transport was open. */
  get peerCalledAt(): number | undefined {
    return this.#peerCalledAt;
  }

  async send(batch: OutgoingBatch): Promise<void> {
    this.#assertOpen('send a batch');
    if (!isBatchName(batch.name)) {
      throw new HttpTransportError(
        `batch name ${JSON.stringify(batch.name)} cannot travel over http: it must start with a letter, digit, "-" or "_" and hold only letters, digits, ".", "-" and "_" (at most 255).`,
        this.#describe(),
        false,
      );
    }
    if (batch.body.length > this.maxBatchBytes) {
      throw new HttpTransportError(
        `batch ${batch.name} is ${batch.body.length} bytes, and the http transport carries at most ${this.maxBatchBytes}: the engine should have split it.`,
        this.#describe(),
        false,
      );
    }
    if (!this.#outbox.has(batch.name) && this.#outbox.size >= this.#policy.maxWaitingBatches) {
      throw new HttpTransportError(
        `cannot keep batch ${batch.name} for the active side: ${this.#outbox.size} batches already wait for it to fetch them. Is its daemon running?`,
        this.#describe(),
        true,
      );
    }
    this.#outbox.set(batch.name, waiting(batch.body));
  }

  async isWaiting(name: string): Promise<boolean> {
    this.#assertOpen('check a sent batch');
    return this.#outbox.has(name);
  }

  async receive(): Promise<IncomingBatch[]> {
    this.#assertOpen('receive batches');
    return sortedNames(this.#inbox).map((name) => this.#incoming(name, this.#inbox.get(name)!));
  }

  /** Calls `listener` soon after the active side sends a batch, and once now: batches may have arrived before. A listener that throws is logged. */
  onArrival(listener: () => void): void {
    this.#assertOpen('watch for arrivals');
    this.#arrivals.add(listener);
    this.#arrivals.signal();
  }

  async publishDescription(body: Buffer): Promise<void> {
    this.#assertOpen('publish the description');
    this.#ourDescription = Buffer.from(body);
  }

  async probe(): Promise<string> {
    return 'not checked from here: the active side calls us';
  }

  async readPeerDescription(): Promise<Buffer | undefined> {
    this.#assertOpen("read the peer's description");
    return this.#peerDescription;
  }

  /**
   * Stops arrival calls and refuses further use; the listener answers this
   * sync's requests 503 from now on. `done()` and `reject()` of batches
   * received earlier still work, so that the batch in hand can be finished.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#arrivals.close();
  }

  /** Answers one authenticated request of the active side (see the API at the top of http-listener.ts). */
  answer(call: HttpCall): HttpAnswer {
    if (this.#closed) return json(503, { error: 'closing', reason: 'this side is shutting down; try again shortly' }, { 'retry-after': '1' });
    // The listener hands over only authenticated requests: this is the peer itself.
    this.#peerCalledAt = Date.now();
    const { route, method } = call;
    switch (route.kind) {
      case 'inbox-item':
        if (method === 'PUT') return this.#accept(route.name, call.body);
        if (method === 'GET') return json(200, { waiting: this.#inbox.has(route.name) });
        return notAllowed('GET, PUT');
      case 'outbox':
        if (method === 'GET') return this.#page(call.query);
        return notAllowed('GET');
      case 'outbox-item':
        if (method === 'DELETE') return this.#drop(route.name, call.query, undefined);
        return notAllowed('DELETE');
      case 'outbox-reject': {
        if (method !== 'POST') return notAllowed('POST');
        const reason = parseReason(call.body);
        if (reason === undefined) return json(400, { error: 'bad-request', reason: 'the body must be JSON like {"reason": "..."}' });
        return this.#drop(route.name, call.query, reason);
      }
      case 'active-description':
        if (method !== 'PUT') return notAllowed('PUT');
        this.#peerDescription = call.body;
        return noContent();
      case 'passive-description':
        if (method !== 'GET') return notAllowed('GET');
        return this.#ourDescription === undefined ? noContent() : { status: 200, body: this.#ourDescription, headers: { 'content-type': 'application/json' } };
      case 'unknown':
        return json(404, { error: 'not-found', reason: 'no such resource in the tablesync http API' });
    }
  }

  #accept(name: string, body: Buffer): HttpAnswer {
    if (!this.#inbox.has(name) && this.#inbox.size >= this.#policy.maxWaitingBatches) {
      return json(
        503,
        { error: 'full', reason: `${this.#inbox.size} batches already wait to be applied here; try again once they are` },
        { 'retry-after': '5' },
      );
    }
    this.#inbox.set(name, waiting(body));
    this.#arrivals.signal();
    return noContent();
  }

  /** The waiting batches in name order, bounded by the caller's limits and ours, always at least one if any wait. */
  #page(query: URLSearchParams): HttpAnswer {
    const maxBytes = limit(query.get('max-bytes'), this.#policy.receivePageBytes);
    const maxCount = limit(query.get('max-count'), this.#policy.receivePageBatches);
    const batches: { name: string; version: string; body: string }[] = [];
    let bytes = 0;
    let more = false;
    for (const name of sortedNames(this.#outbox)) {
      const entry = this.#outbox.get(name)!;
      if (batches.length >= maxCount || (batches.length > 0 && bytes + entry.body.length > maxBytes)) {
        more = true;
        break;
      }
      bytes += entry.body.length;
      batches.push({ name, version: entry.version, body: entry.body.toString('base64') });
    }
    return json(200, { batches, more });
  }

  /** Drops a batch we sent if it is still the version the active side fetched; a newer one under the same name stays. */
  #drop(name: string, query: URLSearchParams, reason: string | undefined): HttpAnswer {
    const version = query.get('version');
    if (version === null) return json(400, { error: 'bad-request', reason: 'the version query parameter is missing' });
    const entry = this.#outbox.get(name);
    if (entry?.version !== version) return noContent();
    this.#outbox.delete(name);
    if (reason !== undefined) {
      this.#logger.warn({ batch: name, bytes: entry.body.length, sha256: entry.version, reason }, `the active side refused batch ${name} that we sent; it is dropped`);
    }
    return noContent();
  }

  /** `done` and `reject` act only on the very batch that was offered: one the active side sent again since is offered anew. */
  #incoming(name: string, entry: Waiting): IncomingBatch {
    const isCurrent = (): boolean => this.#inbox.get(name) === entry;
    return {
      name,
      body: entry.body,
      done: async () => {
        if (isCurrent()) this.#inbox.delete(name);
      },
      reject: async (reason: string) => {
        if (!isCurrent()) return;
        this.#inbox.delete(name);
        this.#logger.warn(
          { batch: name, bytes: entry.body.length, sha256: entry.version, reason },
          `batch ${name} from the active side refused: ${reason}; the http transport keeps no copy, so it is dropped`,
        );
      },
    };
  }

  #describe(): string {
    return `passive http sync ${this.sync}`;
  }

  #assertOpen(operation: string): void {
    if (this.#closed) throw new TransportClosedError(`http transport of passive sync ${this.sync}`, operation);
  }
}

function waiting(body: Buffer): Waiting {
  return { body: Buffer.from(body), version: createHash('sha256').update(body).digest('hex') };
}

/** Plain code-unit order: the contract says sorting names sorts batches in sending order. */
function sortedNames(map: ReadonlyMap<string, unknown>): string[] {
  return [...map.keys()].sort();
}

/** The caller's limit when it is a positive whole number, never above ours. */
function limit(asked: string | null, ours: number): number {
  const n = Number(asked);
  return asked !== null && Number.isSafeInteger(n) && n > 0 ? Math.min(n, ours) : ours;
}

function parseReason(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as unknown;
    const reason = (parsed as { reason?: unknown } | null)?.reason;
    return typeof reason === 'string' ? reason.slice(0, maxReasonLength) : undefined;
  } catch {
    return undefined;
  }
}

function json(status: number, value: unknown, headers: Readonly<Record<string, string>> = {}): HttpAnswer {
  return { status, body: Buffer.from(JSON.stringify(value)), headers: { 'content-type': 'application/json', ...headers } };
}

function noContent(): HttpAnswer {
  return { status: 204, body: Buffer.alloc(0) };
}

function notAllowed(allow: string): HttpAnswer {
  return json(405, { error: 'method-not-allowed', reason: `this resource takes ${allow}` }, { allow });
}
