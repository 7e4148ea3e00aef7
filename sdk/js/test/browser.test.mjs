// The core scenario in headless Chromium (Debian's chromium, driven by playwright-core): the
// browser build of the SDK (dist/, ES modules, platform WebSocket, no dependency) connects,
// subscribes, publishes, receives, and resumes after its connection is cut.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { connect } from '../dist/index.js';
import { ArqonNode, deadline, sdkDir, take, uniqueRoom, waitFor } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>arqonbus sdk test</title></head>
<body><script type="module">
  import * as arqonbus from '/dist/index.js';
  window.arqonbus = arqonbus;
  window.sdkLoaded = true;
</script></body></html>`;

/**
 * Serves the test page and dist/ (the browser build) on a free port, and passes WebSocket
 * upgrades of /ws through to the node: the page and its socket share one origin, as when a
 * site serves its pages and ArqonBus behind one host. `cut()` destroys the open sockets.
 */
async function servePage(nodePort) {
  const dist = path.join(sdkDir, 'dist');
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
      return;
    }
    const file = path.join(dist, path.normalize(url.pathname.replace(/^\/dist\//, '')));
    if (!url.pathname.startsWith('/dist/') || !file.startsWith(dist) || !fs.existsSync(file)) {
      res.writeHead(404);
      res.end();
      return;
    }
    const type = file.endsWith('.js') ? 'text/javascript' : 'application/octet-stream';
    res.writeHead(200, { 'content-type': type });
    res.end(fs.readFileSync(file));
  });
  const sockets = new Set();
  server.on('upgrade', (req, client, head) => {
    const upstream = net.connect(nodePort, '127.0.0.1');
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    upstream.write(lines.join('\r\n') + '\r\n\r\n');
    if (head.length) upstream.write(head);
    client.pipe(upstream).pipe(client);
    const pair = [client, upstream];
    sockets.add(pair);
    const end = () => {
      sockets.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of pair) {
      s.on('close', end);
      s.on('error', end);
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    server,
    origin,
    wsUrl: origin.replace('http:', 'ws:') + '/ws',
    cut: () => {
      for (const [a, b] of sockets) {
        a.destroy();
        b.destroy();
      }
    },
    close: () => {
      for (const [a, b] of sockets) {
        a.destroy();
        b.destroy();
      }
      return new Promise((r) => server.close(r));
    },
  };
}

test('browser (headless Chromium): connect, subscribe, publish, receive, reconnect and resume', { timeout: 120_000 }, async (t) => {
  const node = await new ArqonNode().start();
  t.after(() => node.stop());
  const site = await servePage(node.port);
  t.after(() => site.close());

  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'arqonbus-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
  t.after(async () => {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(site.origin + '/', { timeout: 15_000 });
  await page.waitForFunction(() => window.sdkLoaded === true, null, { timeout: 15_000 });

  const room = uniqueRoom();
  const nodeBus = connect(node.wsUrl);
  t.after(() => nodeBus.close());
  const fromBrowser = nodeBus.subscribe(room, 'c');
  await fromBrowser.ready;

  // In the page: connect (same origin as the page), subscribe, iterate.
  const clientId = await page.evaluate(
    async ([url, room]) => {
      const { connect } = window.arqonbus;
      const bus = connect(url, { reconnect: { initialDelayMs: 50, maxDelayMs: 300 } });
      window.bus = bus;
      window.log = [];
      for (const s of ['connected', 'disconnected', 'reconnecting', 'resumed']) bus.on(s, () => window.log.push(s));
      window.got = [];
      const sub = bus.subscribe(room, 'c');
      (async () => {
        for await (const d of sub) window.got.push(d.type === 'event' ? [d.offset, d.payload.n, d.rawPayload] : ['gap']);
      })();
      await sub.ready;
      return bus.clientId;
    },
    [site.wsUrl, room],
  );
  assert.match(clientId, /^c_[0-9a-f]{32}$/);

  // Publish from the page: the Node subscriber receives it.
  const ack = await page.evaluate(async (room) => window.bus.publish(room, 'c', { n: 1 }), room);
  assert.equal(ack.offset, 1);
  assert.equal(ack.duplicate, false);
  const [ev] = await take(fromBrowser, 1);
  assert.deepEqual(ev.payload, { n: 1 });
  assert.equal(ev.from, clientId);

  for (let n = 2; n <= 5; n++) await nodeBus.publish(room, 'c', { n });
  const got = () => page.evaluate(() => window.got);
  await waitFor(async () => (await got()).length === 5, { what: 'five events in the page' });

  // Cut the page's connection; events published meanwhile arrive after the resume, once each.
  site.cut();
  for (let n = 6; n <= 10; n++) await nodeBus.publish(room, 'c', { n });
  await deadline(
    waitFor(async () => (await got()).length >= 10, { timeoutMs: 20_000, what: 'ten events in the page' }),
    25_000,
    'resume in the browser',
  );
  const all = await got();
  assert.deepEqual(
    all.map((g) => g.slice(0, 2)),
    Array.from({ length: 10 }, (_, i) => [i + 1, i + 1]),
  );
  assert.equal(all[9][2], '{"n":10}');
  const log = await page.evaluate(() => window.log);
  assert.deepEqual(log.slice(0, 2), ['connected', 'disconnected']);
  assert.ok(log.includes('resumed'), JSON.stringify(log));
  assert.deepEqual(pageErrors, []);
});
