// A backend feeding a live dashboard through the HTTP publish API (no WebSocket needed).
// Start the server with an API key, then run:
//
//   ARQONBUS_HTTP__API_KEY=change-me-0123456789 cargo run --release
//   node examples/dashboard-feeder.mjs --api-key change-me-0123456789 [--host web-1] [--count 0]
//        [--interval-ms 1000] [--http http://127.0.0.1:8080]
//
// Publishes one reading per interval to metrics:hosts (--count 0: forever). Each reading has an
// idempotency key, so a retried POST (timeout, 429, 503) is stored at most once.
import os from 'node:os';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const http = arg('http', 'http://127.0.0.1:8080');
const apiKey = arg('api-key', process.env.ARQONBUS_API_KEY);
const host = arg('host', os.hostname());
const count = Number(arg('count', '0'));
const intervalMs = Number(arg('interval-ms', '1000'));
if (!apiKey) throw new Error('pass --api-key (the server\'s ARQONBUS_HTTP__API_KEY)');

async function publish(body) {
  for (let attempt = 1; ; attempt++) {
    let res;
    try {
      res = await fetch(`${http}/v1/publish`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
    } catch (err) {
      if (attempt >= 5) throw err; // the outcome is unknown: the same idempotency key makes the retry safe
      await new Promise((r) => setTimeout(r, 200 * attempt));
      continue;
    }
    const answer = await res.json();
    if (res.ok) return answer;
    if ((res.status === 429 || res.status === 503) && attempt < 5) {
      await new Promise((r) => setTimeout(r, answer.error?.retry_after_ms ?? 500));
      continue;
    }
    throw new Error(`publish failed: ${res.status} ${answer.error?.code}: ${answer.error?.message}`);
  }
}

let previous = os.cpus().map((c) => c.times);
for (let seq = 1; count === 0 || seq <= count; seq++) {
  const now = os.cpus().map((c) => c.times);
  const busy = now.reduce((n, t, i) => n + (t.user + t.sys) - (previous[i].user + previous[i].sys), 0);
  const total = now.reduce((n, t, i) => n + (t.user + t.sys + t.idle) - (previous[i].user + previous[i].sys + previous[i].idle), 0);
  previous = now;
  const reading = {
    host,
    seq,
    cpu: total > 0 ? Math.round((100 * busy) / total) : 0,
    mem: Math.round(100 * (1 - os.freemem() / os.totalmem())),
    load: os.loadavg()[0],
  };
  const ack = await publish({ room: 'metrics', channel: 'hosts', payload: reading, idempotency_key: `${host}-${process.pid}-${seq}` });
  console.log(`published ${host} #${seq} at offset ${ack.offset}`);
  await new Promise((r) => setTimeout(r, intervalMs));
}
