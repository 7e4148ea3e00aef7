#!/usr/bin/env node
// Measures the SDK's receive path: events per second delivered through one connection's
// subscription iterator (JSON parse, offset tracking, iterator), in two modes:
//
//   replay  N events are stored first; the subscriber then subscribes with since {offset: 0}
//           and the server replays them as fast as the client reads;
//   live    P publisher processes (raw WebSocket frames, no acks) publish N events in total
//           while the subscriber receives them live;
//   sdk     no server and no network: a stand-in WebSocket hands N prepared event frames to the
//           SDK, 1000 per macrotask: the SDK's own cost per event (parse, offsets, iterator).
//
//   node bench/receive.mjs [--events 100000] [--publishers 2] [--mode all|replay|live|sdk]
//                          [--buffer 10000] [--url ws://HOST:PORT/ws]
//
// Without --url it starts its own node ($ARQONBUS_BIN, else target/release/arqonbus of the
// repository root) with the publish rate limit, history size and outbound budget raised (so that
// the node does not close the subscriber as a slow consumer while the publishers burst). With
// --url, the node must allow that: ARQONBUS_LIMITS__PUBLISH_RATE_PER_S=10000000
// ARQONBUS_LIMITS__PUBLISH_BURST=10000000 ARQONBUS_CHANNELS__HISTORY_SIZE=100000
// ARQONBUS_LIMITS__OUTBOUND_QUEUE_BYTES=268435456 (and, in replay mode, --events ≤ 100000).
// The subscriber checks that offsets arrive 1..N with no gap; a stall of 30 s is reported.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../dist/index.js';
import { ArqonNode } from '../test/harness.mjs';
import { reply, scriptedWebSocket } from '../test/scripted-websocket.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};

if (process.argv[2] === '--publisher') {
  await publisher(process.argv[3], process.argv[4], Number(process.argv[5]));
  process.exit(0);
}

const events = Number(arg('events', '100000'));
const publishers = Number(arg('publishers', '2'));
const mode = arg('mode', 'all');
const bufferSize = Number(arg('buffer', '10000'));
let url = arg('url', null);
let node = null;
if (!url && mode !== 'sdk') {
  node = await new ArqonNode({
    env: {
      ARQONBUS_LIMITS__PUBLISH_RATE_PER_S: '10000000',
      ARQONBUS_LIMITS__PUBLISH_BURST: '10000000',
      ARQONBUS_CHANNELS__HISTORY_SIZE: String(Math.min(100000, Math.max(events, 1000))),
      ARQONBUS_LIMITS__OUTBOUND_QUEUE: '65536',
      ARQONBUS_LIMITS__OUTBOUND_QUEUE_BYTES: String(256 << 20),
      ARQONBUS_LOG__LEVEL: 'error',
    },
  }).start();
  url = node.wsUrl;
}

/** A publisher process: raw frames without id (no ack traffic), paced by the socket's buffer. */
async function publisher(url, room, count) {
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(url, ['arqonbus.v1']);
  await new Promise((resolve, reject) => {
    ws.once('message', resolve); // welcome
    ws.once('error', reject);
  });
  ws.on('close', (code) => {
    if (sent < count) {
      console.error(`publisher: connection closed (${code}) after ${sent} of ${count} events`);
      process.exit(1);
    }
  });
  const head = `{"type":"event","room":"${room}","channel":"c","payload":{"seq":`;
  const tail = `,"sensor":"bench","value":21.5,"unit":"C"}}`;
  let sent = 0;
  while (sent < count) {
    while (ws.bufferedAmount < 1 << 20 && sent < count) ws.send(head + sent++ + tail);
    await new Promise((r) => setTimeout(r, 1));
  }
  const until = Date.now() + 30_000;
  while (ws.bufferedAmount > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  ws.close();
}

function runPublishers(room, total) {
  const per = Math.ceil(total / publishers);
  return Array.from({ length: publishers }, (_, i) => {
    const n = Math.min(per, total - i * per);
    const child = spawn(process.execPath, [path.join(here, 'receive.mjs'), '--publisher', url, room, String(n)], { stdio: 'inherit' });
    return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`publisher exited ${code}`)))));
  });
}

/** Receives `total` events through the iterator; returns events/s from the first to the last. */
async function receive(sub, total) {
  let expected = 1;
  let first = 0;
  const started = performance.now();
  let peakRss = 0;
  let last = 0;
  // A deadline on progress: a stalled receive path is reported, never waited on forever.
  const watchdog = setInterval(() => {
    if (performance.now() - (last || started) < 30_000) return;
    console.error(`stalled at offset ${expected - 1}: ${JSON.stringify(sub.diagnostics)}, buffered ${sub.buffered}, bus ${bus?.state}`);
    console.error(trace.join('\n'));
    process.exit(1);
  }, 1000);
  for await (const d of sub) {
    last = performance.now();
    if (d.type === 'gap') throw new Error(`gap ${d.from}..${d.to}`);
    if (d.offset !== expected) throw new Error(`offset ${d.offset}, expected ${expected}`);
    if (expected === 1) first = performance.now();
    if (expected % 10000 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
    if (expected++ === total) break;
  }
  clearInterval(watchdog);
  const seconds = (last - first) / 1000;
  return { rate: Math.round((total - 1) / seconds), seconds, peakRssMiB: Math.round(peakRss / 2 ** 20) };
}

/** A WebSocket stand-in: a subscribe reply, then `events` prepared frames, 1000 per macrotask. */
function fakeWebSocket(events) {
  const frames = Array.from(
    { length: events },
    (_, i) =>
      `{"version":"1.0","type":"event","id":"arq_01a217ba-127b-7b3f-8f62-2c04a4aa${String(i).padStart(6, '0')}","room":"bench","channel":"c","offset":${i + 1},"from":"c_8ec1f3ecc6c1e70e5a989db199c31659","user":null,"timestamp":"2026-11-26T12:00:00.123Z","payload":{"seq":${i},"sensor":"bench","value":21.5,"unit":"C"}}`,
  );
  return scriptedWebSocket((frame, deliver) => {
    if (frame.command !== 'subscribe') return;
    deliver(reply(frame, { room: 'bench', channel: 'c', epoch: 'e', offset: 0, recovered: null, replayed: 0 }));
    let i = 0;
    const pump = () => {
      for (const end = Math.min(i + 1000, frames.length); i < end; i++) deliver(frames[i]);
      if (i < frames.length) setImmediate(pump);
    };
    setImmediate(pump);
  });
}

// What happened to the connection, printed when the receive path stalls.
const trace = [];
const t0 = performance.now();
let bus = null;
const results = {};
if (mode === 'all' || mode === 'sdk') {
  const fake = connect('ws://fake/ws', { WebSocket: fakeWebSocket(events) });
  const sub = fake.subscribe('bench', 'c', { bufferSize });
  results.sdk = await receive(sub, events);
  await fake.close();
}
bus = mode === 'sdk' ? null : connect(url, { maxQueuedPublishes: 100000 });
const closes = [];
for (const ev of ['connecting', 'connected', 'disconnected', 'reconnecting', 'resumed', 'gap']) {
  bus?.on(ev, (d) => trace.push(`${(performance.now() - t0).toFixed(0)} ms ${ev} ${JSON.stringify(d, (k, v) => (k === 'welcome' ? undefined : v))}`));
}
bus?.on('disconnected', (d) => closes.push(d.code));
bus?.on('error', (e) => console.error(`bus error: ${e.code ?? ''} ${e.message}`));
await bus?.ready();
if (mode === 'all' || mode === 'live') {
  const room = `bench-live-${Date.now()}`;
  const sub = bus.subscribe(room, 'c', { bufferSize });
  sub.on('subscribed', (r) => trace.push(`${(performance.now() - t0).toFixed(0)} ms subscribed ${JSON.stringify(r)} at ${sub.position.offset}`));
  await sub.ready;
  const done = receive(sub, events);
  const publishStart = performance.now();
  await Promise.all(runPublishers(room, events));
  const publishRate = Math.round(events / ((performance.now() - publishStart) / 1000));
  results.live = { ...(await done), publishRate, closes: closes.splice(0) };
}
if (mode === 'all' || mode === 'replay') {
  const room = `bench-replay-${Date.now()}`;
  const n = Math.min(events, 100000);
  await Promise.all(runPublishers(room, n));
  const sub = bus.subscribe(room, 'c', { since: { offset: 0 }, bufferSize });
  results.replay = { ...(await receive(sub, n)), closes: closes.splice(0) };
}
await bus?.close();
await node?.stop();
for (const [m, r] of Object.entries(results)) {
  const pub = r.publishRate ? `; publishers sent ${r.publishRate} events/s including start-up` : '';
  const closed = r.closes?.length ? `; closed by the node ${r.closes.length}× (${[...new Set(r.closes)].join(', ')}), resumed` : '';
  console.log(`${m}: ${r.rate} events/s on one connection (${r.seconds.toFixed(2)} s, peak RSS ${r.peakRssMiB} MiB${pub}${closed})`);
}
