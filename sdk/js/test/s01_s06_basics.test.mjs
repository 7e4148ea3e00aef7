// Shared scenarios S01–S06 (sdk/SCENARIOS.md) against one real node (memory backplane).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ArqonBusError, connect } from '../dist/index.js';
import { deadline, jwtEnv, startNode, take, token, uniqueRoom, waitFor } from './harness.mjs';

let node;
let jwtNode;
const buses = [];
const open = (opts) => {
  const bus = connect(node.wsUrl, opts);
  buses.push(bus);
  return bus;
};

before(async () => {
  node = await startNode({
    env: { ARQONBUS_LIMITS__PUBLISH_RATE_PER_S: '100000', ARQONBUS_LIMITS__PUBLISH_BURST: '100000' },
  });
  jwtNode = await startNode({ env: jwtEnv });
});
after(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await Promise.all([node.stop(), jwtNode.stop()]);
});

test('S01 connect: welcome received, clientId, node and limits exposed', async () => {
  const bus = open();
  const states = [];
  bus.on('connecting', () => states.push('connecting'));
  bus.on('connected', () => states.push('connected'));
  const welcome = await bus.ready(10_000);
  assert.match(welcome.client_id, /^c_[0-9a-f]{32}$/);
  assert.equal(bus.clientId, welcome.client_id);
  assert.equal(bus.node, node.name);
  assert.equal(bus.state, 'connected');
  assert.equal(typeof bus.limits.max_frame_bytes, 'number');
  assert.equal(bus.limits.publish_burst, 100000);
  assert.equal(typeof bus.limits.max_subscriptions, 'number');
  assert.deepEqual(states, ['connecting', 'connected']);
  const st = await bus.status();
  assert.equal(st.node, node.name);
});

test('S02 subscribe + publish/ack: the ack and the delivered event agree', async () => {
  const room = uniqueRoom();
  const sub = open().subscribe(room, 'explore');
  const ready = await sub.ready;
  assert.equal(ready.offset, null);
  const pub = open();
  const payload = { probe: 'voyager', km: 24000000000, nested: { list: [1, 'two', null, true] } };
  const ack = await pub.publish(room, 'explore', payload);
  assert.deepEqual(Object.keys(ack).sort(), ['duplicate', 'id', 'offset']);
  assert.equal(ack.offset, 1);
  assert.equal(ack.duplicate, false);
  assert.match(ack.id, /^arq_/);
  const [ev] = await take(sub, 1);
  assert.equal(ev.type, 'event');
  assert.equal(ev.offset, ack.offset);
  assert.equal(ev.id, ack.id);
  assert.deepEqual(ev.payload, payload);
  assert.equal(ev.from, pub.clientId);
  assert.equal(ev.room, room);
  assert.equal(ev.channel, 'explore');
  assert.equal(ev.epoch, ready.epoch);
  // The emitter sees the same stream.
  const seen = [];
  const sub2 = open().subscribe(room, 'other');
  sub2.on('event', (e) => seen.push(e.offset));
  await sub2.ready;
  await pub.publish(room, 'other', 1);
  await pub.publish(room, 'other', 2);
  await waitFor(() => seen.length === 2, { what: 'two events on the emitter' });
  assert.deepEqual(seen, [1, 2]);
});

test('S03 ordering: 500 publishes in a row arrive as offsets 1..500, no gap, no duplicate', async () => {
  const room = uniqueRoom();
  const sub = open().subscribe(room, 'seq');
  await sub.ready;
  const pub = open();
  const acks = await Promise.all(Array.from({ length: 500 }, (_, i) => pub.publish(room, 'seq', { n: i + 1 })));
  assert.deepEqual(
    acks.map((a) => a.offset),
    Array.from({ length: 500 }, (_, i) => i + 1),
  );
  const got = await take(sub, 500);
  assert.deepEqual(
    got.map((e) => e.offset),
    Array.from({ length: 500 }, (_, i) => i + 1),
  );
  assert.deepEqual(
    got.map((e) => e.payload.n),
    Array.from({ length: 500 }, (_, i) => i + 1),
  );
  assert.equal(sub.buffered, 0);
});

test('S04 history: limit, since, before, reverse', async () => {
  const room = uniqueRoom();
  const bus = open();
  for (let i = 1; i <= 30; i++) await bus.publish(room, 'h', { n: i });
  const offs = (r) => r.events.map((e) => e.offset);
  const newest = await bus.history(room, 'h', { limit: 3 });
  assert.deepEqual(offs(newest), [28, 29, 30]);
  assert.equal(newest.offset, 30);
  assert.equal(typeof newest.epoch, 'string');
  assert.deepEqual(newest.events[2].payload, { n: 30 });
  assert.equal(newest.events[2].rawPayload, '{"n":30}');
  assert.deepEqual(offs(await bus.history(room, 'h', { limit: 3, reverse: true })), [30, 29, 28]);
  assert.deepEqual(offs(await bus.history(room, 'h', { since: 10, limit: 3 })), [11, 12, 13]);
  assert.deepEqual(offs(await bus.history(room, 'h', { before: 10, limit: 3 })), [7, 8, 9]);
  assert.deepEqual(offs(await bus.history(room, 'h', { before: 10, limit: 3, reverse: true })), [9, 8, 7]);
  assert.deepEqual(offs(await bus.history(room, 'h', { since: 30 })), []);
  // Paging forward with hasMore reads everything exactly once.
  const all = [];
  let since = 0;
  for (let page = 0; page < 20; page++) {
    const r = await bus.history(room, 'h', { since, limit: 7 });
    all.push(...offs(r));
    if (!r.hasMore) break;
    since = r.events.at(-1).offset;
  }
  assert.deepEqual(
    all,
    Array.from({ length: 30 }, (_, i) => i + 1),
  );
});

test('S04 history: hasMore reports more matching events (needs the issue 7 server)', async () => {
  const room = uniqueRoom();
  const bus = open();
  for (let i = 1; i <= 10; i++) await bus.publish(room, 'm', i);
  const raw = await bus.command('history', { room, channel: 'm', limit: 10 });
  assert.equal(raw.has_more, false, 'the server reports has_more');
  assert.equal((await bus.history(room, 'm', { limit: 4 })).hasMore, true);
  assert.equal((await bus.history(room, 'm', { since: 6, limit: 4 })).hasMore, false);
  // Reads never create channels: an unknown channel has an empty history.
  const unknown = await bus.history(room, 'never-used');
  assert.deepEqual(unknown.events, []);
  assert.equal(unknown.offset, null);
  assert.equal(unknown.hasMore, false);
});

test('S05 presence: two subscribed clients are listed', async () => {
  const room = uniqueRoom();
  const a = open();
  const b = open();
  await Promise.all([a.subscribe(room, 'p').ready, b.subscribe(room, 'p').ready]);
  const hidden = open();
  await hidden.subscribe(room, 'p', { presence: false }).ready;
  const p = await b.presence(room, 'p');
  assert.equal(p.count, 2);
  assert.deepEqual(p.clients.map((c) => c.client_id).sort(), [a.clientId, b.clientId].sort());
  for (const c of p.clients) assert.equal(c.node, node.name);
  assert.equal(p.nextCursor, null);
});

test('S05 presence: pagination with cursor and limit (needs the issue 7 server)', async () => {
  const room = uniqueRoom();
  const members = [open(), open(), open()];
  await Promise.all(members.map((m) => m.subscribe(room, 'pg').ready));
  const ids = [];
  let cursor;
  for (let page = 0; page < 10; page++) {
    const r = await members[0].presence(room, 'pg', { limit: 1, ...(cursor ? { cursor } : {}) });
    assert.ok(r.clients.length <= 1);
    ids.push(...r.clients.map((c) => c.client_id));
    cursor = r.nextCursor;
    if (!cursor) break;
  }
  assert.deepEqual(ids.sort(), members.map((m) => m.clientId).sort());
});

test('S06 private: to a client id arrives; an absent target is NOT_CONNECTED', async () => {
  const alice = open();
  const bob = open();
  await Promise.all([alice.ready(), bob.ready()]);
  const got = new Promise((resolve) => bob.once('private', resolve));
  const ack = await alice.sendPrivate({ client: bob.clientId }, { text: 'hi bob', big: 1 });
  assert.equal(ack.delivered, 1);
  const msg = await deadline(got, 5000, 'private message');
  assert.deepEqual(msg.payload, { text: 'hi bob', big: 1 });
  assert.deepEqual(JSON.parse(msg.rawPayload), { text: 'hi bob', big: 1 });
  assert.equal(msg.from, alice.clientId);
  assert.deepEqual(msg.to, { client: bob.clientId });
  await assert.rejects(
    alice.sendPrivate({ client: 'c_00000000000000000000000000000000' }, 'anyone?'),
    (err) => err instanceof ArqonBusError && err.code === 'NOT_CONNECTED',
  );
});

test('S06 private: to a user (JWT node) reaches every connection of that user', async () => {
  const bus = (user) => {
    const b = connect(jwtNode.wsUrl, { token: token(user) });
    buses.push(b);
    return b;
  };
  const alice = bus('alice');
  const bob1 = bus('bob');
  const bob2 = bus('bob');
  await Promise.all([alice.ready(), bob1.ready(), bob2.ready()]);
  const got = [bob1, bob2].map((b) => new Promise((resolve) => b.once('private', resolve)));
  const ack = await alice.sendPrivate({ user: 'bob' }, { text: 'hi bob' });
  assert.equal(ack.delivered, 2);
  for (const m of await deadline(Promise.all(got), 5000, 'both of bob\'s connections')) {
    assert.deepEqual(m.payload, { text: 'hi bob' });
    assert.equal(m.user, 'alice');
    assert.deepEqual(m.to, { user: 'bob' });
  }
  await assert.rejects(alice.sendPrivate({ user: 'carol' }, 1), (e) => e instanceof ArqonBusError && e.code === 'NOT_CONNECTED');
});
