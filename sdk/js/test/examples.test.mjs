// The examples of docs/quickstart-js.md run as they are (sdk/js/examples), against a real node,
// and the quickstart shows exactly their code.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ArqonNode, repoRoot, sdkDir } from './harness.mjs';

const API_KEY = 'examples-key-0123456789';

/** Runs an example; collects its stdout lines. */
function run(file, args) {
  const proc = spawn(process.execPath, [path.join(sdkDir, 'examples', file), ...args], { cwd: sdkDir, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = [];
  let stderr = '';
  let partial = '';
  const waiters = [];
  proc.stdout.on('data', (d) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop();
    lines.push(...parts);
    for (const w of waiters.slice()) w();
  });
  proc.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((r) => proc.on('exit', (code) => r(code)));
  return {
    proc,
    lines,
    exited,
    get stderr() {
      return stderr;
    },
    /** Waits for a line matching `re` (10 s deadline). */
    waitLine(re, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = lines.find((l) => re.test(l));
          if (!line) return false;
          clearTimeout(t);
          waiters.splice(waiters.indexOf(check), 1);
          resolve(line);
          return true;
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`${file}: no line matching ${re} within ${timeoutMs} ms; output:\n${lines.join('\n')}\n${stderr}`));
        }, timeoutMs);
        if (!check()) waiters.push(check);
      });
    },
    say(line) {
      proc.stdin.write(line + '\n');
    },
  };
}

test('examples: the chat room with presence', async (t) => {
  const node = await new ArqonNode().start();
  t.after(() => node.stop());
  const url = ['--url', node.wsUrl, '--room', 'lobby'];
  const alice = run('chat.mjs', [...url, '--name', 'alice']);
  t.after(() => alice.proc.kill());
  await alice.waitLine(/^\* alice in lobby: 1 here$/);
  const bob = run('chat.mjs', [...url, '--name', 'bob']);
  t.after(() => bob.proc.kill());
  await bob.waitLine(/^\* bob in lobby: 2 here$/);
  await alice.waitLine(/^\* bob joined$/);
  alice.say('hello bob');
  await bob.waitLine(/\] alice: hello bob$/);
  bob.say('/who');
  const who = await bob.waitLine(/^\* here: /);
  assert.deepEqual(who.slice('* here: '.length).split(', ').sort(), ['alice', 'bob']);
  alice.proc.stdin.end();
  assert.equal(await alice.exited, 0, alice.stderr);
  await bob.waitLine(/^\* alice left$/);
  // A newcomer sees the history.
  const carol = run('chat.mjs', [...url, '--name', 'carol']);
  t.after(() => carol.proc.kill());
  await carol.waitLine(/\] alice: hello bob$/);
  carol.proc.stdin.end();
  bob.proc.stdin.end();
  assert.equal(await carol.exited, 0, carol.stderr);
  assert.equal(await bob.exited, 0, bob.stderr);
});

test('examples: the live dashboard fed by the HTTP publish API', async (t) => {
  const node = await new ArqonNode({ env: { ARQONBUS_HTTP__API_KEY: API_KEY } }).start();
  t.after(() => node.stop());
  const feed = (host, count) => run('dashboard-feeder.mjs', ['--http', node.httpUrl, '--api-key', API_KEY, '--host', host, '--count', String(count), '--interval-ms', '20']);
  const first = feed('web-1', 5);
  assert.equal(await first.exited, 0, first.stderr);
  assert.equal(first.lines.filter((l) => /^published web-1 #\d at offset \d+$/.test(l)).length, 5);
  // The dashboard shows the 5 stored readings, then 3 live ones from another host.
  const dash = run('dashboard.mjs', ['--url', node.wsUrl, '--count', '8']);
  t.after(() => dash.proc.kill());
  await dash.waitLine(/^#5 web-1 /);
  const second = feed('db-1', 3);
  assert.equal(await second.exited, 0, second.stderr);
  assert.equal(await dash.exited, 0, dash.stderr);
  const shown = dash.lines.filter((l) => l.startsWith('#'));
  assert.deepEqual(
    shown.map((l) => Number(l.split(' ')[0].slice(1))),
    [1, 2, 3, 4, 5, 6, 7, 8],
  );
  assert.match(shown[7], /^#8 db-1 +cpu [#.]{10} +\d+%  mem [#.]{10} +\d+%  load \d+\.\d\d  \(2 hosts\)$/);
});

test('examples: docs/quickstart-js.md shows the example files exactly', () => {
  const doc = fs.readFileSync(path.join(repoRoot, 'docs/quickstart-js.md'), 'utf8');
  const blocks = [...doc.matchAll(/<!-- file: (\S+) -->\n```js\n([\s\S]*?)```/g)];
  assert.deepEqual(blocks.map((b) => b[1]).sort(), ['sdk/js/examples/chat.mjs', 'sdk/js/examples/dashboard-feeder.mjs', 'sdk/js/examples/dashboard.mjs']);
  for (const [, file, code] of blocks) {
    assert.equal(code, fs.readFileSync(path.join(repoRoot, file), 'utf8'), `${file} differs from its copy in the quickstart`);
  }
});
