import { mkdtemp, rm } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { InstanceConfig, ListenConfig, SyncConfig, TransportConfig } from '../../src/config/types.js';
import { createTransport, openTransports, type InstanceTransports } from '../../src/transports/create-transport.js';
import { HttpClientTransport } from '../../src/transports/http/http-client-transport.js';
import { HttpServerTransport } from '../../src/transports/http/http-server-transport.js';

const password = 'open-transports-secret';

function sync(name: string, mode: 'active' | 'passive', transport: TransportConfig): SyncConfig {
  return { name, mode, transport, everyMs: 1000, conflicts: 'newest-wins', users: 'login', tables: [] };
}

function instance(name: string, syncs: SyncConfig[], listen?: ListenConfig): InstanceConfig {
  return {
    file: `/etc/tablesync/${name}.yaml`,
    instance: name,
    database: { dialect: 'sqlite', file: `/var/lib/tablesync/${name}.sqlite` },
    log: { level: 'silent' },
    health: { peerTimeoutMs: 300_000 },
    backups: { dir: '/var/lib/tablesync/backups' },
    syncs,
    ...(listen === undefined ? {} : { listen }),
  };
}

function recordingLogger(): { warn(obj: object, msg: string): void; child(): ReturnType<typeof recordingLogger>; lines: string[] } {
  const lines: string[] = [];
  const logger = { lines, warn: (obj: object, msg: string) => lines.push(`${JSON.stringify(obj)} ${msg}`), child: () => logger };
  return logger;
}

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const opened: InstanceTransports[] = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((t) => t.close()));
});

async function open(config: InstanceConfig): Promise<InstanceTransports> {
  const transports = await openTransports(config, { logger: recordingLogger() });
  opened.push(transports);
  return transports;
}

describe('openTransports with http', () => {
  it('serves /healthz on listen: even when no sync is a passive http one', async () => {
    const root = await mkdtemp(join(tmpdir(), 'tablesync-open-'));
    try {
      const port = await freePort();
      const transports = await open(
        instance('branch', [sync('files', 'active', { type: 'folder', upload: join(root, 'out'), download: join(root, 'in') })], { host: '127.0.0.1', port }),
      );
      const response = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ status: 'ok' });

      await Promise.all([transports.close(), transports.close()]);
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('connects an active http sync to the passive side of another instance', async () => {
    const port = await freePort();
    const hq = await open(instance('hq', [sync('east', 'passive', { type: 'http', password })], { host: '127.0.0.1', port }));
    const east = await open(instance('east', [sync('east', 'active', { type: 'http', url: `http://127.0.0.1:${port}`, password })]));
    const passive = hq.forSync('east');
    const active = east.forSync('east');
    expect(passive).toBeInstanceOf(HttpServerTransport);
    expect(active).toBeInstanceOf(HttpClientTransport);

    await active.send({ name: 'east.east.000000000001.json', body: Buffer.from('one') });
    await passive.send({ name: 'east.hq.000000000001.json', body: Buffer.from('two') });
    await passive.publishDescription(Buffer.from('{"side":"hq"}'));

    expect((await passive.receive()).map((b) => b.body.toString())).toEqual(['one']);
    expect((await active.receive()).map((b) => b.body.toString())).toEqual(['two']);
    expect((await active.readPeerDescription())?.toString()).toBe('{"side":"hq"}');
  });

  it('says when listen: is taken, and opens nothing', async () => {
    const port = await freePort();
    await open(instance('hq', [sync('east', 'passive', { type: 'http', password })], { host: '127.0.0.1', port }));
    await expect(open(instance('hq2', [sync('east', 'passive', { type: 'http', password })], { host: '127.0.0.1', port }))).rejects.toMatchObject({
      code: 'TS_ERR_HTTP',
      errno: 'EADDRINUSE',
    });
  });
});

describe('createTransport with http', () => {
  it('makes a client for the active side', async () => {
    const transport = createTransport({ type: 'http', url: 'https://hq.example.com:8470', password }, { sync: { name: 'hq', mode: 'active' } });
    expect(transport).toBeInstanceOf(HttpClientTransport);
    expect(transport.reachesPeer).toBe(true);
    await transport.close();
  });

  it('makes, for the passive side, a transport that needs no listener and says it cannot reach the peer', async () => {
    const transport = createTransport({ type: 'http', password }, { sync: { name: 'hq', mode: 'passive' } });
    expect(transport).toBeInstanceOf(HttpServerTransport);
    expect(transport.reachesPeer).toBe(false);
    expect(await transport.readPeerDescription()).toBeUndefined();
    await transport.close();
    expect(createTransport({ type: 'http', password }).reachesPeer).toBe(false);
  });

  it('needs the sync to sign for the active side', () => {
    expect(() => createTransport({ type: 'http', url: 'https://hq.example.com:8470', password })).toThrow("needs the sync's name");
  });
});
