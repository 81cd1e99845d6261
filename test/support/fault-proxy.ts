import net, { type AddressInfo, type Socket } from 'node:net';

/**
 * What the proxy does to one connection:
 * - `pass`: forwards both ways untouched;
 * - `drop`: accepts, then closes at once without a byte (the caller sees the other side close);
 * - `reset`: accepts, then resets the connection (ECONNRESET);
 * - `delay`: waits `ms` before connecting to the target, then passes;
 * - `cut`: passes the request, forwards the first `afterBytes` bytes of the answer, then cuts both sides;
 * - `respond`: answers the canned bytes of `response` without reaching the target, then closes;
 * - `corrupt`: passes, but flips one byte at the end of the first answer's body (its length unchanged).
 */
export type Fault =
  | { readonly kind: 'pass' }
  | { readonly kind: 'drop' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'delay'; readonly ms: number }
  | { readonly kind: 'cut'; readonly afterBytes: number }
  | { readonly kind: 'respond'; readonly response: string }
  | { readonly kind: 'corrupt' };

export interface ProxiedConnection {
  /** When the proxy accepted it (Date.now()). */
  readonly at: number;
  readonly fault: Fault['kind'];
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
    return Buffer.concat(this.traffic).includes(Buffer.from(text, 'utf8'));
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    const fault = this.#queue.shift() ?? this.otherwise;
    this.connections.push({ at: Date.now(), fault: fault.kind });
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
        setTimeout(() => this.#forward(client, fault), fault.ms).unref();
        return;
      default:
        this.#forward(client, fault);
    }
  }

  #forward(client: Socket, fault: Fault): void {
    if (client.destroyed) return;
    const upstream = net.connect(this.target.port, this.target.host);
    this.#track(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('data', (data: Buffer) => {
      this.traffic.push(data);
      upstream.write(data);
    });
    client.resume();
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());

    let answered = 0;
    const corrupting = fault.kind === 'corrupt' ? new FirstBodyCorrupter() : undefined;
    upstream.on('data', (data: Buffer) => {
      let out = corrupting === undefined ? data : corrupting.feed(data);
      if (fault.kind === 'cut') {
        const room = fault.afterBytes - answered;
        if (room <= 0) return;
        if (out.length >= room) {
          out = out.subarray(0, room);
          answered += out.length;
          this.traffic.push(out);
          client.write(out, () => {
            client.destroy();
            upstream.destroy();
          });
          return;
        }
      }
      answered += out.length;
      if (out.length > 0) {
        this.traffic.push(out);
        client.write(out);
      }
    });
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
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
