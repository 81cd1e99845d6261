import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { createTransport } from '../../src/transports/create-transport.js';
import { FolderTransport } from '../../src/transports/folder/folder-transport.js';

it('builds a folder transport from a folder configuration', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tablesync-create-'));
  try {
    const transport = createTransport({ type: 'folder', upload: join(root, 'out'), download: join(root, 'in') }, { logger: { warn: () => {} } });
    expect(transport).toBeInstanceOf(FolderTransport);
    expect(await transport.receive()).toEqual([]);
    await transport.close();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
