import net, { type AddressInfo, type Socket } from 'node:net';

/**
 * What the proxy does to one connection:
 * - `pass`: forwards both ways untouched;
 * - `drop`: accepts, then closes at once without a byte (the caller sees the other side close);
 * - `reset`: accepts, then resets the connection (ECONNRESET);
 * - `delay`: waits `ms` before connecting to the target, then passes (and, with `afterBytes`, cuts as `cut` does);
 * - `cut`: passes the request, forwards the first `afterBytes` bytes of the answer, then cuts both sides;
 * - `cut-body`: passes until an answer with a body of at least `minBodyBytes` (by Content-Length), forwards
 *   its headers and half of its body, then cuts both sides: an answer cut in the middle of its body; with
 *   `in: 'request'`, the same to the first such request on its way to the target;
 * - `respond`: answers the canned bytes of `response` without reaching the target, then closes;
 * - `corrupt`: passes, but flips one byte at the end of the first answer's body (its length unchanged);
 * - `duplicate`: passes, but sends the first request whose method is `method` (any request when unset) to
 *   the target a second time, byte for byte, once the target has answered the first copy: a request the
 *   network delivered twice. The caller gets the answer to the first copy, or with `answer: 'copy'` the
 *   answer to the second; the other is swallowed. Then the connection ends (both answers came, the caller
 *   got one: nothing else can follow on it in order).
 */
export type Fault =
  | { readonly kind: 'pass' }
  | { readonly kind: 'drop' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'delay'; readonly ms: number; readonly afterBytes?: number }
  | { readonly kind: 'cut'; readonly afterBytes: number }
  | { readonly kind: 'cut-body'; readonly minBodyBytes: number; readonly in?: 'answer' | 'request' }
  | { readonly kind: 'respond'; readonly response: string }
  | { readonly kind: 'corrupt' }
  | { readonly kind: 'duplicate'; readonly method?: string; readonly answer?: 'first' | 'copy' };

/** What a `duplicate` connection sent twice, and what the target answered each time. */
export interface Duplicated {
  /** The request line, as `PUT /v1/syncs/s/inbox/b HTTP/1.1`. */
  readonly request: string;
  /** The status of the target's answer to the first copy, then to the second, as each arrives. */
  readonly statuses: number[];
  /** The `error` of the second answer's JSON body, when it has one (`replayed`, say). */
  copyError?: string;
}

export interface ProxiedConnection {
  /** When the proxy accepted it (Date.now()). */
  readonly at: number;
  readonly fault: Fault['kind'];
  /** Set when the proxy cut this connection in the middle of a body (`cut-body`, or a `cut` that fell there): of an answer, or of a request. */
  cutMidBody?: 'answer' | 'request';
  /** Set on a `duplicate` connection once the request to send twice went by. */
  duplicated?: Duplicated;
}

/**
 * A loopback TCP proxy in front of a real server that misbehaves on demand,
 * one fault per connection: the faults queued with `inject` apply to the next
 * connections in order, then `otherwise` (default `pass`) applies. It records
 * every connection and every byte that crossed it, both ways, so that a test
 * can count attempts, time them, and search the traffic.
 */
export class FaultProxy {
  readonly connections: ProxiedConnection[] = [];
  /** Every byte that crossed, in both directions, in order of arrival. */
  readonly traffic: Buffer[] = [];
  otherwise: Fault = { kind: 'pass' };
  readonly #queue: Fault[] = [];
  readonly #sockets = new Set<Socket>();

  private constructor(
    private readonly server: net.Server,
    private readonly target: { readonly host: string; readonly port: number },
  ) {}

  /** Listens on 127.0.0.1 on a free port, forwarding to `target`. */
  static async start(target: { readonly host: string; readonly port: number }): Promise<FaultProxy> {
    const server = net.createServer();
    const proxy = new FaultProxy(server, target);
    server.on('connection', (socket) => proxy.#accept(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** `http://127.0.0.1:<port>`. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Queues faults for the next connections, in order. */
  inject(...faults: Fault[]): void {
    this.#queue.push(...faults);
  }

  /** Whether `text` appears anywhere in what crossed the proxy. */
  sawText(text: string): boolean {
    return this.timesSeen(text) > 0;
  }

  /** How many times `text` appears in what crossed the proxy (a request line: how often that request went by). */
  timesSeen(text: string): number {
    const all = Buffer.concat(this.traffic);
    const needle = Buffer.from(text, 'utf8');
    let count = 0;
    for (let at = all.indexOf(needle); at !== -1; at = all.indexOf(needle, at + needle.length)) count += 1;
    return count;
  }

  /** Cuts every connection open now, both ways (as a network that went away): the next requests open new ones, which meet the queued faults. */
  cutAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    const fault = this.#queue.shift() ?? this.otherwise;
    const connection: ProxiedConnection = { at: Date.now(), fault: fault.kind };
    this.connections.push(connection);
    this.#track(client);
    client.on('error', () => {});
    switch (fault.kind) {
      case 'drop':
        client.end();
        client.destroySoon();
        return;
      case 'reset':
        client.resetAndDestroy();
        return;
      case 'respond':
        client.once('data', (data: Buffer) => {
          this.traffic.push(data);
          client.end(fault.response);
        });
        return;
      case 'delay':
        client.pause();
        setTimeout(() => this.#forward(client, fault, connection), fault.ms).unref();
        return;
      case 'duplicate':
        this.#duplicate(client, fault, connection);
        return;
      default:
        this.#forward(client, fault, connection);
    }
  }

  /** A connection to the target tied to the client's: either one failing or closing ends both. */
  #connectUpstream(client: Socket): Socket {
    const upstream = net.connect(this.target.port, this.target.host);
    this.#track(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    return upstream;
  }

  #forward(client: Socket, fault: Fault, connection: ProxiedConnection): void {
    if (client.destroyed) return;
    const upstream = this.#connectUpstream(client);
    const requests = fault.kind === 'cut-body' && fault.in === 'request' ? new AnswerTracker() : undefined;
    client.on('data', (data: Buffer) => {
      if (requests !== undefined && fault.kind === 'cut-body') {
        const room = requests.bytesBeforeCut(data, fault.minBodyBytes);
        if (data.length >= room) {
          const part = data.subarray(0, room);
          connection.cutMidBody = 'request';
          this.traffic.push(part);
          upstream.write(part, () => {
            upstream.destroy();
            client.destroy();
          });
          return;
        }
      }
      this.traffic.push(data);
      upstream.write(data);
    });
    client.resume();
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());

    let answered = 0;
    const corrupting = fault.kind === 'corrupt' ? new FirstBodyCorrupter() : undefined;
    const answers = new AnswerTracker();
    const cutAfter = fault.kind === 'cut' || fault.kind === 'delay' ? fault.afterBytes : undefined;
    upstream.on('data', (data: Buffer) => {
      let out = corrupting === undefined ? data : corrupting.feed(data);
      let room = cutAfter === undefined ? Infinity : cutAfter - answered;
      if (fault.kind === 'cut-body' && fault.in !== 'request') room = answers.bytesBeforeCut(out, fault.minBodyBytes);
      if (room <= 0) return;
      if (out.length >= room) {
        out = out.subarray(0, room);
        answered += out.length;
        if ((fault.kind === 'cut-body' && fault.in !== 'request') || answers.midBodyAfter(out)) connection.cutMidBody = 'answer';
        this.traffic.push(out);
        client.write(out, () => {
          client.destroy();
          upstream.destroy();
        });
        return;
      }
      if (fault.kind !== 'cut-body' || fault.in === 'request') answers.feed(out);
      answered += out.length;
      if (out.length > 0) {
        this.traffic.push(out);
        client.write(out);
      }
    });
  }

  /**
   * The `duplicate` fault. Messages are forwarded whole (by Content-Length, which both daemons always
   * send), so that the proxy knows which answer belongs to which request: answers come in the order of
   * their requests, and the one to the first copy of the chosen request is held back until the target
   * has answered the second copy too.
   */
  #duplicate(client: Socket, fault: Extract<Fault, { kind: 'duplicate' }>, connection: ProxiedConnection): void {
    const upstream = this.#connectUpstream(client);
    const requests = new MessageFramer();
    /** Requests that went by whole before the chosen one: their answers pass. */
    let before = 0;
    let copy: Buffer | undefined;
    client.on('data', (data: Buffer) => {
      this.traffic.push(data);
      upstream.write(data);
      if (copy !== undefined) return;
      for (const message of requests.feed(data)) {
        const method = message.head.split(' ')[0];
        if (fault.method === undefined || method === fault.method) {
          copy = message.bytes;
          connection.duplicated = { request: message.head, statuses: [] };
          return;
        }
        before += 1;
      }
    });
    client.on('end', () => upstream.end());

    const answers = new MessageFramer();
    let answered = 0;
    let first: Buffer | undefined;
    upstream.on('data', (data: Buffer) => {
      for (const message of answers.feed(data)) {
        answered += 1;
        const duplicated = connection.duplicated;
        if (copy === undefined || duplicated === undefined || answered <= before) {
          this.traffic.push(message.bytes);
          client.write(message.bytes);
          continue;
        }
        duplicated.statuses.push(Number(message.head.split(' ')[1]));
        if (answered === before + 1) {
          // The target has answered the first copy: now the second, on the same connection, as a network would deliver it.
          first = message.bytes;
          this.traffic.push(copy);
          upstream.write(copy);
          continue;
        }
        duplicated.copyError = jsonError(message.bytes);
        const delivered = fault.answer === 'copy' ? message.bytes : (first ?? Buffer.alloc(0));
        this.traffic.push(delivered);
        client.end(delivered);
        upstream.end();
        return;
      }
    });
    upstream.on('end', () => client.end());
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
  }
}

/** One whole HTTP message: its first line and every byte of it. */
interface Message {
  readonly head: string;
  readonly bytes: Buffer;
}

/**
 * Cuts a stream of HTTP messages (requests or answers) into whole messages, by
 * Content-Length (none: no body). Neither daemon sends chunked bodies or
 * answers HEAD, so that is all there is to it.
 */
class MessageFramer {
  #held = Buffer.alloc(0);

  /** The messages that `data` completes, in order; the rest is kept for the next call. */
  feed(data: Buffer): Message[] {
    this.#held = Buffer.concat([this.#held, data]);
    const out: Message[] = [];
    for (;;) {
      const headerEnd = this.#held.indexOf('\r\n\r\n');
      if (headerEnd === -1) return out;
      const header = this.#held.subarray(0, headerEnd).toString('latin1');
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(header);
      const end = headerEnd + 4 + (length === null ? 0 : Number(length[1]));
      if (this.#held.length < end) return out;
      out.push({ head: header.split('\r\n')[0] ?? '', bytes: Buffer.from(this.#held.subarray(0, end)) });
      this.#held = this.#held.subarray(end);
    }
  }
}

/** The `error` of a JSON answer body (`{"error":"replayed",...}`), if it has one. */
function jsonError(answer: Buffer): string | undefined {
  const body = answer.subarray(answer.indexOf('\r\n\r\n') + 4).toString('utf8');
  try {
    const error = (JSON.parse(body) as { error?: unknown } | null)?.error;
    return typeof error === 'string' ? error : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Holds back the first answer until its body is complete (by Content-Length),
 * flips the body's last byte, and lets everything after it through untouched.
 */
class FirstBodyCorrupter {
  #held = Buffer.alloc(0);
  #done = false;

  feed(data: Buffer): Buffer {
    if (this.#done) return data;
    this.#held = Buffer.concat([this.#held, data]);
    const headerEnd = this.#held.indexOf('\r\n\r\n');
    if (headerEnd === -1) return Buffer.alloc(0);
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(this.#held.subarray(0, headerEnd).toString('latin1'));
    const bodyStart = headerEnd + 4;
    const bodyLength = length === null ? 0 : Number(length[1]);
    if (this.#held.length < bodyStart + bodyLength) return Buffer.alloc(0);
    this.#done = true;
    const out = this.#held;
    if (bodyLength > 0) out[bodyStart + bodyLength - 1] = out[bodyStart + bodyLength - 1]! ^ 0x01;
    this.#held = Buffer.alloc(0);
    return out;
  }
}

/**
 * Follows the answers (or requests) on one connection (headers, then
 * Content-Length bytes of body, then the next one) to tell where a cut falls.
 */
class AnswerTracker {
  #head = Buffer.alloc(0);
  /** Body bytes of the current answer still to come; 0 while reading headers. */
  #bodyLeft = 0;
  #bodyLength = 0;

  /** Moves past `data`, forwarded whole. */
  feed(data: Buffer): void {
    this.#walk(data, () => false);
  }

  /** Whether a cut right after `data` (then forwarded) falls inside a body. */
  midBodyAfter(data: Buffer): boolean {
    this.feed(data);
    return this.#bodyLeft > 0;
  }

  /**
   * How many bytes of `data` to forward before cutting at the middle of the first body of at least
   * `minBodyBytes`; Infinity when that middle is not in `data` (then all of it passes).
   */
  bytesBeforeCut(data: Buffer, minBodyBytes: number): number {
    let cutAt = Infinity;
    this.#walk(data, (offset) => {
      if (this.#bodyLength < minBodyBytes) return false;
      // Body bytes still to pass before its middle; `offset` is where this stretch of body starts in `data`.
      const toMiddle = Math.floor(this.#bodyLength / 2) - (this.#bodyLength - this.#bodyLeft);
      if (toMiddle > data.length - offset) return false;
      cutAt = offset + Math.max(1, toMiddle);
      return true;
    });
    return cutAt;
  }

  /** Walks `data`; `atBody(offset)` is asked at each stretch of body, and stops the walk by returning true. */
  #walk(data: Buffer, atBody: (offset: number) => boolean): void {
    let offset = 0;
    while (offset < data.length) {
      if (this.#bodyLeft > 0) {
        if (atBody(offset)) return;
        const take = Math.min(this.#bodyLeft, data.length - offset);
        this.#bodyLeft -= take;
        offset += take;
        continue;
      }
      this.#head = Buffer.concat([this.#head, data.subarray(offset)]);
      const end = this.#head.indexOf('\r\n\r\n');
      if (end === -1) return;
      const consumed = end + 4 - (this.#head.length - (data.length - offset));
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(this.#head.subarray(0, end).toString('latin1'));
      this.#bodyLength = length === null ? 0 : Number(length[1]);
      this.#bodyLeft = this.#bodyLength;
      this.#head = Buffer.alloc(0);
      offset += consumed;
    }
  }
}
