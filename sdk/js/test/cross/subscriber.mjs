#!/usr/bin/env node
// Cross-language subscriber (scenario X01). Stable CLI:
//
//   node sdk/js/test/cross/subscriber.mjs URL ROOM CHANNEL COUNT [--since=OFFSET] [--timeout-ms=MS] [--token=T]
//
//   URL            node WebSocket URL, e.g. ws://127.0.0.1:8080/ws
//   COUNT          how many events to receive before exiting
//   --since=N      subscribe after offset N (default 0: from the oldest retained event, so the
//                  publisher may run before or after this script)
//   --timeout-ms   give up after this long (default 30000)
//   --token=T      token for a node with auth
//
// Prints the exact JSON text of each received payload (`rawPayload`), one line each, in offset
// order, to stdout. Exit status 0 after COUNT events; 1 on a timeout, a gap or any error
// (message on stderr); 2 on bad arguments.
import { connect } from '../../dist/index.js';
import { fail, parseArgs } from './args.mjs';

const { positional, flags } = parseArgs(
  'subscriber.mjs URL ROOM CHANNEL COUNT [--since=OFFSET] [--timeout-ms=MS] [--token=T]',
  (a) => a.length === 4 && /^\d+$/.test(a[3]),
);
const [url, room, channel, countText] = positional;
const count = Number(countText);
const timeoutMs = Number(flags['timeout-ms'] ?? 30_000);
const timer = setTimeout(() => {
  process.stderr.write(`subscriber: timed out after ${timeoutMs} ms\n`);
  process.exit(1);
}, timeoutMs);

const bus = connect(url, flags.token ? { token: flags.token } : {});
try {
  const sub = bus.subscribe(room, channel, { since: { offset: Number(flags.since ?? 0) } });
  let got = 0;
  if (count > 0) {
    for await (const d of sub) {
      if (d.type === 'gap') throw new Error(`gap: offsets ${d.from}..${d.to ?? '?'} (${d.reason})`);
      process.stdout.write(d.rawPayload + '\n');
      if (++got === count) break;
    }
  } else {
    await sub.ready;
  }
  clearTimeout(timer);
  await bus.close();
  process.exit(0);
} catch (err) {
  fail('subscriber', err);
}
