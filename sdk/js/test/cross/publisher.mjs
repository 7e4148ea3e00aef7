#!/usr/bin/env node
// Cross-language publisher (scenario X01). Stable CLI:
//
//   node sdk/js/test/cross/publisher.mjs URL ROOM CHANNEL (COUNT | PAYLOAD_FILE) [--token=T] [--pad=BYTES]
//
//   URL           node WebSocket URL, e.g. ws://127.0.0.1:8080/ws
//   COUNT         an integer N: publishes the payloads {"n":1} … {"n":N}
//                 (with --pad=BYTES: {"n":i,"pad":"xxx…"} with BYTES x's)
//   PAYLOAD_FILE  a file path: every non-empty line is one JSON text, published byte for byte
//   --token=T     token for a node with auth
//
// Publishes in order, each with its own idempotency key, and waits for every ack. Prints the exact
// JSON text of each published payload, one line each, in offset order, to stdout. Exit status 0
// when all were acked; 1 on any error (message on stderr); 2 on bad arguments.
import fs from 'node:fs';
import { connect, rawJson } from '../../dist/index.js';
import { fail, parseArgs } from './args.mjs';

const { positional, flags } = parseArgs(
  'publisher.mjs URL ROOM CHANNEL (COUNT | PAYLOAD_FILE) [--token=T] [--pad=BYTES]',
  (a) => a.length === 4,
);
const [url, room, channel, what] = positional;
let payloads;
if (/^\d+$/.test(what)) {
  const pad = flags.pad ? 'x'.repeat(Number(flags.pad)) : null;
  payloads = Array.from({ length: Number(what) }, (_, i) => (pad ? `{"n":${i + 1},"pad":"${pad}"}` : `{"n":${i + 1}}`));
} else {
  payloads = fs
    .readFileSync(what, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
}

const bus = connect(url, flags.token ? { token: flags.token } : {});
try {
  await bus.ready(15_000);
  const acks = await Promise.all(payloads.map((p) => bus.publish(room, channel, rawJson(p), { timeoutMs: 60_000 })));
  const byOffset = acks.map((a, i) => [a.offset, payloads[i].trim()]).sort((x, y) => x[0] - y[0]);
  process.stdout.write(byOffset.map(([, p]) => p + '\n').join(''));
  await bus.close();
  process.exit(0);
} catch (err) {
  fail('publisher', err);
}
