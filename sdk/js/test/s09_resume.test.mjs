// Shared scenario S09: resume across a server restart (memory backplane: an explicit gap) and
// across two nodes on Redis (the subscriber's node SIGKILLed: every offset exactly once).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from '../dist/index.js';
import { ArqonNode, deadline, receiveWhilePublishing, twoNodesOnRedis, uniqueRoom, waitFor } from './harness.mjs';

const fast = { ARQONBUS_LIMITS__PUBLISH_RATE_PER_S: '100000', ARQONBUS_LIMITS__PUBLISH_BURST: '100000' };

test('S09 restart of a memory node: the lost history reaches the user as a gap, then events go on', async (t) => {
  const node = await new ArqonNode({ env: fast }).start();
  t.after(() => node.stop());
  const room = uniqueRoom();
  let asked = 0;
  const urlProvider = async () => (asked++, node.wsUrl); // asked before every connection attempt
  const sub = connect(urlProvider, { reconnect: { initialDelayMs: 100, maxDelayMs: 500 } });
  const pub = connect(node.wsUrl, { reconnect: { initialDelayMs: 100, maxDelayMs: 500 } });
  t.after(() => Promise.all([sub.close(), pub.close()]));
  const s = sub.subscribe(room, 'c');
  const first = await s.ready;
  for (let i = 1; i <= 5; i++) await pub.publish(room, 'c', { n: i });
  const it = s[Symbol.asyncIterator]();
  for (let i = 1; i <= 5; i++) assert.equal((await it.next()).value.offset, i);

  await node.restart('SIGKILL');
  for (let i = 6; i <= 8; i++) await pub.publish(room, 'c', { n: i }); // waits for the reconnect
  const next = async () => (await deadline(it.next(), 15_000, 'next delivery')).value;
  const gap = await next();
  assert.equal(gap.type, 'gap');
  assert.equal(gap.reason, 'epoch_changed');
  assert.equal(gap.from, 6);
  assert.equal(gap.previousEpoch, first.epoch);
  assert.notEqual(gap.epoch, first.epoch);
  assert.ok(asked >= 2, 'the URL provider was asked again for the reconnect');
  const after = [await next(), await next(), await next()];
  assert.deepEqual(
    after.map((e) => [e.offset, e.payload.n, e.epoch]),
    [
      [1, 6, gap.epoch],
      [2, 7, gap.epoch],
      [3, 8, gap.epoch],
    ],
  );
});

test('S09 two nodes on Redis: subscriber node SIGKILLed, the SDK moves to the other, every offset exactly once', async (t) => {
  const { a, b } = await twoNodesOnRedis(t);
  const room = uniqueRoom();
  const N = 600;
  const sub = connect([a.wsUrl, b.wsUrl], { reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });
  const pub = connect(b.wsUrl);
  t.after(() => Promise.all([sub.close(), pub.close()]));
  const s = sub.subscribe(room, 'c');
  await s.ready;
  assert.equal(sub.node, 'node-a');
  const offsets = await receiveWhilePublishing(s, pub, room, N, 150, () => a.kill());
  assert.deepEqual(
    offsets,
    Array.from({ length: N }, (_, i) => i + 1),
  );
  await waitFor(() => sub.node === 'node-b', { what: 'the subscriber on node-b' });
});
