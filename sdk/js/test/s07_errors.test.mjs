// Shared scenario S07: every error a user can trigger surfaces as ArqonBusError with its code.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ArqonBusError, connect } from '../dist/index.js';
import { jwtEnv, startNode, token, uniqueRoom } from './harness.mjs';

let strict; // auto-create off, 1 publish/s, 2 subscriptions per connection
let jwt; // JWT auth
const buses = [];
const open = (url, opts) => {
  const bus = connect(url, opts);
  buses.push(bus);
  return bus;
};
const code = (c, extra = () => true) => (err) => {
  assert.ok(err instanceof ArqonBusError, `expected ArqonBusError, got ${err}`);
  assert.equal(err.code, c, err.message);
  return extra(err);
};

before(async () => {
  [strict, jwt] = await Promise.all([
    startNode({
      env: {
        ARQONBUS_CHANNELS__AUTO_CREATE: 'false',
        ARQONBUS_LIMITS__PUBLISH_RATE_PER_S: '1',
        ARQONBUS_LIMITS__PUBLISH_BURST: '1',
        ARQONBUS_LIMITS__MAX_SUBSCRIPTIONS: '2',
      },
    }),
    startNode({ env: jwtEnv }),
  ]);
});
after(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await Promise.all([strict.stop(), jwt.stop()]);
});

test('S07 VALIDATION_ERROR: a bad room name, on subscribe and on publish', async () => {
  const bus = open(strict.wsUrl);
  const sub = bus.subscribe('bad room!', 'c');
  await assert.rejects(sub.ready, code('VALIDATION_ERROR', (e) => e.field === 'room'));
  await assert.rejects(
    (async () => {
      for await (const _ of sub) assert.fail('no event expected');
    })(),
    code('VALIDATION_ERROR'),
  );
  assert.equal(sub.active, false);
  await assert.rejects(bus.publish('bad room!', 'c', 1), code('VALIDATION_ERROR', (e) => e.field === 'room'));
  await assert.rejects(bus.publish('r', 'c', undefined), code('VALIDATION_ERROR', (e) => e.field === 'payload'));
});

test('S07 NOT_FOUND and CHANNEL_EXISTS', async () => {
  const bus = open(strict.wsUrl);
  const room = uniqueRoom();
  await assert.rejects(bus.channelInfo(room, 'unknown'), code('NOT_FOUND'));
  const info = await bus.createChannel(room, 'made', { history_size: 10 });
  assert.equal(info.history_size, 10);
  await assert.rejects(bus.createChannel(room, 'made'), code('CHANNEL_EXISTS'));
  assert.equal((await bus.channelInfo(room, 'made')).channel, 'made');
});

test('S07 ALREADY_SUBSCRIBED / NOT_SUBSCRIBED: prevented by the SDK, surfaced by raw commands', async () => {
  const bus = open(strict.wsUrl);
  const room = uniqueRoom();
  await bus.createChannel(room, 'once');
  const sub = bus.subscribe(room, 'once');
  await sub.ready;
  assert.throws(() => bus.subscribe(room, 'once'), code('ALREADY_SUBSCRIBED'));
  await assert.rejects(bus.command('subscribe', { room, channel: 'once' }), code('ALREADY_SUBSCRIBED'));
  await sub.unsubscribe();
  await sub.unsubscribe(); // idempotent: the SDK never sends a second unsubscribe
  await assert.rejects(bus.command('unsubscribe', { room, channel: 'once' }), code('NOT_SUBSCRIBED'));
  // After unsubscribing, subscribing again is allowed.
  await bus.subscribe(room, 'once').ready;
});

test('S07 NOT_CONNECTED: a private message to nobody', async () => {
  const bus = open(strict.wsUrl);
  await assert.rejects(bus.sendPrivate({ user: 'nobody' }, 1), code('NOT_CONNECTED'));
});

test('S07 RATE_LIMITED carries retryAfterMs; by default the SDK waits and sends again', async () => {
  const bus = open(strict.wsUrl);
  const room = uniqueRoom();
  await bus.createChannel(room, 'rl');
  await bus.publish(room, 'rl', 1, { waitOnRateLimit: false }); // takes the only token
  await assert.rejects(
    bus.publish(room, 'rl', 2, { waitOnRateLimit: false }),
    code('RATE_LIMITED', (e) => typeof e.retryAfterMs === 'number' && e.retryAfterMs > 0),
  );
  const t0 = Date.now();
  const acks = await Promise.all([bus.publish(room, 'rl', 3), bus.publish(room, 'rl', 4)]);
  assert.deepEqual(
    acks.map((a) => a.offset),
    [2, 3],
  );
  assert.ok(Date.now() - t0 >= 900, 'the second publish waited for a token');
  // A deadline shorter than the wait surfaces RATE_LIMITED instead of waiting.
  await assert.rejects(bus.publish(room, 'rl', 5, { timeoutMs: 50 }), code('RATE_LIMITED'));
});

test('S07 LIMIT_EXCEEDED: max_subscriptions, and a frame over max_frame_bytes', async () => {
  const bus = open(strict.wsUrl);
  const room = uniqueRoom();
  await Promise.all(['a', 'b', 'c'].map((c) => bus.createChannel(room, c)));
  await bus.subscribe(room, 'a').ready;
  await bus.subscribe(room, 'b').ready;
  await assert.rejects(bus.subscribe(room, 'c').ready, code('LIMIT_EXCEEDED'));
  const big = 'x'.repeat(bus.limits.max_frame_bytes);
  await assert.rejects(bus.publish(room, 'a', big), code('LIMIT_EXCEEDED'));
  assert.equal(bus.state, 'connected', 'the oversized frame was never sent');
});

test('S07 FORBIDDEN: a JWT without the permission', async () => {
  const t = token('alice', { perms: { subscribe: ['science:*'], publish: ['science:explore'] } });
  const bus = open(jwt.wsUrl, { token: t });
  const welcome = await bus.ready();
  assert.equal(welcome.user, 'alice');
  await assert.rejects(bus.publish('science', 'other', 1), code('FORBIDDEN'));
  await assert.rejects(bus.subscribe('history', 'x').ready, code('FORBIDDEN'));
  await assert.rejects(bus.sendPrivate({ user: 'alice' }, 1), code('FORBIDDEN'));
  await assert.rejects(bus.createChannel('science', 'new'), code('FORBIDDEN'));
  assert.equal((await bus.publish('science', 'explore', 1)).offset, 1);
});

test('S07 UNAUTHORIZED: a bad token fails connect with a typed error', async () => {
  const bad = open(jwt.wsUrl, { token: 'not-a-jwt' });
  await assert.rejects(bad.ready(), code('UNAUTHORIZED', (e) => e.httpStatus === 401));
  assert.equal(bad.state, 'closed');
  await assert.rejects(bad.publish('science', 'explore', 1), code('UNAUTHORIZED'));
  const none = open(jwt.wsUrl);
  await assert.rejects(none.ready(), code('UNAUTHORIZED'));
  const expired = open(jwt.wsUrl, { token: token('alice', { ttlS: -10 }) });
  await assert.rejects(expired.ready(), code('UNAUTHORIZED'));
});
