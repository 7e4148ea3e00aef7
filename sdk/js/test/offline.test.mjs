// The offline publish queue: publishes made without a connection wait for one and go out in
// order; the queue is bounded (QUEUE_FULL) and every publish has a deadline (DISCONNECTED when it
// was never sent).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArqonBusError, connect } from '../dist/index.js';
import { ArqonNode, deadline, freePort, uniqueRoom } from './harness.mjs';

const code = (c) => (err) => err instanceof ArqonBusError && err.code === c;

test('offline queue: bounded, with deadlines, and flushed in order once a node is up', async (t) => {
  const port = await freePort(); // nothing listens there yet
  const bus = connect(`ws://127.0.0.1:${port}/ws`, {
    maxQueuedPublishes: 3,
    reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
  });
  t.after(() => bus.close());
  const room = uniqueRoom();

  // A short deadline: never sent, so the outcome is known (DISCONNECTED), with its key.
  const t0 = Date.now();
  await assert.rejects(bus.publish(room, 'q', 0, { timeoutMs: 300 }), (e) => code('DISCONNECTED')(e) && typeof e.idempotencyKey === 'string');
  assert.ok(Date.now() - t0 >= 250);

  const queued = [1, 2, 3].map((n) => bus.publish(room, 'q', { n }));
  await assert.rejects(bus.publish(room, 'q', { n: 4 }), code('QUEUE_FULL'));
  assert.equal(bus.state, 'connecting', 'never connected yet');

  const node = await new ArqonNode({ port }).start();
  t.after(() => node.stop());
  const acks = await deadline(Promise.all(queued), 15_000, 'queued publishes acked');
  assert.deepEqual(
    acks.map((a) => a.offset),
    [1, 2, 3],
  );
  const h = await bus.history(room, 'q');
  assert.deepEqual(
    h.events.map((e) => e.payload.n),
    [1, 2, 3],
  );
});
