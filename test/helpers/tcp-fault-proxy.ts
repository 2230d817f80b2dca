/**
 * A TCP proxy on 127.0.0.1 in front of a real server (PostgreSQL, in the fault suite), to make the
 * server unreachable for the clients behind it without touching the server itself (it is shared
 * with other tests):
 *   - refuse(): every open connection is cut (both sides destroyed) and the listener is closed,
 *     so a new connect gets ECONNREFUSED, exactly as from a server that is down;
 *   - restore(): listens again on the same port; connections reach the server again.
 * Bytes are piped untouched; nothing about the protocol is known here.
 */
import { createServer, Socket, type AddressInfo, type Server } from 'node:net';

export interface TcpFaultProxyOptions {
  targetHost?: string;
  targetPort: number;
  /** Port to listen on (default: any free one, kept across refuse/restore). */
  port?: number;
}

export class TcpFaultProxy {
  /** Client connections accepted in all. */
  accepted = 0;
  /** Connections cut by refuse(). */
  cut = 0;
  private server: Server | undefined;
  /** Each open connection: the client's socket and ours to the target. */
  private readonly open = new Set<{ client: Socket; upstream: Socket }>();
  private listenPort = 0;

  private constructor(private readonly options: TcpFaultProxyOptions) {}

  static async start(options: TcpFaultProxyOptions): Promise<TcpFaultProxy> {
    const proxy = new TcpFaultProxy(options);
    proxy.listenPort = options.port ?? 0;
    await proxy.listen();
    return proxy;
  }

  get port(): number {
    return this.listenPort;
  }

  /** Whether connections are being refused. */
  get refusing(): boolean {
    return this.server === undefined;
  }

  /** Open proxied connections (client side). */
  get connections(): number {
    return this.open.size;
  }

  /** Cuts every open connection and stops listening: connects are refused until restore(). */
  async refuse(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const { client, upstream } of this.open) {
      client.destroy();
      upstream.destroy();
      this.cut++;
    }
    this.open.clear();
    await closed;
  }

  /** Listens again on the same port. */
  async restore(): Promise<void> {
    if (this.server !== undefined) return;
    // The port is ours only by convention while closed; should something have bound it
    // meanwhile, keep trying briefly rather than fail the test on a fluke.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await this.listen();
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  async close(): Promise<void> {
    await this.refuse();
  }

  private listen(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    return new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listenPort, '127.0.0.1', () => {
        server.off('error', reject);
        server.on('error', () => {});
        this.listenPort = (server.address() as AddressInfo).port;
        this.server = server;
        resolve();
      });
    });
  }

  private accept(client: Socket): void {
    if (this.server === undefined) {
      client.destroy();
      return;
    }
    this.accepted++;
    const upstream = new Socket();
    const pair = { client, upstream };
    this.open.add(pair);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      this.open.delete(pair);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    upstream.connect(this.options.targetPort, this.options.targetHost ?? '127.0.0.1');
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
