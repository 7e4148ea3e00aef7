// Shared scenario S10: SIGTERM drains a node; the SDK receives `draining`, waits
// `reconnect_after_ms`, reconnects to another URL and resumes without loss or duplicate.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from '../dist/index.js';
import { receiveWhilePublishing, twoNodesOnRedis, uniqueRoom } from './harness.mjs';

test('S10 draining: reconnect after reconnect_after_ms to another node, nothing lost or doubled', async (t) => {
  const { a, b } = await twoNodesOnRedis(t, { ARQONBUS_SERVER__DRAIN_JITTER_MS: '400' });
  const room = uniqueRoom();
  const N = 400;
  const sub = connect([a.wsUrl, b.wsUrl]);
  const pub = connect(b.wsUrl);
  t.after(() => Promise.all([sub.close(), pub.close()]));
  const log = [];
  sub.on('draining', (d) => log.push({ at: Date.now(), what: 'draining', ms: d.reconnectAfterMs }));
  sub.on('disconnected', (d) => log.push({ at: Date.now(), what: 'disconnected', code: d.code }));
  sub.on('connecting', (d) => log.push({ at: Date.now(), what: 'connecting', url: d.url }));
  sub.on('resumed', () => log.push({ at: Date.now(), what: 'resumed' }));
  const s = sub.subscribe(room, 'c');
  await s.ready;
  assert.equal(sub.node, 'node-a');

  const offsets = await receiveWhilePublishing(s, pub, room, N, 100, () => a.stop('SIGTERM'));
  assert.deepEqual(
    offsets,
    Array.from({ length: N }, (_, i) => i + 1),
  );
  const drain = log.find((l) => l.what === 'draining');
  assert.ok(drain, `draining received: ${JSON.stringify(log)}`);
  assert.ok(drain.ms >= 0 && drain.ms <= 400);
  const reconnect = log.find((l) => l.what === 'connecting' && l.at >= drain.at);
  assert.equal(reconnect.url, b.wsUrl, 'reconnected to the other node');
  assert.ok(reconnect.at - drain.at >= drain.ms - 5, `waited reconnect_after_ms: ${JSON.stringify(log)}`);
  assert.ok(log.some((l) => l.what === 'resumed' && l.at >= drain.at));
  assert.equal(sub.node, 'node-b');
});
