import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Transport } from '../../src/transports/transport.js';

/**
 * What every transport promises the engine (src/transports/transport.ts),
 * as one suite that each implementation's test file runs against real
 * services. `ours` and `peer` are the two sides of one sync: what one sends,
 * the other receives.
 *
 * One expectation goes beyond the words of the contract: `onArrival` calls
 * its listener once when watching has started. Without that signal a test
 * (or the engine) cannot know when an arrival is sure to be reported.
 */
export interface TransportPair {
  readonly ours: Transport;
  readonly peer: Transport;
  /** Closes both sides and removes whatever the pair created. */
  dispose(): Promise<void>;
}

export function describeTransportContract(label: string, makePair: () => Promise<TransportPair>): void {
  describe(`${label}: the transport contract`, () => {
    let pair: TransportPair;
    let ours: Transport;
    let peer: Transport;

    beforeEach(async () => {
      pair = await makePair();
      ({ ours, peer } = pair);
    });

    afterEach(async () => {
      await pair.dispose();
    });

    const text = (s: string): Buffer => Buffer.from(s, 'utf8');
    const received = async (side: Transport): Promise<string[]> =>
      (await side.receive()).map((b) => `${b.name}=${b.body.toString('utf8')}`);

    it('offers what the peer sent, sorted by name, whatever order it was sent in', async () => {
      await ours.send({ name: 'b-0002.json', body: text('two') });
      await ours.send({ name: 'b-0003.json', body: text('three') });
      await ours.send({ name: 'b-0001.json', body: text('one') });

      expect(await received(peer)).toEqual(['b-0001.json=one', 'b-0002.json=two', 'b-0003.json=three']);
      // Sending is not receiving: nothing comes back to the sender.
      expect(await received(ours)).toEqual([]);
    });

    it('carries bodies of several megabytes byte for byte', async () => {
      const body = Buffer.alloc(6 * 1024 * 1024);
      for (let i = 0; i < body.length; i += 1) body[i] = (i * 31 + 7) % 256;
      await ours.send({ name: 'big.json', body });

      const [batch] = await peer.receive();
      expect(batch?.body.equals(body)).toBe(true);
    });

    it('replaces a batch that is sent again under the same name', async () => {
      await ours.send({ name: 'b-0001.json', body: text('first') });
      await ours.send({ name: 'b-0001.json', body: text('second, longer than the first') });

      expect(await received(peer)).toEqual(['b-0001.json=second, longer than the first']);
    });

    it('keeps offering a batch until done() removes it; done() twice is harmless', async () => {
      await ours.send({ name: 'b-0001.json', body: text('one') });
      await ours.send({ name: 'b-0002.json', body: text('two') });

      expect(await received(peer)).toEqual(['b-0001.json=one', 'b-0002.json=two']);
      const [first] = await peer.receive();
      await first?.done();
      await first?.done();

      expect(await received(peer)).toEqual(['b-0002.json=two']);
    });

    it('says a sent batch is waiting until the peer is done with it', async () => {
      expect(await ours.isWaiting('b-0001.json')).toBe(false);
      await ours.send({ name: 'b-0001.json', body: text('one') });
      expect(await ours.isWaiting('b-0001.json')).toBe(true);

      const [batch] = await peer.receive();
      expect(await ours.isWaiting('b-0001.json')).toBe(true);
      await batch?.done();
      expect(await ours.isWaiting('b-0001.json')).toBe(false);
    });

    it('does not offer a rejected batch again; reject() twice is harmless', async () => {
      await ours.send({ name: 'b-0001.json', body: text('not a batch') });
      await ours.send({ name: 'b-0002.json', body: text('two') });

      const [bad] = await peer.receive();
      await bad?.reject('unexpected token');
      await bad?.reject('unexpected token');

      expect(await received(peer)).toEqual(['b-0002.json=two']);
      expect(await ours.isWaiting('b-0001.json')).toBe(false);
    });

    it('calls the arrival listener after the peer sends', async () => {
      let calls = 0;
      peer.onArrival(() => {
        calls += 1;
      });
      // The first call says that watching has started; only then is an arrival sure to be seen.
      await expect.poll(() => calls, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
      const before = calls;

      await ours.send({ name: 'b-0001.json', body: text('one') });

      await expect.poll(() => calls, { timeout: 10_000 }).toBeGreaterThan(before);
    });

    it('closes idempotently and refuses to send or receive afterwards', async () => {
      peer.onArrival(() => {});
      await Promise.all([peer.close(), peer.close()]);
      await peer.close();

      await expect(peer.send({ name: 'b-0001.json', body: text('one') })).rejects.toMatchObject({
        code: 'TS_ERR_TRANSPORT_CLOSED',
        retryable: false,
      });
      await expect(peer.receive()).rejects.toMatchObject({ code: 'TS_ERR_TRANSPORT_CLOSED' });
      expect(() => peer.onArrival(() => {})).toThrow(/closed/);
    });
  });
}
