// A live dashboard of the readings that dashboard-feeder.mjs publishes over HTTP.
//
//   node examples/dashboard.mjs [--url ws://127.0.0.1:8080/ws] [--count 0]
//
// Starts from the last 50 readings, then stays live; survives server restarts and reconnects
// without missing a reading (or says how many were lost). --count N: exit after showing N readings.
import { connect } from 'arqonbus';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const url = arg('url', 'ws://127.0.0.1:8080/ws');
const count = Number(arg('count', '0'));

const bus = connect(url);
bus.on('reconnecting', ({ delayMs }) => console.log(`(reconnecting in ${delayMs} ms)`));

const latest = new Map(); // host -> reading
const render = (r, offset) => {
  latest.set(r.host, r);
  const bar = (pct) => '#'.repeat(Math.round(pct / 10)).padEnd(10, '.');
  console.log(`#${offset} ${r.host.padEnd(12)} cpu ${bar(r.cpu)} ${String(r.cpu).padStart(3)}%  mem ${bar(r.mem)} ${String(r.mem).padStart(3)}%  load ${r.load.toFixed(2)}  (${latest.size} hosts)`);
};

// The newest 50 readings first, then live from right after them.
const recent = await bus.history('metrics', 'hosts', { limit: 50 });
const since = { offset: recent.offset ?? 0, ...(recent.epoch ? { epoch: recent.epoch } : {}) };
const readings = bus.subscribe('metrics', 'hosts', { since, presence: false });
let shown = 0;
for (const e of recent.events) {
  render(e.payload, e.offset);
  shown++;
}
if (count === 0 || shown < count) {
  for await (const d of readings) {
    if (d.type === 'gap') {
      console.log(`(${d.to === null ? 'some' : d.to - d.from + 1} readings lost: ${d.reason})`);
      continue;
    }
    render(d.payload, d.offset);
    if (++shown === count) break;
  }
}
await bus.close();
