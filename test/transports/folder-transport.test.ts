import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { afterEach, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { FolderTransport, type FolderTransportLogger, type FolderTransportOptions } from '../../src/transports/folder/folder-transport.js';
import { FolderTransportError } from '../../src/transports/folder/folder-transport-error.js';
import { describeTransportContract } from './transport-contract.js';

/** A fresh folder per test, so that tests never share state and may run in parallel. */
const makeRoot = (): Promise<string> => mkdtemp(join(tmpdir(), 'tablesync-folder-'));

/** Whether chmod can keep this process out of a file: not as root, nor with CAP_DAC_OVERRIDE. */
async function permissionsBind(root: string): Promise<boolean> {
  const probe = join(root, 'permission-probe');
  await writeFile(probe, 'x');
  await chmod(probe, 0o000);
  try {
    readFileSync(probe);
    return false;
  } catch {
    return true;
  } finally {
    await rm(probe, { force: true });
  }
}

interface Warning {
  readonly obj: Record<string, unknown>;
  readonly msg: string;
}

function collectingLogger(): FolderTransportLogger & { warnings: Warning[] } {
  const warnings: Warning[] = [];
  return { warnings, warn: (obj, msg) => warnings.push({ obj: obj as Record<string, unknown>, msg }) };
}

/** Two sides of one sync over two folders under `root`: `ours` uploads into a-to-b, `peer` into b-to-a. */
function crossedPair(root: string, options: FolderTransportOptions = {}): { ours: FolderTransport; peer: FolderTransport; aToB: string; bToA: string } {
  const aToB = join(root, 'a-to-b');
  const bToA = join(root, 'b-to-a');
  return {
    ours: new FolderTransport({ type: 'folder', upload: aToB, download: bToA }, options),
    peer: new FolderTransport({ type: 'folder', upload: bToA, download: aToB }, options),
    aToB,
    bToA,
  };
}

describeTransportContract('folder', async () => {
  const root = await makeRoot();
  // A scan interval far beyond any test's length, so that an arrival can only be reported by chokidar here.
  const { ours, peer } = crossedPair(root, { scanIntervalMs: 600_000 });
  return {
    ours,
    peer,
    dispose: async () => {
      await Promise.all([ours.close(), peer.close()]);
      await rm(root, { recursive: true, force: true });
    },
  };
});

describe('folder transport', () => {
  let root: string;
  const closers: FolderTransport[] = [];

  beforeEach(async () => {
    root = await makeRoot();
  });

  afterEach(async () => {
    await Promise.all(closers.splice(0).map((t) => t.close()));
    // Restores access first, so that a test that stopped half-way leaves nothing behind that rm cannot remove.
    await chmod(root, 0o700).catch(() => {});
    await rm(root, { recursive: true, force: true });
  });

  function pair(options: FolderTransportOptions = {}): ReturnType<typeof crossedPair> {
    const made = crossedPair(root, options);
    closers.push(made.ours, made.peer);
    return made;
  }

  it('creates both folders, parents included, at first use', async () => {
    const upload = join(root, 'deep', 'er', 'out');
    const download = join(root, 'deep', 'er', 'in');
    const transport = new FolderTransport({ type: 'folder', upload, download });
    closers.push(transport);
    await expect(stat(upload)).rejects.toMatchObject({ code: 'ENOENT' });

    expect(await transport.receive()).toEqual([]);

    expect((await stat(upload)).isDirectory()).toBe(true);
    expect((await stat(download)).isDirectory()).toBe(true);
  });

  it('writes the batch under its final name only, leaving no temporary file', async () => {
    const { ours, aToB } = pair();
    await ours.send({ name: 'b-0001.json', body: Buffer.from('one') });
    await ours.send({ name: 'b-0001.json', body: Buffer.from('one again') });

    expect(await readdir(aToB)).toEqual(['b-0001.json']);
    expect(await readFile(join(aToB, 'b-0001.json'), 'utf8')).toBe('one again');
  });

  it('never offers a half-written temporary file, a dotfile, a non-batch file or a sub-folder', async () => {
    const { ours, peer, aToB } = pair();
    await ours.send({ name: 'b-0001.json', body: Buffer.from('one') });
    await writeFile(join(aToB, '.x.json.tmp'), '{"half": ');
    await writeFile(join(aToB, '.hidden.json'), '{}');
    await writeFile(join(aToB, 'notes.txt'), 'not a batch');
    await writeFile(join(aToB, 'b-0002.json.bak'), '{}');
    await writeFile(join(aToB, 'with space.json'), '{}');
    await mkdir(join(aToB, 'folder.json'));
    await mkdir(join(aToB, 'rejected'));

    expect((await peer.receive()).map((b) => b.name)).toEqual(['b-0001.json']);
  });

  it('refuses to send under a name the peer would never read, and writes nothing', async () => {
    const { ours, aToB } = pair();
    for (const name of ['../escape.json', 'b-0001.txt', '.hidden.json', 'a/b.json', '']) {
      const attempt = ours.send({ name, body: Buffer.from('x') });
      await expect(attempt).rejects.toBeInstanceOf(FolderTransportError);
      await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_FOLDER', retryable: false });
    }
    expect(await readdir(root)).not.toContain('escape.json');
    expect(await readdir(aToB).catch(() => [])).toEqual([]);
  });

  it('moves a rejected batch into rejected/ under a unique name, with the reason beside it', async () => {
    const { ours, peer, aToB } = pair();
    await ours.send({ name: 'b-0001.json', body: Buffer.from('garbage') });

    const [first] = await peer.receive();
    await first?.reject('unexpected token g at position 0');
    await first?.reject('unexpected token g at position 0');

    const rejected = join(aToB, 'rejected');
    const kept = (await readdir(rejected)).sort();
    expect(kept).toHaveLength(2);
    const [moved, reasonFile] = kept as [string, string];
    expect(moved).toMatch(/^b-0001\.json\.\d{8}T\d{6}\.\d{3}Z$/);
    expect(reasonFile).toBe(`${moved}.reason.txt`);
    expect(await readFile(join(rejected, moved), 'utf8')).toBe('garbage');
    expect(await readFile(join(rejected, reasonFile), 'utf8')).toBe('unexpected token g at position 0\n');

    // The same name rejected again (a resend of the same bad batch) keeps the first copy too.
    await ours.send({ name: 'b-0001.json', body: Buffer.from('garbage again') });
    const [second] = await peer.receive();
    await second?.reject('still garbage');
    expect(await readdir(rejected)).toHaveLength(4);
    expect(await peer.receive()).toEqual([]);
  });

  it('does nothing when asked to reject a batch that another reader has already taken', async () => {
    const { ours, peer, aToB } = pair();
    const other = new FolderTransport({ type: 'folder', upload: join(root, 'elsewhere'), download: aToB });
    closers.push(other);
    await ours.send({ name: 'b-0001.json', body: Buffer.from('one') });

    const [mine] = await peer.receive();
    const [theirs] = await other.receive();
    await theirs?.done();
    await mine?.reject('too late');
    await mine?.done();

    expect(await readdir(aToB)).toEqual([]);
  });

  it('leaves a batch that the peer resent after it was read for the next receive, instead of removing it unread', async () => {
    const { ours, peer } = pair();
    await ours.send({ name: 'b-0001.json', body: Buffer.from('first') });
    await ours.send({ name: 'b-0002.json', body: Buffer.from('two') });
    const [first, second] = await peer.receive();

    await ours.send({ name: 'b-0001.json', body: Buffer.from('resent') });
    await ours.send({ name: 'b-0002.json', body: Buffer.from('two, resent') });
    await first?.done();
    await second?.reject('bad');

    expect((await peer.receive()).map((b) => `${b.name}=${b.body.toString()}`)).toEqual(['b-0001.json=resent', 'b-0002.json=two, resent']);
  });

  it('notices an arrival by scanning when file-system events are not watched', async () => {
    const { peer, aToB } = pair({ watch: false, scanIntervalMs: 25 });
    let calls = 0;
    peer.onArrival(() => {
      calls += 1;
    });
    await expect.poll(() => calls, { timeout: 10_000 }).toBe(1);

    // What a peer writing by hand (or another tool) does: write aside, then rename into place.
    await writeFile(join(aToB, '.incoming'), 'one');
    await rename(join(aToB, '.incoming'), join(aToB, 'b-0001.json'));

    await expect.poll(() => calls, { timeout: 10_000 }).toBe(2);
    expect((await peer.receive()).map((b) => b.name)).toEqual(['b-0001.json']);
  });

  it('logs a listener that throws and keeps calling listeners', async () => {
    const logger = collectingLogger();
    const { ours, peer } = pair({ logger, scanIntervalMs: 600_000 });
    let calls = 0;
    peer.onArrival(() => {
      throw new Error('listener bug');
    });
    peer.onArrival(() => {
      calls += 1;
    });
    await expect.poll(() => calls, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    const before = calls;
    await ours.send({ name: 'b-0001.json', body: Buffer.from('one') });

    await expect.poll(() => calls, { timeout: 10_000 }).toBeGreaterThan(before);
    expect(logger.warnings.some((w) => (w.obj.err as Error).message === 'listener bug')).toBe(true);
  });

  it('skips a file it cannot read, logs that once, and offers it once it can be read', async () => {
    const logger = collectingLogger();
    const { ours, peer, aToB } = pair({ logger });
    await ours.send({ name: 'b-0001.json', body: Buffer.from('one') });
    await ours.send({ name: 'b-0002.json', body: Buffer.from('two') });
    // A symbolic link to itself cannot be opened by anyone, root included (ELOOP).
    await symlink('b-0003.json', join(aToB, 'b-0003.json'));
    const locked = join(aToB, 'b-0001.json');
    await chmod(locked, 0o000);
    const chmodBinds = await permissionsBind(root);

    const names = async (): Promise<string[]> => (await peer.receive()).map((b) => b.name);
    // Under root, chmod 000 does not stop reads: b-0001 is then readable and only the ELOOP file shows the skipping.
    const expected = chmodBinds ? ['b-0002.json'] : ['b-0001.json', 'b-0002.json'];
    expect(await names()).toEqual(expected);
    expect(await names()).toEqual(expected);

    const warnedAbout = logger.warnings.map((w) => w.obj.file);
    expect(warnedAbout.filter((f) => f === join(aToB, 'b-0003.json'))).toHaveLength(1);
    expect(warnedAbout.filter((f) => f === locked)).toHaveLength(chmodBinds ? 1 : 0);
    if (chmodBinds) {
      expect(logger.warnings.find((w) => w.obj.file === locked)?.obj.code).toBe('EACCES');
      // Skipped, not rejected: it is still there, and nothing was moved aside.
      expect(await readdir(aToB)).toEqual(expect.arrayContaining(['b-0001.json']));
      expect(await readdir(aToB)).not.toContain('rejected');
    }

    await chmod(locked, 0o644);
    expect(await names()).toEqual(['b-0001.json', 'b-0002.json']);
  });

  it('skips, without a word, a file that is gone by the time it is read', async () => {
    const logger = collectingLogger();
    const { ours, peer, aToB } = pair({ logger });
    await ours.send({ name: 'b-0002.json', body: Buffer.from('two') });
    // Listed but not there to read: exactly what a reader sees when the file vanishes between the two.
    await symlink(join(aToB, 'long-gone'), join(aToB, 'b-0001.json'));

    expect((await peer.receive()).map((b) => b.name)).toEqual(['b-0002.json']);
    expect(logger.warnings).toEqual([]);
  });

  it('never hands over half a file while the peer keeps replacing it and another reader keeps taking it', async () => {
    const logger = collectingLogger();
    const { ours, peer, aToB } = pair({ logger });
    const other = new FolderTransport({ type: 'folder', upload: join(root, 'elsewhere'), download: aToB }, { logger });
    closers.push(other);
    const versions = ['a', 'b', 'c'].map((c) => Buffer.alloc(512 * 1024, c));

    let writing = true;
    const writer = (async () => {
      try {
        for (let i = 0; i < 60; i += 1) await ours.send({ name: 'b-0001.json', body: versions[i % versions.length]! });
      } finally {
        writing = false;
      }
    })();
    const taker = (async () => {
      while (writing) for (const batch of await other.receive()) await batch.done();
    })();
    while (writing) {
      for (const batch of await peer.receive()) {
        expect(versions.some((v) => v.equals(batch.body))).toBe(true);
      }
    }
    await Promise.all([writer, taker]);

    expect(logger.warnings).toEqual([]);
  });

  it('removes temporary files left by a crashed send, once they are old, at first use', async () => {
    const upload = join(root, 'out');
    await mkdir(upload);
    const old = join(upload, '.b-0001.json.4242.1.deadbeef.tmp');
    const fresh = join(upload, '.b-0002.json.4242.2.deadbeef.tmp');
    const someoneElses = join(upload, '.notes.tmp');
    await writeFile(old, '{"half');
    await writeFile(fresh, '{"half');
    await writeFile(someoneElses, 'keep me');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(old, twoHoursAgo, twoHoursAgo);
    await utimes(someoneElses, twoHoursAgo, twoHoursAgo);
    const transport = new FolderTransport({ type: 'folder', upload, download: join(root, 'in') });
    closers.push(transport);

    await transport.receive();

    expect((await readdir(upload)).sort()).toEqual(['.b-0002.json.4242.2.deadbeef.tmp', '.notes.tmp']);
  });

  it('says which folder cannot be created and why, when a file is in the way', async () => {
    await writeFile(join(root, 'a-file'), 'x');
    const underFile = join(root, 'a-file', 'out');
    const transport = new FolderTransport({ type: 'folder', upload: underFile, download: join(root, 'in') });
    closers.push(transport);

    const attempt = transport.send({ name: 'b-0001.json', body: Buffer.from('one') });
    await expect(attempt).rejects.toBeInstanceOf(FolderTransportError);
    await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_FOLDER', retryable: false, errno: 'ENOTDIR', path: underFile });
    await expect(attempt).rejects.toThrow(`cannot create the upload folder ${underFile}`);
    await expect(attempt).rejects.toThrow('is a file, not a folder');

    const isFile = new FolderTransport({ type: 'folder', upload: join(root, 'out'), download: join(root, 'a-file') });
    closers.push(isFile);
    await expect(isFile.receive()).rejects.toMatchObject({ code: 'TS_ERR_FOLDER', retryable: false, path: join(root, 'a-file') });
    await expect(isFile.receive()).rejects.toThrow(`cannot create the download folder ${join(root, 'a-file')}`);
  });

  it('says which folder cannot be created when permission is denied, and succeeds once it is granted', async () => {
    const locked = join(root, 'locked');
    await mkdir(locked);
    await chmod(locked, 0o500);
    const transport = new FolderTransport({ type: 'folder', upload: join(locked, 'out'), download: join(root, 'in') });
    closers.push(transport);

    if (await permissionsBind(root)) {
      const attempt = transport.receive();
      await expect(attempt).rejects.toMatchObject({ code: 'TS_ERR_FOLDER', errno: 'EACCES', retryable: false });
      await expect(attempt).rejects.toThrow(`cannot create the upload folder ${join(locked, 'out')}`);
      await expect(attempt).rejects.toThrow('permission denied');
    }
    // Under root the mode does not bind and the first attempt already succeeds; either way a later attempt is not stuck on the old failure.
    await chmod(locked, 0o700);
    expect(await transport.receive()).toEqual([]);
  });

  it('recreates a download folder that was removed while running', async () => {
    const { ours, peer, aToB } = pair();
    expect(await peer.receive()).toEqual([]);
    await rm(aToB, { recursive: true });

    await expect(peer.receive()).rejects.toMatchObject({ code: 'TS_ERR_FOLDER', errno: 'ENOENT', retryable: true });
    expect(await peer.receive()).toEqual([]);
    await ours.send({ name: 'b-0001.json', body: Buffer.from('one') });
    expect((await peer.receive()).map((b) => b.name)).toEqual(['b-0001.json']);
  });

  it('lets the batch in hand be finished after close', async () => {
    const { ours, peer } = pair();
    await ours.send({ name: 'b-0001.json', body: Buffer.from('one') });
    const [batch] = await peer.receive();
    await peer.close();

    await batch?.done();
    expect(await ours.isWaiting('b-0001.json')).toBe(false);
  });

  it('takes a pino logger', () => {
    expectTypeOf<Logger>().toExtend<FolderTransportLogger>();
  });
});
