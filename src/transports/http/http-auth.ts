import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { httpPolicy } from './http-policy.js';

/**
 * How the two sides of an http sync prove to each other that they hold the
 * sync's password, without ever sending it.
 *
 * Every request carries four headers: a millisecond timestamp, a random
 * nonce, the SHA-256 of its body, and an HMAC-SHA256, keyed by the password,
 * over the method, the path (from `/v1/` on, query included), the sync's
 * name, the timestamp, the nonce and that body hash. The passive side
 * accepts it only when the timestamp is within `clockWindowMs` of its own
 * clock, the HMAC matches (compared in constant time), the nonce was not
 * seen within the window (so a replayed request is refused even inside it),
 * and the body read matches the signed hash.
 *
 * Every answer to an accepted request is signed back: an HMAC over the
 * status, the sync's name, the request's nonce and the SHA-256 of the answer's
 * body, so that the active side can tell an answer of the passive side to
 * this very request from a forged, altered or replayed one.
 *
 * What this does not give: secrecy (without `tls:` anyone on the path can
 * read the batches) and protection of the headers other than these. A passive
 * side that does not serve the named sync refuses exactly as it refuses a
 * wrong password, so a caller cannot probe which syncs exist.
 */
export const signatureHeaders = {
  timestamp: 'x-tablesync-timestamp',
  nonce: 'x-tablesync-nonce',
  contentSha256: 'x-tablesync-content-sha256',
  signature: 'x-tablesync-signature',
} as const;

/** Why a request was refused; sent to the caller as `error` in a one-line JSON body with status 401. */
export type AuthRefusal = 'missing-signature' | 'malformed-signature' | 'clock-skew' | 'bad-signature' | 'replayed' | 'body-mismatch';

export interface RequestToSign {
  readonly method: string;
  /** The path from `/v1/` on, with its query, exactly as sent. */
  readonly path: string;
  readonly sync: string;
  readonly body: Buffer;
}

export interface ResponseToSign {
  readonly status: number;
  readonly sync: string;
  /** The nonce of the request this answers. */
  readonly nonce: string;
  readonly body: Buffer;
}

/** Request or response headers as node and undici give them. */
export type HeaderBag = Readonly<Record<string, string | string[] | undefined>>;

export type RequestVerdict =
  | { readonly ok: true; readonly nonce: string; readonly contentSha256: string }
  | { readonly ok: false; readonly refusal: AuthRefusal; readonly reason: string };

export interface HttpAuthOptions {
  /** Default `httpPolicy.clockWindowMs` (60000). */
  readonly clockWindowMs?: number;
  /** The clock, in milliseconds since the epoch; default Date.now. Tests shift it to make stale requests. */
  readonly now?: () => number;
}

const patterns = {
  timestamp: /^\d{1,15}$/,
  nonce: /^[A-Za-z0-9_-]{16,64}$/,
  hex64: /^[0-9a-f]{64}$/,
} as const;

/** Said the same way for a wrong password and for a sync that is not served here. */
const badSignatureReason =
  "the signature does not match: the two sides' sync passwords differ, or this side serves no passive http sync of that name";

/**
 * Signs and verifies requests and answers. One instance per listener (it
 * remembers the nonces seen) and per client.
 */
export class HttpAuth {
  readonly #clockWindowMs: number;
  readonly #now: () => number;
  /** `sync\nnonce` → when it may be forgotten: once its timestamp is out of the window, a replay is refused for that reason instead. */
  readonly #nonces = new Map<string, number>();
  #nextSweep = 0;
  /** Stands in for the password of a sync that is not served, so that refusing it costs the same time as a wrong password. */
  readonly #unknownSyncKey = randomBytes(32);

  constructor(options: HttpAuthOptions = {}) {
    this.#clockWindowMs = options.clockWindowMs ?? httpPolicy.clockWindowMs;
    this.#now = options.now ?? Date.now;
  }

  /** The four signature headers for a request, with a fresh timestamp and nonce: sign every attempt anew. */
  signRequest(password: string, request: RequestToSign): Record<string, string> {
    const timestamp = String(this.#now());
    const nonce = randomBytes(18).toString('base64url');
    const contentSha256 = sha256Hex(request.body);
    return {
      [signatureHeaders.timestamp]: timestamp,
      [signatureHeaders.nonce]: nonce,
      [signatureHeaders.contentSha256]: contentSha256,
      [signatureHeaders.signature]: hmacHex(password, requestText(request, timestamp, nonce, contentSha256)),
    };
  }

  /**
   * Checks a request's signature headers, before its body is read: the body
   * is then checked against the signed hash with `bodyMatches`. `password` is
   * undefined when the named sync is not served here; the request is then
   * refused exactly like one with a wrong password. An accepted nonce is
   * remembered, so the same request is refused the second time.
   */
  verifyRequest(
    password: string | undefined,
    request: { readonly method: string; readonly path: string; readonly sync: string; readonly headers: HeaderBag },
  ): RequestVerdict {
    const timestamp = single(request.headers[signatureHeaders.timestamp]);
    const nonce = single(request.headers[signatureHeaders.nonce]);
    const contentSha256 = single(request.headers[signatureHeaders.contentSha256]);
    const signature = single(request.headers[signatureHeaders.signature]);
    if (timestamp === undefined || nonce === undefined || contentSha256 === undefined || signature === undefined) {
      return refuse(
        'missing-signature',
        `the request carries no tablesync signature (headers ${Object.values(signatureHeaders).join(', ')}); only a tablesync active side with the sync's password can call this API`,
      );
    }
    if (!patterns.timestamp.test(timestamp) || !patterns.nonce.test(nonce) || !patterns.hex64.test(contentSha256) || !patterns.hex64.test(signature)) {
      return refuse('malformed-signature', 'the signature headers are malformed: are both sides running the same tablesync version?');
    }
    const now = this.#now();
    const skew = Number(timestamp) - now;
    if (Math.abs(skew) > this.#clockWindowMs) {
      const seconds = Math.round(Math.abs(skew) / 1000);
      return refuse(
        'clock-skew',
        `the request was signed ${seconds} s ${skew > 0 ? 'ahead of' : 'behind'} this side's clock, and signed requests are accepted within ±${this.#clockWindowMs / 1000} s: synchronise both clocks (NTP)`,
      );
    }
    const expected = createHmac('sha256', password ?? this.#unknownSyncKey)
      .update(requestText(request, timestamp, nonce, contentSha256))
      .digest();
    if (!timingSafeEqual(expected, Buffer.from(signature, 'hex')) || password === undefined) {
      return refuse('bad-signature', badSignatureReason);
    }
    this.#sweepNonces(now);
    const key = `${request.sync}\n${nonce}`;
    if (this.#nonces.has(key)) {
      return refuse('replayed', 'this request was received before (its nonce was already used), and a replayed request is refused');
    }
    this.#nonces.set(key, Number(timestamp) + this.#clockWindowMs);
    return { ok: true, nonce, contentSha256 };
  }

  /** Whether the body read is the one that the accepted request's signature covers. */
  bodyMatches(verdict: { readonly contentSha256: string }, body: Buffer): boolean {
    return timingSafeEqual(createHash('sha256').update(body).digest(), Buffer.from(verdict.contentSha256, 'hex'));
  }

  /** The headers that sign an answer to an accepted request. */
  signResponse(password: string, response: ResponseToSign): Record<string, string> {
    const contentSha256 = sha256Hex(response.body);
    return {
      [signatureHeaders.contentSha256]: contentSha256,
      [signatureHeaders.signature]: hmacHex(password, responseText(response, contentSha256)),
    };
  }

  /** Whether an answer carries the passive side's valid signature for the request with `nonce`, over exactly this body. */
  verifyResponse(password: string, response: ResponseToSign & { readonly headers: HeaderBag }): boolean {
    const signature = single(response.headers[signatureHeaders.signature]);
    if (signature === undefined || !patterns.hex64.test(signature)) return false;
    const expected = createHmac('sha256', password).update(responseText(response, sha256Hex(response.body))).digest();
    return timingSafeEqual(expected, Buffer.from(signature, 'hex'));
  }

  /** Forgets nonces whose requests would be refused by the clock window anyway; at most once a second. */
  #sweepNonces(now: number): void {
    if (now < this.#nextSweep) return;
    this.#nextSweep = now + 1000;
    for (const [key, forgetAt] of this.#nonces) if (forgetAt < now) this.#nonces.delete(key);
  }
}

function refuse(refusal: AuthRefusal, reason: string): RequestVerdict {
  return { ok: false, refusal, reason };
}

/** JSON of an array: no field can spill into the next, whatever characters it holds. */
function requestText(request: Omit<RequestToSign, 'body'>, timestamp: string, nonce: string, contentSha256: string): string {
  return JSON.stringify(['tablesync-request-v1', request.method.toUpperCase(), request.path, request.sync, timestamp, nonce, contentSha256]);
}

/** A different first field from requests', so that a request's signature can never pass for an answer's. */
function responseText(response: Omit<ResponseToSign, 'body'>, contentSha256: string): string {
  return JSON.stringify(['tablesync-response-v1', String(response.status), response.sync, response.nonce, contentSha256]);
}

function sha256Hex(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

function hmacHex(password: string, text: string): string {
  return createHmac('sha256', password).update(text).digest('hex');
}

/** A header that appears exactly once; a repeated signature header is as good as none. */
function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
