// Shared scenarios S11 (idempotent retry), S12 (token refresh), S13 (gap surfaced) and
// S14 (payload fidelity).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArqonBusError, connect, rawJson } from '../dist/index.js';
import { ArqonNode, deadline, jwtEnv, sleep, startProxy, take, token, uniqueRoom, waitFor } from './harness.mjs';

test('S11 idempotent retry: the connection drops between send and ack; the event is stored once', async (t) => {
  const node = await new ArqonNode().start();
  const proxy = await startProxy(node.port);
  t.after(async () => {
    await proxy.close();
    await node.stop();
  });
  const room = uniqueRoom();
  const bus = connect(proxy.wsUrl, { reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  t.after(() => bus.close());
  await bus.ready();
  const reconnects = [];
  bus.on('connected', (c) => c.reconnect && reconnects.push(c));

  proxy.holdDownstream(); // the server's answers stop reaching the client
  const pending = bus.publish(room, 'once', { order: 42 });
  const reader = connect(node.wsUrl);
  t.after(() => reader.close());
  // The event is stored although its ack never arrived.
  await waitFor(async () => (await reader.history(room, 'once')).events.length === 1, { what: 'the event stored' });
  proxy.cut();
  const ack = await deadline(pending, 15_000, 'publish resolved after reconnect');
  assert.equal(reconnects.length, 1, 'the SDK reconnected');
  assert.equal(ack.offset, 1);
  assert.equal(ack.duplicate, true, 'the retry carried the same idempotency key');
  const h = await reader.history(room, 'once');
  assert.deepEqual(
    h.events.map((e) => [e.offset, e.payload]),
    [[1, { order: 42 }]],
  );
  // A private message is never resent: its outcome is reported as unknown.
  await bus.ready();
  proxy.holdDownstream();
  const priv = bus.sendPrivate({ client: reader.clientId }, 'hi');
  await sleep(200);
  proxy.cut();
  await assert.rejects(priv, (e) => e instanceof ArqonBusError && e.code === 'DISCONNECTED');
});

test('S12 token refresh: the provider is called before expiry and the connection is not closed with 4001', async (t) => {
  const node = await new ArqonNode({ env: jwtEnv }).start();
  t.after(() => node.stop());
  let calls = 0;
  const bus = connect(node.wsUrl, {
    tokenProvider: () => {
      calls++;
      return token('alice', { ttlS: 3 });
    },
  });
  t.after(() => bus.close());
  const closes = [];
  const refreshed = [];
  bus.on('disconnected', (d) => closes.push(d.code));
  bus.on('tokenRefreshed', (r) => refreshed.push(r.expiresAt));
  await bus.ready();
  const room = uniqueRoom();
  const sub = bus.subscribe(room, 'c');
  await sub.ready;
  await sleep(7500); // more than twice the tokens' lifetime
  assert.deepEqual(closes, [], 'never disconnected');
  assert.ok(refreshed.length >= 2, `refreshed ${refreshed.length} times`);
  assert.ok(calls >= 3, `provider called ${calls} times`);
  assert.ok(refreshed.every((e) => typeof e === 'string' && Date.parse(e) > 0));
  await bus.publish(room, 'c', 'still here');
  const [ev] = await take(sub, 1);
  assert.equal(ev.payload, 'still here');
  assert.equal(bus.welcome.user, 'alice');
});

test('S12 token refresh: a static token that expires closes with 4001 (what the provider prevents)', async (t) => {
  const node = await new ArqonNode({ env: jwtEnv }).start();
  t.after(() => node.stop());
  const bus = connect(node.wsUrl, { token: token('alice', { ttlS: 2 }) });
  t.after(() => bus.close());
  const closed = new Promise((r) => bus.once('disconnected', r));
  await bus.ready();
  const d = await deadline(closed, 10_000, '4001');
  assert.equal(d.code, 4001);
  // The expired static token cannot reconnect: the bus fails with UNAUTHORIZED.
  await waitFor(() => bus.state === 'closed', { what: 'the bus to give up' });
  await assert.rejects(bus.ready(), (e) => e.code === 'UNAUTHORIZED');
});

test('S13 gap surfaced: since older than retention gives recovered:false and a gap with the range', async (t) => {
  const node = await new ArqonNode().start();
  t.after(() => node.stop());
  const room = uniqueRoom();
  const bus = connect(node.wsUrl);
  t.after(() => bus.close());
  await bus.createChannel(room, 'short', { history_size: 5 });
  for (let i = 1; i <= 20; i++) await bus.publish(room, 'short', { n: i });
  const gaps = [];
  bus.on('gap', (g) => gaps.push(g));
  const sub = bus.subscribe(room, 'short', { since: { offset: 2 } });
  const res = await sub.ready;
  assert.equal(res.recovered, false);
  const got = await take(sub, 6);
  assert.deepEqual(got[0], { type: 'gap', room, channel: 'short', reason: 'retention', from: 3, to: 15, epoch: res.epoch });
  assert.deepEqual(
    got.slice(1).map((e) => e.offset),
    [16, 17, 18, 19, 20],
  );
  assert.equal(gaps.length, 1, 'the bus reports the gap too');
  await bus.publish(room, 'short', { n: 21 });
  assert.equal((await take(sub, 1))[0].offset, 21);
});

test('S13 bounded buffer: a slow consumer is refilled from history, or told of a gap past retention', async (t) => {
  const node = await new ArqonNode({
    env: { ARQONBUS_LIMITS__PUBLISH_RATE_PER_S: '100000', ARQONBUS_LIMITS__PUBLISH_BURST: '100000' },
  }).start();
  t.after(() => node.stop());
  const room = uniqueRoom();
  const bus = connect(node.wsUrl);
  t.after(() => bus.close());
  // Within retention: the iterator holds at most 10 events, the rest is read back later.
  const sub = bus.subscribe(room, 'slow', { bufferSize: 10 });
  await sub.ready;
  await Promise.all(Array.from({ length: 100 }, (_, i) => bus.publish(room, 'slow', { n: i + 1 })));
  await sleep(200);
  assert.ok(sub.buffered <= 10, `buffered ${sub.buffered}`);
  const got = await take(sub, 100);
  assert.deepEqual(
    got.map((e) => e.offset),
    Array.from({ length: 100 }, (_, i) => i + 1),
  );
  // Past retention: the consumer gets what is still retained, after an explicit gap.
  await bus.createChannel(room, 'tiny', { history_size: 5 });
  const sub2 = bus.subscribe(room, 'tiny', { bufferSize: 10 });
  await sub2.ready;
  await Promise.all(Array.from({ length: 50 }, (_, i) => bus.publish(room, 'tiny', { n: i + 1 })));
  await sleep(200);
  const got2 = await take(sub2, 16);
  assert.deepEqual(
    got2.slice(0, 10).map((e) => e.offset),
    Array.from({ length: 10 }, (_, i) => i + 1),
  );
  assert.deepEqual(got2[10], { type: 'gap', room, channel: 'tiny', reason: 'retention', from: 11, to: 45, epoch: got2[0].epoch });
  assert.deepEqual(
    got2.slice(11).map((e) => e.offset),
    [46, 47, 48, 49, 50],
  );
});

/** A node, a publishing bus `a` and a bus `b` subscribed to room:p. */
async function publisherAndSubscriber(t) {
  const node = await new ArqonNode().start();
  t.after(() => node.stop());
  const room = uniqueRoom();
  const a = connect(node.wsUrl);
  const b = connect(node.wsUrl);
  t.after(() => Promise.all([a.close(), b.close()]));
  const sub = b.subscribe(room, 'p');
  await sub.ready;
  return { room, a, b, sub };
}

test('S14 payload fidelity: JSON values round-trip; rawPayload and rawJson keep the exact text', async (t) => {
  const { room, a, b, sub } = await publisherAndSubscriber(t);
  const values = [{ z: 1, a: { y: [1, 2.5, 'é', null, true] } }, 'text with "quotes" and \\ and \u2028', -0.125, [], {}, null];
  for (const v of values) await a.publish(room, 'p', v);
  const got = await take(sub, values.length);
  assert.deepEqual(
    got.map((e) => e.payload),
    values,
  );
  for (const e of got) assert.deepEqual(JSON.parse(e.rawPayload), e.payload);
});

test('S14 payload fidelity: big integers, 1.0, escapes and key order byte for byte (needs the issue 7 server)', async (t) => {
  const { room, a, b, sub } = await publisherAndSubscriber(t);
  const texts = [
    '{"big":12345678901234567890123456789012345678901,"f":1.0,"s":"\\u00e9","nested":{"z":1,"a":{"y":2,"b":[3,{"k":"v"}]}}}',
    '12345678901234567890123456789012345678901',
    '"\\u00e9\\n\\/"',
    '[1.0, 2.50,  -0.0]',
  ];
  for (const text of texts) await a.publish(room, 'p', rawJson(text));
  const got = await take(sub, texts.length);
  assert.deepEqual(
    got.map((e) => e.rawPayload),
    texts.map((x) => x.trim()),
  );
  const h = await b.history(room, 'p', { limit: 10 });
  assert.deepEqual(
    h.events.map((e) => e.rawPayload),
    texts,
  );
  // A private message keeps its text too.
  const msg = new Promise((r) => b.once('private', r));
  await a.sendPrivate({ client: b.clientId }, rawJson(texts[0]));
  assert.equal((await deadline(msg, 5000, 'private')).rawPayload, texts[0]);
});
