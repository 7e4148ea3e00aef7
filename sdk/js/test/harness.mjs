// Test harness: real arqonbus nodes and redis-server processes on free ports, a TCP proxy that
// can cut a connection between a send and its answer, and HS256 tokens for JWT nodes.
//
// The arqonbus binary: $ARQONBUS_BIN, else target/release/arqonbus of the repository root
// (sdk/js/test.sh builds it with `cargo build --release` when ARQONBUS_BIN is not set).
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const sdkDir = path.resolve(here, '..');
export const repoRoot = path.resolve(sdkDir, '../..');

const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
});

export function arqonbusBin() {
  if (process.env.ARQONBUS_BIN) return process.env.ARQONBUS_BIN;
  const built = path.join(repoRoot, 'target/release/arqonbus');
  if (fs.existsSync(built)) return built;
  throw new Error('arqonbus binary not found: set ARQONBUS_BIN, or run `cargo build --release` in the repository root');
}

/** A port that was free a moment ago (the kernel picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value, or throws after `timeoutMs`. */
export async function waitFor(fn, { timeoutMs = 10_000, intervalMs = 25, what = 'condition' } = {}) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Rejects with a clear message when `promise` does not settle within `ms`. */
export function deadline(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** The environment of a child: ours without any ARQONBUS_* (unknown keys stop a node). */
function childEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ARQONBUS_')) env[k] = v;
  return { ...env, ...extra };
}

/** One arqonbus node. `start()` waits for /readyz. */
export class ArqonNode {
  constructor({ env = {}, port = 0, name } = {}) {
    this.env = env;
    this.port = port;
    this.name = name ?? `node-${Math.random().toString(16).slice(2, 8)}`;
    this.proc = null;
    this.logs = [];
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(timeoutMs = 15_000) {
    if (!this.port) this.port = await freePort();
    // An empty working directory: no arqonbus.toml is picked up.
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arqonbus-js-'));
    const env = childEnv({
      ARQONBUS_SERVER__LISTEN: `127.0.0.1:${this.port}`,
      ARQONBUS_SERVER__NODE_ID: this.name,
      ARQONBUS_LOG__LEVEL: 'warn',
      ...this.env,
    });
    const proc = spawn(arqonbusBin(), ['serve'], { env, cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    children.add(proc);
    const keep = (d) => {
      this.logs.push(d.toString());
      if (this.logs.length > 200) this.logs.shift();
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    const dir = this.dir;
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        children.delete(proc);
        fs.rmSync(dir, { recursive: true, force: true });
        resolve({ code, signal });
      }),
    );
    let gone = null;
    this.exited.then((e) => (gone = e));
    await waitFor(
      async () => {
        if (gone) throw new Error(`arqonbus exited (${JSON.stringify(gone)}) during start-up:\n${this.logs.join('')}`);
        try {
          const r = await fetch(`${this.httpUrl}/readyz`, { signal: AbortSignal.timeout(1000) });
          return r.status === 200;
        } catch {
          return false;
        }
      },
      { timeoutMs, what: `node ${this.name} on port ${this.port} to be ready` },
    );
    return this;
  }

  /** Sends `signal` and waits for the process to exit (SIGKILL after `timeoutMs`). */
  async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill(signal);
    const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(t);
  }

  /** SIGKILL: no draining, sockets reset. */
  kill() {
    return this.stop('SIGKILL');
  }

  /** Stops the node and starts a new process on the same port. */
  async restart(signal = 'SIGKILL') {
    await this.stop(signal);
    await this.start();
    return this;
  }

  /** POST /v1/publish (needs ARQONBUS_HTTP__API_KEY in env). */
  async httpPublish(body, apiKey = this.env.ARQONBUS_HTTP__API_KEY) {
    const r = await fetch(`${this.httpUrl}/v1/publish`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    return { status: r.status, body: await r.json() };
  }
}

export async function startNode(opts) {
  return new ArqonNode(opts).start();
}

/** A redis-server on a free port, without persistence. */
export class Redis {
  async start() {
    this.port = await freePort();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arqonbus-js-redis-'));
    const proc = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = proc;
    children.add(proc);
    this.logs = [];
    proc.stdout.on('data', (d) => this.logs.push(d.toString()));
    proc.stderr.on('data', (d) => this.logs.push(d.toString()));
    this.exited = new Promise((resolve) =>
      proc.once('exit', () => {
        children.delete(proc);
        fs.rmSync(this.dir, { recursive: true, force: true });
        resolve();
      }),
    );
    await waitFor(() => this.#ping(), { timeoutMs: 10_000, what: `redis-server on port ${this.port}` });
    return this;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Node env for the Redis backplane, with a key prefix unique to this test. */
  nodeEnv(prefix = `t${Math.random().toString(16).slice(2, 10)}`) {
    return { ARQONBUS_BACKPLANE__URL: this.url, ARQONBUS_BACKPLANE__KEY_PREFIX: prefix };
  }

  #ping() {
    return new Promise((resolve) => {
      const s = net.connect(this.port, '127.0.0.1');
      s.setTimeout(500, () => (s.destroy(), resolve(false)));
      s.on('error', () => resolve(false));
      s.on('connect', () => s.write('PING\r\n'));
      s.on('data', (d) => {
        s.destroy();
        resolve(d.toString().startsWith('+PONG'));
      });
    });
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}

export async function startRedis() {
  return new Redis().start();
}

/**
 * A TCP proxy in front of a node. `holdDownstream()` stops forwarding what the server sends
 * (it is kept back); `cut()` then destroys every connection: the client's frames reached the
 * server, but the answers never reach the client.
 */
export async function startProxy(targetPort) {
  const pairs = new Set();
  let hold = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (!hold) client.write(d);
    });
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    port,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    get connections() {
      return pairs.size;
    },
    holdDownstream() {
      hold = true;
    },
    cut() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
      hold = false;
    },
    close() {
      this.cut();
      return new Promise((r) => server.close(r));
    },
  };
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** An HS256 JWT. */
export function signJwt(claims, secret) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

export const JWT_SECRET = 'arqonbus-js-sdk-test-secret-0123456789abcdef';

/** Env of a node with JWT auth. */
export const jwtEnv = { ARQONBUS_AUTH__KIND: 'jwt', ARQONBUS_AUTH__JWT_SECRET: JWT_SECRET };

/** A token for `sub` valid `ttlS` seconds with the given permissions (default: everything). */
export function token(sub, { ttlS = 3600, perms } = {}) {
  const arqonbus = perms ?? { subscribe: ['*:*'], publish: ['*:*'], private: true, admin: true };
  return signJwt({ sub, exp: Math.floor(Date.now() / 1000) + ttlS, arqonbus }, JWT_SECRET);
}

/** A unique room name per test. */
export function uniqueRoom(prefix = 'r') {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(16).slice(2, 8)}`;
}

/** Collects `n` deliveries of a subscription's iterator (with a deadline). */
export async function take(sub, n, timeoutMs = 20_000) {
  const out = [];
  if (n === 0) return out;
  const it = sub[Symbol.asyncIterator]();
  await deadline(
    (async () => {
      while (out.length < n) {
        const r = await it.next();
        if (r.done) break;
        out.push(r.value);
      }
    })(),
    timeoutMs,
    `${n} deliveries on ${sub.name} (got ${out.length})`,
  );
  return out;
}

/** Redis and two nodes on it (`node-a`, `node-b`), stopped after the test. */
export async function twoNodesOnRedis(t, env = {}) {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const all = {
    ARQONBUS_LIMITS__PUBLISH_RATE_PER_S: '100000',
    ARQONBUS_LIMITS__PUBLISH_BURST: '100000',
    ...env,
    ...redis.nodeEnv(),
  };
  const [a, b] = await Promise.all([new ArqonNode({ env: all, name: 'node-a' }).start(), new ArqonNode({ env: all, name: 'node-b' }).start()]);
  t.after(() => Promise.all([a.stop(), b.stop()]));
  return { redis, a, b };
}

/**
 * `pub` publishes {n: 1} … {n: count} to room:c one after the other (5 ms pause every 10) while
 * the subscription's iterator is read; `atCount(k)` runs once after k deliveries (e.g. kill a
 * node). Returns the delivered offsets; fails on a gap.
 */
export async function receiveWhilePublishing(sub, pub, room, count, atCount, action) {
  const publishing = (async () => {
    for (let i = 1; i <= count; i++) {
      await pub.publish(room, 'c', { n: i });
      if (i % 10 === 0) await sleep(5);
    }
  })();
  const offsets = [];
  let acted;
  await deadline(
    (async () => {
      for await (const d of sub) {
        if (d.type !== 'event') throw new Error(`unexpected ${JSON.stringify(d)}`);
        offsets.push(d.offset);
        if (offsets.length === atCount) acted = action();
        if (offsets.length === count) break;
      }
    })(),
    60_000,
    `${count} events (got ${offsets.length})`,
  );
  await publishing;
  await acted;
  return offsets;
}
