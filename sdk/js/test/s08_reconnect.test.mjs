// Shared scenario S08: the server closes the socket (4008 slow consumer); the SDK reconnects with
// backoff, resubscribes with `since`, and the iterator yields every offset exactly once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { connect } from '../dist/index.js';
import { deadline, sdkDir, startNode, uniqueRoom, waitFor } from './harness.mjs';

let node;
before(async () => {
  node = await startNode({
    env: {
      ARQONBUS_LIMITS__OUTBOUND_QUEUE: '16',
      ARQONBUS_LIMITS__PUBLISH_RATE_PER_S: '100000',
      ARQONBUS_LIMITS__PUBLISH_BURST: '100000',
      ARQONBUS_CHANNELS__HISTORY_SIZE: '5000',
    },
  });
});
after(() => node.stop());

/** Blocks this process's event loop (the subscriber stops reading, as a stalled consumer would). */
function stall(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The node's count of connections it closed as slow consumers. */
async function slowConsumerCloses() {
  const text = await (await fetch(`${node.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('arqonbus_slow_consumer_disconnects_total'));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

test('S08 reconnect after the server closes the socket (4008): nothing lost, nothing doubled', async (t) => {
  const room = uniqueRoom();
  const N = 1000;
  const before = await slowConsumerCloses();
  const bus = connect(node.wsUrl);
  t.after(() => bus.close());
  const closes = [];
  const states = [];
  bus.on('disconnected', (d) => closes.push(d.code));
  for (const s of ['reconnecting', 'connected', 'resumed']) bus.on(s, () => states.push(s));
  const sub = bus.subscribe(room, 'flood');
  await sub.ready;

  // Another process publishes ~30 MB while this one does not read.
  const child = spawn(process.execPath, [path.join(sdkDir, 'test/cross/publisher.mjs'), node.wsUrl, room, 'flood', String(N), '--pad=30000'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((r) => child.on('exit', r));
  stall(4000);

  const offsets = [];
  await deadline(
    (async () => {
      for await (const d of sub) {
        assert.equal(d.type, 'event', `unexpected ${JSON.stringify(d)}`);
        offsets.push(d.offset);
        if (offsets.length === N) break;
      }
    })(),
    60_000,
    `${N} events (got ${offsets.length}, closes ${closes})`,
  );
  assert.equal(await exited, 0, stderr);
  // The server closed this connection as a slow consumer. The client sees 4008, or 1006 when the
  // server had to drop the socket because its close frame could not be written to a reader that
  // was not reading.
  assert.equal((await slowConsumerCloses()) - before, 1);
  assert.ok(closes.length >= 1 && closes.every((c) => c === 4008 || c === 1006), `closes: ${closes}`);
  assert.deepEqual(
    offsets,
    Array.from({ length: N }, (_, i) => i + 1),
  );
  await waitFor(() => states.includes('resumed'), { what: 'resumed' });
  assert.deepEqual(states.slice(-3), ['reconnecting', 'connected', 'resumed']);
});
