// Unit tests of the pure parts: offset tracking, raw JSON, backoff, tokens.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay } from '../dist/backoff.js';
import { arrayElements, findMember, historyEventTexts, payloadText, rawJson } from '../dist/rawjson.js';
import { jwtExpiryMs, refreshAtMs, tokenParts } from '../dist/token.js';
import { OffsetTracker } from '../dist/tracker.js';
import { signJwt } from './harness.mjs';
import { reply, scriptedWebSocket } from './scripted-websocket.mjs';

const sub = (o) => ({ room: 'r', channel: 'c', epoch: 'e1', offset: null, recovered: null, replayed: 0, ...o });

test('tracker: a live subscribe starts after the reply offset and delivers in order', () => {
  const t = new OffsetTracker();
  assert.equal(t.since(), undefined);
  assert.deepEqual(t.onSubscribed(sub({ offset: 5 })), []);
  assert.deepEqual(t.since(), { offset: 5, epoch: 'e1' });
  assert.deepEqual(t.onEvent(6, false), { action: 'deliver' });
  t.commit(6);
  assert.deepEqual(t.onEvent(6, false), { action: 'duplicate' });
  assert.deepEqual(t.onEvent(5, false), { action: 'duplicate' });
  assert.deepEqual(t.onEvent(7, false), { action: 'deliver' });
});

test('tracker: a hole asks for a history fill up to the newest offset seen', () => {
  const t = new OffsetTracker();
  t.onSubscribed(sub({ offset: 0 }));
  assert.equal(t.onEvent(3, false).action, 'hole');
  assert.equal(t.needsFill(), true);
  assert.equal(t.latest, 3);
  assert.equal(t.onHistoryPage(1, 3), null);
  for (const o of [1, 2, 3]) {
    assert.equal(t.onEvent(o, false).action, 'deliver');
    t.commit(o);
  }
  assert.equal(t.needsFill(), false);
});

test('tracker: a full buffer turns the next event into a hole (read back later)', () => {
  const t = new OffsetTracker({ offset: 10, epoch: 'e1' });
  t.onSubscribed(sub({ offset: 10, recovered: true }));
  assert.equal(t.onEvent(11, false, false).action, 'hole');
  assert.equal(t.latest, 11);
  assert.equal(t.offset, 10);
});

test('tracker: history that starts after the position reports a retention gap', () => {
  const t = new OffsetTracker();
  t.onSubscribed(sub({ offset: 2 }));
  t.onEvent(9, false);
  assert.deepEqual(t.onHistoryPage(6, 9), { reason: 'retention', from: 3, to: 5, epoch: 'e1' });
  assert.equal(t.offset, 5);
  assert.equal(t.onEvent(6, false).action, 'deliver');
  const u = new OffsetTracker();
  u.onSubscribed(sub({ offset: 2 }));
  u.onEvent(9, false);
  assert.deepEqual(u.onHistoryPage(null, 9), { reason: 'retention', from: 3, to: 9, epoch: 'e1' });
  assert.equal(u.needsFill(), false);
});

test('tracker: recovered:false reports the gap before the first replayed event', () => {
  const t = new OffsetTracker({ offset: 10, epoch: 'e1' });
  assert.deepEqual(t.onSubscribed(sub({ offset: 120, recovered: false, replayed: 100 })), []);
  const v = t.onEvent(21, false);
  assert.deepEqual(v, { action: 'deliver', gap: { reason: 'retention', from: 11, to: 20, epoch: 'e1' } });
  t.commit(21);
  assert.equal(t.onEvent(22, false).action, 'deliver');
});

test('tracker: recovered:false with nothing replayed: everything up to the head is a gap', () => {
  const t = new OffsetTracker({ offset: 3, epoch: 'e1' });
  const gaps = t.onSubscribed(sub({ offset: 8, recovered: false, replayed: 0 }));
  assert.deepEqual(gaps, [{ reason: 'retention', from: 4, to: 8, epoch: 'e1' }]);
  assert.equal(t.offset, 8);
  assert.equal(t.onEvent(9, false).action, 'deliver');
});

test('tracker: a new epoch reports epoch_changed and restarts at the first replayed event', () => {
  const t = new OffsetTracker({ offset: 40, epoch: 'old' });
  const gaps = t.onSubscribed(sub({ epoch: 'new', offset: 3, recovered: false, replayed: 3 }));
  assert.deepEqual(gaps, [{ reason: 'epoch_changed', from: 41, to: null, epoch: 'new', previousEpoch: 'old' }]);
  assert.deepEqual(t.onEvent(1, false), { action: 'deliver' });
  t.commit(1);
  assert.deepEqual(t.since(), { offset: 1, epoch: 'new' });
});

test('tracker: echo:false skips own offsets from acks and own events from history', () => {
  const t = new OffsetTracker();
  t.onSubscribed(sub({ offset: 0 }));
  t.noteOwn(1);
  assert.equal(t.onEvent(2, false).action, 'deliver');
  t.commit(2);
  assert.equal(t.onEvent(3, true).action, 'skip');
});

test('rawjson: the payload text is cut out exactly', () => {
  const frame = '{"type":"event","offset":1,"payload":{"big":12345678901234567890123456789012345678901,"f":1.0,"s":"\\u00e9\\"}","n":{"z":1,"a":[1,{"b":"]"}]}},"metadata":{"k":"v"}}';
  assert.equal(payloadText(frame), '{"big":12345678901234567890123456789012345678901,"f":1.0,"s":"\\u00e9\\"}","n":{"z":1,"a":[1,{"b":"]"}]}}');
  assert.equal(payloadText('{"type":"event", "payload" : "a\\\\" ,"x":1}'), '"a\\\\"');
  assert.equal(payloadText('{"payload":-1.5e3}'), '-1.5e3');
  assert.equal(payloadText('{"payload":null}'), 'null');
  assert.equal(payloadText('{"type":"x"}'), undefined);
  assert.deepEqual(findMember('{"a\\u0062":1}', 'ab'), [11, 12]);
  assert.deepEqual(arrayElements('[ 1 , [2], {"a":3} ]', 0).length, 3);
  const reply = '{"type":"reply","result":{"events":[{"offset":1,"payload":1.0},{"offset":2,"payload":[true]}],"epoch":"e"}}';
  assert.deepEqual(historyEventTexts(reply).map(payloadText), ['1.0', '[true]']);
});

test('rawjson: rawJson refuses text that is not JSON', () => {
  assert.equal(rawJson(' {"a":1.0} ').text, '{"a":1.0}');
  assert.throws(() => rawJson('{"a":'), SyntaxError);
});

test('backoff: full jitter below an exponential cap', () => {
  assert.equal(backoffDelay(1, {}, () => 0.999), 249);
  assert.equal(backoffDelay(3, {}, () => 0.5), 500);
  assert.equal(backoffDelay(30, {}, () => 0.999), 9990);
  assert.equal(backoffDelay(5, { initialDelayMs: 100, maxDelayMs: 1000 }, () => 1), 1000);
  assert.equal(backoffDelay(2, {}, () => 0), 0);
});

test('token: exp is read from a JWT, refresh is scheduled ahead of it', () => {
  const exp = Math.floor(Date.now() / 1000) + 100;
  const jwt = signJwt({ sub: 'a', exp }, 'secret-secret-secret-secret-secret');
  assert.equal(jwtExpiryMs(jwt), exp * 1000);
  assert.equal(jwtExpiryMs('opaque-token'), null);
  assert.deepEqual(tokenParts({ token: 'x', expiresAt: 5000 }), { token: 'x', expiresAtMs: 5000 });
  assert.equal(refreshAtMs(1_000_000, 0), 940_000); // at most 60 s ahead
  assert.equal(refreshAtMs(100_000, 0), 75_000);
  assert.equal(refreshAtMs(4000, 0), 3000); // a quarter of the remaining life ahead
  assert.equal(refreshAtMs(600, 0), 300); // at least 500 ms ahead (or half of what is left)
});

test('requests: queued until connected, urgent first, retry policy applied on a lost connection', async () => {
  const { Requests } = await import('../dist/requests.js');
  let n = 0;
  const reqs = new Requests({ maxInFlightPublishes: 10, maxQueuedPublishes: 3, maxQueuedCommands: 10, nextId: () => `r${++n}` });
  const outcome = {};
  const make = (name, kind, retry, extra = {}) =>
    reqs.add({
      kind,
      retry,
      head: '{"id":"',
      tail: `","name":"${name}"}`,
      deadline: Date.now() + 60_000,
      waitOnRateLimit: true,
      resolve: (r) => (outcome[name] = ['ok', r]),
      reject: (e) => (outcome[name] = ['err', e.code]),
      ...extra,
    });
  make('read', 'command', 'resend');
  make('admin', 'command', 'fail');
  make('sub', 'command', 'connection', { urgent: true });
  make('pub', 'publish', 'resend', { idempotencyKey: 'k1' });
  make('priv', 'publish', 'fail');
  make('pub2', 'publish', 'resend');
  make('pub3', 'publish', 'resend');
  assert.deepEqual(outcome.pub3, ['err', 'QUEUE_FULL']);
  const sent = [];
  reqs.connected((t) => sent.push(JSON.parse(t)), 65536);
  assert.deepEqual(
    sent.map((f) => f.name),
    ['sub', 'read', 'admin', 'pub', 'priv', 'pub2'],
  );
  reqs.error(sent[3].id, { code: 'RATE_LIMITED', message: 'slow down', retry_after_ms: 50 }); // pub: waits, is resent
  reqs.disconnected();
  assert.deepEqual(outcome.sub, ['err', 'DISCONNECTED']);
  assert.deepEqual(outcome.admin, ['err', 'DISCONNECTED']);
  assert.deepEqual(outcome.priv, ['err', 'DISCONNECTED']);
  assert.equal(outcome.read, undefined);
  sent.length = 0;
  reqs.connected((t) => sent.push(JSON.parse(t)), 65536);
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(
    sent.map((f) => f.name).sort(),
    ['pub', 'pub2', 'read'],
  );
  const pub = sent.find((f) => f.name === 'pub');
  reqs.reply(pub.id, { offset: 1 }, '');
  assert.deepEqual(outcome.pub, ['ok', { offset: 1 }]);
  reqs.failAll({ code: 'CLOSED' });
  assert.deepEqual(outcome.read, ['err', 'CLOSED']);
});

test('replay stall: a replay that stops is given up, the connection replaced and the subscription resumed', async () => {
  const { connect } = await import('../dist/index.js');
  const subscribes = [];
  const event = (o) => `{"version":"1.0","type":"event","id":"arq_${o}","room":"r","channel":"c","offset":${o},"from":"c_x","user":null,"timestamp":"t","payload":${o}}`;
  // A scripted server: the first connection's replay stops after offset 3.
  const ScriptedWebSocket = scriptedWebSocket((frame, deliver) => {
    if (frame.command !== 'subscribe') return;
    const since = frame.args.since.offset;
    subscribes.push(since);
    const last = subscribes.length === 1 ? 3 : 10;
    deliver(reply(frame, { room: 'r', channel: 'c', epoch: 'e', offset: 10, recovered: true, replayed: 10 - since }));
    setTimeout(() => {
      for (let o = since + 1; o <= last; o++) deliver(event(o));
    }, 5);
  });
  const bus = connect('ws://scripted/ws', { WebSocket: ScriptedWebSocket, replayStallMs: 300 });
  const errors = [];
  bus.on('error', (e) => errors.push(e.code));
  try {
    const sub = bus.subscribe('r', 'c', { since: { offset: 0 } });
    const got = [];
    for await (const d of sub) {
      got.push(d.offset);
      if (got.length === 10) break;
    }
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(subscribes, [0, 3]);
    assert.deepEqual(errors, ['TIMEOUT']);
  } finally {
    await bus.close();
  }
});
