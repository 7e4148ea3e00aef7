// The cross-language scripts (scenario X01, run by the Python suite) checked from the JS side:
// what publisher.mjs prints is what subscriber.mjs prints.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { ArqonNode, sdkDir, uniqueRoom } from './harness.mjs';

const run = promisify(execFile);
const script = (name) => path.join(sdkDir, 'test/cross', name);

async function roundTrip(t, what, count) {
  const node = await new ArqonNode().start();
  t.after(() => node.stop());
  const room = uniqueRoom();
  const pub = await run(process.execPath, [script('publisher.mjs'), node.wsUrl, room, 'x', what], { timeout: 30_000 });
  const sub = await run(process.execPath, [script('subscriber.mjs'), node.wsUrl, room, 'x', String(count), '--timeout-ms=20000'], { timeout: 30_000 });
  assert.equal(sub.stdout, pub.stdout);
  return pub.stdout;
}

test('X01 scripts: publisher.mjs COUNT and subscriber.mjs print the same payload lines', async (t) => {
  const out = await roundTrip(t, '3', 3);
  assert.equal(out, '{"n":1}\n{"n":2}\n{"n":3}\n');
});

test('X01 scripts: a payload file goes through byte for byte (needs the issue 7 server)', async (t) => {
  const lines = ['{"big":12345678901234567890123456789012345678901,"f":1.0,"s":"\\u00e9","n":{"z":1,"a":2}}', '"caf\\u00e9"', '[1.0,-0.0,1E+2]'];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arqonbus-x01-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'payloads.jsonl');
  fs.writeFileSync(file, lines.join('\n') + '\n');
  const out = await roundTrip(t, file, lines.length);
  assert.equal(out, lines.join('\n') + '\n');
});
